//! The delivery claims' conformance suite against SQLite (each handle a store of its own,
//! with its own writer thread, as two processes on one file would be) and against one
//! process's memory; and a claim that survives the store being reopened.

use std::sync::Arc;

use bridge_genesis::bus::{BoxFuture, EventStore, SqliteStore, StoreError};
use bridge_genesis::deliveries::{
    CLAIM_LEASE, DeliveryBackend, DeliveryStore, MemoryDeliveries, conformance,
};

struct SqliteDeliveries {
    dir: tempfile::TempDir,
}

impl DeliveryBackend for SqliteDeliveries {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn DeliveryStore>, StoreError>> {
        let path = self.dir.path().join(format!("{name}.db"));
        Box::pin(async move {
            let store = SqliteStore::open(path)?;
            Ok(store.deliveries().expect("SQLite keeps a delivery table"))
        })
    }
}

/// One table per name, shared by its handles (one process's memory).
#[derive(Default)]
struct Memory {
    tables: std::sync::Mutex<std::collections::HashMap<String, Arc<MemoryDeliveries>>>,
}

impl DeliveryBackend for Memory {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn DeliveryStore>, StoreError>> {
        let table = self
            .tables
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(MemoryDeliveries::new(1_000)))
            .clone();
        Box::pin(async move { Ok(table as Arc<dyn DeliveryStore>) })
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = SqliteDeliveries { dir: tempfile::tempdir().unwrap() };
                conformance::$case(&backend).await;
                conformance::$case(&Memory::default()).await;
            }
        )*
    };
}

conformance!(
    claims_are_exclusive,
    concurrent_claims_have_one_winner,
    released_and_expired_claims_are_claimed_again,
    old_claims_are_pruned_and_claims_export,
);

/// A claim is on disk once won: a store opened again on the file still sees it.
#[tokio::test]
async fn claims_outlive_the_store_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let claims = store.deliveries().unwrap();
        assert!(
            claims
                .claim("github:1".into(), "a".into(), CLAIM_LEASE)
                .await
                .unwrap()
        );
    }
    let store = SqliteStore::open(&path).unwrap();
    let claims = store.deliveries().unwrap();
    assert!(
        !claims
            .claim("github:1".into(), "b".into(), CLAIM_LEASE)
            .await
            .unwrap()
    );
}
