//! Webhook deliveries claimed once across every process sharing a store: a table of
//! delivery ids, each with who claimed it, when, and whether its events were published.
//!
//! A server that receives a verified delivery first [`DeliveryStore::claim`]s its id. The
//! claim succeeds for exactly one claimant however many replicas receive it at once; the
//! others answer `duplicate`. The winner publishes, then marks the claim
//! [`DeliveryStore::published`]; if publishing fails it [`DeliveryStore::release`]s the
//! claim, so the platform's retry is processed. A claimant that dies between claim and
//! publish leaves an unpublished claim: once it is older than the lease the caller gives
//! ([`CLAIM_LEASE`]), the next receipt of that delivery claims it again, so it is delayed,
//! never lost for good. Claims older than [`RETENTION`] are pruned.
//!
//! The SQLite store keeps the table in the events' file, the PostgreSQL store in its schema
//! (stamped by the database's clock); [`crate::bus::EventStore::deliveries`] hands out the
//! store's own. [`MemoryDeliveries`] is one process's table, for a store without one
//! (NATS). All pass [`conformance`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::bus::{BoxFuture, StoreError};

/// How long an unpublished claim holds: past it, the claimant is taken for dead and the
/// delivery may be claimed again. Publishing takes milliseconds; a minute leaves room for a
/// slow store without letting a crash swallow a delivery for long.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How long claims are kept: longer than any platform retries a delivery (GitHub offers
/// redelivery for 3 days, Render and Netlify retry for hours).
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One claimed delivery, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryClaim {
    /// The delivery id the webhook verifier derived (`github:…`, `render:…`).
    pub id: String,
    /// Who claimed it (`host:pid`).
    pub owner: String,
    /// When, by the store's clock (microsecond precision).
    pub claimed_at: OffsetDateTime,
    /// Whether its events are in the log.
    pub published: bool,
}

