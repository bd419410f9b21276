//! The operations against places held in memory: one apply lock per place whoever starts the
//! apply and whatever label it uses, events published once with their origin, reads that
//! publish nothing.
#![allow(unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bridge_genesis::bus::{Bus, HistoryQuery, Policy, SqliteStore, TopicPattern};
use bridge_operations::testing::{MemoryHost, MemoryPlatform, settings};
use bridge_operations::{DriftNotice, Mode, Operations, OpsError, Origin, Scope, SyncRequest};

struct Rig {
    _dir: tempfile::TempDir,
    bus: Bus,
    host: &'static MemoryHost,
    ops: Arc<Operations<'static>>,
}

/// The source `local:.env` (A, B) and two labels for one Render service, `render` and
/// `prod=render` (both locked as `render:srv-1`), plus `netlify`; none holds B.
fn rig(lock_timeout: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(
        Arc::new(SqliteStore::open(dir.path().join("events.db")).unwrap()),
        Policy::default(),
    );
    let host: &'static MemoryHost = Box::leak(Box::new(MemoryHost::new(dir.path(), bus.clone())));
    host.add(MemoryPlatform::new(
        "local:.env",
        "local:/src",
        &[("A", "1"), ("B", "2")],
    ));
    host.add(MemoryPlatform::new("render", "render:srv-1", &[("A", "1")]));
    host.add(MemoryPlatform::new(
        "prod=render",
        "render:srv-1",
        &[("A", "1")],
    ));
    host.add(MemoryPlatform::new(
        "netlify",
        "netlify:site-1",
        &[("A", "1")],
    ));
    let mut settings = settings("local:.env", &["render", "netlify"]);
    settings.lock_timeout = lock_timeout;
    let ops = Arc::new(Operations::new(host, settings).unwrap());
    Rig {
        _dir: dir,
        bus,
        host,
        ops,
    }
}

fn request(target: &str, mode: Mode, origin: Origin) -> SyncRequest {
    SyncRequest {
        source: "local:.env".parse().unwrap(),
        targets: vec![target.parse().unwrap()],
        mode,
        scope: Scope::default(),
        force: false,
        allow_empty_source: false,
        origin,
        progress: None,
        gate: None,
    }
}

async fn topics(bus: &Bus, pattern: &str) -> Vec<serde_json::Value> {
    bus.history(
        HistoryQuery::default()
            .pattern(TopicPattern::parse(pattern).unwrap())
            .limit(1_000),
    )
    .await
    .unwrap()
    .into_iter()
    .map(|e| serde_json::Value::Object(e.payload))
    .collect()
}

/// A heal (a reaction's apply) and an API apply to the same service under two labels: one
/// waits for the other, so their writes never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_labels_for_one_service_and_any_two_origins_share_one_lock() {
    let r = rig(Duration::from_secs(10));
    for spec in ["render", "prod=render"] {
        r.host
            .place(spec)
            .set_apply_delay(Duration::from_millis(300));
    }
    let heal = {
        let ops = r.ops.clone();
        tokio::spawn(async move {
            let origin = Origin::Reaction {
                name: "drift",
                cause_seq: 7,
            };
            ops.sync(request("render", Mode::Apply, origin)).await
        })
    };
    let api = {
        let ops = r.ops.clone();
        tokio::spawn(async move {
            let origin = Origin::Api { role: "operator" };
            ops.sync(request("prod=render", Mode::Apply, origin)).await
        })
    };
    heal.await.unwrap().unwrap();
    api.await.unwrap().unwrap();
    assert_eq!(
        r.host.concurrency.max_active.load(Ordering::SeqCst),
        1,
        "two writes overlapped"
    );
    let commits = topics(&r.bus, "envsync.commit").await;
    assert_eq!(commits.len(), 2, "{commits:?}");
    let origins: Vec<&str> = commits
        .iter()
        .map(|c| c["origin"].as_str().unwrap())
        .collect();
    assert!(
        origins.contains(&"reaction") && origins.contains(&"api"),
        "{origins:?}"
    );
    let heal = commits.iter().find(|c| c["origin"] == "reaction").unwrap();
    assert_eq!(heal["cause_seq"], 7);
}

