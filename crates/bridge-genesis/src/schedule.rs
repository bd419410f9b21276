//! Scheduled work that runs once across every process sharing a store: a table of claimed
//! slots, `(job, slot)` its primary key.
//!
//! A scheduler that wants to run `job` for the slot `slot` (the instant a schedule fired)
//! first [`ScheduleStore::claim`]s it; the insert succeeds for exactly one claimant, however
//! many processes or replicas try at once, and only that one runs the job. It then records
//! how it went with [`ScheduleStore::finish`]. A claimed slot that never finished (the
//! process died mid-run) stays claimed: the slot is not run twice.
//!
//! The SQLite store keeps the table in the events' file, the PostgreSQL store in its schema;
//! [`crate::bus::EventStore::schedules`] hands out the store's own implementation. Both pass
//! [`conformance`].

use std::sync::Arc;

use time::OffsetDateTime;

use crate::bus::{BoxFuture, StoreError};

/// One claimed slot of a job, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    pub job: String,
    /// When the schedule fired (microsecond precision).
    pub slot: OffsetDateTime,
    /// Who claimed it (`host:pid`).
    pub owner: String,
    /// When it was claimed, by the store's clock.
    pub claimed_at: OffsetDateTime,
    /// When the run was recorded as finished; `None` while running (or if it never finished).
    pub finished_at: Option<OffsetDateTime>,
    /// What the run reported, without values.
    pub outcome: Option<String>,
}

