//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body keyed by the
//! webhook secret; the event named by `X-GitHub-Event`.
//!
//! | event | becomes |
//! |---|---|
//! | `ping` | acknowledged (sent when the hook is created) |
//! | `deployment` | start, status `created` |
//! | `deployment_status` | `success` → success; `failure`, `error` → failure; other states (`pending`, `queued`, `in_progress`, `waiting`, `inactive`) → progress; status = the state |
//! | `workflow_run` | `requested` → start; `in_progress` → progress; `completed` → success for conclusion `success`, failure for `failure`, `timed_out`, `startup_failure`, `action_required`, progress otherwise (`cancelled`, `skipped`, `neutral`, `stale`); status = the conclusion, or the action |
//! | anything else | 422: subscribe the hook to the three events above only |
//!
//! The event header is not covered by the signature, but the body must then have the part
//! that event is about (`deployment_status`, `workflow_run`), so a signed body cannot be
//! passed off as another kind of event.

use std::collections::BTreeMap;

use hmac::Mac;
use serde_json::Value;
use time::OffsetDateTime;

use super::{
    DeliveryId, Fields, Headers, HmacSha256, Outcome, Receipt, Rejection, parse_object,
    printable_event, sha256_hex,
};
use crate::deploy::{DeployEvent, DeployEventType, DeployMetadata, Platform};

pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const EVENT_HEADER: &str = "X-GitHub-Event";
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";

const SIGNATURE_FORM: &str = "sha256= followed by 64 hex digits";

/// Checks `X-Hub-Signature-256` against the body, in constant time.
pub(crate) fn verify(
    secret: &[u8],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<(), Rejection> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(Rejection::MissingHeader {
            name: SIGNATURE_HEADER,
        })?;
    let malformed = || Rejection::MalformedHeader {
        name: SIGNATURE_HEADER,
        expected: SIGNATURE_FORM,
    };
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(malformed)?;
    let signature = bridge_core::hex::decode(hex)
        .filter(|s| s.len() == 32)
        .ok_or_else(malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret)
        .map_err(|_| Rejection::bad_signature(Platform::Github))?;
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| Rejection::bad_signature(Platform::Github))
}

/// The value of `X-Hub-Signature-256` GitHub sends for `body`: `sha256=<hex>`.
///
/// For tests, emulators and benchmarks.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!(
        "sha256={}",
        bridge_core::hex::encode(&mac.finalize().into_bytes())
    )
}

/// Normalises a verified delivery.
pub(crate) fn normalise(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Receipt, Rejection> {
    let event = headers
        .get(EVENT_HEADER)
        .ok_or(Rejection::MissingHeader { name: EVENT_HEADER })?;
    let guid = headers
        .get(DELIVERY_HEADER)
        .ok_or(Rejection::MissingHeader {
            name: DELIVERY_HEADER,
        })?;
    let root = parse_object(body)?;
    let fields = Fields {
        platform: Platform::Github,
        root: &root,
    };
    let outcome = match event {
        "ping" => Outcome::Acknowledged {
            event: "ping".into(),
        },
        "deployment" => Outcome::Deploy(deployment(&fields, now)?),
        "deployment_status" => Outcome::Deploy(deployment_status(&fields, now)?),
        "workflow_run" => Outcome::Deploy(workflow_run(&fields, now)?),
        other => {
            return Err(Rejection::UnknownEventType {
                platform: Platform::Github,
                event: printable_event(other),
                hint: "subscribe this webhook to Deployments, Deployment statuses and \
                       Workflow runs only",
            });
        }
    };
    Ok(Receipt {
        platform: Platform::Github,
        delivery_id: DeliveryId::new(Platform::Github, &sha256_hex(body)),
        platform_delivery: Some(guid.to_owned()),
        outcome,
    })
}

fn extra(fields: &Fields<'_>, pairs: &[(&str, &[&str])]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .filter_map(|(name, path)| {
            let value = fields.value(path).filter(|v| !v.is_null())?;
            Some(((*name).to_owned(), value.clone()))
        })
        .collect()
}

fn deployment(fields: &Fields<'_>, now: OffsetDateTime) -> Result<DeployEvent, Rejection> {
    fields.required_object(&["deployment"])?;
    Ok(DeployEvent {
        platform: Platform::Github,
        event_type: DeployEventType::Start,
        status: "created".into(),
        timestamp: fields.time_or(
            &[&["deployment", "created_at"], &["deployment", "updated_at"]],
            now,
        ),
        metadata: DeployMetadata {
            commit_sha: Some(fields.required_str(&["deployment", "sha"])?.to_owned()),
            branch: fields.str(&["deployment", "ref"]).map(str::to_owned),
            deploy_url: None,
            deploy_id: Some(fields.required_text(&["deployment", "id"])?),
            message: fields
                .str(&["deployment", "description"])
                .map(str::to_owned),
            extra: extra(
                fields,
                &[
                    ("environment", &["deployment", "environment"]),
                    ("repository", &["repository", "full_name"]),
                    ("task", &["deployment", "task"]),
                ],
            ),
        },
    })
}

