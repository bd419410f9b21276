//! The workers over the real operations: a bus (SQLite in a temporary directory, or a store a
//! test gives), a leaked [`MemoryHost`] whose places are a source `local:.env` and the targets
//! `render` and `netlify`, [`Operations`] over it, a ledger, and [`Workers`] started with the
//! test's options.
//!
//! What the old server harness's fake engine counted is observed on the real thing: drift of
//! N keys is N of the source's keys removed from a target ([`drift`]), an apply is a target's
//! `applies` counter and an `envsync.commit` event, a parity check is a read of the source.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bridge_autonomy::{AutonomyOptions, Finished, ScheduledSync, WorkerParts, Workers};
use bridge_core::schema::Schema;
use bridge_genesis::bus::{
    Bus, Event, EventStore, HistoryQuery, Policy, PolicyMode, Role, SqliteStore, TopicPattern,
};
use bridge_genesis::ledger::LedgerAccess;
use bridge_operations::testing::{MemoryHost, MemoryPlatform, settings};
use bridge_operations::{Logger, Operations, Settings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SOURCE: &str = "local:.env";
/// The source's variables, in the order [`drift`] takes them away from a target.
pub const VARS: [(&str, &str); 4] = [
    ("API_KEY", "sk-test-4f9a2c71"),
    ("A", "alpha"),
    ("B", "bravo"),
    ("C", "charlie"),
];
/// The durable consumers the workers open at start.
const CONSUMERS: [&str; 5] = [
    "autonomy-drift",
    "autonomy-deploy-failure",
    "autonomy-deploy-success",
    "autonomy-blueprint",
    "cascade",
];

/// The places every test works on; clones share them (two servers syncing the same
/// platforms share one `Places`).
#[derive(Clone)]
pub struct Places {
    pub source: Arc<MemoryPlatform>,
    pub render: Arc<MemoryPlatform>,
    pub netlify: Arc<MemoryPlatform>,
}

impl Places {
    /// Every target holding what the source holds. Each call makes other places, with lock
    /// scopes of their own: the in-process apply locks are one table for the whole test
    /// binary, and tests running side by side must not wait for each other's applies.
    pub fn in_parity() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Self {
            source: MemoryPlatform::new(SOURCE, &format!("local:/test-{n}/.env"), &VARS),
            render: MemoryPlatform::new("render", &format!("render:srv-test-{n}"), &VARS),
            netlify: MemoryPlatform::new("netlify", &format!("netlify:site-test-{n}"), &VARS),
        }
    }

    fn add_to(&self, host: &MemoryHost) {
        host.add(self.source.clone());
        host.add(self.render.clone());
        host.add(self.netlify.clone());
    }
}

/// Drift of `n` keys on `place`: the first `n` of the source's keys it still holds (API_KEY
/// first) removed. Returns them.
pub fn drift(place: &MemoryPlatform, n: usize) -> Vec<String> {
    let held = place.keys();
    let gone: Vec<String> = VARS
        .iter()
        .map(|(k, _)| (*k).to_owned())
        .filter(|k| held.contains(k))
        .take(n)
        .collect();
    assert_eq!(gone.len(), n, "the place holds fewer than {n} source keys");
    for key in &gone {
        place.remove(key);
    }
    gone
}

/// How many applies `place` finished.
pub fn applies(place: &MemoryPlatform) -> usize {
    place.applies.load(Ordering::SeqCst)
}

/// How many times `place` was read.
pub fn reads(place: &MemoryPlatform) -> usize {
    place.reads.load(Ordering::SeqCst)
}

/// An `envsync.drift` as a verification that may heal publishes it (`heal: true`): `render`
/// keys drifted on render, none on netlify.
pub fn drift_event(render: u64) -> Value {
    json!({"verified_at": "now", "by_platform": {"render": render, "netlify": 0},
           "drift_count": render, "origin": "cli", "heal": true})
}

/// A failed deploy of `platform`.
pub fn deploy_failure(platform: &str, deploy_id: &str, message: &str) -> Value {
    json!({"platform": platform, "event_type": "failure", "status": "build_failed",
           "metadata": {"deploy_id": deploy_id, "message": message}})
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub bus: Bus,
    pub host: &'static MemoryHost,
    pub ops: Arc<Operations<'static>>,
    pub places: Places,
    settings: Settings,
    options: AutonomyOptions,
    /// The SQLite file reopened on restart (`None`: the store was given, and is kept).
    store_file: Option<PathBuf>,
    workers: Option<Workers>,
}

/// A leaked host over `places` with its state in `dir`, and operations over it.
fn open(
    dir: &Path,
    bus: &Bus,
    places: &Places,
    settings: &Settings,
) -> (&'static MemoryHost, Arc<Operations<'static>>) {
    let host: &'static MemoryHost = Box::leak(Box::new(MemoryHost::new(dir, bus.clone())));
    places.add_to(host);
    let ops = Operations::new(host, settings.clone())
        .unwrap()
        .with_owner("serve");
    (host, Arc::new(ops))
}

fn bus_over(store: Arc<dyn EventStore>) -> Bus {
    Bus::new(store, Policy::new(PolicyMode::Permissive))
}

impl Harness {
    /// Workers running with `options` over places in parity and a new SQLite store.
    pub async fn start(options: AutonomyOptions) -> Self {
        Self::start_with_schema(options, Schema::default()).await
    }

    /// The same, with `schema` in the settings.
    pub async fn start_with_schema(options: AutonomyOptions, schema: Schema) -> Self {
        let mut h = Self::new(options, schema);
        h.spawn(None).await;
        h
    }

