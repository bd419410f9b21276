//! Bounded shutdown of the workers: a reaction busy with a backlog stops between events
//! within the grace period, a worker stuck past it is aborted where it is, and on the next
//! start over the same files whatever was not done is done, once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bridge_autonomy::{AutonomyOptions, Finished};
use bridge_core::schema::Schema;
use bridge_emulators::EmulatorConfig;
use bridge_genesis::bus::Role;
use serde_json::Value;

use crate::harness::{Harness, RedriftingHook, applies, deploy_failure, drift, eventually};

fn enforcing() -> AutonomyOptions {
    AutonomyOptions {
        enforce: true,
        hook_attempts: 1,
        hook_backoff: Duration::from_millis(10),
        ..AutonomyOptions::default()
    }
}

/// How many outcomes each causing event has.
async fn outcomes_by_cause(h: &Harness) -> BTreeMap<u64, usize> {
    let mut by_cause = BTreeMap::new();
    for outcome in h.all_outcomes().await {
        *by_cause
            .entry(outcome["cause_seq"].as_u64().unwrap())
            .or_default() += 1;
    }
    by_cause
}

/// 30 failed deploys of render, each one healed (an apply of 200 ms) and redeployed: the
/// reaction is mid-backlog when shutdown begins, finishes the event in hand, and stops; the
/// next start handles the rest. Every event ends with one outcome, one apply, one redeploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_reaction_stops_between_events_and_the_rest_is_handled_after_restart() {
    const BACKLOG: usize = 30;
    let mut h = Harness::new(enforcing(), Schema::default());
    let render = h.places.render.clone();
    // Each redeploy brings the drift back, so every failure has something to heal.
    let hook = RedriftingHook::start(render.clone()).await;
    h.options_mut()
        .deploy_hooks
        .insert("render".into(), hook.url.clone());
    render.set_apply_delay(Duration::from_millis(200));
    drift(&render, 1);
    h.spawn(None).await;

    let backlog = (0..BACKLOG)
        .map(|i| {
            let id = format!("dep-{i}");
            (
                "deploy.platform.failure",
                deploy_failure("render", &id, "API_KEY is not set"),
            )
        })
        .collect();
    let seqs: Vec<u64> = h
        .bus
        .publish_all(backlog, Role::System)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    eventually("a few failures are handled", || async {
        h.all_outcomes().await.len() >= 3
    })
    .await;

    let began = Instant::now();
    let finished = h.stop_within(Duration::from_secs(1)).await;
    let took = began.elapsed();
    eprintln!("shutdown took {took:?}: {finished:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    // Every event is shorter than the grace period: the reaction stopped at a boundary,
    // nothing was cut mid-way.
    assert_eq!(finished, Finished { abandoned: 0 });
    let before = outcomes_by_cause(&h).await;
    assert!(
        before.len() < BACKLOG,
        "the backlog was done before shutdown; the test proves nothing"
    );
    assert!(before.values().all(|&n| n == 1), "{before:?}");
    assert_eq!(applies(&render), before.len());
    assert_eq!(hook.calls(), before.len());
    // Stopped means stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(outcomes_by_cause(&h).await, before);
    assert_eq!(applies(&render), before.len());

    // The next start, over the same files, handles the rest.
    render.set_apply_delay(Duration::ZERO);
    h.restart();
    h.spawn(None).await;
    eventually("every failed deploy has its outcome", || async {
        let handled = outcomes_by_cause(&h).await;
        seqs.iter().all(|s| handled.contains_key(s))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = outcomes_by_cause(&h).await;
    let expected: BTreeMap<u64, usize> = seqs.iter().map(|&s| (s, 1)).collect();
    assert_eq!(after, expected, "one outcome per failed deploy");
    for outcome in h.all_outcomes().await {
        assert_eq!(outcome["topic"], "genesis.heal", "{outcome}");
        assert_eq!(outcome["action"], "resync_and_redeploy", "{outcome}");
    }
    // Nothing handled twice: one heal and one redeploy each.
    assert_eq!(applies(&render), BACKLOG);
    assert_eq!(hook.calls(), BACKLOG);
    let mut causes: Vec<u64> = h
        .commits()
        .await
        .iter()
        .map(|c| c.payload["cause_seq"].as_u64().unwrap())
        .collect();
    causes.sort_unstable();
    assert_eq!(causes, seqs);
    h.stop().await;
}

/// A heal whose apply outlasts the grace period is aborted where it is: shutdown is on time,
/// the apply never completes, the event has no outcome and is not acknowledged, so the next
/// start heals it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stuck_past_the_grace_period_is_aborted_and_its_event_comes_again() {
    let emulators = bridge_emulators::start(EmulatorConfig {
        netlify: false,
        github: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let render_api = emulators.render().unwrap();
    let mut h = Harness::new(enforcing(), Schema::default());
    h.options_mut()
        .deploy_hooks
        .insert("render".into(), render_api.deploy_hook_url());
    let render = h.places.render.clone();
    let slow = Duration::from_secs(4);
    render.set_apply_delay(slow);
    drift(&render, 1);
    h.spawn(None).await;

    let seq = h
        .publish(
            "deploy.platform.failure",
            deploy_failure("render", "dep-1", "API_KEY is not set"),
        )
        .await;
    eventually("the heal's apply is under way", || async {
        render.active.load(Ordering::SeqCst) == 1
    })
    .await;
    let applying = Instant::now();

    let began = Instant::now();
    let finished = h.stop_within(Duration::from_secs(1)).await;
    let took = began.elapsed();
    eprintln!("shutdown took {took:?}: {finished:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(finished, Finished { abandoned: 1 });

    // Past the time the apply would have taken: it was cut, not left running.
    tokio::time::sleep(
        (applying + slow + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_eq!(applies(&render), 0);
    assert!(!render.keys().contains(&"API_KEY".to_owned()));
    assert!(h.commits().await.is_empty());
    assert!(outcomes_by_cause(&h).await.is_empty());
    assert!(render_api.deploys().is_empty());

    // The next start: the event comes again and is healed, once (the aborted apply's lock
    // went with it).
    render.set_apply_delay(Duration::ZERO);
    h.restart();
    h.spawn(None).await;
    let out = h.outcomes(seq, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out_again: Vec<Value> = h.outcomes(seq, 1).await;
    assert_eq!(out_again.len(), 1, "{out_again:?}");
    assert_eq!(out[0]["topic"], "genesis.heal", "{out:?}");
    assert_eq!(out[0]["action"], "resync_and_redeploy");
    assert_eq!(applies(&render), 1);
    assert_eq!(render_api.deploys().len(), 1);
    h.stop().await;
    emulators.shutdown().await;
}
