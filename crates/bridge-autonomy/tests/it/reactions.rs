//! The reactions end to end on the real operations: each outcome is a `genesis.heal` or
//! `genesis.intent` event; heals are real applies (under the apply lock, reported by
//! `envsync.commit` with `origin: "reaction"` and the causing event's `cause_seq`);
//! thresholds, flapping limits, dry-run mode, the `heal` mark on drift, deploy hooks (the
//! Render emulator's), their retry budget, and no reaction feeding itself.

use std::collections::BTreeMap;
use std::time::Duration;

use bridge_autonomy::AutonomyOptions;
use bridge_core::schema::{KeyRule, Schema};
use bridge_emulators::EmulatorConfig;
use bridge_genesis::bus::Role;
use serde_json::{Value, json};

use crate::harness::{
    Harness, VARS, applies, deploy_failure, drift, drift_event, eventually, reads,
};

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

fn all_keys() -> Vec<String> {
    let mut keys: Vec<String> = VARS.iter().map(|(k, _)| (*k).to_owned()).collect();
    keys.sort();
    keys
}

/// The commits' targets and causes, oldest first: `(target, origin, cause_seq)`.
async fn commit_causes(h: &Harness) -> Vec<(String, String, Option<u64>)> {
    h.commits()
        .await
        .iter()
        .map(|c| {
            (
                c.payload["target"].as_str().unwrap().to_owned(),
                c.payload["origin"].as_str().unwrap().to_owned(),
                c.payload.get("cause_seq").and_then(Value::as_u64),
            )
        })
        .collect()
}

