//! The schedule table's conformance suite against SQLite: each handle a store of its own (its
//! own writer thread and connection), as two processes on one file would be.

use std::sync::Arc;

use bridge_genesis::bus::{BoxFuture, EventStore, SqliteStore, StoreError};
use bridge_genesis::schedule::{ScheduleBackend, ScheduleStore, conformance};

struct SqliteSchedules {
    dir: tempfile::TempDir,
}

impl ScheduleBackend for SqliteSchedules {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn ScheduleStore>, StoreError>> {
        let path = self.dir.path().join(format!("{name}.db"));
        Box::pin(async move {
            let store = SqliteStore::open(path)?;
            Ok(store.schedules().expect("SQLite keeps a schedule table"))
        })
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = SqliteSchedules { dir: tempfile::tempdir().unwrap() };
                conformance::$case(&backend).await;
            }
        )*
    };
}

conformance!(
    claims_are_exclusive,
    concurrent_claims_have_one_winner,
    runs_are_recorded_newest_first,
    jobs_are_independent,
    runs_export_and_import,
);

/// The table survives reopening, next to the events.
#[tokio::test]
async fn claims_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let slot = time::macros::datetime!(2026-03-01 10:00:00 UTC);
    {
        let store = SqliteStore::open(&path).unwrap();
        let schedules = store.schedules().unwrap();
        assert!(
            schedules
                .claim("envsync".into(), slot, "a".into())
                .await
                .unwrap()
        );
        schedules
            .finish("envsync".into(), slot, "ok".into())
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let schedules = store.schedules().unwrap();
    assert!(
        !schedules
            .claim("envsync".into(), slot, "b".into())
            .await
            .unwrap()
    );
    let runs = schedules.runs("envsync".into(), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].owner, "a");
    assert_eq!(runs[0].outcome.as_deref(), Some("ok"));
}
