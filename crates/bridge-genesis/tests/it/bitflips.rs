//! One bit flipped at a time in a ledger file: verify must either report a problem, or the
//! flip must have changed nothing the ledger means.
//!
//! "Nothing it means" is decided without trusting the verifier: every row of the ledger's
//! tables (entries, checkpoints, the origin, the AUTOINCREMENT counter) and the schema text of
//! its objects read back identical, SQLite's own `integrity_check` passes, and the file still
//! opens as the same log and takes an append. The one column allowed to differ is a
//! checkpoint's `created_at`: nothing signs it (C2SP notes carry no time), so a plausible
//! value cannot be told from the true one; verify checks its form, and this test counts how
//! often a flip changed it.
//!
//! `BRIDGE_BITFLIP_CASES=n` samples `n` byte positions besides the header (every bit of each);
//! `BRIDGE_BITFLIP_SEED` picks another sample. Run with `--nocapture` for the figures.

use std::path::Path;

use bridge_genesis::ledger::{Hash, Ledger, NewEntry, verify_file};
use ed25519_dalek::SigningKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use time::macros::datetime;

const ORIGIN: &str = "bridge.local/ledger";
/// Byte positions sampled beyond the 100-byte file header (8 flips each).
const DEFAULT_CASES: usize = 64;
/// SQLite's default page size, which the ledger keeps: for naming where a flip landed.
const PAGE: usize = 4096;

/// The ledger's tables, and the column of each that no signature covers (masked).
const TABLES: &[(&str, Option<&str>)] = &[
    ("ledger_meta", None),
    ("ledger_entries", None),
    ("ledger_checkpoints", Some("created_at")),
];

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A small ledger: entries with and without a bus sequence, one payload large enough for an
/// overflow page, two checkpoints; the WAL folded into the main file.
fn build(path: &Path) {
    let mut l = Ledger::open(path, ORIGIN, Some(key())).unwrap();
    let entry = |i: u64| NewEntry {
        timestamp: datetime!(2026-03-01 00:00:00 UTC) + time::Duration::seconds(i as i64),
        topic: if i.is_multiple_of(2) {
            "envsync.commit"
        } else {
            "deploy.render"
        }
        .to_owned(),
        seq: (!i.is_multiple_of(3)).then_some(500 + i),
        payload: if i == 4 {
            json!({"n": i, "blob": "x".repeat(6000)})
        } else {
            json!({"n": i, "key": format!("VAR_{i}"), "ok": i.is_multiple_of(2)})
        },
    };
    l.append_batch(&(0..5).map(entry).collect::<Vec<_>>())
        .unwrap();
    l.checkpoint(datetime!(2026-03-01 12:00:00 UTC)).unwrap();
    for i in 5..8 {
        l.append(entry(i)).unwrap();
    }
    l.checkpoint(datetime!(2026-03-01 12:05:00 UTC)).unwrap();
    drop(l);
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(conn);
    assert!(
        verify_file(path, ORIGIN, &key().verifying_key())
            .unwrap()
            .is_ok()
    );
}

/// One value as SQLite holds it (type and bytes), so a change of type is a change.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
    /// An unsigned column: compared apart.
    Masked,
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(r) => Cell::Real(r.to_bits()),
        ValueRef::Text(t) => Cell::Text(t.to_vec()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

/// Everything the ledger means, read straight from the file.
#[derive(Debug, PartialEq)]
struct Meaning {
    rows: Vec<(String, Vec<Vec<Cell>>)>,
    schema: Vec<Vec<Cell>>,
    unsigned: Vec<Cell>,
}

fn query(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<Vec<Cell>>> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(cell(row.get_ref(i)?));
        }
        out.push(cells);
    }
    Ok(out)
}

