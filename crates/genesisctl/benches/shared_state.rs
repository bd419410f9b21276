//! `cargo bench -p genesisctl --bench shared_state`: what a shared PostgreSQL store costs.
//!
//! 1. A no-op `env sync` of 1,000 keys to Render, Netlify and GitHub emulators, through the
//!    real binary, with the state (records, journals, locks, events) in PostgreSQL against
//!    the same with the embedded SQLite files: runs alternate A B A B, and each pair gives
//!    a ratio (target: median at most 1.2). Twice: with emulators that answer at once (the
//!    store's cost laid bare; on a small machine PostgreSQL's backends compete with the
//!    emulators and the binary for the cores) and answering after 20 ms, as the `sync`
//!    benchmark's do (closer to real APIs).
//! 2. Taking and releasing one apply lock on PostgreSQL (an advisory lock on a session of
//!    its own, plus the row naming the holder), against the same with a local flock:
//!    p50 and p99 of 1,000 cycles (target: p99 under 5 ms).
//!
//! PostgreSQL is found at `BRIDGE_TEST_POSTGRES_URL` (default the machine's `test`
//! database); each run uses a schema of its own and drops it at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use bridge_emulators::EmulatorConfig;
use bridge_operations::locks::{self, FileLocks, LockService};

const KEYS: usize = 1_000;
const SECRETS: usize = 90; // GitHub caps a repository at 100 secrets
const PAIRS: usize = 10;
const LOCK_CYCLES: usize = 1_000;
const FINGERPRINT_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const STATE_KEY: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("bench_shared_{}", std::process::id());
    let admin = match runtime.block_on(connect(&base)) {
        Some(client) => client,
        None => {
            println!("skipped: no PostgreSQL at {base}");
            return;
        }
    };
    runtime
        .block_on(admin.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")))
        .expect("create schema");
    let joiner = if base.contains('?') { '&' } else { '?' };
    let store = format!("{base}{joiner}options=-csearch_path%3D{schema}");

    no_op_sync(&runtime, &store, Duration::ZERO, "a");
    no_op_sync(&runtime, &store, Duration::from_millis(20), "b");
    lock_cycles(&runtime, &store);

    runtime
        .block_on(admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .expect("drop schema");
}

async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

fn no_op_sync(runtime: &tokio::runtime::Runtime, base: &str, latency: Duration, run: &str) {
    // Each round in a schema of its own, so the second starts from no records.
    let store = format!("{base}_{run}");
    let schema = store.rsplit("%3D").next().unwrap_or_default().to_owned();
    runtime.block_on(async {
        let admin = connect(base).await.expect("connect");
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .expect("create schema");
    });
    let store = store.as_str();
    // One set of emulators per store: two stores with separate histories of one place see
    // each other's writes as changes outside Bridge, which is what sharing the state is for.
    let start = || {
        runtime
            .block_on(bridge_emulators::start(EmulatorConfig {
                latency,
                ..EmulatorConfig::default()
            }))
            .expect("emulators")
    };
    let (sqlite_emu, postgres_emu) = (start(), start());
    let sqlite_dir = tempfile::tempdir().expect("tempdir");
    let postgres_dir = tempfile::tempdir().expect("tempdir");
    for dir in [&sqlite_dir, &postgres_dir] {
        write_source(dir.path());
    }
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let sync = |dir: &std::path::Path, store: Option<&str>| {
        let emu = if store.is_some() {
            &postgres_emu
        } else {
            &sqlite_emu
        };
        let mut command = Command::new(bin);
        command
            .args([
                "env",
                "sync",
                "--target",
                "render,netlify,github",
                "--output",
                "json",
            ])
            .current_dir(dir)
            .envs(emu.exports())
            .env("BRIDGE_FINGERPRINT_KEY", FINGERPRINT_KEY)
            .env("BRIDGE_STATE_KEY", STATE_KEY);
        if let Some(store) = store {
            command.env("BRIDGE_STORE", store);
        }
        let start = Instant::now();
        let out = command.output().expect("runs genesisctl");
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    };
    // Seed: the first sync writes everything; each store's second one records the
    // write-only secrets it could not judge. After that every sync is a no-op.
    for _ in 0..2 {
        sync(sqlite_dir.path(), None);
        sync(postgres_dir.path(), Some(store));
    }
    let writes = |emu: &bridge_emulators::Emulators| {
        let render = emu.render().map_or(0, |p| p.write_log().len());
        let netlify = emu.netlify().map_or(0, |p| p.write_log().len());
        let github = emu.github().map_or(0, |p| p.write_log().len());
        render + netlify + github
    };
    let seeded = writes(&sqlite_emu) + writes(&postgres_emu);
    let mut sqlite = Vec::new();
    let mut postgres = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..PAIRS {
        let a = sync(postgres_dir.path(), Some(store));
        let b = sync(sqlite_dir.path(), None);
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        postgres.push(a);
        sqlite.push(b);
    }
    let writes = writes(&sqlite_emu) + writes(&postgres_emu) - seeded;
    println!(
        "no-op sync of {KEYS} keys ({SECRETS} secrets) to render, netlify, github answering after {latency:?}; {PAIRS} pairs, A B A B"
    );
    println!(
        "  PostgreSQL state   median {:>7.1} ms  (min {:.1}, max {:.1})",
        ms(median(&mut postgres.clone())),
        ms(*postgres.iter().min().expect("runs")),
        ms(*postgres.iter().max().expect("runs"))
    );
    println!(
        "  SQLite state       median {:>7.1} ms  (min {:.1}, max {:.1})",
        ms(median(&mut sqlite.clone())),
        ms(*sqlite.iter().min().expect("runs")),
        ms(*sqlite.iter().max().expect("runs"))
    );
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    println!(
        "  ratio PostgreSQL / SQLite, pair by pair: median {ratio:.3} (min {:.3}, max {:.3}); target <= 1.2: {}",
        ratios[0],
        ratios[ratios.len() - 1],
        verdict(ratio <= 1.2)
    );
    println!(
        "  writes during the no-op runs: {writes} (target 0: {})",
        verdict(writes == 0)
    );
    runtime.block_on(sqlite_emu.shutdown());
    runtime.block_on(postgres_emu.shutdown());
    runtime.block_on(async {
        let admin = connect(base).await.expect("connect");
        admin
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .expect("drop schema");
    });
}

fn lock_cycles(runtime: &tokio::runtime::Runtime, store: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = FileLocks::new(dir.path());
    let pg = runtime
        .block_on(bridge_genesis_scale::PgLocks::connect(store, None))
        .expect("PostgreSQL locks");
    let cycle = |service: &dyn LockService| {
        runtime.block_on(async {
            let mut times = Vec::with_capacity(LOCK_CYCLES);
            // Warm the connection the lock sessions come from.
            drop(
                locks::acquire(
                    service,
                    ["render:srv-bench".to_owned()],
                    "bench",
                    Duration::from_secs(5),
                )
                .await,
            );
            for _ in 0..LOCK_CYCLES {
                let start = Instant::now();
                let held = locks::acquire(
                    service,
                    ["render:srv-bench".to_owned()],
                    "bench",
                    Duration::from_secs(5),
                )
                .await
                .expect("lock");
                drop(held);
                // The release finishes in the background; the next acquire of this process
                // waits for it, so each interval holds one acquire and one release.
                times.push(start.elapsed());
            }
            times
        })
    };
    let mut file_times = cycle(&files);
    let mut pg_times = cycle(&pg);
    file_times.sort();
    pg_times.sort();
    let p = |times: &[Duration], q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)]
    };
    println!("apply lock acquire + release, {LOCK_CYCLES} cycles");
    println!(
        "  PostgreSQL advisory  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms; target p99 < 5 ms: {}",
        ms(p(&pg_times, 0.5)),
        ms(p(&pg_times, 0.99)),
        ms(pg_times[pg_times.len() - 1]),
        verdict(p(&pg_times, 0.99) < Duration::from_millis(5))
    );
    println!(
        "  local flock          p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(p(&file_times, 0.5)),
        ms(p(&file_times, 0.99)),
        ms(file_times[file_times.len() - 1])
    );
    println!(
        "  ratio of p99s PostgreSQL / flock: {:.2}",
        p(&pg_times, 0.99).as_secs_f64() / p(&file_times, 0.99).as_secs_f64()
    );
}

fn write_source(dir: &std::path::Path) {
    let mut text = String::new();
    for i in 0..KEYS {
        let key = if i < SECRETS {
            format!("SERVICE_{i:04}_TOKEN")
        } else {
            format!("SERVICE_{i:04}_SETTING")
        };
        text.push_str(&format!("{key}=value-{i}\n"));
    }
    std::fs::write(dir.join(".env"), text).expect("write source");
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}