/// Different places are applied side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_places_do_not_wait_for_each_other() {
    let r = rig(Duration::from_secs(10));
    for spec in ["render", "netlify"] {
        r.host
            .place(spec)
            .set_apply_delay(Duration::from_millis(300));
    }
    let a = r.ops.sync_provider("render", Mode::Apply, Origin::Cli);
    let b = r.ops.sync_provider("netlify", Mode::Apply, Origin::Cli);
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap().summary().status, "applied");
    assert_eq!(b.unwrap().summary().status, "applied");
    assert_eq!(r.host.concurrency.max_active.load(Ordering::SeqCst), 2);
}

/// The lock of `scope`, as another process holds it.
async fn hold(dir: &std::path::Path, scope: &str) -> bridge_operations::ApplyGuard {
    let locks = bridge_operations::locks::FileLocks::new(dir);
    bridge_operations::locks::acquire(&locks, [scope.to_owned()], "serve", Duration::from_secs(1))
        .await
        .unwrap()
}

/// An apply that cannot have the lock in time fails, names the place, and writes nothing; a
/// dry run meanwhile goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_place_is_an_error_that_names_it_and_dry_runs_never_wait() {
    let r = rig(Duration::from_millis(100));
    let dir = r._dir.path().join("locks");
    std::fs::create_dir_all(&dir).unwrap();
    let held = hold(&dir, "render:srv-1").await;
    let err = r
        .ops
        .sync(request("prod=render", Mode::Apply, Origin::Cli))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpsError::Busy(_)), "{err}");
    assert!(err.to_string().contains("render:srv-1"), "{err}");
    assert_eq!(
        r.host.place("prod=render").applies.load(Ordering::SeqCst),
        0
    );
    let planned = r
        .ops
        .sync(request("prod=render", Mode::DryRun, Origin::Cli))
        .await
        .unwrap();
    assert!(planned.targets[0].plan.is_some());
    drop(held);
    // A rollback takes the same lock.
    let _held = hold(&dir, "render:srv-1").await;
    let err = r
        .ops
        .rollback(
            &"render".parse().unwrap(),
            bridge_operations::RollbackRequest {
                to: None,
                mode: Mode::Apply,
                force: false,
            },
            Origin::Cli,
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, OpsError::Busy(_)), "{err}");
}

/// A dry run publishes nothing; an apply publishes init, one commit per target written and
/// complete, once; a second run of a finished sync writes and publishes nothing.
#[tokio::test]
async fn an_apply_publishes_its_events_once_and_a_dry_run_none() {
    let r = rig(Duration::from_secs(10));
    r.ops
        .sync(request("render", Mode::DryRun, Origin::Cli))
        .await
        .unwrap();
    assert_eq!(r.bus.store().last_seq().await.unwrap(), 0);
    r.ops
        .sync(request("render", Mode::Apply, Origin::Cli))
        .await
        .unwrap();
    assert_eq!(topics(&r.bus, "envsync.init").await.len(), 1);
    assert_eq!(topics(&r.bus, "envsync.commit").await.len(), 1);
    assert_eq!(topics(&r.bus, "envsync.complete").await.len(), 1);
    let before = r.bus.store().last_seq().await.unwrap();
    let again = r
        .ops
        .sync(request("render", Mode::Apply, Origin::Cli))
        .await
        .unwrap();
    assert_eq!(again.journal, None);
    assert_eq!(r.host.place("render").applies.load(Ordering::SeqCst), 1);
    // Only the init of the second run: nothing was written, so nothing committed.
    assert_eq!(r.bus.store().last_seq().await.unwrap(), before + 1);
}

