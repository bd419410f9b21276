//! `genesisctl serve --sandbox` and `genesisctl token`, run as the real binary: the sandbox
//! comes up with drift, the API shows and fixes it, nothing secret leaks, SIGTERM stops it
//! cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::sandbox::Sandbox;

/// Values of the sandbox's secrets, which no answer or log may contain.
const SECRETS: [&str; 4] = [
    "sandbox-db-pass",
    "sk_test_sandbox_51H",
    "sandbox-jwt-secret-change-me",
    "sandbox-mail-pass",
];

struct Server {
    child: Child,
    url: String,
    token: String,
    /// The state directory it serves from.
    state_dir: String,
}

impl Server {
    fn start(sandbox: &Sandbox) -> Self {
        Self::start_with(sandbox, &[])
    }

    fn start_with(sandbox: &Sandbox, env: &[(&str, &str)]) -> Self {
        Self::start_args(sandbox, env, &[])
    }

    /// The sandbox server with `args` after `serve --sandbox`.
    fn start_args(sandbox: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_genesisctl"))
            .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(sandbox.path("."))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", sandbox.path("."))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut url, mut token, mut state_dir) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("Listening on ") {
                url = Some(u.trim().to_owned());
            }
            if let Some(source) = line.trim().strip_prefix("source") {
                let dir = source.trim().trim_end_matches("/.env");
                state_dir = Some(format!("{dir}/.bridge"));
            }
            if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
                token = Some(t.to_owned());
                break;
            }
        }
        Self {
            child,
            url: url.expect("a Listening line"),
            token: token.expect("a token line"),
            state_dir: state_dir.expect("a source line"),
        }
    }

    /// `genesisctl serve` (not the sandbox) in `sandbox`'s directory, with `token`, an
    /// admiral token created there beforehand.
    fn start_plain(sandbox: &Sandbox, token: &str) -> Self {
        let mut child = sandbox
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            if let Some(u) = line.unwrap().strip_prefix("Listening on ") {
                url = Some(u.trim().to_owned());
                break;
            }
        }
        Self {
            child,
            url: url.expect("a Listening line"),
            token: token.to_owned(),
            state_dir: sandbox.path(".bridge").display().to_string(),
        }
    }

    fn stop(self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let output = self.child.wait_with_output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
) -> (u16, String) {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let response = req.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_shows_drift_fixes_it_and_stops_cleanly() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let server = Server::start(&sandbox);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", server.url);
    let token = Some(server.token.as_str());
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let mut answers = String::new();

    let (status, body) = call(&client, get.clone(), url("/envsync/health"), None).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["providers"].as_array().unwrap().len(), 3);

    let (status, _) = call(&client, get.clone(), url("/parity"), None).await;
    assert_eq!(status, 401);
    let (status, body) = call(&client, get.clone(), url("/parity"), token).await;
    assert_eq!(status, 200, "{body}");
    let parity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parity["has_drift"], true);
    assert_eq!(
        parity["missing_in_render"],
        serde_json::json!(["FEATURE_NEW_CHECKOUT"])
    );
    answers.push_str(&body);

    let (status, body) = call(&client, post.clone(), url("/envsync/dry-run/render"), token).await;
    assert_eq!(status, 200, "{body}");
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["status"], "planned");
    assert_eq!(plan["changes"], 2);
    answers.push_str(&body);

    let (status, body) = call(&client, post.clone(), url("/envsync/apply-all"), token).await;
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["applied"], 3, "{body}");
    assert_eq!(all["failed"], 0);
    answers.push_str(&body);

    let (_, body) = call(&client, get.clone(), url("/parity"), token).await;
    let parity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parity["has_drift"], false, "{body}");
    answers.push_str(&body);

    // The commits reached the ledger, which verifies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, body) = call(&client, get.clone(), url("/ledger/verify"), token).await;
    let verify: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(verify["ok"], true, "{body}");
    assert!(verify["entries"].as_u64().unwrap() >= 6, "{body}");
    let (_, body) = call(
        &client,
        get.clone(),
        url("/ledger/entries?limit=1000"),
        token,
    )
    .await;
    answers.push_str(&body);
    let (_, body) = call(
        &client,
        get.clone(),
        url("/genesis/events?limit=1000"),
        token,
    )
    .await;
    assert!(body.contains("config_update"), "{body}");
    answers.push_str(&body);

    for secret in SECRETS {
        assert!(!answers.contains(secret), "{secret} leaked into an answer");
    }

    // CI states a deploy to the server.
    let publish = sandbox.run(&[
        "deploy",
        "publish",
        "--platform",
        "netlify",
        "--event-type",
        "success",
        "--status",
        "ready",
        "--server",
        &server.url,
        "--token",
        &server.token,
        "--output",
        "json",
    ]);
    assert_eq!(publish.code, 0, "{}", publish.stderr);
    assert_eq!(publish.json()["topics"][1], "deploy.platform.success");
    let (_, body) = call(
        &client,
        get.clone(),
        url("/engines/autonomy/deployment/status"),
        token,
    )
    .await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["platforms"]["netlify"]["status"], "ready", "{body}");

    let sandbox_dir = std::path::PathBuf::from(&server.state_dir)
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(sandbox_dir.exists(), "{}", sandbox_dir.display());
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("shutdown"), "{stderr}");
    for secret in SECRETS {
        assert!(!stderr.contains(secret), "{secret} leaked into the log");
    }
    // Its tokens, keys and `.env` go with it.
    assert!(
        !sandbox_dir.exists(),
        "{} left behind",
        sandbox_dir.display()
    );
}

