//! The apply lock: one apply at a time per place, whoever starts it (a CLI command, an API
//! request, a reaction, the scheduler, a resume or a rollback), whatever label it uses, and
//! on whichever machine it runs.
//!
//! A place is named by its lock scope ([`bridge_platforms::Platform::lock_scope`]: the Render
//! service, the Netlify site, the GitHub repository or environment, the file's absolute
//! path), never by a label, so two labels for one service are one lock. Each scope is held
//! twice over:
//!
//! - in the process, by a tokio mutex from one table for the whole process, so tasks wait
//!   their turn without blocking a runtime thread;
//! - across processes, by the [`LockService`] of the state store: an exclusive `flock` in
//!   the state directory for the embedded store ([`FileLocks`]), a PostgreSQL advisory lock
//!   for a shared one. Either is released by the system when its holder dies (the kernel
//!   closes the file, the database ends the session), `kill -9` included.
//!
//! Scopes are taken in sorted order, so two applies that need overlapping sets cannot
//! deadlock. A lock not had within the timeout is an error that names the holder: what it
//! runs, on which host, with which pid, since when.

mod files;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bridge_sync::Fence;
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

pub use self::files::{FileLocks, lock_path};
use crate::OpsError;

/// How often a lock held by another process is tried again.
const RETRY: Duration = Duration::from_millis(50);

/// The least time one try at a lock is given, even at the deadline.
const MIN_TRY: Duration = Duration::from_secs(5);

type Table = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

static IN_PROCESS: LazyLock<Table> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Who holds a lock: what it runs, where, since when. Written beside the lock for the next
/// waiter and for `genesisctl state locks`; the lock itself, not this, is what excludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// What holds it: `genesisctl`, `genesisctl serve`, …
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub since: String,
}

impl Holder {
    /// This process, as `owner`, from now.
    pub fn this_process(owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            host: host_name(),
            pid: std::process::id(),
            since: bridge_sync::now_rfc3339(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {}, pid {}, since {}",
            self.owner, self.host, self.pid, self.since
        )
    }
}

/// The host's name, or `unknown-host`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// A held lock as `genesisctl state locks` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// [`lock_id`] of the scope: what `genesisctl state unlock` takes.
    pub id: String,
    pub scope: String,
    /// `None` when the holder wrote nothing readable.
    pub holder: Option<Holder>,
}

/// A scope's short id: 16 hex digits of its SHA-256. Stable across processes and machines,
/// and the key of the scope's PostgreSQL advisory lock.
pub fn lock_id(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    bridge_core::hex::encode(&digest[..8])
}

/// A lock taken from a [`LockService`].
pub trait Lease: Send + Sync + std::fmt::Debug {
    /// Gives the lock up, then drops `after` (the in-process turn), so that the next task
    /// of this process tries only once the lock is free. May finish in the background.
    fn release(self: Box<Self>, after: Box<dyn Send>);
    /// A check that the lock is still held, for a lock that can be lost while its holder
    /// lives (broken by `state unlock`, its session ended); `None` for one that cannot.
    fn fence(&self) -> Option<Arc<dyn Fence>> {
        None
    }
}

/// What one try at a lock found.
#[derive(Debug)]
pub enum Attempt {
    Taken(Box<dyn Lease>),
    /// Someone else holds it (who, if they said).
    Held(Option<Holder>),
}

/// Where the cross-process locks live: the state store's. Object safe; one per store.
pub trait LockService: Send + Sync {
    /// The store as errors name it (never a password).
    fn describe(&self) -> String;
    /// Tries once, without waiting.
    fn try_lock<'a>(
        &'a self,
        scope: &'a str,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<Attempt, OpsError>>;
    /// The locks held now.
    fn list(&self) -> BoxFuture<'_, Result<Vec<LockInfo>, OpsError>>;
    /// Breaks the lock `id` (see each service for what that does to its holder), answering
    /// every lock that went with it.
    fn force<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<LockInfo>, OpsError>>;
}

pub use crate::host::BoxFuture;

/// Held locks; dropping it releases them all.
#[derive(Debug)]
pub struct ApplyGuard {
    scopes: Vec<String>,
    held: Vec<(Box<dyn Lease>, OwnedMutexGuard<()>)>,
}

impl ApplyGuard {
    /// The scopes held, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// What an apply under these locks checks after each write: that every lock still
    /// stands. `None` when none can be lost.
    pub fn fence(&self) -> Option<Arc<dyn Fence>> {
        let fences: Vec<_> = self.held.iter().filter_map(|(l, _)| l.fence()).collect();
        (!fences.is_empty()).then(|| Arc::new(AllOf(fences)) as Arc<dyn Fence>)
    }
}

/// Every one of several locks' fences.
#[derive(Debug)]
struct AllOf(Vec<Arc<dyn Fence>>);

