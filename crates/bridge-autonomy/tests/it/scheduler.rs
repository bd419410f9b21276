//! The scheduled sync on a clock the test moves, over the real operations: each slot once,
//! the configured mode, one catch-up after downtime, nothing when disabled, each run recorded
//! and published; and two servers sharing PostgreSQL running a slot once between them.
//!
//! A sync writes only what differs, so before each slot that should apply, the test takes a
//! key away from both targets again ([`redrift`]). A scheduled run shows as one read of the
//! source per provider (nothing else reads it here: no schema, no verification) and, when it
//! applies, as an `envsync.commit` per provider with `origin: "scheduler"`.

use std::sync::Arc;
use std::time::Duration;

use bridge_autonomy::scheduler::JOB;
use bridge_autonomy::{AutonomyOptions, Schedule, ScheduledSync, SchedulerOptions, TestClock};
use bridge_genesis::bus::{Event, EventStore, SqliteStore};
use bridge_genesis::schedule::{ScheduleStore, ScheduledRun};
use bridge_operations::Mode;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::harness::{Harness, Places, applies, drift, events, eventually, reads};

const START: OffsetDateTime = datetime!(2026-03-04 10:30 UTC);
const HOUR: time::Duration = time::Duration::HOUR;

/// One server: its workers with the scheduled sync, over `store` and `places`.
struct Server {
    h: Harness,
}

impl Server {
    async fn start(
        store: Arc<dyn EventStore>,
        places: &Places,
        clock: &Arc<TestClock>,
        enabled: bool,
        mode: Mode,
        owner: &str,
    ) -> Self {
        let schedules = store.schedules().expect("the store keeps a schedule table");
        let scheduler = ScheduledSync {
            options: SchedulerOptions {
                enabled,
                schedule: Some(Schedule::parse("@hourly").unwrap()),
                mode,
                owner: owner.to_owned(),
            },
            store: schedules,
            clock: clock.clone(),
        };
        let mut h = Harness::on(store, places.clone(), AutonomyOptions::default());
        h.spawn(Some(scheduler)).await;
        Self { h }
    }

