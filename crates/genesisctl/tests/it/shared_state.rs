//! One PostgreSQL store shared by runners in different directories (as CI runners, laptops
//! and a server are): the real binary, the GitHub emulator and the real PostgreSQL on the
//! machine. Each test gets a schema of its own, named on the URL's search path.
//!
//! Skipped when no PostgreSQL answers, unless BRIDGE_REQUIRE_SERVICES=1 (CI).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bridge_emulators::{EmulatorConfig, Emulators};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::sandbox::{KEY_HEX, Run, Sandbox};

/// The state key every runner is given (a test value).
const STATE_KEY_HEX: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
const LEDGER_KEY_HEX: &str = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
const POSTGRES: &str = "127.0.0.1:5432";

fn base_url() -> String {
    std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| format!("postgres://postgres@{POSTGRES}/test"))
}

/// A schema of this test's own in the test database, dropped when the test passes.
pub struct PgSchema {
    name: String,
    client: tokio_postgres::Client,
}

impl PgSchema {
    pub async fn create() -> Option<Self> {
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&base_url(), tokio_postgres::NoTls),
        )
        .await;
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            other => {
                assert!(
                    std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "PostgreSQL is required (BRIDGE_REQUIRE_SERVICES=1) but: {:?}",
                    other.map(|r| r.map(|_| ()))
                );
                eprintln!("skipped: no PostgreSQL at {}", base_url());
                return None;
            }
        };
        tokio::spawn(connection);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "shared_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        client
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .await
            .unwrap();
        Some(Self { name, client })
    }

    /// The store URL through `addr` (PostgreSQL itself, or a proxy before it).
    fn url_via(&self, addr: &str) -> String {
        let base = base_url().replace(POSTGRES, addr);
        let joiner = if base.contains('?') { '&' } else { '?' };
        format!("{base}{joiner}options=-csearch_path%3D{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(POSTGRES)
    }

    pub async fn drop_schema(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name))
            .await
            .unwrap();
    }
}

