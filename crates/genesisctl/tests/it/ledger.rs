//! The Truth ledger through the CLI: every applied sync is recorded, proofs verify offline,
//! and tampering is named.

use crate::sandbox::Sandbox;

fn synced_twice() -> Sandbox {
    let s = Sandbox::new();
    s.file(".env", "API_TOKEN=tok-secret-1\nLOG_LEVEL=info\n");
    assert_eq!(s.run(&["env", "sync", "--target", "local:a.env"]).code, 0);
    s.file(".env", "API_TOKEN=tok-secret-2\nLOG_LEVEL=debug\n");
    assert_eq!(
        s.run(&["env", "sync", "--target", "local:a.env,local:b.env"])
            .code,
        0
    );
    s
}

#[test]
fn syncs_are_recorded_without_values_and_verify() {
    let s = synced_twice();
    let show = s.run(&["ledger", "show", "--output", "json"]);
    assert_eq!(show.code, 0, "{show:?}");
    let entries = show.json();
    let entries = entries.as_array().unwrap();
    // One envsync.commit per written target and one envsync.complete per sync.
    let topics: Vec<&str> = entries
        .iter()
        .map(|e| e["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        [
            "envsync.init",
            "envsync.commit",
            "envsync.complete",
            "envsync.init",
            "envsync.commit",
            "envsync.commit",
            "envsync.complete"
        ]
    );
    assert_eq!(entries[1]["seq"], 2, "each entry names its bus sequence");
    assert_eq!(entries[1]["topic"], "envsync.commit");
    assert_eq!(entries[4]["payload"]["changes"][0]["key"], "API_TOKEN");
    let export = s.run(&["ledger", "export"]);
    assert!(!export.stdout.contains("tok-secret"), "{}", export.stdout);
    assert_eq!(export.stdout.lines().count(), 7);

    let verify = s.run(&["ledger", "verify", "--output", "json"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert_eq!(verify.json()["entries"], 7);
    assert_eq!(verify.json()["attested_size"], 7);
}

#[test]
fn proofs_verify_offline_with_the_public_key_only() {
    let s = synced_twice();
    let proof = s.run(&["ledger", "proof", "1"]);
    assert_eq!(proof.code, 0, "{proof:?}");
    s.file("proof.json", &proof.stdout);
    let key = s.run(&["ledger", "public-key"]).stdout.trim().to_string();
    let json = s.run(&["ledger", "public-key", "--output", "json"]).json();
    assert_eq!(json["public_key"], key.as_str(), "{json}");
    assert_eq!(json["algorithm"], "ed25519", "{json}");
    assert_eq!(key.len(), 64);

    // Another machine: no state directory, only the proof and the key.
    let elsewhere = Sandbox::bare();
    elsewhere.file("proof.json", &proof.stdout);
    let ok = elsewhere.run(&["ledger", "verify-proof", "proof.json", "--public-key", &key]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("entry 1 is included"), "{}", ok.stdout);

    // A forged proof (another leaf) fails.
    let mut forged: serde_json::Value = serde_json::from_str(&proof.stdout).unwrap();
    forged["leaf_hash"] = serde_json::Value::String("00".repeat(32));
    elsewhere.file("forged.json", &forged.to_string());
    let bad = elsewhere.run(&[
        "ledger",
        "verify-proof",
        "forged.json",
        "--public-key",
        &key,
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    // And a wrong key is refused.
    let other = "11".repeat(32);
    let wrong = elsewhere.run(&[
        "ledger",
        "verify-proof",
        "proof.json",
        "--public-key",
        &other,
    ]);
    assert_ne!(wrong.code, 0, "{wrong:?}");
}

/// `ledger proof --from M`: the latest checkpoint extends the one of M entries, checked
/// elsewhere with the key alone; a proof between trees that disagree does not verify.
#[test]
fn consistency_proofs_verify_offline_with_the_public_key_only() {
    let s = synced_twice();
    // Each sync signed a checkpoint: at 3 entries, then at 7.
    let proof = s.run(&["ledger", "proof", "--from", "3"]);
    assert_eq!(proof.code, 0, "{proof:?}");
    let document: serde_json::Value = serde_json::from_str(&proof.stdout).unwrap();
    assert_eq!(
        (document["from_size"].as_u64(), document["to_size"].as_u64()),
        (Some(3), Some(7))
    );
    let key = s.run(&["ledger", "public-key"]).stdout.trim().to_string();

    let elsewhere = Sandbox::bare();
    elsewhere.file("consistency.json", &proof.stdout);
    let ok = elsewhere.run(&[
        "ledger",
        "verify-proof",
        "consistency.json",
        "--public-key",
        &key,
        "--output",
        "json",
    ]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(ok.json()["kind"], "consistency");
    assert_eq!(ok.json()["from_size"], 3);
    assert_eq!(ok.json()["to_size"], 7);

    let mut forged = document.clone();
    forged["proof"][0] = serde_json::Value::String("00".repeat(32));
    elsewhere.file("forged.json", &forged.to_string());
    let bad = elsewhere.run(&[
        "ledger",
        "verify-proof",
        "forged.json",
        "--public-key",
        &key,
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stdout.contains("invalid"), "{}", bad.stdout);

    let missing = s.run(&["ledger", "proof", "--from", "2"]);
    assert_ne!(missing.code, 0, "{missing:?}");
    assert!(
        missing.stderr.contains("checkpoints cover: 3, 7"),
        "{}",
        missing.stderr
    );
}

#[test]
fn an_edited_entry_is_named() {
    let s = synced_twice();
    let conn = rusqlite::Connection::open(s.path(".bridge/ledger.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE ledger_entries SET payload = replace(payload, 'applied', 'rolled_back') WHERE idx = 1",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let r = s.run(&["ledger", "verify"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("tampered: entry 1 was changed"),
        "{}",
        r.stdout
    );
}

/// Damage no row shows is still a damaged ledger: exit 1, named.
#[test]
fn a_damaged_file_is_named() {
    let s = synced_twice();
    let path = s.path(".bridge/ledger.db");
    let mut bytes = std::fs::read(&path).unwrap();
    // The write version: past 2, SQLite would open the file read-only.
    bytes[18] = 3;
    std::fs::write(&path, bytes).unwrap();
    let r = s.run(&["ledger", "verify"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("tampered: the database file is damaged"),
        "{}",
        r.stdout
    );
}

#[test]
fn no_ledger_yet_is_a_clear_error() {
    let s = Sandbox::new();
    let r = s.run(&["ledger", "verify"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("created by the first applied sync"),
        "{}",
        r.stderr
    );
}

/// Cut the tail: delete the last entry and every checkpoint above what is left. The
/// signatures still add up; only the checkpoint id counter (unless set back too) and the
/// witnessed checkpoint tell.
fn cut_the_tail(s: &Sandbox) {
    let conn = rusqlite::Connection::open(s.path(".bridge/ledger.db")).unwrap();
    let last: i64 = conn
        .query_row("SELECT max(idx) FROM ledger_entries", [], |r| r.get(0))
        .unwrap();
    conn.execute("DELETE FROM ledger_entries WHERE idx = ?1", [last])
        .unwrap();
    conn.execute("DELETE FROM ledger_checkpoints WHERE size > ?1", [last])
        .unwrap();
}

#[test]
fn a_witness_catches_a_cut_tail() {
    let s = synced_twice();
    let published = s.run(&["ledger", "checkpoint", "--publish", "audit/witness.json"]);
    assert_eq!(published.code, 0, "{published:?}");
    assert!(published.stderr.contains("Published"), "{published:?}");
    let held: serde_json::Value = serde_json::from_str(&s.read("audit/witness.json")).unwrap();
    assert_eq!(held["size"], 7, "{held}");
    let ok = s.run(&["ledger", "verify", "--witness", "audit/witness.json"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("witnessed: extends"), "{}", ok.stdout);

    cut_the_tail(&s);
    let careless = s.run(&["ledger", "verify"]);
    assert_eq!(careless.code, 1, "{careless:?}");
    assert!(
        careless.stdout.contains("checkpoint id counter"),
        "{}",
        careless.stdout
    );
    // A careful forger sets the AUTOINCREMENT counter back as well.
    rusqlite::Connection::open(s.path(".bridge/ledger.db"))
        .unwrap()
        .execute(
            "UPDATE sqlite_sequence SET seq = (SELECT max(id) FROM ledger_checkpoints)
             WHERE name = 'ledger_checkpoints'",
            [],
        )
        .unwrap();
    let plain = s.run(&["ledger", "verify"]);
    assert_eq!(plain.code, 0, "signatures alone cannot see it: {plain:?}");
    let caught = s.run(&["ledger", "verify", "--witness", "audit/witness.json"]);
    assert_eq!(caught.code, 1, "{caught:?}");
    assert!(
        caught.stdout.contains("its tail was removed"),
        "{}",
        caught.stdout
    );
    let json = s.run(&[
        "ledger",
        "verify",
        "--witness",
        "audit/witness.json",
        "--output",
        "json",
    ]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["ok"], false);
    assert_eq!(json.json()["witness"]["extends"], false);
    // Nor does the witness move back to the shorter tree.
    let refused = s.run(&["ledger", "checkpoint", "--publish", "audit/witness.json"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("lost entries"),
        "{}",
        refused.stderr
    );
    let still: serde_json::Value = serde_json::from_str(&s.read("audit/witness.json")).unwrap();
    assert_eq!(still["size"], 7);

    // A witness that holds nothing, or another log's note, proves nothing.
    let none = s.run(&["ledger", "verify", "--witness", "nowhere.json"]);
    assert_eq!(none.code, 2, "{none:?}");
    s.file("forged.json", "bridge.local/ledger\n3\nAAAA\n\n— x y\n");
    let forged = s.run(&["ledger", "verify", "--witness", "forged.json"]);
    assert_eq!(forged.code, 1, "{forged:?}");
}

/// `github` keeps the checkpoint in the Actions variable BRIDGE_LEDGER_CHECKPOINT; an
/// https:// (here loopback http://) witness takes a PUT and answers a GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_and_url_witnesses_keep_the_checkpoint() {
    use std::sync::{Arc, Mutex};
    let s = synced_twice();
    let emu = bridge_emulators::start(bridge_emulators::EmulatorConfig::default())
        .await
        .unwrap();
    let mut s = s;
    for (k, v) in emu.exports() {
        if k.starts_with("GITHUB_") {
            s.env(&k, &v);
        }
    }
    // The binary blocks; the emulators and the witness service run on the other worker.
    let run = |s: &Sandbox, args: &[&str]| {
        let mut command = s.command(args);
        tokio::task::block_in_place(move || command.output().unwrap())
    };
    let out = run(&s, &["ledger", "checkpoint", "--publish", "github"]);
    assert!(out.status.success(), "{out:?}");
    let held = emu.github().unwrap().variables(None);
    let held = held.get("BRIDGE_LEDGER_CHECKPOINT").expect("the variable");
    assert!(held.contains("\"size\": 7"), "{held}");
    let out = run(&s, &["ledger", "verify", "--witness", "github"]);
    assert!(out.status.success(), "{out:?}");

    // A minimal witness service: PUT stores the body, GET returns it.
    let kept: Arc<Mutex<Option<String>>> = Arc::default();
    let app = {
        let put = kept.clone();
        let get = kept.clone();
        axum::Router::new().route(
            "/witness",
            axum::routing::put(move |body: String| async move {
                *put.lock().unwrap() = Some(body);
                axum::http::StatusCode::NO_CONTENT
            })
            .get(move || async move {
                match get.lock().unwrap().clone() {
                    Some(body) => (axum::http::StatusCode::OK, body),
                    None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/witness", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = run(&s, &["ledger", "checkpoint", "--publish", &url]);
    assert!(out.status.success(), "{out:?}");
    let body: serde_json::Value =
        serde_json::from_str(kept.lock().unwrap().as_deref().unwrap()).unwrap();
    assert_eq!(body["size"], 7, "{body}");
    cut_the_tail(&s);
    let out = run(&s, &["ledger", "verify", "--witness", &url]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = run(
        &s,
        &["ledger", "verify", "--witness", "http://example.com/w"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
