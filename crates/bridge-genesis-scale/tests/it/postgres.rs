//! PostgreSQL: the conformance suite (each case in its own schema) and several stores
//! appending to one schema at once.

use std::process::Command;
use std::sync::Arc;

use bridge_genesis::bus::conformance::{self, Backend};
use bridge_genesis::bus::{
    BoxFuture, Bus, EventStore, NewEvent, Payload, Policy, StoreError, Topic,
};
use bridge_genesis_scale::{PostgresOptions, PostgresStore};
use tokio::task::JoinSet;

use crate::services;

/// Stores in schemas unique to this backend: `<run>_<name>`, dropped by [`PgBackend::cleanup`].
struct PgBackend {
    url: String,
    run: String,
    schemas: std::sync::Mutex<Vec<String>>,
}

impl PgBackend {
    fn new(url: String) -> Self {
        Self {
            url,
            run: services::unique("genesis_test"),
            schemas: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Drops the schemas. Only called when the case passed: a failed one keeps its data for
    /// a look.
    async fn cleanup(&self) {
        let schemas = self.schemas.lock().unwrap().clone();
        drop_schemas(&self.url, &schemas).await;
    }
}

/// Drops `schemas` (and what they hold): a passed test's cleanup.
pub(crate) async fn drop_schemas(url: &str, schemas: &[String]) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for cleanup");
    tokio::spawn(connection);
    for schema in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("drop schema");
    }
}

impl Backend for PgBackend {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn EventStore>, StoreError>> {
        let schema = format!("{}_{name}", self.run);
        {
            let mut schemas = self.schemas.lock().unwrap();
            if !schemas.contains(&schema) {
                schemas.push(schema.clone());
            }
        }
        Box::pin(async move {
            let options = PostgresOptions {
                schema: Some(schema),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect_with(&self.url, options).await?;
            Ok(Arc::new(store) as Arc<dyn EventStore>)
        })
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(url) = services::postgres().await else { return };
                let backend = PgBackend::new(url);
                bridge_genesis::bus::conformance::$case(&backend).await;
                backend.cleanup().await;
            }
        )*
    };
}

conformance!(
    sequences_are_gap_free_under_concurrent_publishers,
    events_round_trip,
    history_filters,
    long_history_reads,
    patterns_route_live_events,
    subscriptions_catch_up_and_survive_lag,
    durable_consumers_resume_after_restart,
    durable_consumers_redeliver_and_wait,
    stats_and_health,
    the_gate_refuses_and_records,
    bad_input_is_refused_without_a_trace,
);

fn event(writer: usize, n: usize) -> NewEvent {
    let mut payload = Payload::new();
    payload.insert("writer".into(), writer.into());
    payload.insert("n".into(), n.into());
    NewEvent::new(Topic::new("envsync.drift").unwrap(), "system", payload)
}

/// Two stores (two pools of connections, as two processes would have) on one schema, eight
/// tasks each: the union of the sequence numbers is exactly 1..=N, timestamps follow them,
/// and each store's live feed sees the other's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_writers_share_one_gap_free_sequence() {
    const TASKS: usize = 8;
    const EACH: usize = 200;
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("genesis_test_writers");
    let options = PostgresOptions {
        schema: Some(schema.clone()),
        ..PostgresOptions::default()
    };
    let a = Arc::new(
        PostgresStore::connect_with(&url, options.clone())
            .await
            .unwrap(),
    );
    let b = Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
    let mut live_a = a.live();

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for n in 0..EACH {
                let stored = store.append(vec![event(task, n)]).await.unwrap();
                seqs.push(stored[0].seq);
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(seqs) = tasks.join_next().await {
        let seqs = seqs.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (TASKS * EACH) as u64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "1..={total}, each once"
    );

    let history = b
        .read(bridge_genesis::bus::HistoryQuery::default().limit(10_000))
        .await
        .unwrap();
    assert_eq!(history.len() as u64, total);
    assert!(history.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    // Store A's feed carries B's events too, in order, without gaps.
    let mut expected = 1;
    while expected <= total {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), live_a.recv())
            .await
            .expect("live event")
            .expect("not lagged: capacity 4096 exceeds the run");
        assert_eq!(event.seq, expected);
        expected += 1;
    }

    drop((a, b));
    drop_schemas(&url, &[schema]).await;
}

/// The schedule table's suite: each name a schema, each handle a store with its own pool
/// (as two replicas would have).
struct PgSchedules {
    url: String,
    run: String,
    schemas: std::sync::Mutex<Vec<String>>,
}