fn plain_env(values: &[(&str, &str)]) -> String {
    values.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

const SOURCE: &[(&str, &str)] = &[
    ("LOG_LEVEL", "info"),
    ("PUBLIC_URL", "https://shop.example.com"),
    ("STRIPE_SECRET_KEY", "sk_live_abc123"),
    ("DB_PASSWORD", "db-pass-987"),
];

/// Plain values only: every one a GitHub variable, which a resume can read back.
const PLAIN: &[(&str, &str)] = &[
    ("APP_NAME", "shop"),
    ("APP_REGION", "eu-west"),
    ("APP_COLOR", "teal"),
    ("APP_PORT", "8080"),
    ("APP_MODE", "live"),
    ("APP_TIER", "gold"),
];

/// A runner that starts empty: no state directory, the store and the keys from the
/// environment, the platforms from the emulators.
fn runner(emu: &Emulators, store: &str, source: &str) -> Sandbox {
    let mut s = Sandbox::bare();
    s.file(".env", source);
    for (k, v) in emu.exports() {
        s.env(&k, &v);
    }
    s.env("BRIDGE_STORE", store)
        .env("BRIDGE_FINGERPRINT_KEY", KEY_HEX)
        .env("BRIDGE_STATE_KEY", STATE_KEY_HEX)
        .env("BRIDGE_LEDGER_KEY", LEDGER_KEY_HEX);
    s
}

fn github_only(latency: Duration) -> EmulatorConfig {
    EmulatorConfig {
        render: false,
        netlify: false,
        latency,
        ..EmulatorConfig::default()
    }
}

/// Successful writes per key.
fn writes_by_key(emu: &Emulators) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in emu.github().unwrap().write_log() {
        if (200..300).contains(&w.status) {
            *out.entry(w.key.unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// A fresh runner's repeat sync writes nothing, a rotated secret is written exactly once,
/// and a third empty directory proves parity for the write-only secrets the first wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_that_start_empty_share_one_history() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let emu = bridge_emulators::start(github_only(Duration::ZERO))
        .await
        .unwrap();
    let github = emu.github().unwrap();
    let first = runner(&emu, &pg.url(), &plain_env(SOURCE));
    ok(&first.run(&["env", "sync", "--target", "github"]));
    assert_eq!(github.take_write_log().len(), SOURCE.len());

    let second = runner(&emu, &pg.url(), &plain_env(SOURCE));
    let repeat = second.run(&["env", "sync", "--target", "github", "--output", "json"]);
    ok(&repeat);
    assert!(
        github.take_write_log().is_empty(),
        "a fresh runner rewrote what another wrote: {repeat:?}"
    );

    let rotated: Vec<(&str, &str)> = SOURCE
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "DB_PASSWORD" {
                    "db-pass-rotated"
                } else {
                    *v
                },
            )
        })
        .collect();
    second.file(".env", &plain_env(&rotated));
    ok(&second.run(&["env", "sync", "--target", "github"]));
    let log = github.take_write_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].key.as_deref(), Some("DB_PASSWORD"));
    // The first runner, with the rotated file too, finds nothing left to do.
    first.file(".env", &plain_env(&rotated));
    ok(&first.run(&["env", "sync", "--target", "github"]));
    assert!(github.take_write_log().is_empty());

    let third = runner(&emu, &pg.url(), &plain_env(&rotated));
    let verify = third.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,github",
        "--output",
        "json",
    ]);
    ok(&verify);
    assert_eq!(verify.json()["proven"], true, "{verify:?}");
    // Nothing of the shared state was written into the runners' directories.
    for runner in [&first, &second, &third] {
        for file in ["state.db", "events.db", "ledger.db"] {
            assert!(!runner.path(&format!(".bridge/{file}")).exists(), "{file}");
        }
    }

    // One ledger: the third runner sees both runners' applies, signed with the one key.
    let ledger = third.run(&["ledger", "show", "--output", "json"]);
    ok(&ledger);
    let entries = ledger.json();
    let commits: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["topic"] == "envsync.commit")
        .collect();
    assert_eq!(commits.len(), 2, "two applies wrote: {ledger:?}");
    let mut seqs: Vec<u64> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let recorded = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), recorded, "an event recorded twice: {ledger:?}");
    let verified = third.run(&["ledger", "verify", "--output", "json"]);
    ok(&verified);
    assert_eq!(verified.json()["ok"], true, "{verified:?}");
    assert_eq!(
        verified.json()["attested_size"],
        verified.json()["entries"],
        "every entry is under a signed checkpoint: {verified:?}"
    );

    // A runner with another fingerprint key is stopped, not misled.
    let mut stranger = runner(&emu, &pg.url(), &plain_env(&rotated));
    stranger.env(
        "BRIDGE_FINGERPRINT_KEY",
        "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    let refused = stranger.run(&["env", "verify", "--platforms", "local:.env,github"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("BRIDGE_FINGERPRINT_KEY"),
        "{refused:?}"
    );
    // One with another ledger key neither appends to nor signs the shared ledger.
    let mut signer = runner(&emu, &pg.url(), &plain_env(&rotated));
    signer.env(
        "BRIDGE_LEDGER_KEY",
        "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef",
    );
    let refused = signer.run(&["ledger", "checkpoint"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("signed with the key"),
        "{refused:?}"
    );
    let still = third.run(&["ledger", "verify", "--output", "json"]);
    ok(&still);
    assert_eq!(still.json()["ok"], true, "{still:?}");
    emu.shutdown().await;
    pg.drop_schema().await;
}