/// A quiet verification (a read) publishes nothing; one that may heal announces its drift
/// with `heal: true` and who found it.
#[tokio::test]
async fn only_a_verification_that_may_heal_announces_drift() {
    let r = rig(Duration::from_secs(10));
    let report = r
        .ops
        .parity(DriftNotice::Quiet, "2026-12-03T00:00:00Z".into())
        .await
        .unwrap();
    assert!(report.has_drift);
    assert_eq!(
        r.bus.store().last_seq().await.unwrap(),
        0,
        "a read published"
    );
    r.ops
        .parity(
            DriftNotice::Publish(Origin::Scheduler),
            "2026-12-03T00:00:00Z".into(),
        )
        .await
        .unwrap();
    let drift = topics(&r.bus, "envsync.drift").await;
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0]["heal"], true);
    assert_eq!(drift[0]["origin"], "scheduler");
    assert_eq!(drift[0]["by_platform"]["render"], 1);
}

/// A key added by hand on one target is drift there only (`extra`), not on every place.
#[tokio::test]
async fn a_key_on_one_target_drifts_that_target_only() {
    let r = rig(Duration::from_secs(10));
    r.host.place("render").set("HAND_MADE", "x");
    let report = r
        .ops
        .parity(
            DriftNotice::Publish(Origin::Cli),
            "2026-12-03T00:00:00Z".into(),
        )
        .await
        .unwrap();
    assert_eq!(
        report.extra["extra_in_render"],
        vec!["HAND_MADE".to_owned()]
    );
    assert!(report.extra["extra_in_netlify"].is_empty());
    let drift = topics(&r.bus, "envsync.drift").await;
    // render: B missing and HAND_MADE extra; netlify: B missing only.
    assert_eq!(drift[0]["by_platform"]["render"], 2, "{:?}", drift[0]);
    assert_eq!(drift[0]["by_platform"]["netlify"], 1, "{:?}", drift[0]);
}

/// Asked between the plan and the first write: what it sees is the plan, nothing is
/// written yet, and a refusal writes and publishes nothing.
struct RecordingGate {
    host: &'static MemoryHost,
    approve: bool,
    seen: std::sync::Mutex<Vec<(String, usize)>>,
}

impl bridge_operations::ApplyGate for RecordingGate {
    fn approve(&self, plan: &bridge_operations::PlannedSync) -> bool {
        let mut seen = self.seen.lock().unwrap();
        for t in plan.targets() {
            let writes = t.plan.as_ref().map_or(0, |p| p.writes().count());
            seen.push((t.label.clone(), writes));
        }
        // Nothing written yet when the plan is shown.
        assert_eq!(self.host.place("render").applies.load(Ordering::SeqCst), 0);
        self.approve
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_sees_the_plan_before_any_write_and_a_refusal_writes_nothing() {
    let r = rig(Duration::from_secs(10));
    for approve in [false, true] {
        let gate = Arc::new(RecordingGate {
            host: r.host,
            approve,
            seen: Default::default(),
        });
        let mut req = request("render", Mode::Apply, Origin::Cli);
        req.gate = Some(gate.clone());
        let outcome = r.ops.sync(req).await.unwrap();
        assert_eq!(*gate.seen.lock().unwrap(), [("render".to_string(), 1)]);
        let applies = r.host.place("render").applies.load(Ordering::SeqCst);
        let published = topics(&r.bus, "envsync.*").await.len();
        if approve {
            assert_eq!(applies, 1);
            assert!(outcome.journal.is_some());
            assert!(published > 0);
        } else {
            assert_eq!(applies, 0, "declined, yet written");
            assert!(outcome.journal.is_none());
            assert!(matches!(
                outcome.targets[0].status,
                bridge_sync::TargetStatus::Planned
            ));
            assert_eq!(published, 0, "declined, yet published");
        }
    }
}