    /// The targets the scheduled sync wrote, in order (one `envsync.commit` each).
    async fn enforced(&self) -> Vec<String> {
        self.h
            .commits()
            .await
            .iter()
            .filter(|c| c.payload["origin"] == "scheduler")
            .map(|c| c.payload["target"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn stop(mut self) {
        self.h.stop().await;
    }
}

/// Both targets one key short of the source again, so that the next sync applies.
fn redrift(places: &Places) {
    drift(&places.render, 1);
    drift(&places.netlify, 1);
}

/// Places whose targets each lack one of the source's keys.
fn drifted() -> Places {
    let places = Places::in_parity();
    redrift(&places);
    places
}

/// How many provider syncs ran (each reads the source once).
fn syncs(places: &Places) -> usize {
    reads(&places.source)
}

/// Waits until `n` schedulers sleep on the clock (so that moving it wakes them).
async fn sleeping(clock: &TestClock, n: usize) {
    eventually(&format!("{n} schedulers sleep"), || async {
        clock.sleepers() >= n
    })
    .await;
}

async fn runs(store: &dyn ScheduleStore) -> Vec<ScheduledRun> {
    store.runs(JOB.into(), 100).await.unwrap()
}

/// Waits until `n` runs are claimed and finished, then returns them (newest first).
async fn finished_runs(store: &dyn ScheduleStore, n: usize) -> Vec<ScheduledRun> {
    eventually(&format!("{n} runs finished"), || async {
        let runs = runs(store).await;
        runs.len() >= n && runs.iter().all(|r| r.outcome.is_some())
    })
    .await;
    runs(store).await
}

/// The `scheduled_sync` intents in the store, oldest first, once there are `n`.
async fn intents(store: &Arc<dyn EventStore>, n: usize) -> Vec<Event> {
    let read = || async {
        events(store.as_ref(), "genesis.intent")
            .await
            .into_iter()
            .filter(|e| e.payload.get("kind").and_then(|k| k.as_str()) == Some("scheduled_sync"))
            .collect::<Vec<_>>()
    };
    eventually(&format!("{n} scheduled_sync intents"), || async {
        read().await.len() >= n
    })
    .await;
    read().await
}

/// Lets a scheduler that should do nothing have its chance to do something.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(dir.path().join("events.db")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_schedule_runs_each_slot_once_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let schedules = store.schedules().unwrap();
    let clock = Arc::new(TestClock::new(START));
    let places = drifted();
    let server = Server::start(store.clone(), &places, &clock, true, Mode::Apply, "a:1").await;

    // A new store: the 10:00 slot, from before any server ran, is not caught up.
    sleeping(&clock, 1).await;
    settle().await;
    assert!(runs(&*schedules).await.is_empty());
    assert!(server.enforced().await.is_empty());
    assert_eq!(syncs(&places), 0);

    clock.set(datetime!(2026-03-04 11:00 UTC));
    let after_one = finished_runs(&*schedules, 1).await;
    sleeping(&clock, 1).await;
    assert_eq!(server.enforced().await, ["render", "netlify"]);
    assert_eq!((applies(&places.render), applies(&places.netlify)), (1, 1));

    // Half an hour later: no slot.
    redrift(&places);
    clock.set(datetime!(2026-03-04 11:30 UTC));
    sleeping(&clock, 1).await;
    settle().await;
    assert_eq!(runs(&*schedules).await.len(), 1);
    assert_eq!(syncs(&places), 2);

    clock.set(datetime!(2026-03-04 12:00:05 UTC));
    let all = finished_runs(&*schedules, 2).await;
    sleeping(&clock, 1).await;
    settle().await;
    assert_eq!(runs(&*schedules).await.len(), 2, "each slot once");
    assert_eq!(
        server.enforced().await.len(),
        4,
        "two slots, two providers each"
    );
    assert_eq!(syncs(&places), 4);

    assert_eq!(after_one[0].slot, datetime!(2026-03-04 11:00 UTC));
    let slots: Vec<_> = all.iter().map(|r| r.slot).collect();
    assert_eq!(
        slots,
        [
            datetime!(2026-03-04 12:00 UTC),
            datetime!(2026-03-04 11:00 UTC)
        ]
    );
    assert!(all.iter().all(|r| r.owner == "a:1"));
    assert_eq!(all[0].outcome.as_deref(), Some("ok (2 providers)"));

    let published = intents(&store, 2).await;
    assert_eq!(published.len(), 2);
    let first = &published[0].payload;
    assert_eq!(first["slot"], "2026-03-04T11:00:00Z");
    assert_eq!(first["mode"], "enforce");
    assert_eq!(first["owner"], "a:1");
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["provider"], "render");
    assert_eq!(results[0]["status"], "applied");
    assert_eq!(results[0]["changes"], 1);
    assert_eq!(results[0]["errors"], 0);
    // Counts only: no plan, no keys, no values.
    let text = first.to_string_lossy();
    assert!(!text.contains("API_KEY"));
    assert!(!text.contains(crate::harness::VARS[0].1));
    assert_eq!(published[1].payload["slot"], "2026-03-04T12:00:00Z");
    server.stop().await;
}

trait Lossy {
    fn to_string_lossy(&self) -> String;
}

impl Lossy for bridge_genesis::bus::Payload {
    fn to_string_lossy(&self) -> String {
        serde_json::Value::Object(self.clone()).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_mode_only_plans() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let schedules = store.schedules().unwrap();
    let clock = Arc::new(TestClock::new(START));
    let places = drifted();
    let server = Server::start(store.clone(), &places, &clock, true, Mode::DryRun, "a:1").await;
    sleeping(&clock, 1).await;
    clock.advance(HOUR);
    finished_runs(&*schedules, 1).await;
    let published = intents(&store, 1).await;
    assert!(
        server.enforced().await.is_empty(),
        "a dry run applies nothing"
    );
    assert_eq!((applies(&places.render), applies(&places.netlify)), (0, 0));
    assert_eq!(syncs(&places), 2, "both providers were planned");
    let payload = &published[0].payload;
    assert_eq!(payload["mode"], "dry-run");
    let statuses: Vec<_> = payload["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["planned", "planned"]);
    server.stop().await;
}

/// A server down from 06:30 to 10:30 missed four slots; it runs the latest, 10:00, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_only_the_latest_missed_slot_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let schedules = store.schedules().unwrap();
    let before = datetime!(2026-03-04 06:00 UTC);
    assert!(
        schedules
            .claim(JOB.into(), before, "earlier:1".into())
            .await
            .unwrap()
    );
    schedules
        .finish(JOB.into(), before, "ok (2 providers)".into())
        .await
        .unwrap();

    let clock = Arc::new(TestClock::new(START));
    let places = drifted();
    let server = Server::start(store.clone(), &places, &clock, true, Mode::Apply, "a:1").await;
    let all = finished_runs(&*schedules, 2).await;
    sleeping(&clock, 1).await;
    settle().await;
    let slots: Vec<_> = runs(&*schedules).await.iter().map(|r| r.slot).collect();
    assert_eq!(slots, [datetime!(2026-03-04 10:00 UTC), before]);
    assert_eq!(all[0].owner, "a:1");
    assert_eq!(server.enforced().await, ["render", "netlify"]);
    // A second run would find nothing to write, so the syncs tell runs apart.
    assert_eq!(syncs(&places), 2, "one run, not four");
    assert_eq!(intents(&store, 1).await.len(), 1);

    // And on from there.
    redrift(&places);
    clock.set(datetime!(2026-03-04 11:00 UTC));
    finished_runs(&*schedules, 3).await;
    sleeping(&clock, 1).await;
    assert_eq!(server.enforced().await.len(), 4);
    assert_eq!(syncs(&places), 4);
    server.stop().await;
}

/// A slot another server claimed is skipped here; the next is run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_claimed_elsewhere_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let schedules = store.schedules().unwrap();
    let clock = Arc::new(TestClock::new(START));
    let places = drifted();
    let server = Server::start(store.clone(), &places, &clock, true, Mode::Apply, "a:1").await;
    sleeping(&clock, 1).await;
    let eleven = datetime!(2026-03-04 11:00 UTC);
    assert!(
        schedules
            .claim(JOB.into(), eleven, "b:2".into())
            .await
            .unwrap()
    );
    schedules
        .finish(JOB.into(), eleven, "ok (2 providers)".into())
        .await
        .unwrap();
    clock.set(eleven);
    sleeping(&clock, 1).await;
    settle().await;
    assert!(server.enforced().await.is_empty());
    assert_eq!(syncs(&places), 0);
    clock.set(datetime!(2026-03-04 12:00 UTC));
    let all = finished_runs(&*schedules, 2).await;
    assert_eq!(all[0].owner, "a:1");
    assert_eq!(all[1].owner, "b:2");
    assert_eq!(server.enforced().await, ["render", "netlify"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_schedule_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let schedules = store.schedules().unwrap();
    // A run recorded before: even catch-up is off.
    let before = datetime!(2026-03-04 06:00 UTC);
    schedules
        .claim(JOB.into(), before, "earlier:1".into())
        .await
        .unwrap();
    let clock = Arc::new(TestClock::new(START));
    let places = drifted();
    let server = Server::start(store.clone(), &places, &clock, false, Mode::Apply, "a:1").await;
    settle().await;
    for _ in 0..3 {
        clock.advance(HOUR);
        settle().await;
    }
    assert_eq!(clock.sleepers(), 0, "nothing waits on the clock");
    assert_eq!(runs(&*schedules).await.len(), 1);
    assert!(server.enforced().await.is_empty());
    assert_eq!((applies(&places.render), applies(&places.netlify)), (0, 0));
    assert_eq!(syncs(&places), 0);
    server.stop().await;
}

mod postgres {
    //! Two servers, each with its own PostgreSQL store (its own connections, as two
    //! replicas have) on one schema, syncing the same platforms.

    use super::*;
    use bridge_genesis_scale::{PostgresOptions, PostgresStore};

    const DEFAULT_POSTGRES_URL: &str = "host=127.0.0.1 user=postgres dbname=test";

    /// The test database, or `None` (after saying so) when it does not answer, unless
    /// `BRIDGE_REQUIRE_SERVICES=1` makes that a failure.
    async fn postgres() -> Option<String> {
        let url = std::env::var("BRIDGE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&url, tokio_postgres::NoTls),
        )
        .await;
        let why = match attempt {
            Ok(Ok(_)) => return Some(url),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        if std::env::var("BRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("PostgreSQL at {url} is required (BRIDGE_REQUIRE_SERVICES=1) but {why}");
        }
        eprintln!("skipped: PostgreSQL at {url} is not available ({why})");
        None
    }

    async fn drop_schema(url: &str, schema: &str) {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_sharing_postgres_run_each_slot_once() {
        let Some(url) = postgres().await else { return };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("bridge_sched_{}_{}", std::process::id(), nanos % 1_000_000);
        let options = PostgresOptions {
            schema: Some(schema.clone()),
            ..PostgresOptions::default()
        };
        let a: Arc<dyn EventStore> = Arc::new(
            PostgresStore::connect_with(&url, options.clone())
                .await
                .unwrap(),
        );
        let b: Arc<dyn EventStore> =
            Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
        let schedules = a.schedules().unwrap();
        let clock = Arc::new(TestClock::new(START));
        // Both servers sync the same platforms.
        let places = drifted();
        let one = Server::start(a.clone(), &places, &clock, true, Mode::Apply, "one:1").await;
        let two = Server::start(b.clone(), &places, &clock, true, Mode::Apply, "two:2").await;
        sleeping(&clock, 2).await;

        for (n, slot) in [
            datetime!(2026-03-04 11:00 UTC),
            datetime!(2026-03-04 12:00 UTC),
            datetime!(2026-03-04 13:00 UTC),
        ]
        .into_iter()
        .enumerate()
        {
            if n > 0 {
                redrift(&places);
            }
            clock.set(slot);
            finished_runs(&*schedules, n + 1).await;
            sleeping(&clock, 2).await;
            settle().await;
            let applied = applies(&places.render) + applies(&places.netlify);
            assert_eq!(
                applied,
                2 * (n + 1),
                "slot {slot}: each provider applied once across both servers"
            );
            assert_eq!(syncs(&places), 2 * (n + 1), "slot {slot}: synced once");
            // Each commit is in the shared log once, whichever server looks.
            assert_eq!(one.enforced().await.len(), 2 * (n + 1));
            assert_eq!(two.enforced().await.len(), 2 * (n + 1));
        }
        let all = runs(&*schedules).await;
        assert_eq!(all.len(), 3);
        // Each slot's record, published once to the shared log.
        let published = intents(&b, 3).await;
        settle().await;
        assert_eq!(intents(&a, 3).await.len(), 3);
        let slots: Vec<_> = published
            .iter()
            .map(|e| e.payload["slot"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            slots,
            [
                "2026-03-04T11:00:00Z",
                "2026-03-04T12:00:00Z",
                "2026-03-04T13:00:00Z"
            ]
        );
        one.stop().await;
        two.stop().await;
        drop((a, b, schedules));
        drop_schema(&url, &schema).await;
    }
}