/// Two syncs to one target from two directories at once: one waits, naming the other's
/// host and pid, then finds nothing to do; the platform gets each write once, from one
/// process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_directories_syncing_at_once_take_turns() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let emu = bridge_emulators::start(github_only(Duration::from_millis(100)))
        .await
        .unwrap();
    let a = runner(&emu, &pg.url(), &plain_env(PLAIN));
    let b = runner(&emu, &pg.url(), &plain_env(PLAIN));
    let first = a
        .command(&["env", "sync", "--target", "github"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first_pid = first.id();
    wait_for(|| !emu.github().unwrap().write_log().is_empty()).await;
    let second = b.run(&["env", "sync", "--target", "github"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    ok(&second);
    assert!(
        second.stderr.contains("waiting for github:")
            && second.stderr.contains(&format!("pid {first_pid}, since "))
            && second
                .stderr
                .contains(&bridge_operations::locks::host_name()),
        "the waiter names the holder's host, pid and since: {second:?}"
    );
    assert!(second.all().contains("in sync"), "{second:?}");
    let writes = writes_by_key(&emu);
    assert_eq!(writes.len(), PLAIN.len(), "{writes:?}");
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    emu.shutdown().await;
    pg.drop_schema().await;
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two runners of one store, the first syncing PLAIN to the slow GitHub emulator in the
/// background: answered once it has written twice, with the one lock it holds (as `state
/// locks --output json` lists it from the second).
async fn mid_apply(
    emu: &Emulators,
    pg: &PgSchema,
) -> (Sandbox, std::process::Child, serde_json::Value) {
    let a = runner(emu, &pg.url(), &plain_env(PLAIN));
    let b = runner(emu, &pg.url(), &plain_env(PLAIN));
    let holder = a
        .command(&["env", "sync", "--target", "github"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| emu.github().unwrap().write_log().len() >= 2).await;
    let held = b.run(&["state", "locks", "--output", "json"]);
    ok(&held);
    let locks = held.json()["locks"].as_array().unwrap().clone();
    assert_eq!(locks.len(), 1, "{held:?}");
    assert_eq!(locks[0]["pid"], holder.id(), "{held:?}");
    (b, holder, locks[0].clone())
}

/// kill -9 of a runner mid-apply: PostgreSQL ends its session and the lock with it, and a
/// runner in another directory resumes the journal without repeating a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_its_lock_and_another_directory_resumes() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let emu = bridge_emulators::start(github_only(Duration::from_millis(250)))
        .await
        .unwrap();
    let (b, mut killed, _) = mid_apply(&emu, &pg).await;
    killed.kill().unwrap(); // SIGKILL
    killed.wait().unwrap();
    // What the dead process had in flight lands or not; either way it settles.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let freed = b.run(&["state", "locks", "--output", "json"]);
    ok(&freed);
    assert_eq!(freed.json()["locks"], serde_json::json!([]), "{freed:?}");
    let resumed = b.run(&["env", "resume", "--yes"]);
    ok(&resumed);
    let writes = writes_by_key(&emu);
    assert_eq!(writes.len(), PLAIN.len(), "{writes:?}");
    assert!(
        writes.values().all(|n| *n == 1),
        "a write was repeated: {writes:?}"
    );
    ok(&b.run(&["env", "verify", "--platforms", "local:.env,github"]));
    emu.shutdown().await;
    pg.drop_schema().await;
}

/// `state unlock ID --yes` breaks a live holder's lock: the lock is gone for every runner, the
/// break is on the bus, and the holder stops before its next write (exit 3, its journal left
/// for a resume) instead of writing on beside whoever takes the lock next. Another directory
/// then finishes the journal with no write repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_unlock_breaks_a_live_holders_lock() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let emu = bridge_emulators::start(github_only(Duration::from_millis(250)))
        .await
        .unwrap();
    let (b, holder, lock) = mid_apply(&emu, &pg).await;
    let id = lock["id"].as_str().unwrap().to_owned();

    let broken = b.run(&["state", "unlock", &id, "--yes"]);
    ok(&broken);
    assert!(broken.all().contains(&id), "{broken:?}");
    let freed_at_once = b.run(&["state", "locks", "--output", "json"]);
    ok(&freed_at_once);
    assert_eq!(
        freed_at_once.json()["locks"],
        serde_json::json!([]),
        "{freed_at_once:?}"
    );
    let out = holder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the holder went on: {stderr}");
    assert!(stderr.contains("was broken"), "{stderr}");
    let left = writes_by_key(&emu);
    assert!(
        left.len() < PLAIN.len(),
        "the holder wrote everything: {left:?}"
    );
    let freed = b.run(&["state", "locks", "--output", "json"]);
    ok(&freed);
    assert_eq!(freed.json()["locks"], serde_json::json!([]), "{freed:?}");
    let events = b.run(&[
        "events",
        "tail",
        "--topic",
        "envsync.complete",
        "--limit",
        "20",
        "--output",
        "json",
    ]);
    ok(&events);
    assert!(events.stdout.contains("\"unlock\""), "{events:?}");

    let resumed = b.run(&["env", "resume", "--yes"]);
    ok(&resumed);
    let writes = writes_by_key(&emu);
    assert_eq!(writes.len(), PLAIN.len(), "{writes:?}");
    assert!(
        writes.values().all(|n| *n == 1),
        "a write was repeated: {writes:?}"
    );
    emu.shutdown().await;
    pg.drop_schema().await;
}

/// A TCP proxy before PostgreSQL that can cut every connection and refuse new ones, as a
/// network partition would, without touching the shared server.
struct Partition {
    addr: String,
    cut: tokio::sync::watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Partition {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, watch) = tokio::sync::watch::channel(false);
        let upstream = base_url()
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or(POSTGRES)
            .to_owned();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // dropped: the client sees its connection closed
                }
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let mut stop = watch.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.wait_for(|cut| *cut) => {}
                    }
                    // Both ends close here.
                });
            }
        });
        Self { addr, cut, accept }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The store unreachable mid-apply: the apply stops at once with exit 3 naming the store