fn deployment_status(fields: &Fields<'_>, now: OffsetDateTime) -> Result<DeployEvent, Rejection> {
    fields.required_object(&["deployment_status"])?;
    fields.required_object(&["deployment"])?;
    let state = fields.required_str(&["deployment_status", "state"])?;
    let event_type = match state {
        "success" => DeployEventType::Success,
        "failure" | "error" => DeployEventType::Failure,
        _ => DeployEventType::Progress,
    };
    let deploy_url = fields
        .str(&["deployment_status", "environment_url"])
        .or_else(|| fields.str(&["deployment_status", "target_url"]))
        .map(str::to_owned);
    Ok(DeployEvent {
        platform: Platform::Github,
        event_type,
        status: state.to_owned(),
        timestamp: fields.time_or(
            &[
                &["deployment_status", "updated_at"],
                &["deployment_status", "created_at"],
            ],
            now,
        ),
        metadata: DeployMetadata {
            commit_sha: Some(fields.required_str(&["deployment", "sha"])?.to_owned()),
            branch: fields.str(&["deployment", "ref"]).map(str::to_owned),
            deploy_url,
            deploy_id: Some(fields.required_text(&["deployment", "id"])?),
            message: fields
                .str(&["deployment_status", "description"])
                .map(str::to_owned),
            extra: extra(
                fields,
                &[
                    ("environment", &["deployment_status", "environment"]),
                    ("repository", &["repository", "full_name"]),
                    ("log_url", &["deployment_status", "log_url"]),
                ],
            ),
        },
    })
}

