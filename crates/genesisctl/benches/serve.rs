//! `cargo bench -p genesisctl --bench serve`: requests/s of `genesisctl serve` on
//! `GET /envsync/health` and `GET /genesis/events?limit=50` (500 events stored, a bearer
//! token on every request), each beside a bare axum handler answering the same bytes from
//! memory, measured in the same run with the same load generator (wrk, 2 threads, 32
//! connections, 3 s; five rounds alternating between the two, medians). Target: at least
//! 0.7× the bare handler. Also the server's resident memory idle (target < 30 MB) and its
//! peak under that load (target < 100 MB).
//!
//! Needs `wrk` (Debian: `apt-get install wrk`).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bridge_genesis::bus::{Bus, Policy, PolicyMode, Role, SqliteStore};

mod support;
use support::{Server, rss_kb, run};

const EVENTS: u64 = 500;
const DURATION: &str = "3s";
/// Alternating rounds per route; medians are reported.
const ROUNDS: usize = 5;

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("this benchmark needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "APP_NAME=bench\nLOG_LEVEL=info\n").expect("write");
    std::fs::write(dir.path().join(".env.production"), "APP_NAME=bench\n").expect("write");
    std::fs::write(
        dir.path().join("bridge.toml"),
        "[sync]\nsource = \"local:.env\"\ntargets = [\"local:.env.production\"]\n",
    )
    .expect("write");
    let token = run(bin, dir.path(), &["token", "create", "--role", "observer"]);
    seed_events(&dir.path().join(".bridge/events.db"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut results = Vec::new();
    for (label, log_level) in [("access log off", "warn"), ("access log on", "info")] {
        let server = Server::start(bin, dir.path(), log_level);
        std::thread::sleep(Duration::from_millis(500));
        let idle_kb = rss_kb(server.child.id());
        let health = fetch(&server.url, "/envsync/health", &token);
        let events = fetch(&server.url, "/genesis/events?limit=50", &token);
        assert!(events.contains("\"count\":50"), "{events}");

        let bare = runtime.block_on(bare_server(health.clone(), events.clone()));
        let sampler = Sampler::start(server.child.id());
        // Rounds alternate between the two servers, so that a burst of load from something
        // else on the machine hits both; the medians are reported.
        let mut rows = Vec::new();
        for (route, ours_path, bare_path) in [
            ("GET /envsync/health", "/envsync/health", "/health"),
            (
                "GET /genesis/events?limit=50",
                "/genesis/events?limit=50",
                "/events",
            ),
        ] {
            let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let o = wrk(&format!("{}{ours_path}", server.url), &token);
                let b = wrk(&format!("{bare}{bare_path}"), &token);
                ratios.push(o / b);
                ours.push(o);
                theirs.push(b);
            }
            rows.push((route, median(ours), median(theirs), median(ratios)));
        }
        let peak_kb = sampler.stop();
        results.push((label, idle_kb, peak_kb, rows));
        server.stop();
    }

    println!(
        "genesisctl serve vs a bare axum handler (wrk -t2 -c32 -d{DURATION}, {ROUNDS} alternating rounds, medians; same machine, same run)"
    );
    for (label, idle_kb, peak_kb, rows) in results {
        println!("\n[{label}]");
        for (route, ours, bare, ratio) in rows {
            println!(
                "  {route:<30} {ours:>9.0} req/s   bare {bare:>9.0} req/s   ratio {ratio:.2}  (target >= 0.70)"
            );
        }
        println!(
            "  resident memory: idle {:.1} MB (target < 30), peak under load {:.1} MB (target < 100)",
            idle_kb as f64 / 1024.0,
            peak_kb as f64 / 1024.0
        );
    }
}

fn seed_events(path: &std::path::Path) {
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
                serde_json::json!({"deploy_id": format!("dep-{i}"), "status": "live", "commit_sha": "0123456789abcdef"}),
                Role::System,
            )
            .await
            .expect("publish");
        }
    });
}

fn fetch(base: &str, path: &str, token: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{base}{path}"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare axum server answering the same bodies from memory; returns its base URL.
async fn bare_server(health: String, events: String) -> String {
    use axum::routing::get;
    let health: &'static str = Box::leak(health.into_boxed_str());
    let events: &'static str = Box::leak(events.into_boxed_str());
    let json = |body: &'static str| {
        move || async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    };
    let app = axum::Router::new()
        .route("/health", get(json(health)))
        .route("/events", get(json(events)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Requests per second reported by wrk.
fn wrk(url: &str, token: &str) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{DURATION}"),
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .expect("runs wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        panic!("{url} answered errors under load:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Samples a process's resident memory every 50 ms and keeps the peak.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}