/// (no write after the one it could not record), and resumes once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_lost_mid_apply_stops_it_and_it_resumes_when_back() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let partition = Partition::start().await;
    let emu = bridge_emulators::start(github_only(Duration::from_millis(150)))
        .await
        .unwrap();
    let url = pg.url_via(&partition.addr);
    let a = runner(&emu, &url, &plain_env(PLAIN));
    let running = a
        .command(&["env", "sync", "--target", "github"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| emu.github().unwrap().write_log().len() >= 2).await;
    partition.cut();
    let at_cut = emu.github().unwrap().write_log().len();
    let stopped = tokio::task::spawn_blocking(move || running.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL state store") && stderr.contains("unreachable"),
        "{stderr}"
    );
    // At most the write in flight at the cut lands; none is started after its record
    // could not be kept.
    let written = emu.github().unwrap().write_log().len();
    assert!(
        written <= at_cut + 1,
        "the apply went on writing without a store: {at_cut} at the cut, {written} in all"
    );

    let refused = a.run(&["env", "resume", "--yes"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("unreachable"), "{refused:?}");

    partition.heal();
    let b = runner(&emu, &url, &plain_env(PLAIN));
    let resumed = b.run(&["env", "resume", "--yes"]);
    ok(&resumed);
    let writes = writes_by_key(&emu);
    assert_eq!(writes.len(), PLAIN.len(), "{writes:?}");
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    ok(&b.run(&["env", "verify", "--platforms", "local:.env,github"]));
    emu.shutdown().await;
    drop(partition);
    pg.drop_schema().await;
}

/// A state directory moves to the shared store whole: a runner from an empty directory
/// then sees its records (a repeat sync writes nothing) and its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_migrates_to_postgres_and_exports() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let emu = bridge_emulators::start(github_only(Duration::ZERO))
        .await
        .unwrap();
    let mut local = Sandbox::new();
    local.file(".env", &plain_env(SOURCE));
    for (k, v) in emu.exports() {
        local.env(&k, &v);
    }
    local
        .env("BRIDGE_STATE_KEY", STATE_KEY_HEX)
        .env("BRIDGE_LEDGER_KEY", LEDGER_KEY_HEX);
    ok(&local.run(&["env", "sync", "--target", "github"]));
    let ledger_before = local.run(&["ledger", "verify", "--output", "json"]);
    ok(&ledger_before);
    let entries_before = ledger_before.json()["entries"].as_u64().unwrap();
    assert!(entries_before > 0, "{ledger_before:?}");
    let root_before = ledger_before.json()["root"].clone();
    // A token, a claimed webhook delivery and a claimed schedule slot: what a server of the
    // directory would have left in it.
    let token = local.run(&["token", "create", "--role", "observer", "--output", "json"]);
    ok(&token);
    let token_id = token.json()["id"].as_str().unwrap().to_owned();
    {
        use bridge_genesis::bus::EventStore as _;
        let events =
            bridge_genesis::bus::SqliteStore::open(local.path(".bridge/events.db")).unwrap();
        let deliveries = events.deliveries().unwrap();
        let lease = bridge_genesis::deliveries::CLAIM_LEASE;
        assert!(
            deliveries
                .claim("github:seeded".into(), "server:1".into(), lease)
                .await
                .unwrap()
        );
        deliveries.published("github:seeded".into()).await.unwrap();
        let slot = time::OffsetDateTime::from_unix_timestamp(1_772_359_200).unwrap();
        let schedules = events.schedules().unwrap();
        assert!(
            schedules
                .claim("envsync".into(), slot, "server:1".into())
                .await
                .unwrap()
        );
        schedules
            .finish("envsync".into(), slot, "ok".into())
            .await
            .unwrap();
    }
    let events_before = local.run(&["events", "tail", "--output", "json"]);
    ok(&events_before);

    let migrated = local.run(&[
        "state",
        "migrate",
        "--from",
        ".bridge",
        "--to",
        &pg.url(),
        "--output",
        "json",
    ]);
    ok(&migrated);
    let report = migrated.json();
    assert_eq!(report["records"], SOURCE.len(), "{migrated:?}");
    assert_eq!(report["journals"], 1, "{migrated:?}");
    let events = events_before.stdout.lines().count();
    assert_eq!(report["events"], events, "{migrated:?}");
    assert_eq!(report["tokens"], 1, "{migrated:?}");
    assert_eq!(report["delivery_claims"], 1, "{migrated:?}");
    assert_eq!(report["schedule_claims"], 1, "{migrated:?}");
    assert_eq!(report["ledger_entries"], entries_before, "{migrated:?}");
    // A second migration would mix two histories.
    let again = local.run(&["state", "migrate", "--from", ".bridge", "--to", &pg.url()]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("empty store"), "{again:?}");

    let github = emu.github().unwrap();
    github.take_write_log();
    let fresh = runner(&emu, &pg.url(), &plain_env(SOURCE));
    // The ledger moved whole: the same entries under the same root, signed as before.
    let moved = fresh.run(&["ledger", "verify", "--output", "json"]);
    ok(&moved);
    assert_eq!(moved.json()["entries"], entries_before, "{moved:?}");
    assert_eq!(moved.json()["root"], root_before, "{moved:?}");
    assert_eq!(moved.json()["attested_size"], entries_before, "{moved:?}");
    ok(&fresh.run(&["env", "sync", "--target", "github"]));
    assert!(github.take_write_log().is_empty());
    // The store's feed starts from the first moved event and records none of them again.
    let extended = fresh.run(&["ledger", "verify", "--output", "json"]);
    ok(&extended);
    assert_eq!(extended.json()["ok"], true, "{extended:?}");
    let tail = fresh.run(&["events", "tail", "--output", "json"]);
    ok(&tail);
    assert_eq!(
        tail.stdout.lines().take(events).collect::<Vec<_>>(),
        events_before.stdout.lines().collect::<Vec<_>>(),
        "the events moved with their sequence numbers and times"
    );

    let listed = fresh.run(&["token", "list", "--output", "json"]);
    ok(&listed);
    assert_eq!(
        listed.json()["tokens"][0]["id"],
        token_id.as_str(),
        "the token moved"
    );

    // A backup of the shared store restores into another, empty one.
    let backup = fresh.run(&["state", "export", "--out", "backup.json"]);
    ok(&backup);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fresh.path("backup.json")).unwrap()).unwrap();
    assert_eq!(file["tokens"][0]["id"], token_id.as_str());
    assert_eq!(file["delivery_claims"][0]["id"], "github:seeded");
    assert_eq!(file["delivery_claims"][0]["published"], true);
    assert_eq!(file["schedule_claims"][0]["job"], "envsync");
    assert_eq!(file["schedule_claims"][0]["outcome"], "ok");
    let Some(other) = PgSchema::create().await else {
        return;
    };
    let restore = runner(&emu, &other.url(), "");
    std::fs::copy(fresh.path("backup.json"), restore.path("backup.json")).unwrap();
    // A backup whose ledger was edited is refused before anything is written.
    let mut tampered = file.clone();
    tampered["ledger"]["entries"][0]["payload"] = r#"{"edited":true}"#.into();
    std::fs::write(restore.path("tampered.json"), tampered.to_string()).unwrap();
    let refused = restore.run(&["state", "import", "tampered.json"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("does not verify"), "{refused:?}");
    // So is one whose newest entries no checkpoint covers (its last checkpoint removed),
    // and one whose checkpoints were reordered.
    let mut unsigned = file.clone();
    unsigned["ledger"]["checkpoints"]
        .as_array_mut()
        .unwrap()
        .pop();
    std::fs::write(restore.path("unsigned.json"), unsigned.to_string()).unwrap();
    let refused = restore.run(&["state", "import", "unsigned.json"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("under no signed checkpoint"),
        "{refused:?}"
    );
    let mut reordered = file.clone();
    unsigned_reverse(&mut reordered["ledger"]["checkpoints"]);
    std::fs::write(restore.path("reordered.json"), reordered.to_string()).unwrap();
    let refused = restore.run(&["state", "import", "reordered.json"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("not in the order"), "{refused:?}");
    let imported = restore.run(&["state", "import", "backup.json", "--output", "json"]);
    ok(&imported);
    let backed_up = file["ledger"]["entries"].as_array().unwrap().len();
    assert!(backed_up as u64 >= entries_before, "{file}");
    assert_eq!(imported.json()["ledger_entries"], backed_up, "{imported:?}");
    let restored = restore.run(&["ledger", "verify", "--output", "json"]);
    ok(&restored);
    assert_eq!(restored.json()["ok"], true, "{restored:?}");
    assert_eq!(restored.json()["entries"], backed_up, "{restored:?}");
    // A second import would mix two ledgers, and is refused before anything is written.
    let twice = restore.run(&["state", "import", "backup.json"]);
    assert_eq!(twice.code, 2, "{twice:?}");
    let listed = restore.run(&["token", "list", "--output", "json"]);
    ok(&listed);
    assert_eq!(
        listed.json()["tokens"][0]["id"],
        token_id.as_str(),
        "the token restored"
    );
    for (table, what) in [
        ("genesis_webhook_deliveries", "delivery claims"),
        ("genesis_schedule_runs", "schedule claims"),
    ] {
        let n: i64 = other
            .client
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".{table}", other.name),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "the {what} were restored");
    }
    restore.file(".env", &plain_env(SOURCE));
    ok(&restore.run(&["env", "sync", "--target", "github"]));
    assert!(github.take_write_log().is_empty());
    emu.shutdown().await;
    pg.drop_schema().await;
    other.drop_schema().await;
}

