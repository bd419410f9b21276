//! `cargo bench -p genesisctl --bench streams`: what a burst of live streams costs
//! `genesisctl serve`, and what it keeps once they end. 2,000 clients open
//! `GET /genesis/stream?since=0` at once on a store of 500 events, each reads until it has
//! every event, stays open a moment, then all disconnect; three bursts in a row. Reported beside the idle server
//! measured in the same run: resident memory and the descriptors held on the event store's
//! files (database, WAL, shared memory) and its sockets: idle, with the streams open, and
//! 35 s after they end (past two 15 s keep-alives: a stream finds its client gone when a
//! write fails).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bridge_genesis::bus::{Bus, Policy, PolicyMode, Role, SqliteStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{Server, rss_kb, run};

const EVENTS: u64 = 500;
const STREAMS: usize = 2_000;
/// How long after the clients leave the server is measured again.
const AFTER_SECS: u64 = 35;
/// Bursts one after the other: memory that a burst keeps and the next reuses is the
/// allocator's; memory that grows with every burst would be a leak.
const BURSTS: usize = 3;

fn main() {
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "APP_NAME=bench\n").expect("write");
    std::fs::write(
        dir.path().join("bridge.toml"),
        "[sync]\nsource = \"local:.env\"\ntargets = [\"local:.env.production\"]\n",
    )
    .expect("write");
    let token = run(bin, dir.path(), &["token", "create", "--role", "observer"]);
    let events_db = dir.path().join(".bridge/events.db");
    seed_events(&events_db);

    let server = Server::start(bin, dir.path(), "warn");
    std::thread::sleep(Duration::from_millis(500));
    let pid = server.child.id();
    let idle = (rss_kb(pid), descriptors_on(pid, &events_db), sockets(pid));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sampler = Sampler::start(pid, events_db.clone());
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "genesisctl serve, bursts of {STREAMS} live streams each replaying {EVENTS} events (since=0); idle: {:.1} MB resident, {} descriptors on the event store, {} sockets",
        mb(idle.0),
        idle.1,
        idle.2
    );
    let mut per_stream = Vec::new();
    for burst in 1..=BURSTS {
        let before = rss_kb(pid);
        let started = Instant::now();
        let addr = server.url.trim_start_matches("http://").to_owned();
        let streams = runtime.block_on(async {
            let opened: Vec<_> = (0..STREAMS)
                .map(|_| tokio::spawn(open_and_catch_up(addr.clone(), token.clone())))
                .collect();
            let mut streams = Vec::with_capacity(STREAMS);
            for stream in opened {
                streams.push(stream.await.expect("a stream task"));
            }
            streams
        });
        let caught_up = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let open = (rss_kb(pid), descriptors_on(pid, &events_db), sockets(pid));
        drop(streams);
        std::thread::sleep(Duration::from_secs(AFTER_SECS));
        let after = (rss_kb(pid), descriptors_on(pid, &events_db), sockets(pid));
        per_stream.push(open.0.saturating_sub(before) as f64 / STREAMS as f64);
        println!(
            "  burst {burst}: caught up in {:.2} s; open: {:.1} MB, {} store descriptors, {} sockets; {AFTER_SECS} s after: {:.1} MB, {} store descriptors, {} sockets",
            caught_up.as_secs_f64(),
            mb(open.0),
            open.1,
            open.2,
            mb(after.0),
            after.1,
            after.2
        );
    }
    let (peak_kb, peak_fds) = sampler.stop();
    server.stop();
    println!(
        "  peak: {:.1} MB resident ({:.2}x idle), {peak_fds} store descriptors; the first burst added {:.1} KB per stream over the idle server",
        mb(peak_kb),
        peak_kb as f64 / idle.0 as f64,
        per_stream[0]
    );
}

/// Opens one stream and reads until the last seeded event has arrived; returns the open
/// connection so that the stream stays up until it is dropped.
async fn open_and_catch_up(addr: String, token: String) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /genesis/stream?since=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    // axum writes `id:N`; accept `id: N` as well.
    let marks = [format!("id:{EVENTS}\n"), format!("id: {EVENTS}\n")];
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server ended a stream early");
        seen.extend_from_slice(&buf[..n]);
        // Keep only a tail: enough to find the marker across reads.
        if marks
            .iter()
            .any(|m| seen.windows(m.len()).any(|w| w == m.as_bytes()))
        {
            return conn;
        }
        if seen.len() > 64 {
            seen.drain(..seen.len() - 64);
        }
    }
}

fn seed_events(path: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(path).expect("store");
        let bus = Bus::new(Arc::new(store), Policy::new(PolicyMode::Permissive));
        for i in 0..EVENTS {
            bus.publish(
                "deploy.render",
                serde_json::json!({"deploy_id": format!("dep-{i}"), "status": "live"}),
                Role::System,
            )
            .await
            .expect("publish");
        }
    });
}

/// Sockets `pid` holds (its listener and its connections).
fn sockets(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count() as u64
        })
        .unwrap_or(0)
}

/// Descriptors `pid` holds on `db` and its WAL and shared-memory files.
fn descriptors_on(pid: u32, db: &Path) -> u64 {
    let prefix = db.to_string_lossy().into_owned();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with(&prefix))
                .count() as u64
        })
        .unwrap_or(0)
}

/// Samples resident memory and store descriptors every 20 ms and keeps the peaks.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    peak_fds: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32, db: std::path::PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let peak_fds = Arc::new(AtomicU64::new(0));
        let (s, k, f) = (stop.clone(), peak_kb.clone(), peak_fds.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                k.fetch_max(rss_kb(pid), Ordering::Relaxed);
                f.fetch_max(descriptors_on(pid, &db), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            peak_kb,
            peak_fds,
            thread,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.peak_kb.load(Ordering::Relaxed),
            self.peak_fds.load(Ordering::Relaxed),
        )
    }
}
