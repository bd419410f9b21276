//! `cargo bench -p bridge-genesis --bench bus`: durable publishes on the SQLite store.
//!
//! - 16 concurrent publishers, each awaiting its ack before the next publish: events/s
//!   (target ≥ 50,000), beside two bare rusqlite loops writing the same rows to the same
//!   table in the same run: one with the group commits' transaction sizes (target: the bus
//!   within 1.3x of it), and the naive one transaction per insert;
//! - the same 16 publishers each keeping 16 publishes in flight (JetStream's async publish
//!   with a pending window), with its own bare baseline;
//! - each shape also without the writer's commit delay, to show what it buys;
//! - one publisher: publish-to-ack latency p50 / p99 (target p99 < 5 ms);
//! - opening a store of 200,000 events: the default log check against `PRAGMA quick_check`.
//!
//! Every commit is an fsync (WAL, `synchronous=FULL`), so the disk's fsync latency bounds
//! everything: with one publish in flight per publisher, 16 publishers cannot exceed
//! 16 / fsync time. The run therefore starts by timing raw fsyncs of the same disk. Every run
//! uses a fresh file in one temporary directory; throughputs are the median of 5 rounds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_genesis::bus::{
    Bus, EventStore, IntegrityCheck, NewEvent, Policy, Role, SqliteOptions, SqliteStore,
};
use serde_json::{Value, json};

const PUBLISHERS: u64 = 16;
const EACH: u64 = 2_000;
const ROUNDS: usize = 5;
const NAIVE_ROWS: u64 = 500;
const PIPELINE: usize = 16;
const FSYNC_SAMPLES: usize = 500;
const LATENCY_SAMPLES: usize = 3_000;
const BIG_STORE: u64 = 200_000;

