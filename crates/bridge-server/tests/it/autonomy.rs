//! The reactions end to end on a running server: each outcome is a `genesis.heal` or
//! `genesis.intent` event; thresholds, flapping limits, dry-run mode, deploy hooks (the Render
//! emulator's), their retry budget, and no reaction feeding itself.

use std::time::Duration;

use bridge_emulators::EmulatorConfig;
use bridge_genesis::bus::{HistoryQuery, Role, TopicPattern};
use bridge_server::AutonomyOptions;
use serde_json::{Value, json};

use crate::harness::Harness;
use crate::stream::start;

fn enforcing() -> AutonomyOptions {
    AutonomyOptions {
        enforce: true,
        drift_alert_threshold: 5,
        drift_frequency_limit: 2,
        hook_attempts: 3,
        hook_backoff: Duration::from_millis(10),
        ..AutonomyOptions::default()
    }
}

async fn publish(h: &Harness, topic: &str, payload: Value) -> u64 {
    h.state
        .bus()
        .publish(topic, payload, Role::System)
        .await
        .unwrap()
        .seq
}

/// The outcomes caused by event `seq`, waiting up to 5 s for at least `want` of them.
async fn outcomes(h: &Harness, seq: u64, want: usize) -> Vec<Value> {
    for _ in 0..100 {
        let events = h
            .state
            .bus()
            .history(
                HistoryQuery::default()
                    .pattern(TopicPattern::parse("genesis.*").unwrap())
                    .limit(1_000),
            )
            .await
            .unwrap();
        let found: Vec<Value> = events
            .iter()
            .filter(|e| e.payload.get("cause_seq").and_then(Value::as_u64) == Some(seq))
            .map(|e| {
                let mut v = e.envelope();
                v["topic"] = e.topic.clone().into();
                v
            })
            .collect();
        if found.len() >= want {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {want} outcomes for event {seq}");
}

fn drift(render: u64) -> Value {
    json!({"verified_at": "now", "by_platform": {"render": render, "netlify": 0}, "drift_count": render})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_within_the_limits_and_escalated_beyond_them() {
    let h = Harness::with_autonomy(enforcing()).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Within the threshold: re-synced.
    h.sync.drift.lock().unwrap().insert("render".into(), 2);
    let seq = publish(&h, "envsync.drift", drift(2)).await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["action"], "resync");
    assert_eq!(out[0]["provider"], "render");
    assert_eq!(out[0]["result"], "applied");
    assert_eq!(*h.sync.enforced.lock().unwrap(), vec!["render".to_string()]);

    // Over the threshold: escalated, nothing written.
    let seq = publish(&h, "envsync.drift", drift(9)).await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["topic"], "genesis.intent");
    assert_eq!(out[0]["kind"], "escalation");
    assert!(
        out[0]["reason"]
            .as_str()
            .unwrap()
            .contains("DRIFT_ALERT_THRESHOLD")
    );
    assert_eq!(h.sync.enforced.lock().unwrap().len(), 1);

    // Flapping: the second heal in the hour is allowed, the third escalates.
    let seq = publish(&h, "envsync.drift", drift(1)).await;
    assert_eq!(outcomes(&h, seq, 1).await[0]["topic"], "genesis.heal");
    let seq = publish(&h, "envsync.drift", drift(1)).await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["kind"], "escalation", "{out:?}");
    assert!(
        out[0]["reason"]
            .as_str()
            .unwrap()
            .contains("DRIFT_FREQUENCY_LIMIT")
    );
    assert_eq!(h.sync.enforced.lock().unwrap().len(), 2);

    // Nothing feeds itself: no further outcome appears.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let all = h
        .state
        .bus()
        .history(
            HistoryQuery::default()
                .pattern(TopicPattern::parse("genesis.*").unwrap())
                .limit(1_000),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dry_run_mode_reactions_only_say_what_they_would_do() {
    let h = Harness::with_autonomy(AutonomyOptions {
        enforce: false,
        ..enforcing()
    })
    .await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seq = publish(&h, "envsync.drift", drift(1)).await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["kind"], "would_heal");
    assert!(h.sync.enforced.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_failure_caused_by_drift_is_healed_and_redeployed() {
    let emulators = bridge_emulators::start(EmulatorConfig {
        netlify: false,
        github: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let render = emulators.render().unwrap();
    let mut options = enforcing();
    options
        .deploy_hooks
        .insert("render".into(), render.deploy_hook_url());
    let h = Harness::with_autonomy(options).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    h.sync.drift.lock().unwrap().insert("render".into(), 1);
    let seq = publish(
        &h,
        "deploy.platform.failure",
        json!({"platform": "render", "event_type": "failure", "status": "build_failed",
               "metadata": {"deploy_id": "dep-1", "message": "DATABASE_URL is not set"}}),
    )
    .await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["action"], "resync_and_redeploy");
    assert_eq!(out[0]["keys"], json!(["API_KEY"]));
    assert_eq!(out[0]["hook_attempts"], 1);
    assert_eq!(*h.sync.enforced.lock().unwrap(), vec!["render".to_string()]);
    assert_eq!(render.deploys().len(), 1, "the deploy hook was called once");

    // A failure drift does not explain is escalated with its details; no redeploy.
    let seq = publish(
        &h,
        "deploy.platform.failure",
        json!({"platform": "render", "event_type": "failure", "status": "build_failed",
               "metadata": {"deploy_id": "dep-2", "message": "tests failed"}}),
    )
    .await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["kind"], "escalation");
    assert_eq!(out[0]["metadata"]["message"], "tests failed");
    assert_eq!(render.deploys().len(), 1);
    server.stop().await;
    emulators.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_hook_that_keeps_failing_stops_after_its_budget_and_escalates() {
    let mut options = enforcing();
    // Nothing listens on port 9 of loopback.
    options.deploy_hooks.insert(
        "render".into(),
        "http://127.0.0.1:9/deploy/srv-x?key=hook-secret".into(),
    );
    let h = Harness::with_autonomy(options).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.sync.drift.lock().unwrap().insert("render".into(), 1);
    let seq = publish(
        &h,
        "deploy.platform.failure",
        json!({"platform": "render", "event_type": "failure", "status": "failed", "metadata": {}}),
    )
    .await;
    let out = outcomes(&h, seq, 2).await;
    let heal = out.iter().find(|o| o["topic"] == "genesis.heal").unwrap();
    assert_eq!(heal["redeploy"], "failed");
    assert_eq!(heal["hook_attempts"], 3);
    let escalation = out.iter().find(|o| o["topic"] == "genesis.intent").unwrap();
    assert!(
        escalation["reason"]
            .as_str()
            .unwrap()
            .contains("failed 3 times")
    );
    // The hook's secret never reaches an event.
    assert!(!serde_json::to_string(&out).unwrap().contains("hook-secret"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successes_are_verified_and_commits_checked_against_the_schema() {
    let h = Harness::with_autonomy(enforcing()).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seq = publish(
        &h,
        "deploy.platform.success",
        json!({"platform": "netlify", "event_type": "success", "status": "ready", "metadata": {}}),
    )
    .await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["kind"], "post_deploy_verification");
    assert_eq!(out[0]["has_drift"], true);

    *h.sync.schema_violations.lock().unwrap() = vec!["DATABASE_URL: missing".into()];
    let seq = publish(&h, "envsync.commit", json!({"target": "render"})).await;
    let out = outcomes(&h, seq, 1).await;
    assert_eq!(out[0]["kind"], "blueprint_warning");
    assert_eq!(out[0]["violations"], json!(["DATABASE_URL: missing"]));
    server.stop().await;
}

/// A crash between acting and acking redelivers the event; the outcome already recorded for
/// it means it is acked without acting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_with_a_recorded_outcome_is_not_acted_on_twice() {
    let mut h = Harness::with_autonomy(enforcing()).await;
    // A first run creates the reactions' consumers, so they start from here.
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;

    // What the crashed process left: the event, and the outcome it published before it
    // could ack.
    h.sync.drift.lock().unwrap().insert("render".into(), 2);
    let seq = publish(&h, "envsync.drift", drift(2)).await;
    publish(
        &h,
        "genesis.heal",
        json!({"reaction": "drift", "cause_seq": seq, "action": "resync", "provider": "render", "result": "applied"}),
    )
    .await;

    // A later, new event is still handled, which shows the consumer ran past the first.
    h.restart();
    let server = start(&h).await;
    let next = publish(&h, "envsync.drift", drift(2)).await;
    assert_eq!(outcomes(&h, next, 1).await[0]["topic"], "genesis.heal");
    assert_eq!(outcomes(&h, seq, 1).await.len(), 1, "acted on again");
    assert_eq!(*h.sync.enforced.lock().unwrap(), vec!["render".to_string()]);
    server.stop().await;
}

/// A burst of successful deploys: each gets its outcome, and one parity check, run after all
/// of them, serves the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deploy_successes_shares_one_parity_check() {
    let h = Harness::with_autonomy(enforcing()).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let burst = (0..10)
        .map(|i| {
            (
                "deploy.platform.success",
                json!({"platform": "render", "event_type": "success", "status": "live",
                       "metadata": {"deploy_id": format!("dep-{i}")}}),
            )
        })
        .collect();
    let events = h
        .state
        .bus()
        .publish_all(burst, Role::System)
        .await
        .unwrap();
    for event in &events {
        let out = outcomes(&h, event.seq, 1).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["kind"], "post_deploy_verification");
    }
    assert_eq!(h.sync.parities.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.stop().await;
}

/// Deploys that arrive one by one, closer together than the reactions' coalescing window,
/// are handled by one or two runs, not a run (and a parity check) each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_arriving_one_by_one_are_handled_in_few_runs() {
    let h = Harness::with_autonomy(enforcing()).await;
    let server = start(&h).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let payload = json!({"platform": "render", "event_type": "success", "status": "live",
                             "metadata": {"deploy_id": format!("one-by-one-{i}")}});
        seqs.push(publish(&h, "deploy.platform.success", payload).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for seq in seqs {
        assert_eq!(outcomes(&h, seq, 1).await.len(), 1);
    }
    let parities = h.sync.parities.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        parities <= 3,
        "{parities} parity checks for 10 deploys in ~50 ms"
    );
    server.stop().await;
}