fn workflow_run(fields: &Fields<'_>, now: OffsetDateTime) -> Result<DeployEvent, Rejection> {
    fields.required_object(&["workflow_run"])?;
    let action = fields.required_str(&["action"])?;
    let (event_type, status) = match action {
        "requested" => (DeployEventType::Start, "requested"),
        "completed" => {
            let conclusion = fields.required_str(&["workflow_run", "conclusion"])?;
            let event_type = match conclusion {
                "success" => DeployEventType::Success,
                "failure" | "timed_out" | "startup_failure" | "action_required" => {
                    DeployEventType::Failure
                }
                _ => DeployEventType::Progress,
            };
            (event_type, conclusion)
        }
        other => (DeployEventType::Progress, other),
    };
    let message = fields
        .str(&["workflow_run", "head_commit", "message"])
        .or_else(|| fields.str(&["workflow_run", "display_title"]))
        .map(str::to_owned);
    Ok(DeployEvent {
        platform: Platform::Github,
        event_type,
        status: status.to_owned(),
        timestamp: fields.time_or(
            &[
                &["workflow_run", "updated_at"],
                &["workflow_run", "run_started_at"],
                &["workflow_run", "created_at"],
            ],
            now,
        ),
        metadata: DeployMetadata {
            commit_sha: Some(
                fields
                    .required_str(&["workflow_run", "head_sha"])?
                    .to_owned(),
            ),
            branch: fields
                .str(&["workflow_run", "head_branch"])
                .map(str::to_owned),
            deploy_url: fields.str(&["workflow_run", "html_url"]).map(str::to_owned),
            deploy_id: Some(fields.required_text(&["workflow_run", "id"])?),
            message,
            extra: extra(
                fields,
                &[
                    ("workflow", &["workflow_run", "name"]),
                    ("run_number", &["workflow_run", "run_number"]),
                    ("run_attempt", &["workflow_run", "run_attempt"]),
                    ("repository", &["repository", "full_name"]),
                ],
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    /// GitHub's documented test vector (docs: "Validating webhook deliveries").
    #[test]
    fn githubs_test_vector() {
        let secret = "It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_github(secret, b"Hello, World!"), expected);
        let headers = [(SIGNATURE_HEADER, expected)];
        assert_eq!(
            verify(secret.as_bytes(), &headers, b"Hello, World!"),
            Ok(())
        );
        let upper = expected.to_ascii_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(
            verify(
                secret.as_bytes(),
                &[(SIGNATURE_HEADER, upper.as_str())],
                b"Hello, World!"
            ),
            Ok(()),
            "hex digits in either case"
        );
        assert_eq!(
            verify(b"another secret", &headers, b"Hello, World!"),
            Err(Rejection::bad_signature(Platform::Github))
        );
    }

    #[test]
    fn missing_and_malformed_signatures_are_401() {
        let missing = verify(b"s", &[("X-GitHub-Event", "ping")], b"{}").unwrap_err();
        assert_eq!(
            missing,
            Rejection::MissingHeader {
                name: SIGNATURE_HEADER
            }
        );
        assert_eq!(missing.status(), 401);
        for header in [
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
            "sha256=zz",
            "sha256=757107ea",
        ] {
            let rejection = verify(b"s", &[(SIGNATURE_HEADER, header)], b"{}").unwrap_err();
            assert_eq!(
                rejection,
                Rejection::MalformedHeader {
                    name: SIGNATURE_HEADER,
                    expected: SIGNATURE_FORM
                },
                "{header}"
            );
            assert_eq!(rejection.status(), 401);
        }
    }

    fn receive(event: &str, body: &Value) -> Result<Receipt, Rejection> {
        let body = body.to_string();
        let headers = [
            (EVENT_HEADER, event),
            (DELIVERY_HEADER, "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        normalise(&headers, body.as_bytes(), NOW)
    }

    fn deploy(receipt: Receipt) -> DeployEvent {
        match receipt.outcome {
            Outcome::Deploy(event) => event,
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn ping_is_acknowledged() {
        let receipt = receive("ping", &json!({"zen": "Keep it logically awesome."})).unwrap();
        assert_eq!(
            receipt.outcome,
            Outcome::Acknowledged {
                event: "ping".into()
            }
        );
        assert_eq!(
            receipt.platform_delivery.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert!(receipt.delivery_id.as_str().starts_with("github:"));
    }

    #[test]
    fn deployment_statuses_map_to_event_types() {
        for (state, expected) in [
            ("success", DeployEventType::Success),
            ("failure", DeployEventType::Failure),
            ("error", DeployEventType::Failure),
            ("in_progress", DeployEventType::Progress),
            ("queued", DeployEventType::Progress),
            ("pending", DeployEventType::Progress),
        ] {
            let body = json!({
                "action": "created",
                "deployment_status": {"state": state, "target_url": "https://ci/1",
                                      "updated_at": "2026-03-01T11:59:00Z"},
                "deployment": {"id": 42, "sha": "abc", "ref": "main"},
            });
            let event = deploy(receive("deployment_status", &body).unwrap());
            assert_eq!(event.event_type, expected, "{state}");
            assert_eq!(event.status, state);
            assert_eq!(event.timestamp, "2026-03-01T11:59:00Z");
            assert_eq!(event.metadata.deploy_id.as_deref(), Some("42"));
            assert_eq!(event.metadata.deploy_url.as_deref(), Some("https://ci/1"));
        }
    }

    #[test]
    fn workflow_runs_map_to_event_types() {
        for (action, conclusion, expected, status) in [
            ("requested", None, DeployEventType::Start, "requested"),
            (
                "in_progress",
                None,
                DeployEventType::Progress,
                "in_progress",
            ),
            (
                "completed",
                Some("success"),
                DeployEventType::Success,
                "success",
            ),
            (
                "completed",
                Some("timed_out"),
                DeployEventType::Failure,
                "timed_out",
            ),
            (
                "completed",
                Some("cancelled"),
                DeployEventType::Progress,
                "cancelled",
            ),
        ] {
            let body = json!({
                "action": action,
                "workflow_run": {"id": 7, "head_sha": "abc", "head_branch": "main",
                                 "conclusion": conclusion, "html_url": "https://gh/run/7"},
            });
            let event = deploy(receive("workflow_run", &body).unwrap());
            assert_eq!(event.event_type, expected, "{action} {conclusion:?}");
            assert_eq!(event.status, status);
            assert_eq!(
                event.timestamp, "2026-03-01T12:00:00Z",
                "now, for lack of one"
            );
        }
        let unfinished = json!({"action": "completed",
            "workflow_run": {"id": 7, "head_sha": "abc", "conclusion": null}});
        let rejection = receive("workflow_run", &unfinished).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert!(
            rejection.to_string().contains("workflow_run.conclusion"),
            "{rejection}"
        );
    }

    #[test]
    fn other_events_and_missing_headers_are_refused() {
        let rejection = receive("push", &json!({"ref": "refs/heads/main"})).unwrap_err();
        assert!(matches!(
            &rejection,
            Rejection::UnknownEventType { event, .. } if event == "push"
        ));
        assert_eq!(rejection.status(), 422);

        let no_event = normalise(&[(DELIVERY_HEADER, "g")], b"{}", NOW).unwrap_err();
        assert_eq!(no_event, Rejection::MissingHeader { name: EVENT_HEADER });
        assert_eq!(no_event.status(), 400);
        let no_delivery = normalise(&[(EVENT_HEADER, "ping")], b"{}", NOW).unwrap_err();
        assert_eq!(
            no_delivery,
            Rejection::MissingHeader {
                name: DELIVERY_HEADER
            }
        );
    }

    #[test]
    fn a_body_of_another_event_is_refused() {
        let workflow = json!({"action": "completed", "workflow_run": {"id": 1}});
        let rejection = receive("deployment_status", &workflow).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::InvalidPayload {
                platform: Platform::Github,
                detail: "`deployment_status` is missing or not an object".into()
            }
        );
        let rejection = receive("deployment", &json!([1])).unwrap_err();
        assert_eq!(rejection.status(), 400);
    }

    proptest! {
        #[test]
        fn signed_bodies_verify_and_any_changed_byte_does_not(
            secret in "[ -~]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let signature = sign_github(&secret, &body);
            let headers = [(SIGNATURE_HEADER, signature.as_str())];
            prop_assert_eq!(verify(secret.as_bytes(), &headers, &body), Ok(()));
            let mut changed = body.clone();
            changed[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                verify(secret.as_bytes(), &headers, &changed),
                Err(Rejection::bad_signature(Platform::Github))
            );
        }
    }
}
