//! Real-looking deliveries of each platform (`tests/fixtures/<platform>/*.json`), signed as
//! the platform signs them, through [`WebhookVerifier::receive`]: the normalised events,
//! the topics, the de-duplication keys, and every way a delivery is refused.

use std::path::Path;

use bridge_webhooks::webhook::{github, netlify, render, sign_github, sign_netlify, sign_render};
use bridge_webhooks::{
    DeployEventType, Outcome, Platform, Receipt, Rejection, VerifyOptions, WebhookSecrets,
    WebhookVerifier,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const GITHUB_SECRET: &str = "gh-hook-secret-9f8e7d";
const NETLIFY_SECRET: &str = "netlify-jws-secret-3c2b1a";
const RENDER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const NOW: OffsetDateTime = datetime!(2026-03-01 10:20:40 UTC);

fn verifier() -> WebhookVerifier {
    let secrets = WebhookSecrets::new()
        .with_github(GITHUB_SECRET)
        .with_netlify(NETLIFY_SECRET)
        .with_render(RENDER_SECRET)
        .expect("render secret");
    WebhookVerifier::new(secrets, VerifyOptions::default())
}

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// A delivery as the platform sends it: body and headers.
struct Delivery {
    platform: Platform,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Delivery {
    fn github(event: &str, path: &str) -> Self {
        let body = fixture(path);
        let headers = vec![
            (github::EVENT_HEADER.into(), event.into()),
            (
                github::DELIVERY_HEADER.into(),
                "9a3c1e70-f6d2-11f0-8a5e-1c2b3a4d5e6f".into(),
            ),
            (
                github::SIGNATURE_HEADER.into(),
                sign_github(GITHUB_SECRET, &body),
            ),
            ("User-Agent".into(), "GitHub-Hookshot/2f6b1a9".into()),
        ];
        Self {
            platform: Platform::Github,
            body,
            headers,
        }
    }

    fn netlify(event: &str, path: &str) -> Self {
        let body = fixture(path);
        let headers = vec![
            (netlify::EVENT_HEADER.into(), event.into()),
            (
                netlify::SIGNATURE_HEADER.into(),
                sign_netlify(NETLIFY_SECRET, &body, NOW),
            ),
        ];
        Self {
            platform: Platform::Netlify,
            body,
            headers,
        }
    }

    fn render(path: &str) -> Self {
        let body = fixture(path);
        let id: Value = serde_json::from_slice(&body).expect("fixture is JSON");
        let id = id["data"]["id"].as_str().expect("event id").to_owned();
        let ts = NOW.unix_timestamp() - 3;
        let signature = sign_render(RENDER_SECRET, &id, ts, &body).expect("sign");
        let headers = vec![
            (render::ID_HEADER.into(), id),
            (render::TIMESTAMP_HEADER.into(), ts.to_string()),
            (render::SIGNATURE_HEADER.into(), signature),
        ];
        Self {
            platform: Platform::Render,
            body,
            headers,
        }
    }

    fn receive(&self) -> Result<Receipt, Rejection> {
        verifier().receive(self.platform, &self.headers, &self.body, NOW)
    }

    fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
}

/// The normalised event as JSON, and its topics.
fn deploy(delivery: &Delivery) -> (Value, Vec<&'static str>) {
    let receipt = delivery.receive().expect("accepted");
    match receipt.outcome {
        Outcome::Deploy(event) => (
            serde_json::to_value(&event).expect("serialises"),
            event.topics(),
        ),
        other => panic!("not a deploy: {other:?}"),
    }
}

#[test]
fn github_deliveries_normalise() {
    let (event, topics) = deploy(&Delivery::github("deployment", "github/deployment.json"));
    assert_eq!(
        event,
        json!({
            "platform": "github",
            "event_type": "start",
            "status": "created",
            "timestamp": "2026-03-01T10:15:02Z",
            "metadata": {
                "commit_sha": "9f1c2d7e4b5a6c8d0e1f2a3b4c5d6e7f8a9b0c1d",
                "branch": "main",
                "deploy_url": null,
                "deploy_id": "1818934432",
                "message": "Deploy main to production",
                "environment": "production",
                "repository": "acme/sr-aibridge",
                "task": "deploy"
            }
        })
    );
    assert_eq!(topics, ["deploy.github", "deploy.platform.start"]);

    let (event, topics) = deploy(&Delivery::github(
        "deployment_status",
        "github/deployment_status_success.json",
    ));
    assert_eq!(
        event,
        json!({
            "platform": "github",
            "event_type": "success",
            "status": "success",
            "timestamp": "2026-03-01T10:17:41Z",
            "metadata": {
                "commit_sha": "9f1c2d7e4b5a6c8d0e1f2a3b4c5d6e7f8a9b0c1d",
                "branch": "main",
                "deploy_url": "https://sr-aibridge.example.com",
                "deploy_id": "1818934432",
                "message": "Deployment finished successfully.",
                "environment": "production",
                "repository": "acme/sr-aibridge",
                "log_url": "https://github.com/acme/sr-aibridge/actions/runs/13600412345/job/38021"
            }
        })
    );
    assert_eq!(topics, ["deploy.github", "deploy.platform.success"]);

    let (event, topics) = deploy(&Delivery::github(
        "deployment_status",
        "github/deployment_status_failure.json",
    ));
    assert_eq!(event["event_type"], "failure");
    assert_eq!(
        event["metadata"]["deploy_url"],
        "https://github.com/acme/sr-aibridge/actions/runs/13600412345/job/38021",
        "an empty environment_url falls back to target_url"
    );
    assert_eq!(topics, ["deploy.github", "deploy.platform.failure"]);

    let (event, _) = deploy(&Delivery::github(
        "workflow_run",
        "github/workflow_run_completed.json",
    ));
    assert_eq!(
        event,
        json!({
            "platform": "github",
            "event_type": "failure",
            "status": "failure",
            "timestamp": "2026-03-01T10:19:03Z",
            "metadata": {
                "commit_sha": "9f1c2d7e4b5a6c8d0e1f2a3b4c5d6e7f8a9b0c1d",
                "branch": "main",
                "deploy_url": "https://github.com/acme/sr-aibridge/actions/runs/13600412345",
                "deploy_id": "13600412345",
                "message": "fix(api): retry Render env updates on 429",
                "workflow": "Deploy",
                "run_number": 482,
                "run_attempt": 1,
                "repository": "acme/sr-aibridge"
            }
        })
    );
    let (event, _) = deploy(&Delivery::github(
        "workflow_run",
        "github/workflow_run_requested.json",
    ));
    assert_eq!(event["event_type"], "start");
    assert_eq!(event["status"], "requested");
}

#[test]
fn github_ping_is_acknowledged_and_deliveries_dedupe_on_the_body() {
    let ping = Delivery::github("ping", "github/ping.json");
    let receipt = ping.receive().unwrap();
    assert_eq!(
        receipt.outcome,
        Outcome::Acknowledged {
            event: "ping".into()
        }
    );
    assert_eq!(
        receipt.platform_delivery.as_deref(),
        Some("9a3c1e70-f6d2-11f0-8a5e-1c2b3a4d5e6f")
    );
    // A replay under a fresh GUID is the same delivery.
    let replay = Delivery::github("ping", "github/ping.json")
        .set_header("x-github-delivery", "00000000-0000-0000-0000-000000000000");
    assert_eq!(replay.receive().unwrap().delivery_id, receipt.delivery_id);
    let other = Delivery::github("deployment", "github/deployment.json");
    assert_ne!(other.receive().unwrap().delivery_id, receipt.delivery_id);
}

#[test]
fn netlify_deliveries_normalise() {
    let (event, topics) = deploy(&Delivery::netlify(
        "deploy_building",
        "netlify/deploy_building.json",
    ));
    assert_eq!(
        event,
        json!({
            "platform": "netlify",
            "event_type": "start",
            "status": "building",
            "timestamp": "2026-03-01T10:15:12.54Z",
            "metadata": {
                "commit_sha": "9f1c2d7e4b5a6c8d0e1f2a3b4c5d6e7f8a9b0c1d",
                "branch": "main",
                "deploy_url": "https://65e1b2c3d4e5f60718293a4b--sr-aibridge.netlify.app",
                "deploy_id": "65e1b2c3d4e5f60718293a4b",
                "message": "fix(api): retry Render env updates on 429",
                "site_id": "3f9a1c2e-7b4d-4e8a-9c1f-2d3e4f5a6b7c",
                "name": "sr-aibridge",
                "context": "production"
            }
        })
    );
    assert_eq!(topics, ["deploy.netlify", "deploy.platform.start"]);

    let (event, topics) = deploy(&Delivery::netlify(
        "deploy_created",
        "netlify/deploy_created.json",
    ));
    assert_eq!(event["event_type"], "success");
    assert_eq!(event["status"], "ready");
    assert_eq!(
        event["timestamp"], "2026-03-01T10:16:48.655Z",
        "published_at"
    );
    assert_eq!(event["metadata"]["deploy_time"], 91);
    assert_eq!(topics, ["deploy.netlify", "deploy.platform.success"]);

    let failed = Delivery::netlify("deploy_failed", "netlify/deploy_failed.json");
    let receipt = failed.receive().unwrap();
    assert_eq!(
        receipt.delivery_id.as_str(),
        "netlify:65e1b2c3d4e5f60718293a4b:error"
    );
    let (event, topics) = deploy(&failed);
    assert_eq!(event["event_type"], "failure");
    assert_eq!(
        event["metadata"]["message"],
        "Build script returned non-zero exit code: 2"
    );
    assert_eq!(topics, ["deploy.netlify", "deploy.platform.failure"]);
}

#[test]
fn render_deliveries_normalise() {
    let (event, topics) = deploy(&Delivery::render("render/deploy_started.json"));
    assert_eq!(
        event,
        json!({
            "platform": "render",
            "event_type": "start",
            "status": "started",
            "timestamp": "2026-03-01T10:18:02.113087215Z",
            "metadata": {
                "commit_sha": null,
                "branch": null,
                "deploy_url": null,
                "deploy_id": null,
                "message": null,
                "service_id": "srv-cukouhrtq21c73e9scng",
                "service_name": "sr-aibridge-api",
                "event_id": "evt-cv1p2qati7dc73eg29tg"
            }
        })
    );
    assert_eq!(topics, ["deploy.render", "deploy.platform.start"]);

    let (event, topics) = deploy(&Delivery::render("render/deploy_ended_succeeded.json"));
    assert_eq!(
        (&event["event_type"], &event["status"]),
        (&json!("success"), &json!("succeeded"))
    );
    assert_eq!(topics, ["deploy.render", "deploy.platform.success"]);
    let (event, topics) = deploy(&Delivery::render("render/deploy_ended_failed.json"));
    assert_eq!(event["event_type"], "failure");
    assert_eq!(topics, ["deploy.render", "deploy.platform.failure"]);
    let (event, topics) = deploy(&Delivery::render("render/build_ended_failed.json"));
    assert_eq!(
        (&event["event_type"], &event["status"]),
        (&json!("progress"), &json!("build_failed"))
    );
    assert_eq!(
        topics,
        ["deploy.render"],
        "progress stays on the platform topic"
    );

    let receipt = Delivery::render("render/server_available.json")
        .receive()
        .unwrap();
    assert_eq!(
        receipt.delivery_id.as_str(),
        "render:evt-cv1p4c2ti7dc73eg2c2g"
    );
    assert_eq!(
        receipt.outcome,
        Outcome::Acknowledged {
            event: "server_available".into()
        }
    );
}

/// Every way a delivery is refused, through the public entry point, with its status; no
/// message contains a secret or anything from the body.
#[test]
fn refusals_carry_their_status_and_nothing_secret() {
    let tampered = |mut delivery: Delivery| {
        let at = delivery
            .body
            .iter()
            .position(|b| *b == b'9')
            .expect("a digit to change");
        delivery.body[at] = b'8';
        delivery
    };
    let stale_render = {
        let delivery = Delivery::render("render/deploy_started.json");
        let ts = (NOW.unix_timestamp() - 600).to_string();
        let id = "evt-cv1p2qati7dc73eg29tg";
        let signature = sign_render(
            RENDER_SECRET,
            id,
            NOW.unix_timestamp() - 600,
            &delivery.body,
        )
        .unwrap();
        delivery
            .set_header(render::TIMESTAMP_HEADER, &ts)
            .set_header(render::SIGNATURE_HEADER, &signature)
    };
    let cases: Vec<(&str, Delivery, &str, u16)> = vec![
        (
            "github tampered",
            tampered(Delivery::github("deployment", "github/deployment.json")),
            "bad_signature",
            401,
        ),
        (
            "github unsigned",
            Delivery::github("deployment", "github/deployment.json")
                .without_header(github::SIGNATURE_HEADER),
            "missing_header",
            401,
        ),
        (
            "github sha1 only",
            Delivery::github("deployment", "github/deployment.json")
                .set_header(github::SIGNATURE_HEADER, "sha1=0123"),
            "malformed_header",
            401,
        ),
        (
            "github push",
            Delivery::github("push", "github/deployment.json"),
            "unknown_event_type",
            422,
        ),
        (
            "github no event",
            Delivery::github("deployment", "github/deployment.json")
                .without_header(github::EVENT_HEADER),
            "missing_header",
            400,
        ),
        (
            "netlify tampered",
            tampered(Delivery::netlify(
                "deploy_created",
                "netlify/deploy_created.json",
            )),
            "bad_signature",
            401,
        ),
        (
            "netlify unsigned",
            Delivery::netlify("deploy_created", "netlify/deploy_created.json")
                .without_header(netlify::SIGNATURE_HEADER),
            "missing_header",
            401,
        ),
        (
            "netlify unknown notification",
            Delivery::netlify("form_submitted", "netlify/deploy_created.json"),
            "unknown_event_type",
            422,
        ),
        (
            "render tampered",
            tampered(Delivery::render("render/deploy_ended_failed.json")),
            "bad_signature",
            401,
        ),
        ("render stale", stale_render, "stale_timestamp", 401),
        (
            "render no id",
            Delivery::render("render/deploy_started.json").without_header(render::ID_HEADER),
            "missing_header",
            401,
        ),
    ];
    for (name, delivery, code, status) in cases {
        let rejection = delivery.receive().expect_err(name);
        assert_eq!(rejection.code(), code, "{name}: {rejection}");
        assert_eq!(rejection.status(), status, "{name}: {rejection}");
        let message = rejection.to_string();
        for secret in [
            GITHUB_SECRET,
            NETLIFY_SECRET,
            RENDER_SECRET,
            &RENDER_SECRET[6..],
        ] {
            assert!(!message.contains(secret), "{name}: {message}");
        }
        for from_body in ["9f1c2d7e", "acme/sr-aibridge", "srv-cukouhrtq21c73e9scng"] {
            assert!(!message.contains(from_body), "{name}: {message}");
        }
    }
}

#[test]
fn a_secret_for_another_platform_does_not_verify() {
    let swapped = WebhookVerifier::new(
        WebhookSecrets::new().with_github(NETLIFY_SECRET),
        VerifyOptions::default(),
    );
    let delivery = Delivery::github("deployment", "github/deployment.json");
    let rejection = swapped
        .receive(Platform::Github, &delivery.headers, &delivery.body, NOW)
        .unwrap_err();
    assert_eq!(rejection.code(), "bad_signature");
    assert!(rejection.to_string().contains("GITHUB_WEBHOOK_SECRET"));
}

#[test]
fn every_fixture_is_accepted() {
    let deliveries = [
        Delivery::github("ping", "github/ping.json"),
        Delivery::github("deployment", "github/deployment.json"),
        Delivery::github("deployment_status", "github/deployment_status_success.json"),
        Delivery::github("deployment_status", "github/deployment_status_failure.json"),
        Delivery::github("workflow_run", "github/workflow_run_completed.json"),
        Delivery::github("workflow_run", "github/workflow_run_requested.json"),
        Delivery::netlify("deploy_building", "netlify/deploy_building.json"),
        Delivery::netlify("deploy_created", "netlify/deploy_created.json"),
        Delivery::netlify("deploy_failed", "netlify/deploy_failed.json"),
        Delivery::render("render/deploy_started.json"),
        Delivery::render("render/deploy_ended_succeeded.json"),
        Delivery::render("render/deploy_ended_failed.json"),
        Delivery::render("render/build_ended_failed.json"),
        Delivery::render("render/server_available.json"),
    ];
    let mut keys = std::collections::BTreeSet::new();
    for delivery in &deliveries {
        let receipt = delivery.receive().expect("accepted");
        assert_eq!(receipt.platform, delivery.platform);
        assert!(
            keys.insert(receipt.delivery_id.clone()),
            "{}",
            receipt.delivery_id
        );
        if let Outcome::Deploy(event) = receipt.outcome {
            assert_eq!(event.platform, delivery.platform);
            assert!(
                time::OffsetDateTime::parse(
                    &event.timestamp,
                    &time::format_description::well_known::Rfc3339
                )
                .is_ok()
            );
            assert_eq!(
                event.topics().len(),
                if event.event_type == DeployEventType::Progress {
                    1
                } else {
                    2
                }
            );
        }
    }
}