fn healed_by(seq: u64) -> (String, String, Option<u64>) {
    ("render".into(), "reaction".into(), Some(seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_within_the_limits_and_escalated_beyond_them() {
    let mut h = Harness::start(enforcing()).await;
    let render = h.places.render.clone();

    // Within the threshold: re-synced.
    drift(&render, 2);
    let first = h.publish("envsync.drift", drift_event(2)).await;
    let out = h.outcomes(first, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["action"], "resync");
    assert_eq!(out[0]["provider"], "render");
    assert_eq!(out[0]["result"], "applied");
    assert_eq!(out[0]["changes"], 2);
    assert_eq!(applies(&render), 1);
    assert_eq!(applies(&h.places.netlify), 0);
    assert_eq!(render.keys(), all_keys(), "healed");
    assert_eq!(commit_causes(&h).await, [healed_by(first)]);

    // Over the threshold: escalated, nothing written (though render has drifted again).
    drift(&render, 1);
    let seq = h.publish("envsync.drift", drift_event(9)).await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["topic"], "genesis.intent");
    assert_eq!(out[0]["kind"], "escalation");
    assert!(
        out[0]["reason"]
            .as_str()
            .unwrap()
            .contains("DRIFT_ALERT_THRESHOLD")
    );
    assert_eq!(applies(&render), 1);
    assert!(!render.keys().contains(&"API_KEY".to_owned()));

    // Flapping: the second heal in the hour is allowed, the third escalates.
    let second = h.publish("envsync.drift", drift_event(1)).await;
    let out = h.outcomes(second, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["result"], "applied");
    assert_eq!(applies(&render), 2);
    drift(&render, 1);
    let seq = h.publish("envsync.drift", drift_event(1)).await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["kind"], "escalation", "{out:?}");
    assert!(
        out[0]["reason"]
            .as_str()
            .unwrap()
            .contains("DRIFT_FREQUENCY_LIMIT")
    );
    assert_eq!(applies(&render), 2);

    // Nothing feeds itself: the heals' own commits (checked by the schema reaction, which
    // has no schema here) bring no further outcome.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let all = h.events("genesis.*").await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(
        commit_causes(&h).await,
        [healed_by(first), healed_by(second)]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dry_run_mode_reactions_only_say_what_they_would_do() {
    let mut h = Harness::start(AutonomyOptions {
        enforce: false,
        ..enforcing()
    })
    .await;
    drift(&h.places.render, 1);
    let seq = h.publish("envsync.drift", drift_event(1)).await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["kind"], "would_heal");
    assert_eq!(applies(&h.places.render), 0);
    assert!(h.commits().await.is_empty());
    assert!(!h.places.render.keys().contains(&"API_KEY".to_owned()));
    h.stop().await;
}

/// Only drift found by a verification that may heal carries `heal: true`; drift published
/// without it (by hand, or found by an observer's read) is recorded as ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_without_the_heal_mark_is_not_healed() {
    let mut h = Harness::start(enforcing()).await;
    let render = h.places.render.clone();
    drift(&render, 1);

    let mut unmarked = drift_event(1);
    unmarked.as_object_mut().unwrap().remove("heal");
    let mut observers = drift_event(1);
    observers["heal"] = false.into();
    observers["origin"] = "api".into();
    for payload in [unmarked, observers] {
        let seq = h.publish("envsync.drift", payload).await;
        let out = h.outcomes(seq, 1).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["topic"], "genesis.intent", "{out:?}");
        assert_eq!(out[0]["kind"], "ignored");
        assert!(out[0]["reason"].as_str().unwrap().contains("heal"));
    }
    // Nothing written, not even later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applies(&render), 0);
    assert!(h.commits().await.is_empty());
    assert!(h.events("genesis.heal").await.is_empty());
    assert!(!render.keys().contains(&"API_KEY".to_owned()));

    // The same drift, marked, is healed.
    let seq = h.publish("envsync.drift", drift_event(1)).await;
    assert_eq!(h.outcomes(seq, 1).await[0]["topic"], "genesis.heal");
    assert_eq!(applies(&render), 1);
    h.stop().await;
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
    let render_api = emulators.render().unwrap();
    let mut options = enforcing();
    options
        .deploy_hooks
        .insert("render".into(), render_api.deploy_hook_url());
    let mut h = Harness::start(options).await;
    let render = h.places.render.clone();

    drift(&render, 1);
    let seq = h
        .publish(
            "deploy.platform.failure",
            deploy_failure("render", "dep-1", "API_KEY is not set"),
        )
        .await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["action"], "resync_and_redeploy");
    assert_eq!(out[0]["keys"], json!(["API_KEY"]));
    assert_eq!(out[0]["changes"], 1);
    assert_eq!(out[0]["hook_attempts"], 1);
    assert_eq!(applies(&render), 1);
    assert_eq!(applies(&h.places.netlify), 0);
    assert_eq!(render.keys(), all_keys());
    assert_eq!(commit_causes(&h).await, [healed_by(seq)]);
    assert_eq!(
        render_api.deploys().len(),
        1,
        "the deploy hook was called once"
    );

    // A failure drift does not explain is escalated with its details; no redeploy.
    let seq = h
        .publish(
            "deploy.platform.failure",
            deploy_failure("render", "dep-2", "tests failed"),
        )
        .await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["kind"], "escalation");
    assert_eq!(out[0]["metadata"]["message"], "tests failed");
    assert_eq!(render_api.deploys().len(), 1);
    assert_eq!(applies(&render), 1);
    h.stop().await;
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
    let mut h = Harness::start(options).await;
    drift(&h.places.render, 1);
    let seq = h
        .publish(
            "deploy.platform.failure",
            json!({"platform": "render", "event_type": "failure", "status": "failed", "metadata": {}}),
        )
        .await;
    let out = h.outcomes(seq, 2).await;
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
    // The heal itself went through.
    assert_eq!(applies(&h.places.render), 1);
    // The hook's secret never reaches an event, nor a warning.
    let everything: Vec<Value> = h.events("*").await.iter().map(|e| e.envelope()).collect();
    assert!(
        !serde_json::to_string(&everything)
            .unwrap()
            .contains("hook-secret")
    );
    assert!(
        !h.host
            .warnings
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.contains("hook-secret"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successes_are_verified_and_commits_checked_against_the_schema() {
    // A schema whose required key the source lacks.
    let schema = Schema {
        min_keys: None,
        keys: BTreeMap::from([(
            "DATABASE_URL".to_owned(),
            KeyRule {
                required: true,
                ..KeyRule::default()
            },
        )]),
    };
    let mut h = Harness::start_with_schema(enforcing(), schema).await;
    drift(&h.places.netlify, 1);
    let seq = h
        .publish(
            "deploy.platform.success",
            json!({"platform": "netlify", "event_type": "success", "status": "ready", "metadata": {}}),
        )
        .await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["kind"], "post_deploy_verification");
    assert_eq!(out[0]["has_drift"], true);
    assert_eq!(out[0]["drift_count"], 1);

    // The verification announced its drift as one that may heal, and it was healed.
    eventually("the verification's drift is published", || async {
        !h.events("envsync.drift").await.is_empty()
    })
    .await;
    let drifts = h.events("envsync.drift").await;
    assert_eq!(drifts.len(), 1, "{drifts:?}");
    let announced = &drifts[0];
    assert_eq!(announced.payload["heal"], true);
    assert_eq!(announced.payload["cause_seq"].as_u64(), Some(seq));
    assert_eq!(announced.payload["by_platform"]["netlify"], 1);
    let healed = h.outcomes(announced.seq, 1).await;
    assert_eq!(healed[0]["topic"], "genesis.heal", "{healed:?}");
    assert_eq!(healed[0]["provider"], "netlify");
    assert_eq!(applies(&h.places.netlify), 1);

    // A commit is checked against the schema.
    let seq = h
        .publish("envsync.commit", json!({"target": "render"}))
        .await;
    let out = h.outcomes(seq, 1).await;
    assert_eq!(out[0]["kind"], "blueprint_warning");
    assert_eq!(out[0]["target"], "render");
    assert_eq!(
        out[0]["violations"],
        json!(["DATABASE_URL: is required but missing"])
    );
    h.stop().await;
}

/// A crash between acting and acking redelivers the event; the outcome already recorded for
/// it means it is acked without acting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_with_a_recorded_outcome_is_not_acted_on_twice() {
    let mut h = Harness::new(enforcing(), Schema::default());
    // A first run creates the reactions' consumers, so they start from here.
    h.spawn(None).await;
    h.stop().await;

    // What the crashed process left: the event, and the outcome it published before it
    // could ack.
    drift(&h.places.render, 2);
    let seq = h.publish("envsync.drift", drift_event(2)).await;
    h.publish(
        "genesis.heal",
        json!({"reaction": "drift", "cause_seq": seq, "action": "resync", "provider": "render", "result": "applied"}),
    )
    .await;

    // A later, new event is still handled, which shows the consumer ran past the first.
    h.restart();
    h.spawn(None).await;
    let next = h.publish("envsync.drift", drift_event(2)).await;
    let out = h.outcomes(next, 1).await;
    assert_eq!(out[0]["topic"], "genesis.heal");
    // The drift was still there for it: the first event did not heal it.
    assert_eq!(out[0]["result"], "applied", "{out:?}");
    assert_eq!(h.outcomes(seq, 1).await.len(), 1, "acted on again");
    assert_eq!(applies(&h.places.render), 1);
    assert_eq!(commit_causes(&h).await, [healed_by(next)]);
    h.stop().await;
}

