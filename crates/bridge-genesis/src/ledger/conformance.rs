//! What every [`LedgerRows`] backend must do, as tests a backend's crate runs against a real
//! store: `open` gives a fresh handle on one and the same log each time it is called, and each
//! case is given a log of its own.
//!
//! These panic on failure; they are meant to be called from `#[test]` functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde_json::json;
use time::OffsetDateTime;

use super::{
    Ledger, LedgerDump, LedgerError, LedgerRows, NewEntry, leaf_hash, verify_consistency,
    verify_inclusion, verify_proof_json,
};

/// The origin every case's log is opened under.
pub const ORIGIN: &str = "bridge.test/conformance";

/// Opens a fresh handle on a case's log.
pub type Open<'a> = dyn Fn() -> Box<dyn LedgerRows> + Sync + 'a;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn ledger(open: &Open<'_>) -> Ledger {
    Ledger::open_rows(open(), ORIGIN, Some(key())).unwrap()
}

fn entry(seq: u64) -> NewEntry {
    NewEntry {
        timestamp: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seq as i64),
        topic: "envsync.commit".into(),
        seq: Some(seq),
        payload: json!({"seq": seq, "note": "ünïcode \u{0} and quotes \""}),
    }
}

/// Runs every case; `fresh` gives the opener of a new, empty log for each.
pub fn run_all(fresh: &dyn Fn() -> Box<Open<'static>>) {
    entries_read_back_as_appended(&*fresh());
    events_are_recorded_once_across_handles(&*fresh());
    concurrent_feeders_record_each_event_once(&*fresh());
    checkpoints_and_proofs_verify_offline(&*fresh());
    another_origin_is_refused(&*fresh());
    a_dump_moves_a_log_whole(&*fresh(), &*fresh());
}

/// Entries come back with their content, their leaf hashes match the exported lines, and a
/// second handle builds the same tree.
pub fn entries_read_back_as_appended(open: &Open<'_>) {
    let mut a = ledger(open);
    assert!(a.is_empty());
    let batch: Vec<NewEntry> = (1..=300).map(entry).collect();
    assert_eq!(
        a.append_batch(&batch).unwrap(),
        (0..300).collect::<Vec<_>>()
    );
    assert_eq!(
        a.append(NewEntry {
            seq: None,
            ..entry(0)
        })
        .unwrap(),
        300
    );
    let read = a.entries(10..13).unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].index, 10);
    assert_eq!(read[0].seq, Some(11));
    assert_eq!(read[0].payload, batch[10].payload);
    assert_eq!(read[0].timestamp, "1970-01-01T00:00:11Z");
    assert_eq!(a.entry(300).unwrap().unwrap().seq, None);
    assert!(a.entry(301).unwrap().is_none());

    let mut lines = Vec::new();
    assert_eq!(a.export_jsonl(&mut lines).unwrap(), 301);
    let lines: Vec<&[u8]> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let proof = a.inclusion_proof(42, a.len()).unwrap();
    assert_eq!(proof.leaf_hash, leaf_hash(lines[42]));

    let b = ledger(open);
    assert_eq!(b.len(), 301);
    assert_eq!(b.root(), a.root());
}

/// An event another handle recorded, or one repeated in a batch, is left out.
pub fn events_are_recorded_once_across_handles(open: &Open<'_>) {
    let mut a = ledger(open);
    let mut b = ledger(open);
    assert_eq!(a.append_batch(&[entry(1), entry(2)]).unwrap(), vec![0, 1]);
    assert_eq!(
        b.append_batch(&[entry(2), entry(3), entry(3)]).unwrap(),
        vec![2]
    );
    assert_eq!(a.append(entry(1)).unwrap(), 0);
    assert_eq!(a.append(entry(3)).unwrap(), 2);
    a.refresh().unwrap();
    assert_eq!((a.len(), a.root()), (b.len(), b.root()));
    let report = ledger(open).verify(&key().verifying_key()).unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Feeders on four threads, each with its own handle, append overlapping runs of events and
/// sign checkpoints: every event is recorded exactly once and the log verifies.
pub fn concurrent_feeders_record_each_event_once(open: &Open<'_>) {
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                let mut l = ledger(open);
                for round in 0..10u64 {
                    let from = 1 + round * 10 + t * 3;
                    let batch: Vec<NewEntry> = (from..from + 12).map(entry).collect();
                    l.append_batch(&batch).unwrap();
                    if round % 3 == t % 3 {
                        l.checkpoint(OffsetDateTime::now_utc()).unwrap();
                    }
                }
            });
        }
    });
    let l = ledger(open);
    let mut per_seq = BTreeMap::new();
    for e in l.entries(0..l.len()).unwrap() {
        *per_seq.entry(e.seq.unwrap()).or_insert(0) += 1;
    }
    assert!(per_seq.values().all(|n| *n == 1), "{per_seq:?}");
    assert_eq!(per_seq.len() as u64, l.len());
    let report = l.verify(&key().verifying_key()).unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Checkpoints extend each other, proofs check with the public key alone, and a checkpoint