fn meaning(path: &Path) -> Result<Meaning, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    let check = query(&conn, "PRAGMA integrity_check").map_err(|e| e.to_string())?;
    if check != vec![vec![Cell::Text(b"ok".to_vec())]] {
        return Err(format!("integrity_check: {check:?}"));
    }
    let mut rows = Vec::new();
    let mut unsigned = Vec::new();
    for (table, masked) in TABLES {
        let columns = query(
            &conn,
            &format!("SELECT name FROM pragma_table_info('{table}')"),
        )
        .map_err(|e| e.to_string())?;
        let mut got = query(
            &conn,
            &format!("SELECT rowid, * FROM {table} ORDER BY rowid"),
        )
        .map_err(|e| e.to_string())?;
        if let Some(m) = masked {
            let at = columns
                .iter()
                .position(|c| *c == vec![Cell::Text(m.as_bytes().to_vec())])
                .ok_or_else(|| format!("{table} has no column {m}"))?;
            for row in &mut got {
                unsigned.push(std::mem::replace(&mut row[at + 1], Cell::Masked));
            }
        }
        rows.push((table.to_string(), got));
    }
    rows.push((
        "sqlite_sequence".into(),
        query(&conn, "SELECT rowid, * FROM sqlite_sequence ORDER BY rowid")
            .map_err(|e| e.to_string())?,
    ));
    let schema = query(
        &conn,
        "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid",
    )
    .map_err(|e| e.to_string())?;
    Ok(Meaning {
        rows,
        schema,
        unsigned,
    })
}

/// The flipped file still opens as the same ledger and takes an append (a flip that made it
/// read-only, or another log, is a change that matters).
fn still_works(path: &Path, want: &(u64, Hash)) -> Result<(), String> {
    let mut l = Ledger::open(path, ORIGIN, Some(key())).map_err(|e| format!("open: {e}"))?;
    if (l.len(), l.root()) != *want {
        return Err(format!(
            "it opens as a log of {} entries with another root",
            l.len()
        ));
    }
    l.append(NewEntry {
        timestamp: datetime!(2026-03-02 00:00:00 UTC),
        topic: "envsync.commit".into(),
        seq: None,
        payload: json!({"after": "flip"}),
    })
    .map_err(|e| format!("append: {e}"))?;
    Ok(())
}