/// A server and a CI runner on one store: what the server's API applied, a runner from an
/// empty directory neither rewrites nor doubts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_a_fresh_runner_share_the_store() {
    use std::io::{BufRead, BufReader};
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    bridge_platforms::http::install_tls();
    let emu = bridge_emulators::start(github_only(Duration::ZERO))
        .await
        .unwrap();
    let mut server_dir = runner(&emu, &pg.url(), &plain_env(SOURCE));
    server_dir.env("ENVSYNC_TARGETS", "github");
    let token = server_dir.run(&["token", "create", "--role", "admiral"]);
    ok(&token);
    let token = token.stdout.trim().to_owned();
    let mut server = server_dir
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Listening on ").map(|u| u.trim().to_owned()))
        .expect("a Listening line");
    let applied = reqwest::Client::new()
        .post(format!("{url}/envsync/apply/github"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = applied.status().as_u16();
    assert_eq!(status, 200, "{}", applied.text().await.unwrap());
    let github = emu.github().unwrap();
    assert_eq!(github.take_write_log().len(), SOURCE.len());

    let ci = runner(&emu, &pg.url(), &plain_env(SOURCE));
    ok(&ci.run(&["env", "sync", "--target", "github"]));
    assert!(
        github.take_write_log().is_empty(),
        "the runner rewrote the server's writes"
    );
    let verify = ci.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,github",
        "--output",
        "json",
    ]);
    ok(&verify);
    assert_eq!(verify.json()["proven"], true, "{verify:?}");
    let events = ci.run(&[
        "events",
        "tail",
        "--topic",
        "envsync.commit",
        "--output",
        "json",
    ]);
    ok(&events);
    assert!(
        events.stdout.contains("\"origin\":\"api\""),
        "the server's apply is in the shared history: {events:?}"
    );
    // The server's feed and the runner's both record the shared events in the one ledger,
    // each event once; the server serves what the runner recorded.
    let verified = ci.run(&["ledger", "verify", "--output", "json"]);
    ok(&verified);
    assert_eq!(verified.json()["ok"], true, "{verified:?}");
    let recorded = verified.json()["entries"].as_u64().unwrap();
    assert!(recorded > 0, "{verified:?}");
    let page: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/ledger/entries?limit=1000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["total"].as_u64().unwrap() >= recorded, "{page}");
    let from_api: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["payload"]["origin"].as_str())
        .collect();
    assert!(from_api.contains(&"api"), "{page}");
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
    emu.shutdown().await;
    pg.drop_schema().await;
}

