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