/// A small deterministic generator (splitmix64): the sample must not change between runs.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The header, then positions half drawn from the non-zero bytes (structure and content,
/// where a flip is most likely to mean something) and half from the whole file.
fn positions(file: &[u8], cases: usize, seed: u64) -> Vec<usize> {
    let mut out: Vec<usize> = (0..100.min(file.len())).collect();
    let nonzero: Vec<usize> = (100..file.len()).filter(|&i| file[i] != 0).collect();
    let mut mix = Mix(seed);
    for n in 0..cases {
        let pos = if n % 2 == 0 && !nonzero.is_empty() {
            nonzero[mix.below(nonzero.len())]
        } else {
            mix.below(file.len())
        };
        out.push(pos);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What one flip came to.
enum Outcome {
    Refused,
    /// Verify returned an error rather than a report naming the damage.
    Error(String),
    /// Accepted, and nothing meaningful changed; true if an unsigned `created_at` did.
    Meaningless(bool),
    /// Accepted though something meaningful changed.
    Failure(String),
}

/// What the flips are checked against.
struct Original {
    bytes: Vec<u8>,
    meaning: Meaning,
    ledger: (u64, Hash),
}

fn flip(original: &Original, copy: &Path, pos: usize, bit: u8) -> Outcome {
    let mut flipped = original.bytes.clone();
    flipped[pos] ^= 1 << bit;
    for suffix in ["-wal", "-shm"] {
        let mut name = copy.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    std::fs::write(copy, &flipped).unwrap();
    let failure = |why: String| {
        Outcome::Failure(format!(
            "byte {pos} (page {}, offset {}) bit {bit}: accepted, but {why}",
            pos / PAGE + 1,
            pos % PAGE
        ))
    };
    match verify_file(copy, ORIGIN, &key().verifying_key()) {
        Ok(r) if !r.is_ok() => Outcome::Refused,
        Err(e) => Outcome::Error(format!("byte {pos} bit {bit}: verify failed: {e}")),
        Ok(_) => match meaning(copy) {
            Ok(m) if m.rows == original.meaning.rows && m.schema == original.meaning.schema => {
                match still_works(copy, &original.ledger) {
                    Ok(()) => Outcome::Meaningless(m.unsigned != original.meaning.unsigned),
                    Err(e) => failure(e),
                }
            }
            Ok(m) => failure(what_changed(&original.meaning, &m)),
            Err(e) => failure(e),
        },
    }
}

#[test]
fn every_accepted_bit_flip_changes_nothing_the_ledger_means() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("original.sqlite");
    build(&path);
    let ledger = {
        let l = Ledger::open(&path, ORIGIN, None).unwrap();
        (l.len(), l.root())
    };
    assert!(
        !dir.path().join("original.sqlite-wal").exists(),
        "the WAL must be folded into the file, or flips in it would go untested"
    );
    let original = Original {
        bytes: std::fs::read(&path).unwrap(),
        meaning: meaning(&path).unwrap(),
        ledger,
    };
    let cases = env_number("BRIDGE_BITFLIP_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let seed = env_number("BRIDGE_BITFLIP_SEED").unwrap_or(18);
    let flips: Vec<(usize, u8)> = positions(&original.bytes, cases, seed)
        .into_iter()
        .flat_map(|pos| (0..8).map(move |bit| (pos, bit)))
        .collect();

    // Each flip is independent: spread them over the cores, one copy of the file each.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (original, flips, dir) = (&original, &flips, dir.path());
                s.spawn(move || {
                    let copy = dir.join(format!("flipped-{w}.sqlite"));
                    flips
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|&(pos, bit)| (pos, flip(original, &copy, pos, bit)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let (mut refused, mut meaningless, mut unsigned) = (0, 0, 0);
    let (mut errors, mut failures) = (Vec::new(), Vec::new());
    let mut header_accepted = std::collections::BTreeSet::new();
    let mut regions = std::collections::BTreeMap::<&str, usize>::new();
    for (pos, outcome) in outcomes {
        match outcome {
            Outcome::Refused => refused += 1,
            Outcome::Error(e) => errors.push(e),
            Outcome::Meaningless(changed_time) => {
                meaningless += 1;
                unsigned += usize::from(changed_time);
                if pos < 100 {
                    header_accepted.insert(pos);
                }
                *regions.entry(region(&original.bytes, pos)).or_default() += 1;
            }
            Outcome::Failure(e) => failures.push(e),
        }
    }
    println!(
        "bit flips: {} tried in a {}-byte ledger, {refused} refused by verify, {} verify \
         errors, {meaningless} accepted as meaningless (of which {unsigned} changed an unsigned \
         created_at), {} accepted though they changed something",
        flips.len(),
        original.bytes.len(),
        errors.len(),
        failures.len()
    );
    println!("header bytes where a flip was accepted: {header_accepted:?}");
    println!("accepted flips by where they landed: {regions:?}");
    assert!(
        failures.is_empty(),
        "{} flips were accepted though they change what the ledger holds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // `ledger verify` exits 1 for a damaged ledger only when the damage is a problem in the
    // report; an error would be exit 2, as for a missing file.
    assert!(
        errors.is_empty(),
        "{} flips made verify fail instead of naming the damage:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// Where in the file `pos` is, read from the b-tree page header of its page.
fn region(file: &[u8], pos: usize) -> &'static str {
    if pos < 100 {
        return "file header";
    }
    let base = pos - pos % PAGE;
    let at = |i: usize| usize::from(file[base + i]);
    // Page 1 holds the file header before its own page header.
    let h = if base == 0 { 100 } else { 0 };
    let header_len = match at(h) {
        2 | 5 => 12,
        10 | 13 => 8,
        _ => return "overflow or free page",
    };
    let cells = at(h + 3) << 8 | at(h + 4);
    let content = match at(h + 5) << 8 | at(h + 6) {
        0 => 65536,
        n => n,
    };
    let off = pos % PAGE;
    if off < h + header_len {
        "b-tree page header"
    } else if off < h + header_len + 2 * cells {
        "cell pointers"
    } else if off < content {
        "unallocated page space"
    } else {
        "cells and freeblocks"
    }
}

fn what_changed(want: &Meaning, got: &Meaning) -> String {
    for ((table, a), (_, b)) in want.rows.iter().zip(&got.rows) {
        if a.len() != b.len() {
            return format!("{table} holds {} rows, not {}", b.len(), a.len());
        }
        for (row, (x, y)) in a.iter().zip(b).enumerate() {
            if let Some(col) = x.iter().zip(y).position(|(x, y)| x != y) {
                let short = |c: &Cell| format!("{c:?}").chars().take(80).collect::<String>();
                return format!(
                    "{table} row {row} column {col} changed: {} -> {}",
                    short(&x[col]),
                    short(&y[col])
                );
            }
        }
    }
    format!("the schema changed: {:?}", got.schema)
}