fn unsigned_reverse(list: &mut serde_json::Value) {
    list.as_array_mut().unwrap().reverse();
}

/// A directory that starts empty with only the store and the keys.
fn store_only(store: &str) -> Sandbox {
    let mut s = Sandbox::bare();
    s.env("BRIDGE_STORE", store)
        .env("BRIDGE_FINGERPRINT_KEY", KEY_HEX)
        .env("BRIDGE_STATE_KEY", STATE_KEY_HEX)
        .env("BRIDGE_LEDGER_KEY", LEDGER_KEY_HEX);
    s
}

/// Starts `genesisctl serve` in `dir` on a free port; the child and its URL.
fn start_server(dir: &Sandbox) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut server = dir
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Listening on ").map(|u| u.trim().to_owned()))
        .expect("a Listening line");
    (server, url)
}

fn stop_server(server: &mut std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let _ = server.wait();
}

/// A token made from one empty directory works on a server started from another on the
/// same store, and stops working within about a second of its revocation from a third.
/// No directory gets a `tokens.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shared_by_every_runner_and_server_of_the_store() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let maker = store_only(&pg.url());
    let created = maker.run(&["token", "create", "--role", "observer", "--output", "json"]);
    ok(&created);
    let token = created.json()["token"].as_str().unwrap().to_owned();
    let id = created.json()["id"].as_str().unwrap().to_owned();

    let server_dir = store_only(&pg.url());
    let (mut server, url) = start_server(&server_dir);
    let client = reqwest::Client::new();
    let status_with = |token: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(format!("{url}/webhooks/deployment/status"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status_with(token.clone()).await,
        200,
        "made elsewhere, accepted here"
    );
    assert_eq!(status_with("brg_0000".into()).await, 401);

    let revoker = store_only(&pg.url());
    let listed = revoker.run(&["token", "list", "--output", "json"]);
    ok(&listed);
    assert_eq!(listed.json()["tokens"][0]["id"], id.as_str(), "{listed:?}");
    ok(&revoker.run(&["token", "revoke", &id]));
    let revoked = Instant::now();
    while status_with(token.clone()).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "a revoked token still works after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for dir in [&maker, &server_dir, &revoker] {
        assert!(
            !dir.path(".bridge/tokens.json").exists(),
            "tokens.json is not used with a PostgreSQL store"
        );
    }
    stop_server(&mut server);
    pg.drop_schema().await;
}

