//! Ledger throughput, each figure beside a baseline measured in the same run:
//!
//! - appends (1,000 per transaction, and one per transaction) vs a bare SQLite insert loop of
//!   the same rows into a table of the same shape, with the same pragmas;
//! - `verify` over N entries (default 1,000,000) vs plain SHA-256 over the same entry bytes
//!   held in memory, and vs a bare SQLite scan of the same columns.
//!
//! Run: `cargo bench -p bridge-genesis --bench ledger` (`LEDGER_BENCH_N=100000` for a quick
//! run).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bridge_genesis::ledger::{Ledger, NewEntry, canonical_json, verify_file};
use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::macros::datetime;

const ORIGIN: &str = "bridge.local/ledger";
const BATCH: usize = 1_000;
const SINGLES: usize = 500;

fn entry(i: u64) -> NewEntry {
    let platform = ["render", "netlify", "github"][(i % 3) as usize];
    NewEntry {
        timestamp: datetime!(2026-03-01 00:00:00 UTC) + time::Duration::milliseconds(i as i64),
        topic: "envsync.commit".to_owned(),
        seq: Some(i),
        payload: json!({
            "key": format!("SERVICE_VAR_{}", i % 5000),
            "platform": platform,
            "action": "update",
            "fingerprint": format!("hmac-sha256:{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            "actor": "sync",
        }),
    }
}

/// The same rows, pre-encoded, for the bare insert baseline.
struct Row {
    ts: String,
    topic: String,
    seq: i64,
    payload: String,
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let e = entry(i);
            Row {
                ts: bridge_core::time::rfc3339(e.timestamp),
                topic: e.topic,
                seq: i as i64,
                payload: String::from_utf8(canonical_json(&e.payload)).unwrap_or_default(),
            }
        })
        .collect()
}

fn bare(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open baseline db");
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .expect("wal");
    c.pragma_update(None, "synchronous", "FULL").expect("sync");
    c.execute_batch(
        "CREATE TABLE t (idx INTEGER PRIMARY KEY, timestamp TEXT NOT NULL, topic TEXT NOT NULL,
         seq INTEGER, payload TEXT NOT NULL, leaf_hash BLOB NOT NULL) STRICT",
    )
    .expect("schema");
    c
}

