//! `cargo bench -p genesisctl --bench webhooks`: webhook ingest — verify the GitHub
//! signature, de-duplicate, persist durably (SQLite, synchronous=FULL), fan out — by
//! `genesisctl serve`, against a bare axum handler that reads the same bodies and answers 202,
//! with the same load generator in the same run (16 connections, every delivery unique and
//! signed; 3 alternating 4-second rounds, medians). Target: at least 0.5× the bare handler's
//! requests/s. Then an open-loop run at half the server's measured rate for the latency
//! percentiles. Target: p99 under 10 ms.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bridge_webhooks::webhook::sign_github;

const SECRET: &str = "bench-webhook-secret";
const CONNECTIONS: usize = 16;
const ROUND: Duration = Duration::from_secs(4);
const ROUNDS: usize = 3;

fn main() {
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "APP_NAME=bench\n").expect("write");
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../bridge-autonomy/tests/fixtures/github/deployment_status_success.json"),
    )
    .expect("the fixture");
    let template: Arc<str> = fixture.trim().trim_start_matches('{').into();

    let port = StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let _server = Server(
        Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ])
            .current_dir(dir.path())
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("genesisctl serve"),
    );
    let ours = format!("http://127.0.0.1:{port}/webhooks/deployment/github");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        bridge_platforms::http::install_tls();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .expect("client");
        wait_until_up(&client, port).await;
        let bare = bare_server().await;
        let counter = Arc::new(AtomicU64::new(0));

        let (mut ours_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let o = closed_loop(&client, &ours, &template, &counter).await;
            let b = closed_loop(&client, &bare, &template, &counter).await;
            ours_rates.push(o);
            bare_rates.push(b);
            ratios.push(o / b);
        }
        let ours_rate = median(ours_rates);
        let bare_rate = median(bare_rates);
        let half = ours_rate / 2.0;
        let latencies = open_loop(&client, &ours, &template, &counter, half).await;
        println!(
            "webhook ingest (GitHub, verify + dedup + durable publish + fan-out) vs a bare axum handler"
        );
        println!(
            "  closed loop, {CONNECTIONS} connections: {ours_rate:.0} req/s vs bare {bare_rate:.0} req/s, ratio {:.2} (target >= 0.50)",
            median(ratios)
        );
        println!(
            "  open loop at {half:.0} req/s for {}s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 10 ms), {} requests",
            ROUND.as_secs(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
            latencies.len()
        );
    });
}

/// The server under test; stopped however the bench ends (a panic included): SIGTERM, then
/// SIGKILL if it is still draining its backlog after 10 s, so no server outlives the bench.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_up(client: &reqwest::Client, port: u16) {
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/envsync/health"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("genesisctl serve did not come up");
}

/// A bare axum handler that reads the body and answers 202.
async fn bare_server() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(|body: axum::body::Bytes| async move {
            (
                axum::http::StatusCode::ACCEPTED,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                format!("{{\"status\":\"accepted\",\"bytes\":{}}}", body.len()),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// One signed delivery, unique by its counter.
fn delivery(
    client: &reqwest::Client,
    url: &str,
    template: &str,
    n: u64,
) -> reqwest::RequestBuilder {
    let body = format!("{{\"bench_n\":{n},{template}");
    let signature = sign_github(SECRET, body.as_bytes());
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "deployment_status")
        .header("x-github-delivery", format!("bench-{n}"))
        .header("x-hub-signature-256", signature)
        .body(body)
}

/// Requests/s with `CONNECTIONS` requests always in flight.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    template: &Arc<str>,
    counter: &Arc<AtomicU64>,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + ROUND;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, template, counter, done) = (
            client.clone(),
            url.to_owned(),
            template.clone(),
            counter.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let response = delivery(&client, &url, &template, n).send().await;
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("{url} answered {}", r.status()),
                    Err(e) => panic!("{url}: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a load task");
    }
    done.load(Ordering::Relaxed) as f64 / ROUND.as_secs_f64()
}

/// Latencies (ms) of requests sent at a fixed `rate`, whatever the answers' pace.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    template: &Arc<str>,
    counter: &Arc<AtomicU64>,
    rate: f64,
) -> Vec<f64> {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + ROUND;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let request = delivery(client, url, template, n);
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let response = request.send().await.expect("a response");
            assert_eq!(response.status().as_u16(), 202);
            let _ = response.bytes().await;
            start.elapsed().as_secs_f64() * 1e3
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.expect("a request task"));
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