/// made by another handle is extended by this one.
pub fn checkpoints_and_proofs_verify_offline(open: &Open<'_>) {
    let vk = key().verifying_key();
    let mut a = ledger(open);
    a.append_batch(&(1..=5).map(entry).collect::<Vec<_>>())
        .unwrap();
    let first = a.checkpoint(OffsetDateTime::now_utc()).unwrap();
    assert_eq!(first.checkpoint.size, 5);
    let mut b = ledger(open);
    b.append_batch(&(6..=9).map(entry).collect::<Vec<_>>())
        .unwrap();
    let second = b.checkpoint(OffsetDateTime::now_utc()).unwrap();
    assert_eq!(second.checkpoint.size, 9);
    assert!(second.id > first.id);
    assert_eq!(b.latest_checkpoint().unwrap().unwrap(), second);
    assert_eq!(
        a.checkpoints().unwrap(),
        vec![first.clone(), second.clone()]
    );

    let proof = b.inclusion_proof(3, 9).unwrap();
    assert!(verify_inclusion(
        &proof.leaf_hash,
        3,
        9,
        &proof.audit_path,
        &second.checkpoint.root
    ));
    verify_proof_json(&proof.to_json(), &vk).unwrap();
    let consistency = b.signed_consistency_proof(5, 9).unwrap();
    consistency.verify(&vk).unwrap();
    assert!(verify_consistency(
        5,
        9,
        &first.checkpoint.root,
        &second.checkpoint.root,
        &b.consistency_proof(5, 9).unwrap()
    ));
    assert_eq!(b.root_at(5).unwrap(), first.checkpoint.root);

    let report = ledger(open).verify(&vk).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.entries, report.checkpoints), (9, 2));
    assert_eq!(report.attested_size, 9);
    // Another key's view of the same rows: every signature fails.
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert!(!ledger(open).verify(&other).unwrap().is_ok());
}

/// A log made for one origin refuses to open as another.
pub fn another_origin_is_refused(open: &Open<'_>) {
    ledger(open);
    match Ledger::open_rows(open(), "other.example/log", None) {
        Err(LedgerError::OriginMismatch { found, .. }) => assert_eq!(found, ORIGIN),
        other => panic!("expected an origin mismatch, got {other:?}"),
    }
}

/// A dump of one log loads into an empty one, which then verifies, proves and extends as the
/// original did; loading it again, into a log that is no longer empty, is refused.
pub fn a_dump_moves_a_log_whole(from: &Open<'_>, to: &Open<'_>) {
    let vk = key().verifying_key();
    let mut a = ledger(from);
    a.append_batch(&(1..=40).map(entry).collect::<Vec<_>>())
        .unwrap();
    a.checkpoint(OffsetDateTime::now_utc()).unwrap();
    a.append_batch(&(41..=45).map(entry).collect::<Vec<_>>())
        .unwrap();
    a.checkpoint(OffsetDateTime::now_utc()).unwrap();
    let dump = LedgerDump::read(&*from(), ORIGIN).unwrap();
    assert_eq!((dump.entries.len(), dump.checkpoints.len()), (45, 2));
    // A dump proves itself before it is loaded; an edited one does not.
    let report = dump.verify(&vk).unwrap();
    assert!(report.is_ok() && report.attested_size == 45, "{report}");
    let mut edited = dump.clone();
    edited.entries[3].payload = r#"{"seq":99}"#.to_owned();
    assert_eq!(edited.verify(&vk).unwrap().first_bad_entry(), Some(3));
    // Checkpoints out of the order they were made are refused before anything is written,
    // since a load writes them in the file's order.
    let mut reordered = dump.clone();
    reordered.checkpoints.reverse();
    assert!(reordered.check_loadable().is_err());
    assert!(reordered.load(&*to()).is_err());
    assert!(ledger(to).is_empty(), "a refused load wrote nothing");
    dump.load(&*to()).unwrap();

    let mut b = ledger(to);
    assert_eq!((b.len(), b.root()), (a.len(), a.root()));
    let report = b.verify(&vk).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.attested_size, 45);
    assert_eq!(
        b.checkpoints()
            .unwrap()
            .iter()
            .map(|c| &c.checkpoint)
            .collect::<Vec<_>>(),
        a.checkpoints()
            .unwrap()
            .iter()
            .map(|c| &c.checkpoint)
            .collect::<Vec<_>>()
    );
    // The copy goes on where the original stopped, without recording an event twice.
    assert!(b.append_batch(&[entry(45)]).unwrap().is_empty());
    b.append_batch(&[entry(46)]).unwrap();
    b.checkpoint(OffsetDateTime::now_utc()).unwrap();
    assert!(b.verify(&vk).unwrap().is_ok());
    match dump.load(&*to()) {
        Err(LedgerError::Refused(why)) => assert!(why.contains("already holds"), "{why}"),
        other => panic!("a second load must be refused, got {other:?}"),
    }
    assert_eq!(ledger(to).len(), 46);
}