/// Two servers with their events on NATS and the rest in one PostgreSQL store: a delivery
/// sent to both is published by one and acknowledged as a duplicate by the other, because
/// the claim is in the store, not in JetStream or in either server's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_a_nats_bus_claim_a_delivery_once_in_the_store() {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_err() {
        assert!(
            std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "NATS is required (BRIDGE_REQUIRE_SERVICES=1) but does not answer"
        );
        return;
    }
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    bridge_platforms::http::install_tls();
    const SECRET: &str = "whsec-shared-between-replicas";
    let replica = || {
        let mut dir = store_only(&pg.url());
        dir.env("BRIDGE_BUS", "nats://127.0.0.1:4222")
            .env("GITHUB_WEBHOOK_SECRET", SECRET);
        dir
    };
    let (a, b) = (replica(), replica());
    let (mut server_a, url_a) = start_server(&a);
    let (mut server_b, url_b) = start_server(&b);
    // A body of its own (its hash is the delivery's id), as the NATS stream outlives tests.
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bridge-webhooks/tests/fixtures/github/deployment_status_success.json"
        ))
        .unwrap(),
    )
    .unwrap();
    body["bridge_test_run"] = pg.name.clone().into();
    let body = serde_json::to_vec(&body).unwrap();
    let signature = bridge_webhooks::webhook::sign_github(SECRET, &body);
    let send = |url: String, guid: &'static str| {
        let (body, signature) = (body.clone(), signature.clone());
        async move {
            let answer = reqwest::Client::new()
                .post(format!("{url}/webhooks/deployment/github"))
                .header("x-github-event", "deployment_status")
                .header("x-github-delivery", guid)
                .header("x-hub-signature-256", signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<serde_json::Value>().await.unwrap())
        }
    };
    // GitHub's redelivery to the other replica: the same body under a new GUID.
    let (first, second) = tokio::join!(send(url_a, "guid-a"), send(url_b, "guid-b"));
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 202], "{first:?} {second:?}");
    let duplicate = if first.0 == 200 { &first.1 } else { &second.1 };
    assert_eq!(duplicate["status"], "duplicate", "{duplicate}");
    let claims: i64 = pg
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".genesis_webhook_deliveries WHERE published",
                pg.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claims, 1, "the claim is in the store");
    stop_server(&mut server_a);
    stop_server(&mut server_b);
    pg.drop_schema().await;
}