/// Claimed webhook deliveries, shared by every process using the store.
pub trait DeliveryStore: Send + Sync {
    /// Claims `id` for `owner`: `true` when nobody had, or when the standing claim is
    /// unpublished and older than `lease` (its claimant is taken for dead); `false`
    /// otherwise. Exactly one of any number of concurrent claimants wins.
    fn claim(
        &self,
        id: String,
        owner: String,
        lease: Duration,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Records that the claim's events are published: it is never claimed again.
    fn published(&self, id: String) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Gives up `owner`'s unpublished claim of `id` (publishing failed), so the next
    /// receipt is processed. Another owner's claim, or a published one, is left alone.
    fn release(&self, id: String, owner: String) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Forgets claims made more than `age` ago; returns how many.
    fn prune(&self, age: Duration) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Every claim, oldest first (`state export`).
    fn claims(&self) -> BoxFuture<'_, Result<Vec<DeliveryClaim>, StoreError>>;

    /// Adds `claims` as they are, keeping any claim of the same id already there
    /// (`state import`, `state migrate`).
    fn import(&self, claims: Vec<DeliveryClaim>) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Microseconds since the Unix epoch, saturating.
pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

/// A duration in microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One process's claims, for a store that keeps none (NATS): exact within the process,
/// nothing across replicas. Bounded: the oldest claims beyond `capacity` are forgotten.
pub struct MemoryDeliveries {
    claims: Mutex<HashMap<String, DeliveryClaim>>,
    capacity: usize,
}

impl MemoryDeliveries {
    pub fn new(capacity: usize) -> Self {
        Self {
            claims: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DeliveryClaim>> {
        self.claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DeliveryStore for MemoryDeliveries {
    fn claim(
        &self,
        id: String,
        owner: String,
        lease: Duration,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let now = OffsetDateTime::now_utc();
        let mut claims = self.lock();
        let won = match claims.get(&id) {
            Some(c) => !c.published && c.claimed_at + lease < now,
            None => true,
        };
        if won {
            claims.insert(
                id.clone(),
                DeliveryClaim {
                    id,
                    owner,
                    claimed_at: now,
                    published: false,
                },
            );
            if claims.len() > self.capacity {
                let mut by_age: Vec<(OffsetDateTime, String)> = claims
                    .values()
                    .map(|c| (c.claimed_at, c.id.clone()))
                    .collect();
                by_age.sort();
                let excess = claims.len() - self.capacity;
                for (_, old) in by_age.into_iter().take(excess) {
                    claims.remove(&old);
                }
            }
        }
        Box::pin(async move { Ok(won) })
    }

    fn published(&self, id: String) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Some(c) = self.lock().get_mut(&id) {
            c.published = true;
        }
        Box::pin(async { Ok(()) })
    }

    fn release(&self, id: String, owner: String) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut claims = self.lock();
        if claims
            .get(&id)
            .is_some_and(|c| !c.published && c.owner == owner)
        {
            claims.remove(&id);
        }
        Box::pin(async { Ok(()) })
    }

    fn prune(&self, age: Duration) -> BoxFuture<'_, Result<u64, StoreError>> {
        let cutoff = OffsetDateTime::now_utc() - age;
        let mut claims = self.lock();
        let before = claims.len();
        claims.retain(|_, c| c.claimed_at >= cutoff);
        let pruned = (before - claims.len()) as u64;
        Box::pin(async move { Ok(pruned) })
    }

    fn claims(&self) -> BoxFuture<'_, Result<Vec<DeliveryClaim>, StoreError>> {
        let mut all: Vec<DeliveryClaim> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (a.claimed_at, &a.id).cmp(&(b.claimed_at, &b.id)));
        Box::pin(async move { Ok(all) })
    }

    fn import(&self, claims: Vec<DeliveryClaim>) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut held = self.lock();
        for c in claims {
            held.entry(c.id.clone()).or_insert(c);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Opens delivery stores for [`conformance`]: the same name gives handles on the same data
/// (two handles stand for two processes).
pub trait DeliveryBackend: Send + Sync {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn DeliveryStore>, StoreError>>;
}

/// The suite every [`DeliveryStore`] passes. Cases panic with the violated property.
pub mod conformance {
    use std::sync::Arc;
    use std::time::Duration;

    use time::OffsetDateTime;
    use tokio::task::JoinSet;

    use super::{CLAIM_LEASE, DeliveryBackend, DeliveryClaim, DeliveryStore};

    /// Every case, in order.
    pub async fn run_all(backend: &dyn DeliveryBackend) {
        claims_are_exclusive(backend).await;
        concurrent_claims_have_one_winner(backend).await;
        released_and_expired_claims_are_claimed_again(backend).await;
        old_claims_are_pruned_and_claims_export(backend).await;
    }

    async fn open(backend: &dyn DeliveryBackend, name: &str) -> Arc<dyn DeliveryStore> {
        match backend.open(name).await {
            Ok(store) => store,
            Err(e) => panic!("opening delivery store {name:?}: {e}"),
        }
    }

    async fn claim(store: &dyn DeliveryStore, id: &str, owner: &str, lease: Duration) -> bool {
        match store.claim(id.into(), owner.into(), lease).await {
            Ok(won) => won,
            Err(e) => panic!("claiming {id}: {e}"),
        }
    }

    async fn claims(store: &dyn DeliveryStore) -> Vec<DeliveryClaim> {
        match store.claims().await {
            Ok(all) => all,
            Err(e) => panic!("listing claims: {e}"),
        }
    }

    /// A delivery is claimed once, from any handle; another id is free; a published claim
    /// is never claimed again, however old.
    pub async fn claims_are_exclusive(backend: &dyn DeliveryBackend) {
        let a = open(backend, "deliveries_exclusive").await;
        let b = open(backend, "deliveries_exclusive").await;
        assert!(claim(&*a, "github:1", "a", CLAIM_LEASE).await, "first wins");
        assert!(!claim(&*a, "github:1", "a", CLAIM_LEASE).await, "not twice");
        assert!(!claim(&*b, "github:1", "b", CLAIM_LEASE).await, "b loses");
        assert!(claim(&*b, "github:2", "b", CLAIM_LEASE).await, "another id");
        assert!(a.published("github:1".into()).await.is_ok());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !claim(&*b, "github:1", "b", Duration::ZERO).await,
            "a published claim never expires"
        );
        let listed = claims(&*b).await;
        let one = listed.iter().find(|c| c.id == "github:1");
        assert!(
            one.is_some_and(|c| c.published && c.owner == "a"),
            "{listed:?}"
        );
        let now = OffsetDateTime::now_utc();
        assert!(
            listed
                .iter()
                .all(|c| (now - c.claimed_at).abs() < time::Duration::minutes(5)),
            "claimed_at is the store's present"
        );
    }

    /// Sixteen claimants on two handles race for each of five deliveries: one winner each.
    pub async fn concurrent_claims_have_one_winner(backend: &dyn DeliveryBackend) {
        let handles = [
            open(backend, "deliveries_race").await,
            open(backend, "deliveries_race").await,
        ];
        let mut tasks = JoinSet::new();
        for n in 0..16usize {
            let store = handles[n % 2].clone();
            tasks.spawn(async move {
                let mut won = Vec::new();
                for d in 0..5 {
                    let id = format!("render:msg_{d}");
                    if claim(&*store, &id, &format!("owner{n}"), CLAIM_LEASE).await {
                        won.push(d);
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
        assert_eq!(wins, vec![0, 1, 2, 3, 4], "exactly one winner per delivery");
    }

    /// A released claim is free at once; only its owner releases it, and never once
    /// published. An unpublished claim older than the lease is claimed again, by one of
    /// several racing claimants; a younger one is not.
    pub async fn released_and_expired_claims_are_claimed_again(backend: &dyn DeliveryBackend) {
        let a = open(backend, "deliveries_expiry").await;
        let b = open(backend, "deliveries_expiry").await;
        assert!(claim(&*a, "netlify:1", "a", CLAIM_LEASE).await);
        assert!(b.release("netlify:1".into(), "b".into()).await.is_ok());
        assert!(
            !claim(&*b, "netlify:1", "b", CLAIM_LEASE).await,
            "another owner cannot release it"
        );
        assert!(a.release("netlify:1".into(), "a".into()).await.is_ok());
        assert!(
            claim(&*b, "netlify:1", "b", CLAIM_LEASE).await,
            "released: the retry is processed"
        );
        assert!(b.published("netlify:1".into()).await.is_ok());
        assert!(b.release("netlify:1".into(), "b".into()).await.is_ok());
        assert!(
            !claim(&*a, "netlify:1", "a", Duration::ZERO).await,
            "a published claim is not released"
        );

        // The claimant of netlify:2 dies before publishing.
        assert!(claim(&*a, "netlify:2", "dead", CLAIM_LEASE).await);
        assert!(
            !claim(&*b, "netlify:2", "b", CLAIM_LEASE).await,
            "within the lease it stands"
        );
        // The lease judges a claim's age: the dead one (2 s old) has expired, while the
        // winner's, made during the race, must still stand when the last racer arrives. A
        // lease of 100 ms let a racer on a loaded runner find the winner's claim expired too.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lease = Duration::from_millis(1_500);
        let mut tasks = JoinSet::new();
        for n in 0..8usize {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { claim(&*store, "netlify:2", &format!("r{n}"), lease).await });
        }
        let mut winners = 0;
        while let Some(won) = tasks.join_next().await {
            if matches!(won, Ok(true)) {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "an expired claim is claimed again, once");
        let listed = claims(&*a).await;
        let two = listed.iter().find(|c| c.id == "netlify:2");
        assert!(
            two.is_some_and(|c| c.owner.starts_with('r') && !c.published),
            "{listed:?}"
        );
    }

    /// `prune` forgets claims older than its age and keeps the rest; `claims` lists oldest
    /// first; `import` adds claims as they are and keeps what is there.
    pub async fn old_claims_are_pruned_and_claims_export(backend: &dyn DeliveryBackend) {
        let store = open(backend, "deliveries_prune").await;
        // Whole seconds: every store keeps at least microseconds.
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let old = match OffsetDateTime::from_unix_timestamp(now - 8 * 24 * 3600) {
            Ok(old) => old,
            Err(e) => panic!("eight days ago: {e}"),
        };
        let imported = vec![
            DeliveryClaim {
                id: "github:old".into(),
                owner: "x".into(),
                claimed_at: old,
                published: true,
            },
            DeliveryClaim {
                id: "github:kept".into(),
                owner: "x".into(),
                claimed_at: old + time::Duration::days(2),
                published: true,
            },
        ];
        assert!(store.import(imported.clone()).await.is_ok());
        assert!(claim(&*store, "github:new", "me", CLAIM_LEASE).await);
        // Importing again keeps what is there (the new claim is not overwritten).
        let overwrite = DeliveryClaim {
            id: "github:new".into(),
            owner: "other".into(),
            claimed_at: old,
            published: true,
        };
        assert!(store.import(vec![overwrite]).await.is_ok());
        let listed = claims(&*store).await;
        let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["github:old", "github:kept", "github:new"]);
        assert_eq!(listed[0], imported[0], "imported as it was");
        assert_eq!(listed[2].owner, "me");
        let pruned = store.prune(super::RETENTION).await.ok();
        assert_eq!(pruned, Some(1));
        let ids: Vec<String> = claims(&*store).await.into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["github:kept", "github:new"]);
    }
}
