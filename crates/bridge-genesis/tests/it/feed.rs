//! The ledger's feed: every bus event is recorded once, however many feeders run.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_genesis::bus::{Bus, Policy, Role, SqliteStore};
use bridge_genesis::feed::{CheckpointPolicy, DEFAULT_LEDGER_TOPICS, LedgerFeed, record_pending};
use bridge_genesis::ledger::{Ledger, verify_file};
use ed25519_dalek::SigningKey;
use serde_json::json;

const ORIGIN: &str = "bridge.local/ledger";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

async fn publish(bus: &Bus, n: usize) {
    for i in 0..n {
        bus.publish("envsync.commit", json!({"n": i}), Role::System)
            .await
            .unwrap();
    }
}

/// How many ledger entries record each bus sequence.
fn entries_per_seq(ledger: &Ledger) -> BTreeMap<u64, usize> {
    let mut per_seq = BTreeMap::new();
    for e in ledger.entries(0..ledger.len()).unwrap() {
        *per_seq.entry(e.seq.unwrap()).or_insert(0) += 1;
    }
    per_seq
}

/// A server's long-lived feed and a one-shot feed (a CLI command, or the same server's own
/// command path) on one state directory: the one-shot feed records events the long-lived one
/// has not seen, and the long-lived one, with its ledger and consumer open, comes back to them.
#[tokio::test]
async fn two_feeders_on_one_ledger_record_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("events.db")).unwrap());
    let bus = Bus::new(store, Policy::default());
    let path = dir.path().join("ledger.db");
    let open = {
        let path = path.clone();
        move || Ledger::open(&path, ORIGIN, Some(key()))
    };

    let mut server = LedgerFeed::new(CheckpointPolicy::AFTER_EVERY_RUN);
    publish(&bus, 3).await;
    assert_eq!(
        server
            .record_pending(&bus, DEFAULT_LEDGER_TOPICS, open.clone())
            .await
            .unwrap(),
        3
    );

    publish(&bus, 2).await;
    record_pending(&bus, DEFAULT_LEDGER_TOPICS, open.clone())
        .await
        .unwrap();
    publish(&bus, 1).await;
    server
        .record_pending(&bus, DEFAULT_LEDGER_TOPICS, open.clone())
        .await
        .unwrap();
    server
        .flush(&bus, DEFAULT_LEDGER_TOPICS, open.clone())
        .await
        .unwrap();

    let ledger = open().unwrap();
    let per_seq = entries_per_seq(&ledger);
    assert_eq!(per_seq.len(), 6, "every event is recorded: {per_seq:?}");
    assert!(
        per_seq.values().all(|&n| n == 1),
        "recorded twice: {per_seq:?}"
    );
    assert!(
        verify_file(&path, ORIGIN, &key().verifying_key())
            .unwrap()
            .is_ok()
    );
}

/// Two handles on one ledger file append the same events: the second append records nothing.
#[test]
fn an_event_already_recorded_is_not_appended_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut a = Ledger::open(&path, ORIGIN, Some(key())).unwrap();
    let mut b = Ledger::open(&path, ORIGIN, Some(key())).unwrap();
    let entry = |seq: u64| bridge_genesis::ledger::NewEntry {
        timestamp: time::OffsetDateTime::UNIX_EPOCH,
        topic: "envsync.commit".into(),
        seq: Some(seq),
        payload: json!({"seq": seq}),
    };
    assert_eq!(a.append_batch(&[entry(1), entry(2)]).unwrap(), vec![0, 1]);
    // b has not seen a's entries; they are in the file all the same.
    assert_eq!(
        b.append_batch(&[entry(2), entry(3), entry(3)]).unwrap(),
        vec![2]
    );
    // One entry: the index it is recorded at.
    assert_eq!(a.append(entry(1)).unwrap(), 0);
    let c = Ledger::open(&path, ORIGIN, Some(key())).unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(
        entries_per_seq(&c).into_values().collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}