#[async_trait::async_trait]
impl Fence for AllOf {
    async fn check(&self) -> Result<(), String> {
        for fence in &self.0 {
            fence.check().await?;
        }
        Ok(())
    }
}

impl Drop for ApplyGuard {
    fn drop(&mut self) {
        for (lease, turn) in self.held.drain(..) {
            lease.release(Box::new(turn));
        }
    }
}

/// Takes the apply lock of every scope in `scopes`, waiting at most `timeout` in all.
/// `owner` says who holds it, for the error another waiter gets.
pub async fn acquire(
    service: &dyn LockService,
    scopes: impl IntoIterator<Item = String>,
    owner: &str,
    timeout: Duration,
) -> Result<ApplyGuard, OpsError> {
    acquire_saying(service, scopes, owner, timeout, &|_| {}).await
}

/// [`acquire`], telling `waiting` once per scope it has to wait for, and for whom.
pub async fn acquire_saying(
    service: &dyn LockService,
    scopes: impl IntoIterator<Item = String>,
    owner: &str,
    timeout: Duration,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<ApplyGuard, OpsError> {
    let scopes: Vec<String> = scopes
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let deadline = Instant::now() + timeout;
    let holder = Holder::this_process(owner);
    let mut guard = ApplyGuard {
        scopes: Vec::new(),
        held: Vec::with_capacity(scopes.len()),
    };
    for scope in &scopes {
        let mutex = {
            let mut table = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
            table.entry(scope.clone()).or_default().clone()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let turn = tokio::time::timeout(left, mutex.lock_owned())
            .await
            .map_err(|_| busy(scope, "another apply in this process", timeout))?;
        let mut told = false;
        let lease = loop {
            // A try that gets no answer (a store that went silent) is bounded by the same
            // deadline as the wait, and stalls no other scope's turn beyond it.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_TRY);
            let attempt = tokio::time::timeout(left, service.try_lock(scope, &holder))
                .await
                .map_err(|_| {
                    OpsError::State(format!(
                        "{} did not answer when asked for the lock of {scope} within {}",
                        service.describe(),
                        span(left)
                    ))
                })??;
            match attempt {
                Attempt::Taken(lease) => break lease,
                Attempt::Held(by) if Instant::now() < deadline => {
                    if !told {
                        told = true;
                        waiting(&format!(
                            "waiting for {scope}: {} is applying to it (up to {})",
                            named(by.as_ref()),
                            span(timeout)
                        ));
                    }
                    tokio::time::sleep(RETRY).await;
                }
                Attempt::Held(by) => return Err(busy(scope, &named(by.as_ref()), timeout)),
            }
        };
        guard.held.push((lease, turn));
    }
    guard.scopes = scopes;
    Ok(guard)
}

fn named(holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!("another process ({h})"),
        None => "another process".to_owned(),
    }
}

fn busy(scope: &str, holder: &str, waited: Duration) -> OpsError {
    OpsError::Busy(format!(
        "{scope} is being applied by {holder}; waited {} for it to finish (--lock-timeout): \
         try again once it has (a dead holder's lock is released by the system)",
        span(waited)
    ))
}

/// A wait as people read it: `300s`, `250ms`.
fn span(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The holder line written beside a lock: `owner\thost\tpid\tsince\tscope`.
pub fn holder_line(holder: &Holder, scope: &str) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{scope}\n",
        holder.owner.replace(['\t', '\n'], " "),
        holder.host.replace(['\t', '\n'], " "),
        holder.pid,
        holder.since,
    )
}

/// Reads [`holder_line`] back: the holder and the scope.
pub fn parse_holder_line(text: &str) -> Option<(Holder, String)> {
    let mut parts = text.trim_end_matches('\n').splitn(5, '\t');
    let owner = parts.next()?.to_owned();
    let host = parts.next()?.to_owned();
    let pid = parts.next()?.parse().ok()?;
    let since = parts.next()?.to_owned();
    let scope = parts.next()?.to_owned();
    Some((
        Holder {
            owner,
            host,
            pid,
            since,
        },
        scope,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn holder_lines_round_trip() {
        let holder = Holder {
            owner: "genesisctl serve".into(),
            host: "ci-runner-7".into(),
            pid: 4242,
            since: "2026-12-03T10:00:00Z".into(),
        };
        let line = holder_line(&holder, "github:o/r:environment=prod");
        let (back, scope) = parse_holder_line(&line).unwrap();
        assert_eq!(back, holder);
        assert_eq!(scope, "github:o/r:environment=prod");
        assert!(parse_holder_line("serve, pid 1").is_none());
        assert_eq!(lock_id("render:srv-1").len(), 16);
        assert_ne!(lock_id("render:srv-1"), lock_id("render:srv-2"));
    }
}