/// A sandbox that cannot start (its address is taken) leaves no directory behind.
#[test]
fn a_sandbox_that_fails_to_start_leaves_nothing_behind() {
    let sandbox = Sandbox::bare();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_genesisctl"))
        .args(["serve", "--sandbox", "--listen", &address])
        .current_dir(sandbox.path("."))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", sandbox.path("."))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let left: Vec<String> = std::fs::read_dir(sandbox.path("."))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("bridge-sandbox-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn token_create_prints_the_token_alone_and_stores_only_its_hash() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["token", "create", "--role", "operator"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = run.stdout.trim();
    assert!(token.starts_with("brg_") && token.len() == 44, "{token}");
    assert_eq!(run.stdout.lines().count(), 1);
    let stored = sandbox.read(".bridge/tokens.json");
    assert!(!stored.contains(&token[4..]));
    assert_eq!(
        crate::sandbox::mode(&sandbox.path(".bridge/tokens.json")),
        0o600
    );

    let list = sandbox.run(&["token", "list", "--output", "json"]);
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["role"], "operator");
    assert!(!list.stdout.contains(&token[4..]));
    let id = tokens[0]["id"].as_str().unwrap();

    let revoke = sandbox.run(&["token", "revoke", id]);
    assert_eq!(revoke.code, 0, "{}", revoke.stderr);
    let again = sandbox.run(&["token", "revoke", id]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("token list"));

    let bad = sandbox.run(&["token", "create", "--role", "captain"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("admiral, operator or observer"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_never_hold_the_token() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::new();
    sandbox.file(".env", "APP_NAME=demo\n");
    let token = sandbox
        .run(&["token", "create", "--role", "observer"])
        .stdout;
    let token = token.trim().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_genesisctl"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .current_dir(sandbox.path("."))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("Listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let status = client
        .get(format!("{url}/genesis/stats"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let server = Server {
        child,
        url,
        token: token.clone(),
        state_dir: sandbox.path(".bridge").display().to_string(),
    };
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["msg"] == "request")
        .expect("a request line");
    assert_eq!(request["route"], "/genesis/stats");
    assert_eq!(request["status"], "200");
    assert!(request["token"].as_str().unwrap().starts_with("tok_"));
    assert!(!stderr.contains(&token[4..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_failure_caused_by_a_missing_variable_is_healed_and_redeployed() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    // Enforce mode: the reactions may write. The sandbox seeds Render without
    // FEATURE_NEW_CHECKOUT, and points the Render deploy hook at its emulator.
    let server = Server::start_with(&sandbox, &[("ENVSYNC_MODE", "enforce")]);
    let client = reqwest::Client::new();
    let token = Some(server.token.as_str());
    let publish = sandbox.run(&[
        "deploy",
        "publish",
        "--platform",
        "render",
        "--event-type",
        "failure",
        "--status",
        "build_failed",
        "--message",
        "FEATURE_NEW_CHECKOUT is not set",
        "--server",
        &server.url,
        "--token",
        &server.token,
    ]);
    assert_eq!(publish.code, 0, "{}", publish.stderr);

    let mut heal = Value::Null;
    for _ in 0..100 {
        let (_, body) = call(
            &client,
            reqwest::Method::GET,
            format!("{}/genesis/events?topic=genesis.heal", server.url),
            token,
        )
        .await;
        let page: Value = serde_json::from_str(&body).unwrap();
        if let Some(first) = page["events"].as_array().and_then(|e| e.first()) {
            heal = first.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(heal["action"], "resync_and_redeploy", "{heal}");
    assert_eq!(heal["provider"], "render");
    assert_eq!(heal["hook_attempts"], 1);
    assert!(
        heal["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "FEATURE_NEW_CHECKOUT"),
        "{heal}"
    );
    // Render now holds the variable: no drift left there.
    let (_, body) = call(
        &client,
        reqwest::Method::GET,
        format!("{}/parity", server.url),
        token,
    )
    .await;
    let parity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parity["missing_in_render"], serde_json::json!([]), "{body}");
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// The events of `topic` the server holds, newest first.
async fn events(client: &reqwest::Client, server: &Server, topic: &str) -> Vec<Value> {
    let (status, body) = call(
        client,
        reqwest::Method::GET,
        format!("{}/genesis/events?topic={topic}&limit=1000", server.url),
        Some(&server.token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["events"].as_array().cloned().unwrap_or_default()
}

/// A read never writes: in enforce mode, an observer reading `/parity` (as the dashboard
/// does) publishes no drift, so no reaction heals and nothing is written anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_reading_parity_in_enforce_mode_changes_nothing() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let server = Server::start_with(&sandbox, &[("ENVSYNC_MODE", "enforce")]);
    let observer = sandbox.run(&[
        "--state-dir",
        &server.state_dir,
        "token",
        "create",
        "--role",
        "observer",
    ]);
    assert_eq!(observer.code, 0, "{}", observer.stderr);
    let observer = observer.stdout.trim().to_owned();
    // The server rereads its tokens file at most once a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let (status, body) = call(
            &client,
            reqwest::Method::GET,
            format!("{}/parity", server.url),
            Some(&observer),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let parity: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parity["has_drift"], true, "{body}");
    }
    // The reactions run within ~100 ms of news; give them ten times that.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for topic in [
        "envsync.drift",
        "envsync.commit",
        "genesis.heal",
        "envsync.init",
    ] {
        let found = events(&client, &server, topic).await;
        assert!(found.is_empty(), "a read led to {topic}: {found:?}");
    }
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// Shutdown under load is bounded: with a backlog of deploy failures for the reactions,
/// SIGTERM ends `serve` within its shutdown timeout; the events it had not handled are
/// handled after the next start on the same state, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_backlog_is_bounded_and_the_backlog_survives() {
    bridge_platforms::http::install_tls();
    let emulators = bridge_emulators::start(bridge_emulators::EmulatorConfig::default())
        .await
        .unwrap();
    let mut sandbox = Sandbox::new();
    sandbox.file(".env", "APP_NAME=shop\nFEATURE_FLAG=on\n");
    for (k, v) in emulators.exports() {
        sandbox.env(&k, &v);
    }
    sandbox
        .env("ENVSYNC_TARGETS", "render")
        .env("ENVSYNC_MODE", "enforce")
        .env("BRIDGE_SHUTDOWN_TIMEOUT_SECS", "2");
    let token = sandbox.run(&["token", "create", "--role", "admiral"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.stdout.trim().to_owned();
    let server = Server::start_plain(&sandbox, &token);
    let client = reqwest::Client::new();
    let url = format!("{}/engines/autonomy/deployment/event", server.url);
    let mut sends = Vec::new();
    for i in 0..150 {
        let body = json!({
            "platform": "render", "event_type": "failure", "status": "build_failed",
            "metadata": {"deploy_id": format!("dep-{i}")}
        });
        let request = client.post(&url).bearer_auth(&token).json(&body);
        sends.push(tokio::spawn(request.send()));
    }
    for send in sends {
        let response = send.await.unwrap().unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let failures = events(&client, &server, "deploy.platform.failure").await;
    assert_eq!(failures.len(), 150);

    let began = std::time::Instant::now();
    let (code, stderr) = server.stop();
    let took = began.elapsed();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?}: {stderr}"
    );

    // The next start handles what was left: every failure gets its outcome.
    let server = Server::start_plain(&sandbox, &token);
    let mut handled = std::collections::BTreeMap::new();
    for _ in 0..600 {
        handled.clear();
        for topic in ["genesis.heal", "genesis.intent"] {
            for e in events(&client, &server, topic).await {
                if e["reaction"] == "deploy_failure" {
                    *handled.entry(e["cause_seq"].as_u64().unwrap()).or_insert(0) += 1;
                }
            }
        }
        if handled.len() == failures.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        handled.len(),
        failures.len(),
        "some failures were never handled"
    );
    // One outcome per failure, or a heal and its escalation (no deploy hook): never more.
    assert!(handled.values().all(|&n| n <= 2), "{handled:?}");
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// Each bus event is recorded once: three apply-alls on the sandbox, then the server's own
/// feed and the CLI's side by side, leave one ledger entry per event, and the ledger
/// verifies. (While the server runs: a stopped sandbox takes its directory with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_apply_all_records_each_event_once_in_the_ledger() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let server = Server::start(&sandbox);
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let (status, body) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/envsync/apply-all", server.url),
            Some(&server.token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let state_dir = server.state_dir.clone();
    let export = sandbox.run(&["--state-dir", &state_dir, "ledger", "export"]);
    assert_eq!(export.code, 0, "{}", export.stderr);
    let mut seqs: Vec<u64> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(!seqs.is_empty(), "{}", export.stdout);
    let all = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        all,
        "an event was recorded twice:\n{}",
        export.stdout
    );
    let verify = sandbox.run(&["--state-dir", &state_dir, "ledger", "verify"]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// `ledger.witness`: the server publishes each checkpoint its feed signs, the one signed at
/// shutdown included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_each_checkpoint_to_its_witness() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let witness = sandbox.path("witness.json");
    let witness_env = witness.display().to_string();
    let server = Server::start_with(&sandbox, &[("BRIDGE_LEDGER_WITNESS", &witness_env)]);
    let client = reqwest::Client::new();
    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/envsync/apply-all", server.url),
        Some(&server.token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let size = |path: &std::path::Path| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["size"].as_u64())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size(&witness) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = size(&witness);
    assert!(seen > 0, "no checkpoint was witnessed within 10 s");
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("ledger checkpoint witnessed"), "{stderr}");
    let held: Value = serde_json::from_str(&std::fs::read_to_string(&witness).unwrap()).unwrap();
    assert!(
        held["note"]
            .as_str()
            .unwrap()
            .starts_with("bridge.local/ledger\n"),
        "{held}"
    );
    assert!(size(&witness) >= seen);
}

/// The connection settings reach the server: `server.header_timeout_secs`,
/// `server.idle_timeout_secs`, `server.max_connections` and
/// `server.webhook_max_body_bytes`, here from their environment variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_connection_and_body_limits_from_the_configuration() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let server = Server::start_with(
        &sandbox,
        &[
            ("BRIDGE_HEADER_TIMEOUT_SECS", "1"),
            ("BRIDGE_IDLE_TIMEOUT_SECS", "2"),
            ("BRIDGE_MAX_CONNECTIONS", "1"),
            ("BRIDGE_WEBHOOK_MAX_BODY_BYTES", "100"),
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_owned();
    let closed_after = |mut conn: tokio::net::TcpStream| async move {
        let began = std::time::Instant::now();
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                Err(_) => return (read, None),
                Ok(Ok(0)) | Ok(Err(_)) => return (read, Some(began.elapsed())),
                Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            }
        }
    };
    // Silent: closed after the header timeout.
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = closed_after(silent).await;
    let closed = closed.expect("a silent connection is closed");
    assert!(
        closed < Duration::from_millis(2500),
        "closed after {closed:?}"
    );

    // One connection held: the next is answered 503 and closed. (The silent one's place is
    // given back just after its socket closes.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    held.write_all(b"GET /envsync/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = held.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut over = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = over
        .write_all(b"GET /envsync/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (answer, closed) = closed_after(over).await;
    assert!(closed.is_some());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("server.max_connections"), "{answer}");
    // The held connection, idle, is closed after the idle timeout, which frees its place.
    let (_, closed) = closed_after(held).await;
    let closed = closed.expect("an idle connection is closed");
    assert!(
        closed < Duration::from_millis(3500),
        "closed after {closed:?}"
    );

    // A webhook over its own limit is refused.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/webhooks/deployment/render", server.url))
        .header("content-type", "application/json")
        .body(vec![b' '; 200])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large", "{body}");
    drop(client);
    let (code, stderr) = server.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// `serve --sandbox --render-services … --github-repositories …`: the extra instances are
/// held empty and are targets of their own, labelled after their ids, so parity shows them
/// missing everything and one apply-all fills them with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_holds_and_targets_extra_instances() {
    bridge_platforms::http::install_tls();
    let sandbox = Sandbox::bare();
    let server = Server::start_args(
        &sandbox,
        &[],
        &[
            "--render-services",
            "srv-stg",
            "--github-repositories",
            "org/app",
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", server.url);
    let token = Some(server.token.as_str());
    let (status, body) = call(&client, reqwest::Method::GET, url("/envsync/health"), None).await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = health["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["render", "netlify", "github", "srv_stg", "org_app"]);

    let (_, body) = call(&client, reqwest::Method::GET, url("/parity"), token).await;
    let parity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        parity["missing_in_srv_stg"].as_array().unwrap().len(),
        14,
        "{body}"
    );
    assert_eq!(
        parity["missing_in_org_app"].as_array().unwrap().len(),
        14,
        "{body}"
    );
    assert_eq!(
        parity["missing_in_render"],
        serde_json::json!(["FEATURE_NEW_CHECKOUT"])
    );

    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        url("/envsync/apply-all"),
        token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["applied"], 5, "{body}");
    let (_, body) = call(&client, reqwest::Method::GET, url("/parity"), token).await;
    let parity: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parity["has_drift"], false, "{body}");
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// The instance flags only mean something with `--sandbox`.
#[test]
fn instance_flags_need_the_sandbox() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["serve", "--render-services", "srv-stg"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--sandbox"), "{run:?}");
}