fn payload(publisher: u64, n: u64) -> Value {
    json!({
        "verified_at": "2025-10-11T22:43:00Z",
        "has_drift": true,
        "missing_in_github": ["AUTO_DIAGNOSE", "CORS_ALLOW_ALL"],
        "summary": {"total_keys": 45, "drift_count": 5},
        "publisher": publisher,
        "n": n,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let total = PUBLISHERS * EACH;

    let probe = tempfile::tempdir().expect("tempdir");
    let mut fsyncs = fsync_latencies(&probe.path().join("probe"));
    fsyncs.sort_unstable();
    let fsync_p50 = percentile(&fsyncs, 0.50);
    println!(
        "raw fsync of this disk (4 KiB write + fdatasync, {FSYNC_SAMPLES} samples): \
         p50 {:.3} ms  p99 {:.3} ms",
        ms(fsync_p50),
        ms(percentile(&fsyncs, 0.99))
    );
    println!(
        "  => ceiling for {PUBLISHERS} publishers with one publish in flight each: \
         ~{:.0} events/s",
        PUBLISHERS as f64 / fsync_p50.as_secs_f64()
    );

    // Shapes run interleaved within each round, so that a noisy neighbour on the disk
    // affects them alike.
    let default_delay = SqliteOptions::default().max_commit_delay;
    let shapes = [
        (1, default_delay),
        (1, Duration::ZERO),
        (PIPELINE, default_delay),
        (PIPELINE, Duration::ZERO),
    ];
    let mut results = vec![Shape::default(); shapes.len()];
    let mut naive_rates = Vec::new();
    for _ in 0..ROUNDS {
        for (&(in_flight, delay), result) in shapes.iter().zip(results.iter_mut()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = SqliteOptions {
                max_commit_delay: delay,
                ..SqliteOptions::default()
            };
            let (elapsed, transactions) =
                runtime.block_on(publishers(&dir.path().join("bus.db"), options, in_flight));
            result.bus.push(total as f64 / elapsed.as_secs_f64());
            let per_transaction = total as f64 / transactions as f64;
            result.batch.push(per_transaction);
            let batch = per_transaction.round().max(1.0) as u64;
            let elapsed = bare_inserts(&dir.path().join("bare.db"), total, batch);
            result.bare.push(total as f64 / elapsed.as_secs_f64());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let elapsed = bare_inserts(&dir.path().join("naive.db"), NAIVE_ROWS, 1);
        naive_rates.push(NAIVE_ROWS as f64 / elapsed.as_secs_f64());
    }
    let naive = median(&mut naive_rates);
    for (&(in_flight, delay), result) in shapes.iter().zip(results.iter_mut()) {
        let bus = median(&mut result.bus);
        let bare = median(&mut result.bare);
        let batch = median(&mut result.batch);
        println!(
            "{PUBLISHERS} publishers x {EACH} durable publishes, {in_flight} in flight per \
             publisher, max_commit_delay {delay:?} (median of {ROUNDS} rounds)"
        );
        println!(
            "  bus                                      {bus:>10.0} events/s  \
             (target >= 50000: {})",
            verdict(bus >= 50_000.0)
        );
        println!("    group commit: {batch:.1} events per transaction (one fsync each)");
        println!(
            "  bare rusqlite, same transaction sizes    {bare:>10.0} rows/s    \
             bare/bus = {:.2}x (target <= 1.3x: {})",
            bare / bus,
            verdict(bare / bus <= 1.3)
        );
        println!(
            "  bare rusqlite, one transaction per row   {naive:>10.0} rows/s    \
             bus/naive = {:.1}x",
            bus / naive
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut latencies = runtime.block_on(single_publisher(&dir.path().join("latency.db")));
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or_default();
    println!("single publisher, publish-to-ack latency over {LATENCY_SAMPLES} publishes");
    println!(
        "  p50 {:.3} ms   p99 {:.3} ms (target < 5 ms: {})   max {:.3} ms",
        ms(p50),
        ms(p99),
        verdict(p99 < Duration::from_millis(5)),
        ms(max)
    );

    let path = dir.path().join("big.db");
    runtime.block_on(fill(&path, BIG_STORE));
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let log = time_open(&path, IntegrityCheck::Log);
    let full = time_open(&path, IntegrityCheck::Full);
    println!(
        "opening a store of {BIG_STORE} events ({:.1} MiB)",
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  log check (default)  {:>8.2} ms   with PRAGMA quick_check  {:>8.2} ms",
        ms(log),
        ms(full)
    );
}

/// 16 publishers through one `Bus`, each keeping `in_flight` publishes pending (as that many
/// lanes awaiting their acks in turn); returns the wall time and the writer's commits.
/// Payloads are built before the clock starts, as the bare loop's rows are.
async fn publishers(path: &Path, options: SqliteOptions, in_flight: usize) -> (Duration, u64) {
    let store = Arc::new(SqliteStore::open_with(path, options).expect("open store"));
    let bus = Bus::new(store.clone(), Policy::default());
    let lanes = in_flight as u64;
    let mut work = Vec::new();
    for publisher in 0..PUBLISHERS {
        for lane in 0..lanes {
            let payloads: Vec<Value> = (lane..EACH)
                .step_by(in_flight)
                .map(|n| payload(publisher, n))
                .collect();
            work.push(payloads);
        }
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for payloads in work {
        let bus = bus.clone();
        tasks.spawn(async move {
            for payload in payloads {
                bus.publish("envsync.drift", payload, Role::System)
                    .await
                    .expect("publish");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("publisher task");
    }
    let elapsed = started.elapsed();
    let stats = store.writer_stats();
    assert_eq!(stats.events, PUBLISHERS * EACH);
    (elapsed, stats.transactions)
}

/// What one commit costs at least on this disk.
fn fsync_latencies(path: &Path) -> Vec<Duration> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("probe file");
    let block = [0x5a_u8; 4096];
    (0..FSYNC_SAMPLES)
        .map(|_| {
            file.write_all(&block).expect("write");
            let started = Instant::now();
            file.sync_data().expect("fdatasync");
            started.elapsed()
        })
        .collect()
}

/// The same rows, straight into the same table, `batch` rows per transaction.
fn bare_inserts(path: &Path, rows: u64, batch: u64) -> Duration {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE genesis_events (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, \
         at_us INTEGER NOT NULL, who TEXT NOT NULL, payload TEXT NOT NULL);
         CREATE INDEX genesis_events_by_topic ON genesis_events (topic);
         CREATE INDEX genesis_events_by_time ON genesis_events (at_us);",
    )
    .expect("schema");
    let payloads: Vec<String> = (0..rows)
        .map(|i| payload(i % PUBLISHERS, i / PUBLISHERS).to_string())
        .collect();
    let started = Instant::now();
    let mut seq = 0u64;
    for chunk in payloads.chunks(batch as usize) {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO genesis_events (seq, topic, at_us, who, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .expect("prepare");
        let at_us = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000;
        for payload in chunk {
            seq += 1;
            insert
                .execute(rusqlite::params![
                    seq as i64,
                    "envsync.drift",
                    at_us,
                    "system",
                    payload
                ])
                .expect("insert");
        }
        drop(insert);
        conn.execute_batch("COMMIT").expect("commit");
    }
    started.elapsed()
}

/// Publish-to-ack latency of one publisher awaiting each ack.
async fn single_publisher(path: &Path) -> Vec<Duration> {
    let store = Arc::new(SqliteStore::open(path).expect("open store"));
    let bus = Bus::new(store, Policy::default());
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES as u64 {
        let started = Instant::now();
        bus.publish("envsync.drift", payload(0, n), Role::System)
            .await
            .expect("publish");
        latencies.push(started.elapsed());
    }
    latencies
}

async fn fill(path: &Path, events: u64) {
    let store = SqliteStore::open(path).expect("open store");
    let topics = [
        "envsync.drift",
        "envsync.commit",
        "deploy.render",
        "genesis.intent",
    ];
    for chunk in 0..events / 5_000 {
        let batch = (0..5_000)
            .map(|i| {
                let n = chunk * 5_000 + i;
                let Value::Object(fields) = payload(n % PUBLISHERS, n) else {
                    unreachable!("payload() builds an object")
                };
                let topic = topics[(n % 4) as usize].parse().expect("topic");
                NewEvent::new(topic, "system", fields)
            })
            .collect();
        store.append(batch).await.expect("append");
    }
}

fn time_open(path: &Path, check: IntegrityCheck) -> Duration {
    let options = SqliteOptions {
        integrity_check: check,
        ..SqliteOptions::default()
    };
    let started = Instant::now();
    let store = SqliteStore::open_with(path, options).expect("open");
    let elapsed = started.elapsed();
    drop(store);
    elapsed
}

/// One publishing shape's measurements over the rounds.
#[derive(Debug, Clone, Default)]
struct Shape {
    bus: Vec<f64>,
    bare: Vec<f64>,
    batch: Vec<f64>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