/// A burst of successful deploys: each gets its outcome, and one parity check, run after all
/// of them, serves the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deploy_successes_shares_one_parity_check() {
    let mut h = Harness::start(enforcing()).await;
    let burst = (0..10)
        .map(|i| {
            (
                "deploy.platform.success",
                json!({"platform": "render", "event_type": "success", "status": "live",
                       "metadata": {"deploy_id": format!("dep-{i}")}}),
            )
        })
        .collect();
    let events = h.bus.publish_all(burst, Role::System).await.unwrap();
    for event in &events {
        let out = h.outcomes(event.seq, 1).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["kind"], "post_deploy_verification");
        assert_eq!(out[0]["has_drift"], false);
    }
    // A parity check reads the source once. Nothing else reads it here: the places are in
    // parity (so no drift is announced and no heal syncs) and there is no schema to check.
    assert_eq!(reads(&h.places.source), 1, "parity checks");
    assert_eq!(reads(&h.places.render), 1);
    h.stop().await;
}

/// Deploys that arrive one by one, closer together than the reactions' coalescing window,
/// are handled by one or two runs, not a run (and a parity check) each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_arriving_one_by_one_are_handled_in_few_runs() {
    let mut h = Harness::start(enforcing()).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let payload = json!({"platform": "render", "event_type": "success", "status": "live",
                             "metadata": {"deploy_id": format!("one-by-one-{i}")}});
        seqs.push(h.publish("deploy.platform.success", payload).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for seq in seqs {
        assert_eq!(h.outcomes(seq, 1).await.len(), 1);
    }
    // As above, only parity checks read the source.
    let parities = reads(&h.places.source);
    assert!(
        (1..=3).contains(&parities),
        "{parities} parity checks for 10 deploys in ~50 ms"
    );
    h.stop().await;
}

/// A key added by hand on one target, with deletions off: a heal could not remove it, so the
/// reaction escalates once, naming the key and why, writes nothing, and does not escalate the
/// same key again (before: six no-op heals, then "something keeps undoing it").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_on_a_target_is_escalated_once_not_healed_again_and_again() {
    let mut h = Harness::start(enforcing()).await;
    let render = h.places.render.clone();
    render.set("HAND_MADE", "x");
    let event = || {
        json!({"verified_at": "now", "by_platform": {"render": 1, "netlify": 0},
               "extra": {"extra_in_render": ["HAND_MADE"], "extra_in_netlify": []},
               "drift_count": 1, "origin": "scheduler", "heal": true})
    };
    let first = h.publish("envsync.drift", event()).await;
    let out = h.outcomes(first, 1).await;
    assert_eq!(out[0]["topic"], "genesis.intent", "{out:?}");
    assert_eq!(out[0]["kind"], "escalation");
    assert_eq!(out[0]["extra"], json!(["HAND_MADE"]));
    let reason = out[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HAND_MADE") && reason.contains("deletions are off"),
        "{reason}"
    );
    for _ in 0..3 {
        let again = h.publish("envsync.drift", event()).await;
        let out = h.outcomes(again, 1).await;
        assert_eq!(out[0]["kind"], "ignored", "{out:?}");
    }
    assert_eq!(applies(&render), 0);
    assert!(h.events("genesis.heal").await.is_empty());
    h.stop().await;
}