    /// Over a new SQLite store and places in parity; workers not started.
    pub fn new(options: AutonomyOptions, schema: Schema) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.db");
        let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&file).unwrap());
        Self::build(dir, store, Some(file), Places::in_parity(), options, schema)
    }

    /// Over `store` and `places`, which other harnesses may share; workers not started.
    pub fn on(store: Arc<dyn EventStore>, places: Places, options: AutonomyOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::build(dir, store, None, places, options, Schema::default())
    }

    fn build(
        dir: tempfile::TempDir,
        store: Arc<dyn EventStore>,
        store_file: Option<PathBuf>,
        places: Places,
        options: AutonomyOptions,
        schema: Schema,
    ) -> Self {
        let bus = bus_over(store);
        let mut settings = settings(SOURCE, &["render", "netlify"]);
        settings.schema = schema;
        let (host, ops) = open(dir.path(), &bus, &places, &settings);
        Self {
            dir,
            bus,
            host,
            ops,
            places,
            settings,
            options,
            store_file,
            workers: None,
        }
    }

    /// The reactions' options, for the next [`Harness::spawn`].
    pub fn options_mut(&mut self) -> &mut AutonomyOptions {
        &mut self.options
    }

    pub fn ledger(&self) -> LedgerAccess {
        LedgerAccess::sqlite(
            self.dir.path().join("ledger.db"),
            "bridge.test/ledger",
            ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        )
    }

    /// Starts the workers (with the scheduled sync when given) and waits until their
    /// consumers exist, so that what is published next reaches them.
    pub async fn spawn(&mut self, scheduler: Option<ScheduledSync>) {
        assert!(self.workers.is_none(), "the workers are running already");
        self.workers = Some(Workers::spawn(WorkerParts {
            bus: self.bus.clone(),
            ops: self.ops.clone(),
            ledger: self.ledger(),
            options: self.options.clone(),
            scheduler,
            logger: Logger::off(),
        }));
        let store = self.bus.store().clone();
        eventually("the workers' consumers exist", || {
            let store = store.clone();
            async move {
                let names: Vec<String> = store
                    .consumers()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.name)
                    .collect();
                CONSUMERS.iter().all(|c| names.iter().any(|n| n == c))
            }
        })
        .await;
    }

    /// Stops the workers with a generous grace period.
    pub async fn stop(&mut self) -> Finished {
        self.stop_within(Duration::from_secs(5)).await
    }

    pub async fn stop_within(&mut self, grace: Duration) -> Finished {
        let workers = self.workers.take().expect("the workers are running");
        workers.finish(grace).await
    }

    /// As after a restart of the process, once its workers stopped: the store reopened (when
    /// the harness owns it), a new host and operations over the same directory and places.
    /// The workers are not started.
    pub fn restart(&mut self) {
        assert!(self.workers.is_none(), "stop the workers first");
        let store: Arc<dyn EventStore> = match &self.store_file {
            Some(file) => Arc::new(SqliteStore::open(file).unwrap()),
            None => self.bus.store().clone(),
        };
        self.bus = bus_over(store);
        let (host, ops) = open(self.dir.path(), &self.bus, &self.places, &self.settings);
        self.host = host;
        self.ops = ops;
    }

    pub async fn publish(&self, topic: &str, payload: Value) -> u64 {
        self.bus
            .publish(topic, payload, Role::System)
            .await
            .unwrap()
            .seq
    }

    /// Every stored event on `pattern`, oldest first.
    pub async fn events(&self, pattern: &str) -> Vec<Event> {
        events(self.bus.store().as_ref(), pattern).await
    }

    /// The `envsync.commit` events, oldest first.
    pub async fn commits(&self) -> Vec<Event> {
        self.events("envsync.commit").await
    }

    /// Every reaction outcome (`genesis.heal` and `genesis.intent` caused by an event), as
    /// envelopes with `topic`, oldest first.
    pub async fn all_outcomes(&self) -> Vec<Value> {
        self.events("genesis.*")
            .await
            .iter()
            .filter(|e| e.payload.contains_key("cause_seq"))
            .map(|e| {
                let mut v = e.envelope();
                v["topic"] = e.topic.clone().into();
                v
            })
            .collect()
    }

    /// The outcomes caused by event `seq`, waiting up to 10 s for at least `want` of them.
    pub async fn outcomes(&self, seq: u64, want: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Value> = self
                .all_outcomes()
                .await
                .into_iter()
                .filter(|o| o["cause_seq"].as_u64() == Some(seq))
                .collect();
            if found.len() >= want {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {want} outcomes for event {seq}: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every event of `store` on `pattern`, oldest first.
pub async fn events(store: &dyn EventStore, pattern: &str) -> Vec<Event> {
    store
        .read(
            HistoryQuery::default()
                .pattern(TopicPattern::parse(pattern).unwrap())
                .limit(10_000),
        )
        .await
        .unwrap()
}

/// Waits up to 20 s until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A deploy hook that answers 200 to every call, after taking `API_KEY` away from `place`
/// again: a redeploy that brings the drift back (as a build that resets its environment
/// would), so that every failed deploy has drift to heal.
pub struct RedriftingHook {
    pub url: String,
    pub calls: Arc<AtomicUsize>,
}

impl RedriftingHook {
    pub async fn start(place: Arc<MemoryPlatform>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/deploy/srv-test?key=hook-secret",
            listener.local_addr().unwrap()
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let place = place.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    // The request's head (a hook call has no body worth reading).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    place.remove("API_KEY");
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, calls }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}