/// Claimed slots of scheduled jobs, shared by every process using the store.
pub trait ScheduleStore: Send + Sync {
    /// Claims `slot` of `job` for `owner`: `true` for exactly one caller per `(job, slot)`,
    /// across processes; `false` when it was already claimed (by anyone, this caller too).
    fn claim(
        &self,
        job: String,
        slot: OffsetDateTime,
        owner: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Records the outcome of a claimed slot. Finishing a slot nobody claimed changes nothing.
    fn finish(
        &self,
        job: String,
        slot: OffsetDateTime,
        outcome: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The newest claimed slot of `job` (finished or not); `None` when it never ran.
    fn last_slot(&self, job: String) -> BoxFuture<'_, Result<Option<OffsetDateTime>, StoreError>>;

    /// The newest `limit` claimed slots of `job`, newest first.
    fn runs(
        &self,
        job: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>>;

    /// Every claimed slot of every job, by job then slot (`state export`).
    fn all_runs(&self) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>>;

    /// Adds `runs` as they are (owner, stamps, outcome), keeping any slot already claimed
    /// (`state import`, `state migrate`).
    fn import_runs(&self, runs: Vec<ScheduledRun>) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Microseconds since the Unix epoch: the precision slots are stored with.
pub(crate) fn slot_micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// Opens schedule stores for [`conformance`]: the same name gives handles on the same data
/// (two handles stand for two processes).
pub trait ScheduleBackend: Send + Sync {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn ScheduleStore>, StoreError>>;
}

/// The suite every [`ScheduleStore`] passes. Cases panic with the violated property.
pub mod conformance {
    use std::sync::Arc;

    use time::OffsetDateTime;
    use time::macros::datetime;
    use tokio::task::JoinSet;

    use super::{ScheduleBackend, ScheduleStore};

    /// Every case, in order.
    pub async fn run_all(backend: &dyn ScheduleBackend) {
        claims_are_exclusive(backend).await;
        concurrent_claims_have_one_winner(backend).await;
        runs_are_recorded_newest_first(backend).await;
        jobs_are_independent(backend).await;
        runs_export_and_import(backend).await;
    }

    async fn open(backend: &dyn ScheduleBackend, name: &str) -> Arc<dyn ScheduleStore> {
        match backend.open(name).await {
            Ok(store) => store,
            Err(e) => panic!("opening schedule store {name:?}: {e}"),
        }
    }

    async fn claim(
        store: &dyn ScheduleStore,
        job: &str,
        slot: OffsetDateTime,
        owner: &str,
    ) -> bool {
        match store.claim(job.into(), slot, owner.into()).await {
            Ok(won) => won,
            Err(e) => panic!("claiming {job} {slot}: {e}"),
        }
    }

    const SLOT: OffsetDateTime = datetime!(2026-03-01 10:00:00 UTC);

    /// A slot is claimed once; a second claim, from the same or another handle, loses; a
    /// later slot can be claimed again.
    pub async fn claims_are_exclusive(backend: &dyn ScheduleBackend) {
        let a = open(backend, "claims_are_exclusive").await;
        let b = open(backend, "claims_are_exclusive").await;
        assert_eq!(a.last_slot("sync".into()).await.ok(), Some(None));
        assert!(claim(&*a, "sync", SLOT, "a").await, "the first claim wins");
        assert!(
            !claim(&*a, "sync", SLOT, "a").await,
            "a claim is not repeated"
        );
        assert!(
            !claim(&*b, "sync", SLOT, "b").await,
            "another process loses"
        );
        let later = SLOT + time::Duration::hours(1);
        assert!(
            claim(&*b, "sync", later, "b").await,
            "the next slot is free"
        );
        assert_eq!(a.last_slot("sync".into()).await.ok(), Some(Some(later)));
        // An earlier slot claimed late does not move the newest back.
        assert!(claim(&*a, "sync", SLOT - time::Duration::hours(1), "a").await);
        assert_eq!(b.last_slot("sync".into()).await.ok(), Some(Some(later)));
    }

    /// Sixteen claimants on two handles race for each of five slots: one winner per slot.
    pub async fn concurrent_claims_have_one_winner(backend: &dyn ScheduleBackend) {
        let handles = [
            open(backend, "concurrent_claims").await,
            open(backend, "concurrent_claims").await,
        ];
        let mut tasks = JoinSet::new();
        for n in 0..16usize {
            let store = handles[n % 2].clone();
            tasks.spawn(async move {
                let mut won = Vec::new();
                for s in 0..5i64 {
                    let slot = SLOT + time::Duration::minutes(s);
                    if claim(&*store, "sync", slot, &format!("owner{n}")).await {
                        won.push(s);
                    }
                }
                won
            });
        }
        let mut wins = Vec::new();
        while let Some(won) = tasks.join_next().await {
            match won {
                Ok(won) => wins.extend(won),
                Err(e) => panic!("a claimant failed: {e}"),
            }
        }
        wins.sort_unstable();
        assert_eq!(wins, vec![0, 1, 2, 3, 4], "exactly one winner per slot");
        let runs = handles[0]
            .runs("sync".into(), 100)
            .await
            .ok()
            .unwrap_or_default();
        assert_eq!(runs.len(), 5);
    }

    /// `finish` records the outcome on the claimed row; `runs` lists newest first, limited,
    /// with owner and stamps; finishing an unclaimed slot records nothing.
    pub async fn runs_are_recorded_newest_first(backend: &dyn ScheduleBackend) {
        let store = open(backend, "runs_are_recorded").await;
        let slots: Vec<OffsetDateTime> = (0..3).map(|h| SLOT + time::Duration::hours(h)).collect();
        for slot in &slots {
            assert!(claim(&*store, "sync", *slot, "me").await);
        }
        let finished = store
            .finish("sync".into(), slots[1], "ok (2 providers)".into())
            .await;
        assert!(finished.is_ok(), "finish: {finished:?}");
        let nobody = store
            .finish(
                "sync".into(),
                SLOT - time::Duration::days(1),
                "ghost".into(),
            )
            .await;
        assert!(nobody.is_ok(), "finishing an unclaimed slot: {nobody:?}");

        let runs = match store.runs("sync".into(), 10).await {
            Ok(runs) => runs,
            Err(e) => panic!("runs: {e}"),
        };
        let listed: Vec<OffsetDateTime> = runs.iter().map(|r| r.slot).collect();
        assert_eq!(
            listed,
            vec![slots[2], slots[1], slots[0]],
            "newest first, no ghost"
        );
        assert!(runs.iter().all(|r| r.owner == "me" && r.job == "sync"));
        assert_eq!(runs[1].outcome.as_deref(), Some("ok (2 providers)"));
        assert!(runs[1].finished_at.is_some_and(|f| f >= runs[1].claimed_at));
        assert_eq!(runs[0].outcome, None);
        assert_eq!(runs[0].finished_at, None);
        let now = OffsetDateTime::now_utc();
        assert!(
            runs.iter()
                .all(|r| (now - r.claimed_at).abs() < time::Duration::minutes(5)),
            "claimed_at is the store's present"
        );

        let limited = store.runs("sync".into(), 2).await.ok().unwrap_or_default();
        assert_eq!(limited.len(), 2);
        assert_eq!(limited[0].slot, slots[2]);
        let none = store.runs("sync".into(), 0).await.ok().unwrap_or_default();
        assert!(none.is_empty());

        // Sub-second slots keep microseconds.
        let odd = datetime!(2026-03-02 10:00:00.123456 UTC);
        assert!(claim(&*store, "sync", odd, "me").await);
        assert_eq!(store.last_slot("sync".into()).await.ok(), Some(Some(odd)));
    }

    /// Slots of one job do not block another's.
    pub async fn jobs_are_independent(backend: &dyn ScheduleBackend) {
        let store = open(backend, "jobs_are_independent").await;
        assert!(claim(&*store, "envsync", SLOT, "me").await);
        assert!(claim(&*store, "parity", SLOT, "me").await);
        assert!(!claim(&*store, "parity", SLOT, "me").await);
        assert_eq!(store.last_slot("other".into()).await.ok(), Some(None));
        assert!(
            store
                .runs("other".into(), 10)
                .await
                .ok()
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(
            store.runs("parity".into(), 10).await.ok().map(|r| r.len()),
            Some(1)
        );
    }

    /// `all_runs` lists every job's slots; `import_runs` into another store gives the same
    /// list back, and keeps a slot already claimed there.
    pub async fn runs_export_and_import(backend: &dyn ScheduleBackend) {
        let from = open(backend, "runs_export_from").await;
        assert!(claim(&*from, "sync", SLOT, "a").await);
        assert!(claim(&*from, "parity", SLOT, "b").await);
        let finished = from.finish("sync".into(), SLOT, "ok".into()).await;
        assert!(finished.is_ok(), "{finished:?}");
        let runs = match from.all_runs().await {
            Ok(runs) => runs,
            Err(e) => panic!("all_runs: {e}"),
        };
        let jobs: Vec<&str> = runs.iter().map(|r| r.job.as_str()).collect();
        assert_eq!(jobs, vec!["parity", "sync"], "by job then slot");
        let to = open(backend, "runs_export_to").await;
        let later = SLOT + time::Duration::hours(1);
        assert!(claim(&*to, "sync", later, "c").await);
        let imported = to.import_runs(runs.clone()).await;
        assert!(imported.is_ok(), "{imported:?}");
        assert!(
            to.import_runs(runs.clone()).await.is_ok(),
            "twice is harmless"
        );
        let back = to.all_runs().await.ok().unwrap_or_default();
        assert_eq!(back.len(), 3);
        assert_eq!(&back[..2], &runs[..], "imported as they were");
        assert!(
            !claim(&*to, "sync", SLOT, "d").await,
            "an imported slot is claimed"
        );
    }
}