impl bridge_genesis::schedule::ScheduleBackend for PgSchedules {
    fn open(
        &self,
        name: &str,
    ) -> BoxFuture<'_, Result<Arc<dyn bridge_genesis::schedule::ScheduleStore>, StoreError>> {
        let schema = format!("{}_{name}", self.run);
        {
            let mut schemas = self.schemas.lock().unwrap();
            if !schemas.contains(&schema) {
                schemas.push(schema.clone());
            }
        }
        Box::pin(async move {
            let options = PostgresOptions {
                schema: Some(schema),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect_with(&self.url, options).await?;
            Ok(store
                .schedules()
                .expect("PostgreSQL keeps a schedule table"))
        })
    }
}

macro_rules! schedule_conformance {
    ($($case:ident),* $(,)?) => {
        mod schedule_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(url) = services::postgres().await else { return };
                    let backend = PgSchedules {
                        url: url.clone(),
                        run: services::unique("genesis_sched"),
                        schemas: std::sync::Mutex::new(Vec::new()),
                    };
                    bridge_genesis::schedule::conformance::$case(&backend).await;
                    let schemas = backend.schemas.lock().unwrap().clone();
                    drop_schemas(&url, &schemas).await;
                }
            )*
        }
    };
}

schedule_conformance!(
    claims_are_exclusive,
    concurrent_claims_have_one_winner,
    runs_are_recorded_newest_first,
    jobs_are_independent,
    runs_export_and_import,
);

/// The delivery claims' suite: each name a schema, each handle a store with its own pool.
struct PgDeliveries {
    url: String,
    run: String,
    schemas: std::sync::Mutex<Vec<String>>,
}

impl bridge_genesis::deliveries::DeliveryBackend for PgDeliveries {
    fn open(
        &self,
        name: &str,
    ) -> BoxFuture<'_, Result<Arc<dyn bridge_genesis::deliveries::DeliveryStore>, StoreError>> {
        let schema = format!("{}_{name}", self.run);
        {
            let mut schemas = self.schemas.lock().unwrap();
            if !schemas.contains(&schema) {
                schemas.push(schema.clone());
            }
        }
        Box::pin(async move {
            let options = PostgresOptions {
                schema: Some(schema),
                ..PostgresOptions::default()
            };
            let store = PostgresStore::connect_with(&self.url, options).await?;
            Ok(store
                .deliveries()
                .expect("PostgreSQL keeps a delivery table"))
        })
    }
}

macro_rules! delivery_conformance {
    ($($case:ident),* $(,)?) => {
        mod delivery_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(url) = services::postgres().await else { return };
                    let backend = PgDeliveries {
                        url: url.clone(),
                        run: services::unique("genesis_deliv"),
                        schemas: std::sync::Mutex::new(Vec::new()),
                    };
                    bridge_genesis::deliveries::conformance::$case(&backend).await;
                    let schemas = backend.schemas.lock().unwrap().clone();
                    drop_schemas(&url, &schemas).await;
                }
            )*
        }
    };
}

delivery_conformance!(
    claims_are_exclusive,
    concurrent_claims_have_one_winner,
    released_and_expired_claims_are_claimed_again,
    old_claims_are_pruned_and_claims_export,
);

/// Where the kill -9 child publishes: the schema, set by the parent.
const KILL9_SCHEMA: &str = "BRIDGE_KILL9_PG_SCHEMA";

async fn store_in(url: &str, schema: &str) -> Arc<dyn EventStore> {
    let options = PostgresOptions {
        schema: Some(schema.to_owned()),
        ..PostgresOptions::default()
    };
    Arc::new(PostgresStore::connect_with(url, options).await.unwrap())
}

/// The child half of `kill9_loses_no_acknowledged_event`: the conformance suite's kill -9
/// workload in the schema `BRIDGE_KILL9_PG_SCHEMA`. Does nothing unless the parent set it.
#[test]
fn kill9_child_publisher() {
    let Ok(schema) = std::env::var(KILL9_SCHEMA) else {
        return;
    };
    let url = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| services::DEFAULT_POSTGRES_URL.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = store_in(&url, &schema).await;
        conformance::kill9_workload(Bus::new(store, Policy::default())).await;
    });
}

/// kill -9 of a process publishing to PostgreSQL mid-burst: every acknowledged event is
/// stored, in order, without gaps (its open transactions died with its connections), and
/// the durable consumer resumes right after its last ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_event() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("genesis_test_kill9");
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "postgres::kill9_child_publisher",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_SCHEMA, &schema)
        .env("BRIDGE_TEST_POSTGRES_URL", &url);
    let (acked, consumed) = conformance::kill9_run(child, 1_000, 200);
    let store = store_in(&url, &schema).await;
    conformance::kill9_check(&store, acked, consumed).await;
    drop(store);
    drop_schemas(&url, &[schema]).await;
}
