//! Bus tests: the conformance suite against SQLite, then what only the SQLite store promises
//! (group commit, no gap after a failed transaction, damaged files refused, kill -9).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::conformance::{self, Backend};
use bridge_genesis::bus::{
    BoxFuture, Bus, EventStore, HistoryQuery, IntegrityCheck, Policy, PublishError, Role,
    SqliteOptions, SqliteStore, StoreError, TopicPattern,
};
use proptest::prelude::*;
use serde_json::json;

/// Stores in one temporary directory, one file per name.
struct SqliteBackend {
    dir: tempfile::TempDir,
}

impl SqliteBackend {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Backend for SqliteBackend {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn EventStore>, StoreError>> {
        let path = self.dir.path().join(format!("{name}.db"));
        Box::pin(async move { Ok(Arc::new(SqliteStore::open(path)?) as Arc<dyn EventStore>) })
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite_conformance {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::SqliteBackend::new();
                    bridge_genesis::bus::conformance::$case(&backend).await;
                }
            )*
        }
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

/// `run_all` is what other backends call; make sure it runs end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_run_all() {
    conformance::run_all(&SqliteBackend::new()).await;
}

fn open_bus(path: &Path) -> (Arc<SqliteStore>, Bus) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let bus = Bus::new(store.clone(), Policy::default());
    (store, bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bus) = open_bus(&dir.path().join("bus.db"));
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..16 {
        let bus = bus.clone();
        tasks.spawn(async move {
            for n in 0..40 {
                bus.publish("envsync.drift", json!({"p": p, "n": n}), Role::System)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let stats = store.writer_stats();
    assert_eq!(stats.events, 640);
    assert!(
        stats.transactions < stats.events / 2,
        "16 waiting publishers should share fsyncs: {stats:?}"
    );
    let mode: String = rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_assigns_no_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (store, bus) = open_bus(&path);
    // A trigger makes one particular insert fail, as a full disk or an I/O error would.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON genesis_events \
             WHEN NEW.payload LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();
    let ok = |n: u64| json!({"n": n});
    assert_eq!(
        bus.publish("envsync.drift", ok(1), Role::System)
            .await
            .unwrap()
            .seq,
        1
    );
    let err = bus
        .publish("envsync.drift", json!({"boom": true}), Role::System)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::Store(StoreError::Sqlite { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("boom refused"), "{err}");
    assert_eq!(
        bus.publish("envsync.drift", ok(2), Role::System)
            .await
            .unwrap()
            .seq,
        2
    );

    // In a group commit, the failing publish is answered alone; the others still commit.
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..12u64 {
        let bus = bus.clone();
        tasks.spawn(async move {
            let payload = if p.is_multiple_of(4) {
                json!({"boom": p})
            } else {
                ok(p)
            };
            (p, bus.publish("envsync.drift", payload, Role::System).await)
        });
    }
    let mut seqs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (p, result) = done.unwrap();
        match result {
            Ok(event) => {
                assert!(!p.is_multiple_of(4));
                seqs.push(event.seq);
            }
            Err(e) => assert!(p.is_multiple_of(4), "publisher {p} failed: {e}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (3..=11).collect::<Vec<_>>());
    drop((bus, store));
    SqliteStore::open(&path).expect("still a consistent log");
}

/// Builds a store with `events` events and a consumer, closes it, returns the path.
async fn populated(dir: &Path, events: u64) -> PathBuf {
    let path = dir.join("bus.db");
    let (store, bus) = open_bus(&path);
    let batch = (0..events)
        .map(|i| {
            let payload = json!({"i": i, "pad": "p".repeat(200)});
            let serde_json::Value::Object(payload) = payload else {
                unreachable!()
            };
            bridge_genesis::bus::NewEvent::new("envsync.drift".parse().unwrap(), "system", payload)
        })
        .collect();
    store.append(batch).await.unwrap();
    let mut consumer = bus.consumer("reader", "envsync.*").await.unwrap();
    let got = consumer.next_batch(3).await.unwrap();
    consumer.ack(got[2].seq).await.unwrap();
    drop((consumer, bus, store));
    path
}

fn subdir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn expect_corrupt(path: &Path, needle: &str) {
    let err = SqliteStore::open(path).expect_err("a damaged file must be refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
}

fn edit(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path(), 10).await;
    SqliteStore::open_with(
        &path,
        SqliteOptions {
            integrity_check: IntegrityCheck::Full,
            ..SqliteOptions::default()
        },
    )
    .expect("a healthy file passes the full check");

    edit(&path, "DELETE FROM genesis_events WHERE seq = 5");
    expect_corrupt(&path, "1 missing");

    let path = populated(&subdir(dir.path(), "a"), 10).await;
    edit(&path, "DELETE FROM genesis_events WHERE seq > 8");
    expect_corrupt(&path, "per-topic counts add up to 10");

    let path = populated(&subdir(dir.path(), "b"), 10).await;
    edit(
        &path,
        "DELETE FROM genesis_events WHERE seq > 2; \
         UPDATE genesis_topic_counts SET events = 2;",
    );
    expect_corrupt(&path, "consumer \"reader\" acknowledged seq 3");

    let path = populated(&subdir(dir.path(), "c"), 10).await;
    edit(
        &path,
        "UPDATE genesis_events SET payload = '[1]' WHERE seq = 10",
    );
    expect_corrupt(&path, "event 10");

    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    expect_corrupt(&path, "not a database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path(), 3_000).await;
    // Closing the last connection checkpointed the WAL into the file and removed it.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 500_000, "{len}");
    for keep in [len * 3 / 4, len / 2] {
        let copy = dir.path().join(format!("truncated-{keep}.db"));
        std::fs::copy(&path, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let err = SqliteStore::open(&copy).expect_err("a truncated file must be refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
}

/// SQL history for any pattern, bounds, limit and order equals filtering every event with
/// `TopicPattern::matches`: the per-topic index walks the SQLite store merges (and its
/// row-by-row walk for patterns matching more than 64 topics) never drop, add or reorder
/// an event.
#[test]
fn sql_pattern_filters_agree_with_matches() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let segments = ["a", "b", "a_b", "a0", "ab"];
    let mut topics = Vec::new();
    for x in segments {
        topics.push(x.to_owned());
        for y in segments {
            topics.push(format!("{x}.{y}"));
            for z in ["a", "b"] {
                topics.push(format!("{x}.{y}.{z}"));
            }
        }
    }
    let (store, all) = runtime.block_on(async {
        let (store, bus) = open_bus(&dir.path().join("bus.db"));
        // Twice, the second time backwards, so that topics interleave in the sequence.
        for topic in topics.iter().chain(topics.iter().rev()) {
            bus.publish(topic, json!({}), Role::System).await.unwrap();
        }
        let all = store
            .read(HistoryQuery::default().limit(10_000))
            .await
            .unwrap();
        (store, all)
    });
    assert_eq!(all.len(), 2 * topics.len());
    let last = all.len() as u64;

    let segment = prop::sample::select(vec!["a", "b", "a_b", "a0", "ab", "*", "c"]);
    let pattern = (prop::collection::vec(segment, 1..4), any::<bool>()).prop_map(|(segs, tail)| {
        let mut text = segs.join(".");
        if tail {
            text.push_str(".>");
        }
        text
    });
    let bounds = (
        prop::option::of(0..=last + 1),
        prop::option::of(0..=last + 1),
        1..=2 * last as usize,
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(
            &(pattern, any::<bool>(), bounds),
            |(text, newest_first, (after, until, limit))| {
                let pattern = TopicPattern::parse(&text).unwrap();
                let mut query = HistoryQuery::default()
                    .pattern(pattern.clone())
                    .limit(limit);
                query.after_seq = after;
                query.until_seq = until;
                if newest_first {
                    query = query.newest_first();
                }
                let got = runtime.block_on(store.read(query)).unwrap();
                let mut want: Vec<u64> = all
                    .iter()
                    .filter(|e| pattern.matches(&e.topic))
                    .map(|e| e.seq)
                    .filter(|&seq| after.is_none_or(|a| seq > a) && until.is_none_or(|u| seq <= u))
                    .collect();
                if newest_first {
                    want.reverse();
                }
                want.truncate(limit);
                let got: Vec<u64> = got.iter().map(|e| e.seq).collect();
                prop_assert_eq!(got, want, "pattern {}", text);
                Ok(())
            },
        )
        .unwrap();
}

const KILL9_DB: &str = "BRIDGE_GENESIS_KILL9_CHILD_DB";

/// The child half of `kill9_loses_no_acknowledged_event`: the conformance suite's kill -9
/// workload on the store at `KILL9_DB`. Does nothing unless the parent set it.
#[test]
fn kill9_child_publisher() {
    let Some(path) = std::env::var_os(KILL9_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (_store, bus) = open_bus(Path::new(&path));
        conformance::kill9_workload(bus).await;
    });
}

/// kill -9 mid-burst: every acknowledged event is stored, in order, without gaps, and the
/// durable consumer resumes right after its last ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "bus::kill9_child_publisher",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_DB, &path);
    let (acked, consumed) = conformance::kill9_run(child, 3_000, 500);
    let (store, _bus) = open_bus(&path);
    let store: Arc<dyn EventStore> = store;
    conformance::kill9_check(&store, acked, consumed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_all_stores_events_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bus) = open_bus(&dir.path().join("bus.db"));
    let stored = bus
        .publish_all(
            vec![
                ("deploy.render", json!({"n": 1})),
                ("deploy.platform.failure", json!({"n": 1})),
            ],
            Role::System,
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].seq, stored[0].seq + 1);
    assert_eq!(store.writer_stats().transactions, 1, "one commit for both");
    // A refusal refuses the whole batch: the observer may publish nothing.
    let refused = bus
        .publish_all(
            vec![("deploy.render", json!({})), ("deploy.github", json!({}))],
            Role::Observer,
        )
        .await;
    assert!(matches!(refused, Err(PublishError::Refused { .. })));
    let deploys = bus
        .history(HistoryQuery::default().pattern(TopicPattern::parse("deploy.>").unwrap()))
        .await
        .unwrap();
    assert_eq!(deploys.len(), 2);
    // A malformed payload anywhere refuses it too, before anything is stored.
    let bad = bus
        .publish_all(
            vec![("deploy.render", json!({})), ("deploy.github", json!([1]))],
            Role::System,
        )
        .await;
    assert!(matches!(bad, Err(PublishError::PayloadNotObject { .. })));
}

/// Commits never checkpoint (the writer turns that off); the checkpoint thread keeps the WAL
/// from growing: after it has run, new commits reuse the log from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_commit_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let (_store, bus) = open_bus(&path);
    let wal = dir.path().join("bus.db-wal");
    let note = "x".repeat(1_000);
    let mut sizes = Vec::new();
    for _ in 0..4 {
        for n in 0..1_500 {
            bus.publish("envsync.drift", json!({"n": n, "note": note}), Role::System)
                .await
                .unwrap();
        }
        sizes.push(std::fs::metadata(&wal).unwrap().len());
        // Past the checkpoint interval.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Each round writes ~1.5 MB to the log; without checkpoints it would hold all four.
    assert!(sizes[0] > 1_000_000, "{sizes:?}");
    assert!(sizes[3] < sizes[0] * 2, "the WAL keeps growing: {sizes:?}");
}

/// How many descriptors this process holds on the store's files (the database, its WAL and
/// its shared-memory index).
#[cfg(target_os = "linux")]
fn descriptors_on(path: &Path) -> usize {
    let prefix = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with(&prefix))
        .count()
}

/// A burst of readers (2,000 live streams catching up at once) shares a bounded set of read
/// connections, during the burst and after it, while the writer commits: the store does not
/// open the file once per waiting reader.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_readers_keeps_a_bounded_number_of_connections() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let path = populated(dir.path(), 1_000).await;
    let (store, bus) = open_bus(&path);

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak, path) = (stop.clone(), peak.clone(), path.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(descriptors_on(&path), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let publisher = tokio::spawn(async move {
        for n in 0..200 {
            bus.publish("envsync.drift", json!({"n": n}), Role::System)
                .await
                .unwrap();
        }
    });
    let readers: Vec<_> = (0..2_000u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let query = HistoryQuery {
                    after_seq: Some(i % 1_000),
                    limit: 256,
                    ..HistoryQuery::default()
                };
                store.read(query).await.unwrap().len()
            })
        })
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    publisher.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    // Each connection holds the database and its WAL; the shared-memory index is one
    // descriptor per process. The writer, the checkpointer and at most MAX_READERS (8) readers.
    let bound = 2 * (8 + 2) + 1;
    let peak = peak.load(Ordering::Relaxed);
    let after = descriptors_on(&path);
    eprintln!("descriptors on the store: peak {peak} during the burst, {after} after it");
    assert!(
        peak <= bound,
        "{peak} descriptors during the burst (bound {bound})"
    );
    assert!(
        after <= bound,
        "{after} descriptors after the burst (bound {bound})"
    );
}
