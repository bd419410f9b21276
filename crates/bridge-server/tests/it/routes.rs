//! Each route's success and failure shapes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bridge_server::Role;
use serde_json::json;

use crate::harness::{Harness, VAULT_KEY, VAULT_VALUE, request};

#[tokio::test]
async fn health_checks_answer_without_a_token_and_reveal_nothing_secret() {
    let h = Harness::new().await;
    let (status, body) = h.call(request("GET", "/envsync/health", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["providers"][0]["name"], "render");
    let (status, body) = h
        .call(request("GET", "/genesis/introspection/health", None, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "sqlite");
    // The store's path is not shown to anonymous callers.
    assert!(!body.to_string().contains(h.dir.path().to_str().unwrap()));
}

#[tokio::test]
async fn dry_run_and_apply_answer_the_plan_and_unknown_providers_are_404() {
    let h = Harness::new().await;
    let op = Some(h.operator.as_str());
    let (status, body) = h
        .call(request("POST", "/envsync/dry-run/render", op, None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "planned");
    assert_eq!(
        body["plan"][0],
        json!({"key": "API_KEY", "op": "create", "secret": true})
    );
    let (status, body) = h
        .call(request("POST", "/envsync/apply/render", op, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied"], true);
    let (status, body) = h
        .call(request("POST", "/envsync/apply/vercel", op, None))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert!(body["detail"].as_str().unwrap().contains("render, netlify"));
    let (status, body) = h
        .call(request("POST", "/envsync/apply-all", op, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    // render was just applied; only netlify still lacked API_KEY.
    assert_eq!(body["applied"], 1, "{body}");
    assert_eq!(body["results"][0]["status"], "in_sync");
    assert_eq!(body["results"][1]["status"], "applied");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
}

/// The apply lock of `scope`, taken as a CLI in another process takes it.
async fn try_lock(
    dir: &std::path::Path,
    scope: &str,
) -> Result<bridge_operations::ApplyGuard, bridge_operations::OpsError> {
    let locks = bridge_operations::locks::FileLocks::new(dir);
    bridge_operations::locks::acquire(&locks, [scope.to_owned()], "cli", Duration::from_millis(50))
        .await
}

/// One apply at a time per place, whoever holds the lock: a second API apply to the same
/// service waits, and past the lock timeout answers 409 naming the holder; a lock taken as
/// another process takes it (the lock file) is respected the same way; dry runs never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_to_one_place_are_serialised_whoever_starts_them_and_dry_runs_never_wait() {
    let h = Harness::with_lock_timeout(Duration::from_millis(150)).await;
    let render = h.place("render");
    render.set_apply_delay(Duration::from_millis(600));
    let op = h.operator.clone();
    let app = bridge_server::app(h.state.clone());
    let first = tokio::spawn(tower::ServiceExt::oneshot(
        app,
        request("POST", "/envsync/apply/render", Some(&op), None),
    ));
    // Wait until the first apply is writing (and so holds the lock).
    let started = Instant::now();
    while render.active.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the apply never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (status, body) = h
        .call(request("POST", "/envsync/apply/render", Some(&op), None))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "busy");
    assert!(
        body["detail"].as_str().unwrap().contains("render:srv-test"),
        "{body}"
    );

    // As a CLI in another process would take it.
    let locks = h.dir.path().join("locks");
    assert!(
        try_lock(&locks, "render:srv-test").await.is_err(),
        "the lock file was free during an apply"
    );

    let dry = Instant::now();
    let (status, body) = h
        .call(request("POST", "/envsync/dry-run/render", Some(&op), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        dry.elapsed() < Duration::from_millis(400),
        "a dry run waited on an apply: {:?}",
        dry.elapsed()
    );

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(render.max_active.load(Ordering::SeqCst), 1);
    assert_eq!(render.applies.load(Ordering::SeqCst), 1);

    // Released with the apply: the next one goes ahead, and finds nothing left to write.
    drop(try_lock(&locks, "render:srv-test").await.unwrap());
    let (status, body) = h
        .call(request("POST", "/envsync/apply/render", Some(&op), None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "in_sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_to_different_providers_run_together() {
    let h = Harness::new().await;
    h.place("render")
        .set_apply_delay(Duration::from_millis(300));
    h.place("netlify")
        .set_apply_delay(Duration::from_millis(300));
    let (status, _) = h
        .call(request(
            "POST",
            "/envsync/apply-all",
            Some(&h.operator),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.host.concurrency.max_active.load(Ordering::SeqCst), 2);
}

/// An apply through the API is one set of events, each recorded once by the ledger's feed,
/// however many times it runs and whoever else feeds the ledger.
#[tokio::test]
async fn repeated_apply_all_publishes_each_event_once() {
    let h = Harness::new().await;
    for i in 0..3 {
        h.place("local:.env").set("ROUND", &i.to_string());
        let (status, _) = h
            .call(request(
                "POST",
                "/envsync/apply-all",
                Some(&h.operator),
                None,
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        // A one-shot feed (as a CLI command runs) between applies.
        h.seed_ledger().await;
    }
    let ledger = bridge_server::LedgerAccess::sqlite(
        h.dir.path().join("ledger.db"),
        "bridge.test/ledger",
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
    )
    .open()
    .unwrap();
    let mut seqs: Vec<u64> = ledger
        .entries(0..ledger.len())
        .unwrap()
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    let all = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), all, "an event was recorded twice");
    let commits = h
        .state
        .bus()
        .history(
            bridge_genesis::bus::HistoryQuery::default()
                .pattern(bridge_genesis::bus::TopicPattern::parse("envsync.commit").unwrap())
                .limit(100),
        )
        .await
        .unwrap();
    // Each round writes ROUND (and the first, API_KEY) to both providers.
    let by_api = commits
        .iter()
        .filter(|e| e.payload.get("origin").and_then(|o| o.as_str()) == Some("api"))
        .count();
    assert_eq!(by_api, 6, "{commits:?}");
}

#[tokio::test]
async fn parity_answers_the_seed_report_and_sets_the_drift_gauge() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(request("GET", "/parity", Some(&h.observer), None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["has_drift"], true);
    assert_eq!(body["summary"]["drift_count"], 1);
    let response = h
        .send(request("GET", "/metrics", Some(&h.observer), None))
        .await;
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("bridge_drift_keys{platform=\"render\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "bridge_http_requests_total{route=\"/parity\",method=\"GET\",status=\"200\"} 1"
        )
    );
    assert!(text.contains("bridge_bus_up 1"));
}

/// The drift gauge counts every kind of drift at a place: a value changed there and a key
/// only there count as much as a key missing there.
#[tokio::test]
async fn the_drift_gauge_counts_different_and_extra_keys_too() {
    let h = Harness::new().await;
    let render = h.place("render");
    render.set("A", "changed-by-hand");
    render.set("HAND_MADE", "x");
    let (status, _) = h
        .call(request("GET", "/parity", Some(&h.observer), None))
        .await;
    assert_eq!(status, StatusCode::OK);
    let response = h
        .send(request("GET", "/metrics", Some(&h.observer), None))
        .await;
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    // API_KEY missing, A different, HAND_MADE extra.
    assert!(
        text.contains("bridge_drift_keys{platform=\"render\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn the_vault_answers_allowed_keys_to_admirals_and_records_every_read() {
    let h = Harness::new().await;
    let uri = format!("/vault/secret?key={VAULT_KEY}");
    let (status, body) = h.call(request("GET", &uri, Some(&h.admiral), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"key": VAULT_KEY, "value": VAULT_VALUE}));
    let (status, body) = h
        .call(request(
            "GET",
            "/vault/secret?key=GITHUB_TOKEN",
            Some(&h.admiral),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("allow-list"));
    let (status, _) = h
        .call(request("GET", "/vault/secret", Some(&h.admiral), None))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.call(request("GET", &uri, Some(&h.operator), None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Both reads are events; neither carries the value.
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?topic=vault.read",
            Some(&h.observer),
            None,
        ))
        .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["outcome"], "granted");
    assert_eq!(events[1]["outcome"], "refused");
    assert!(!page.to_string().contains(VAULT_VALUE));
    assert!(events[0]["token"].as_str().unwrap().starts_with("tok_"));
}

#[tokio::test]
async fn events_publish_and_history_with_every_bound() {
    let h = Harness::new().await;
    for i in 0..5 {
        let (status, body) = h
            .call(request(
                "POST",
                "/genesis/events",
                Some(&h.operator),
                Some(json!({"topic": "deploy.render", "payload": {"n": i}})),
            ))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["_genesis_seq"], i + 1);
        assert_eq!(body["_genesis_topic"], "deploy.render");
    }
    let obs = Some(h.observer.as_str());
    let (_, page) = h
        .call(request("GET", "/genesis/events?since=1&limit=2", obs, None))
        .await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["events"][0]["_genesis_seq"], 2);
    assert_eq!(page["next_since"], 3);
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?order=desc&limit=1",
            obs,
            None,
        ))
        .await;
    assert_eq!(page["events"][0]["_genesis_seq"], 5);
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?topic=deploy.*&until=2",
            obs,
            None,
        ))
        .await;
    assert_eq!(page["count"], 2);
    let (_, page) = h
        .call(request("GET", "/genesis/events?topic=envsync.*", obs, None))
        .await;
    assert_eq!(page["count"], 0);
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
            obs,
            None,
        ))
        .await;
    assert_eq!(page["count"], 0);
    let (status, stats) = h.call(request("GET", "/genesis/stats", obs, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["by_topic"]["deploy.render"], 5);
    assert_eq!(stats["last_seq"], 5);
}

#[tokio::test]
async fn the_gate_refuses_topics_beyond_the_role_with_403_and_records_it() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(request(
            "POST",
            "/genesis/events",
            Some(&h.operator),
            Some(json!({"topic": "genesis.heal", "payload": {"secret": "x"}})),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?topic=genesis.blocked",
            Some(&h.admiral),
            None,
        ))
        .await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["events"][0]["who"], "operator");
    assert!(!page.to_string().contains("\"secret\""));
    // Admirals may publish it.
    let (status, _) = h
        .call(request(
            "POST",
            "/genesis/events",
            Some(&h.admiral),
            Some(json!({"topic": "genesis.heal", "payload": {}})),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn ledger_routes_show_entries_checkpoints_and_proofs_that_verify() {
    let h = Harness::new().await;
    let obs = Some(h.observer.as_str());
    let (status, body) = h
        .call(request("GET", "/ledger/checkpoint", obs, None))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    h.seed_ledger().await;
    let (status, page) = h
        .call(request("GET", "/ledger/entries?limit=2", obs, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 3);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["entries"][0]["topic"], "envsync.commit");
    let (_, cp) = h
        .call(request("GET", "/ledger/checkpoint", obs, None))
        .await;
    assert_eq!(cp["size"], 3);
    let (status, proof) = h.call(request("GET", "/ledger/proof/1", obs, None)).await;
    assert_eq!(status, StatusCode::OK);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let checked = bridge_genesis::ledger::verify_proof_json(&proof.to_string(), &key).unwrap();
    assert_eq!(checked.index, 1);
    let (status, _) = h.call(request("GET", "/ledger/proof/9", obs, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call(request("GET", "/ledger/proof/x", obs, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, c) = h
        .call(request("GET", "/ledger/consistency?from=1&to=3", obs, None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c["to_root"], cp["root"]);
    let (status, _) = h
        .call(request("GET", "/ledger/consistency?from=3&to=1", obs, None))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, v) = h.call(request("GET", "/ledger/verify", obs, None)).await;
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 3);
    let (_, pk) = h
        .call(request("GET", "/ledger/public-key", obs, None))
        .await;
    assert_eq!(
        pk["public_key"],
        bridge_genesis::ledger::to_hex(key.as_bytes())
    );
}

#[tokio::test]
async fn tokens_created_while_running_are_accepted_and_roles_are_checked() {
    let h = Harness::new().await;
    let (status, body) = h.call(request("GET", "/genesis/stats", None, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let (status, _) = h
        .call(request(
            "GET",
            "/genesis/stats",
            Some("brg_notatoken"),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h
        .call(request(
            "POST",
            "/envsync/apply-all",
            Some(h.token(Role::Observer)),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["detail"].as_str().unwrap().contains("operator"));
}
