//! Deploy webhooks end to end through the router: signatures made the way each platform makes
//! them, every rejection path with its status and its `webhook.rejected` event, replays
//! acknowledged once, and the deploy event API with its status and history.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge_webhooks::webhook::{sign_github, sign_netlify, sign_render};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::harness::{GITHUB_SECRET, Harness, NETLIFY_SECRET, RENDER_SECRET, request};

fn fixture(platform: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../bridge-webhooks/tests/fixtures/{platform}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn delivery(platform: &str, headers: &[(&str, String)], body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(format!("/webhooks/deployment/{platform}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::from(body)).unwrap()
}

fn github(event: &str, body: Vec<u8>, delivery_guid: &str) -> Request<Body> {
    let signature = sign_github(GITHUB_SECRET, &body);
    delivery(
        "github",
        &[
            ("x-github-event", event.to_owned()),
            ("x-github-delivery", delivery_guid.to_owned()),
            ("x-hub-signature-256", signature),
        ],
        body,
    )
}

fn render(id: &str, at: i64, body: Vec<u8>) -> Request<Body> {
    let signature = sign_render(RENDER_SECRET, id, at, &body).unwrap();
    delivery(
        "render",
        &[
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", at.to_string()),
            ("webhook-signature", signature),
        ],
        body,
    )
}

fn netlify(body: Vec<u8>) -> Request<Body> {
    let signature = sign_netlify(NETLIFY_SECRET, &body, OffsetDateTime::now_utc());
    delivery("netlify", &[("x-webhook-signature", signature)], body)
}

async fn events(h: &Harness, topic: &str) -> Vec<Value> {
    let (_, page) = h
        .call(request(
            "GET",
            &format!(
                "/genesis/events?topic={}&limit=100",
                topic.replace('>', "%3E")
            ),
            Some(&h.observer),
            None,
        ))
        .await;
    page["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_platform_signed_its_own_way_is_accepted_and_published() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(github(
            "deployment_status",
            fixture("github", "deployment_status_failure"),
            "guid-1",
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        body["topics"],
        json!(["deploy.github", "deploy.platform.failure"])
    );
    let seqs = body["seqs"].as_array().unwrap();
    assert_eq!(seqs[1].as_u64().unwrap(), seqs[0].as_u64().unwrap() + 1);

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (status, body) = h
        .call(render("evt-1", now, fixture("render", "deploy_started")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h.call(netlify(fixture("netlify", "deploy_building"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let failures = events(&h, "deploy.platform.failure").await;
    assert_eq!(failures.len(), 1);
    let e = &failures[0];
    assert_eq!(e["platform"], "github");
    assert_eq!(e["event_type"], "failure");
    for field in ["commit_sha", "branch", "deploy_url", "deploy_id", "message"] {
        assert!(
            e["metadata"].get(field).is_some(),
            "metadata.{field} missing: {e}"
        );
    }
    assert_eq!(events(&h, "deploy.render").await.len(), 1);
    assert_eq!(events(&h, "deploy.netlify").await.len(), 1);
}

#[tokio::test]
async fn a_delivery_seen_before_is_acknowledged_and_not_processed_again() {
    let h = Harness::new().await;
    let body = fixture("github", "deployment_status_success");
    let (status, _) = h
        .call(github("deployment_status", body.clone(), "guid-1"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // GitHub's redelivery: same body, new GUID.
    let (status, again) = h.call(github("deployment_status", body, "guid-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(events(&h, "deploy.github").await.len(), 1);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let body = fixture("render", "deploy_ended_succeeded");
    assert_eq!(
        h.call(render("evt-9", now, body.clone())).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(h.call(render("evt-9", now, body)).await.0, StatusCode::OK);
    let (_, status) = h
        .call(request(
            "GET",
            "/webhooks/deployment/status",
            Some(&h.observer),
            None,
        ))
        .await;
    let render_status = status["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "render")
        .unwrap()
        .clone();
    assert_eq!(render_status["accepted"], 1);
    assert_eq!(render_status["duplicates"], 1);
    assert_eq!(render_status["configured"], true);
}

#[tokio::test]
async fn pings_are_acknowledged_without_an_event() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(github("ping", fixture("github", "ping"), "guid-p"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "acknowledged");
    assert!(events(&h, "deploy.>").await.is_empty());
}

#[tokio::test]
async fn every_rejection_has_its_status_and_an_event_that_explains_it() {
    let h = Harness::new().await;
    let body = fixture("github", "deployment_status_success");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "bad signature",
            delivery(
                "github",
                &[
                    ("x-github-event", "deployment_status".into()),
                    ("x-hub-signature-256", sign_github(GITHUB_SECRET, &body)),
                ],
                tampered,
            ),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "missing signature",
            delivery(
                "github",
                &[("x-github-event", "deployment_status".into())],
                body.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "missing_header",
        ),
        (
            "old timestamp",
            render("evt-old", now - 3_600, fixture("render", "deploy_started")),
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
        ),
        (
            "malformed JSON",
            github("deployment_status", b"{not json".to_vec(), "g"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "unknown event type",
            github("issues", br#"{"action":"opened"}"#.to_vec(), "g2"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_event_type",
        ),
    ];
    for (what, req, want, code) in cases {
        let (status, answer) = h.call(req).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert_eq!(answer["error"], code, "{what}");
        assert!(!answer["detail"].as_str().unwrap().contains(GITHUB_SECRET));
    }
    let rejected = events(&h, "webhook.rejected").await;
    assert_eq!(rejected.len(), 5);
    assert_eq!(rejected[0]["reason"], "bad_signature");
    assert_eq!(rejected[2]["reason"], "stale_timestamp");
    // Unknown platforms are 404s.
    let (status, _) = h.call(delivery("vercel", &[], b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_platform_without_a_secret_refuses_and_says_so() {
    let h2 = Harness::without_webhook_secrets().await;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (status, body) = h2
        .call(render("evt-1", now, fixture("render", "deploy_started")))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_configured");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("RENDER_WEBHOOK_SECRET")
    );
    let (_, status) = h2
        .call(request(
            "GET",
            "/webhooks/deployment/status",
            Some(&h2.observer),
            None,
        ))
        .await;
    assert!(
        status["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["configured"] == false)
    );
}

#[tokio::test]
async fn deliveries_up_to_a_mebibyte_are_taken_and_larger_ones_refused_and_published() {
    const MIB: usize = 1024 * 1024;
    let h = Harness::new().await;
    // Over the API's 256 KiB, within the webhooks' 1 MiB: a signed delivery is accepted.
    let mut big = fixture("github", "deployment_status_success");
    big.resize(700 * 1024, b' ');
    let (status, body) = h.call(github("deployment_status", big, "g-big")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Over 1 MiB: refused, whether the length is stated or found while reading, and
    // each refusal is a `webhook.rejected` event like every other.
    let mut stated = github("deployment_status", vec![b' '; MIB + 1], "g-stated");
    stated
        .headers_mut()
        .insert("content-length", (MIB + 1).to_string().parse().unwrap());
    let chunks = (0..17).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let mut streamed = delivery("render", &[], Vec::new());
    *streamed.body_mut() = Body::from_stream(futures_util::stream::iter(chunks));
    for (what, req) in [("stated", stated), ("streamed", streamed)] {
        let (status, body) = h.call(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {body}");
        assert_eq!(body["error"], "body_too_large", "{what}");
        assert!(
            body["detail"].as_str().unwrap().contains("1048576"),
            "{what}: {body}"
        );
    }
    let rejected = events(&h, "webhook.rejected").await;
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["platform"], "github");
    assert_eq!(rejected[1]["platform"], "render");
    for event in &rejected {
        assert_eq!(event["reason"], "body_too_large");
        assert_eq!(event["status"], 413);
        assert!(!event["detail"].as_str().unwrap().is_empty());
    }

    // The limit is the webhooks' own setting.
    let small = Harness::with_options(bridge_server::ServerOptions {
        webhook_max_body_bytes: 512,
        ..bridge_server::ServerOptions::default()
    })
    .await;
    let (status, body) = small
        .call(github("deployment", vec![b' '; 4096], "g"))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(events(&small, "webhook.rejected").await.len(), 1);
}

#[tokio::test]
async fn stated_deploy_events_feed_status_and_history() {
    let h = Harness::new().await;
    let op = Some(h.operator.as_str());
    let post = |event_type: &str, status: &str, id: &str, at: &str| {
        request(
            "POST",
            "/engines/autonomy/deployment/event",
            op,
            Some(json!({
                "platform": "render", "event_type": event_type, "status": status,
                "timestamp": at, "metadata": {"deploy_id": id, "branch": "main"}
            })),
        )
    };
    for (t, s, id, at) in [
        ("start", "building", "d1", "2026-03-01T10:00:00Z"),
        ("success", "live", "d1", "2026-03-01T10:02:00Z"),
        ("start", "building", "d2", "2026-03-02T10:00:00Z"),
        ("failure", "failed", "d2", "2026-03-02T10:04:00Z"),
    ] {
        let (status, body) = h.call(post(t, s, id, at)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = h
        .call(post("explode", "x", "d3", "2026-03-02T10:00:00Z"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = h
        .call(request(
            "POST",
            "/engines/autonomy/deployment/event",
            op,
            Some(json!({"platform": "render", "event_type": "start", "status": "x", "timestamp": "yesterday"})),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let obs = Some(h.observer.as_str());
    let (_, status) = h
        .call(request(
            "GET",
            "/engines/autonomy/deployment/status",
            obs,
            None,
        ))
        .await;
    assert_eq!(status["platforms"]["render"]["event_type"], "failure");
    let (_, history) = h
        .call(request(
            "GET",
            "/engines/autonomy/deployment/history",
            obs,
            None,
        ))
        .await;
    let r = &history["platforms"]["render"];
    assert_eq!(r["started"], 2);
    assert_eq!(r["succeeded"], 1);
    assert_eq!(r["failed"], 1);
    assert_eq!(r["success_rate"], 0.5);
    assert_eq!(r["mean_duration_secs"], 180.0);
    assert_eq!(r["max_duration_secs"], 240.0);
    assert_eq!(history["platforms"]["github"]["started"], 0);
}

/// Two replicas on one PostgreSQL store receive the same signed delivery at once, many
/// times over: it is published once (counted in the store), every other receipt is
/// `duplicate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_store_publish_a_delivery_once() {
    let url = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_owned());
    let reachable = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    let client = match reachable {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            client
        }
        other => {
            assert!(
                std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "PostgreSQL is required (BRIDGE_REQUIRE_SERVICES=1) but: {:?}",
                other.map(|r| r.map(|_| ()))
            );
            eprintln!("skipped: no PostgreSQL at {url}");
            return;
        }
    };
    let schema = format!("server_deliveries_{}", std::process::id());
    let open = || async {
        let options = bridge_genesis_scale::PostgresOptions {
            schema: Some(schema.clone()),
            ..bridge_genesis_scale::PostgresOptions::default()
        };
        std::sync::Arc::new(
            bridge_genesis_scale::PostgresStore::connect_with(&url, options)
                .await
                .unwrap(),
        ) as std::sync::Arc<dyn bridge_genesis::bus::EventStore>
    };
    let a = std::sync::Arc::new(Harness::on_store(open().await).await);
    let b = std::sync::Arc::new(Harness::on_store(open().await).await);
    let body = fixture("github", "deployment_status_failure");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8usize {
        let h = if n % 2 == 0 { a.clone() } else { b.clone() };
        let body = body.clone();
        tasks.spawn(async move {
            h.call(github("deployment_status", body, "guid-replicas"))
                .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, receipt) = done.unwrap();
        statuses.push((
            status.as_u16(),
            receipt["status"].as_str().unwrap().to_owned(),
        ));
    }
    statuses.sort();
    let mut want = vec![(200, "duplicate".to_owned()); 7];
    want.push((202, "accepted".to_owned()));
    assert_eq!(statuses, want);
    // A later redelivery, to either replica, is a duplicate too.
    let (status, receipt) = b
        .call(github("deployment_status", body, "guid-replicas"))
        .await;
    assert_eq!(
        (status.as_u16(), receipt["status"].clone()),
        (200, json!("duplicate"))
    );
    let published: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".genesis_events WHERE topic = 'deploy.github'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(published, 1, "published once across both replicas");
    drop((a, b));
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// The document lets `metadata` and `timestamp` be null (they are optional): null is read as
/// left out, not refused (schemathesis found `"metadata": null` answered 422).
#[tokio::test]
async fn a_stated_deploy_event_takes_null_for_what_it_may_leave_out() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(request(
            "POST",
            "/engines/autonomy/deployment/event",
            Some(h.operator.as_str()),
            Some(json!({
                "platform": "github", "event_type": "start", "status": "queued",
                "timestamp": null, "metadata": null
            })),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["event"]["platform"], "github");
}
