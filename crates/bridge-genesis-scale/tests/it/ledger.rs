//! The Truth ledger on PostgreSQL: the ledger's conformance suite (each case in a schema of
//! its own), tampering with the rows found by the one verifier, and a store that goes away.

use std::time::Instant;

use bridge_genesis::ledger::{Ledger, LedgerError, LedgerRows, NewEntry, Problem, conformance};
use bridge_genesis_scale::PostgresLedgerRows;
use ed25519_dalek::SigningKey;
use serde_json::json;
use time::OffsetDateTime;

use crate::postgres::drop_schemas;
use crate::services;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn entry(seq: u64) -> NewEntry {
    NewEntry {
        timestamp: OffsetDateTime::UNIX_EPOCH,
        topic: "envsync.commit".into(),
        seq: Some(seq),
        payload: json!({"seq": seq}),
    }
}

#[tokio::test]
async fn postgres_ledger_passes_the_conformance_suite() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let run = services::unique("ledger_test");
    let made = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (u, m) = (url.clone(), made.clone());
    // The ledger is synchronous: run it where blocking is allowed.
    tokio::task::spawn_blocking(move || {
        conformance::run_all(&|| {
            let schema = format!("{run}_{}", m.lock().unwrap().len());
            m.lock().unwrap().push(schema.clone());
            let url = u.clone();
            Box::new(move || {
                Box::new(PostgresLedgerRows::connect(&url, Some(&schema)).unwrap())
                    as Box<dyn LedgerRows>
            })
        });
    })
    .await
    .unwrap();
    let schemas = made.lock().unwrap().clone();
    drop_schemas(&url, &schemas).await;
}

/// Rows edited, deleted or repeated in the table are reported as the SQLite ledger's are.
#[tokio::test]
async fn tampering_with_the_rows_is_found() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("ledger_tamper");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (u, s) = (url.clone(), schema.clone());
    let open = move || {
        Ledger::open_rows(
            Box::new(PostgresLedgerRows::connect(&u, Some(&s)).unwrap()),
            conformance::ORIGIN,
            Some(key()),
        )
        .unwrap()
    };
    let o = open.clone();
    tokio::task::spawn_blocking(move || {
        let mut l = o();
        l.append_batch(&(1..=20).map(entry).collect::<Vec<_>>())
            .unwrap();
        l.checkpoint(OffsetDateTime::now_utc()).unwrap();
    })
    .await
    .unwrap();
    let verify = || {
        let o = open.clone();
        async move {
            tokio::task::spawn_blocking(move || o().verify(&key().verifying_key()).unwrap())
                .await
                .unwrap()
        }
    };
    assert!(verify().await.is_ok());
    let table = format!("\"{schema}\".bridge_ledger_entries");

    client
        .batch_execute(&format!(
            "UPDATE {table} SET payload = '{{\"seq\":99}}' WHERE idx = 4"
        ))
        .await
        .unwrap();
    let report = verify().await;
    assert_eq!(report.first_bad_entry(), Some(4), "{report}");
    assert!(
        matches!(report.first(), Some(Problem::Changed { index: 4, .. })),
        "{report}"
    );
    client
        .batch_execute(&format!(
            "UPDATE {table} SET payload = '{{\"seq\":5}}' WHERE idx = 4;
             DELETE FROM {table} WHERE idx = 7"
        ))
        .await
        .unwrap();
    let report = verify().await;
    assert!(
        matches!(
            report.first(),
            Some(Problem::Removed {
                index: 7,
                missing: 1
            })
        ),
        "{report}"
    );
    client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT 7, timestamp, topic, seq, payload, leaf_hash
             FROM {table} WHERE idx = 6"
        ))
        .await
        .unwrap();
    let report = verify().await;
    assert!(!report.is_ok(), "{report}");
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            Problem::Duplicate {
                index: 7,
                seq: 7,
                first: 6
            }
        )),
        "{report}"
    );
    // A row no page reaches (a negative index) is still named.
    client
        .batch_execute(&format!(
            "INSERT INTO {table} SELECT -1, timestamp, topic, NULL, payload, leaf_hash
             FROM {table} WHERE idx = 0"
        ))
        .await
        .unwrap();
    let report = verify().await;
    assert!(report.to_string().contains("negative"), "{report}");
    client
        .batch_execute(&format!("DELETE FROM {table} WHERE idx = -1"))
        .await
        .unwrap();
    // A column altered and emptied: reported, never a panic.
    client
        .batch_execute(&format!(
            "ALTER TABLE {table} ALTER COLUMN payload DROP NOT NULL;
             UPDATE {table} SET payload = NULL WHERE idx = 2"
        ))
        .await
        .unwrap();
    let report = verify().await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Changed { index: 2, .. })),
        "{report}"
    );
    drop_schemas(&url, std::slice::from_ref(&schema)).await;
}

/// A store that cannot be reached is a clear, prompt error naming it, never a hang.
#[tokio::test]
async fn an_unreachable_store_is_named() {
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(|| {
        PostgresLedgerRows::connect(
            "postgres://bridge:hunter2@127.0.0.1:1/test?connect_timeout=2",
            None,
        )
    })
    .await
    .unwrap();
    match result {
        Err(e @ LedgerError::Unavailable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("127.0.0.1:1"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        other => panic!("expected the store to be unavailable, got {other:?}"),
    }
    assert!(started.elapsed().as_secs() < 20);
}