fn bare_insert(c: &mut Connection, rows: &[Row], start: usize, per_tx: usize) {
    let blob = [0u8; 32];
    for (k, chunk) in rows.chunks(per_tx).enumerate() {
        let tx = c.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .expect("prepare");
            for (j, r) in chunk.iter().enumerate() {
                let idx = (start + k * per_tx + j) as i64;
                st.execute(params![idx, r.ts, r.topic, r.seq, r.payload, &blob[..]])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn line(what: &str, n: usize, d: Duration) {
    println!(
        "  {what:<44} {n:>9} in {:>8.3} s = {:>11.0} /s",
        d.as_secs_f64(),
        rate(n, d)
    );
}

fn main() {
    let n: u64 = std::env::var("LEDGER_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    println!("ledger bench: {n} entries, WAL + synchronous=FULL, {BATCH} per batch");

    // --- Appends in batches -------------------------------------------------------------------
    let entries: Vec<NewEntry> = (0..n).map(entry).collect();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = Ledger::open(&path, ORIGIN, Some(key)).expect("open ledger");
    let t = Instant::now();
    for chunk in entries.chunks(BATCH) {
        ledger.append_batch(chunk).expect("append_batch");
    }
    let ledger_batch = t.elapsed();
    ledger
        .checkpoint(time::OffsetDateTime::UNIX_EPOCH)
        .expect("checkpoint");

    let pre = rows(n);
    let mut base = bare(&dir.path().join("bare.sqlite"));
    let t = Instant::now();
    bare_insert(&mut base, &pre, 0, BATCH);
    let bare_batch = t.elapsed();

    println!("\nappend, {BATCH} entries per transaction:");
    line("ledger.append_batch", n as usize, ledger_batch);
    line(
        "bare SQLite INSERT loop (same rows)",
        n as usize,
        bare_batch,
    );
    println!(
        "  ratio ledger/bare time: {:.2}x",
        ledger_batch.as_secs_f64() / bare_batch.as_secs_f64()
    );

    // --- Single appends -----------------------------------------------------------------------
    let t = Instant::now();
    for i in 0..SINGLES as u64 {
        ledger.append(entry(n + i)).expect("append");
    }
    let ledger_single = t.elapsed();
    let more = rows(SINGLES as u64);
    let t = Instant::now();
    bare_insert(&mut base, &more, n as usize, 1);
    let bare_single = t.elapsed();
    println!("\nappend, one entry per transaction (an fsync each):");
    line("ledger.append", SINGLES, ledger_single);
    line(
        "bare SQLite INSERT, one per transaction",
        SINGLES,
        bare_single,
    );
    println!(
        "  ratio ledger/bare time: {:.2}x",
        ledger_single.as_secs_f64() / bare_single.as_secs_f64()
    );
    let total = ledger.len();
    ledger
        .checkpoint(time::OffsetDateTime::UNIX_EPOCH)
        .expect("checkpoint");

    // --- Proofs and reopen ----------------------------------------------------------------------
    let t = Instant::now();
    let mut path_len = 0;
    for k in 0..1000u64 {
        let i = k * (total / 1000);
        path_len += ledger
            .inclusion_proof(i, total)
            .expect("proof")
            .audit_path
            .len();
    }
    let proofs = t.elapsed();
    let t = Instant::now();
    for k in 1..=1000u64 {
        black_box(
            ledger
                .consistency_proof(k * (total / 1001), total)
                .expect("proof"),
        );
    }
    let cons = t.elapsed();
    drop(ledger);
    let t = Instant::now();
    let ledger = Ledger::open(&path, ORIGIN, None).expect("reopen");
    let reopen = t.elapsed();
    println!("\nproofs over {total} entries, and reopening:");
    line("inclusion_proof (with checkpoint lookup)", 1000, proofs);
    line("consistency_proof", 1000, cons);
    println!(
        "  mean audit path: {:.1} hashes; open (rebuild frontier + cache): {:.3} s",
        path_len as f64 / 1000.0,
        reopen.as_secs_f64()
    );

    // --- Verify -------------------------------------------------------------------------------
    let t = Instant::now();
    let report = verify_file(&path, ORIGIN, &vk).expect("verify");
    let verify = t.elapsed();
    assert!(report.is_ok(), "bench ledger must verify: {report}");
    let t = Instant::now();
    let report2 = ledger.verify(&vk).expect("verify");
    let verify_open = t.elapsed();
    assert!(report2.is_ok());

    // Baseline 1: SHA-256 of the same entry bytes (the canonical lines), already in memory.
    let mut export = Vec::new();
    ledger.export_jsonl(&mut export).expect("export");
    let lines: Vec<&[u8]> = export
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let t = Instant::now();
    let mut acc = 0u8;
    for l in &lines {
        acc ^= Sha256::digest(l)[0];
    }
    black_box(acc);
    let sha = t.elapsed();

    // Baseline 2: a bare SQLite scan of the columns verify reads, no hashing.
    let c = Connection::open(&path).expect("open");
    let t = Instant::now();
    let mut st = c
        .prepare("SELECT idx, timestamp, topic, seq, payload, leaf_hash FROM ledger_entries ORDER BY idx")
        .expect("prepare");
    let mut rs = st.query([]).expect("query");
    let mut scanned = 0usize;
    while let Some(r) = rs.next().expect("row") {
        for col in 0..6 {
            black_box(r.get_ref(col).expect("col"));
        }
        scanned += 1;
    }
    let scan = t.elapsed();

    let n_v = report.entries as usize;
    println!(
        "\nverify, {n_v} entries, {} checkpoints, {:.1} MB of entry bytes:",
        report.checkpoints,
        bytes as f64 / 1e6
    );
    line("verify_file (fresh connection)", n_v, verify);
    line("Ledger::verify (open handle)", n_v, verify_open);
    line(
        "baseline: SHA-256 of the entry bytes in memory",
        lines.len(),
        sha,
    );
    line("baseline: bare SQLite scan, no hashing", scanned, scan);
    println!(
        "  ratio verify/sha256: {:.2}x; verify/scan: {:.2}x; verify/(scan+sha256): {:.2}x",
        verify.as_secs_f64() / sha.as_secs_f64(),
        verify.as_secs_f64() / scan.as_secs_f64(),
        verify.as_secs_f64() / (scan + sha).as_secs_f64()
    );
}
