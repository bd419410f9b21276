//! [`LedgerAccess`]: where a long-running process's ledger is and how to sign its
//! checkpoints, so each user (the feed, a request) opens a handle of its own.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{Ledger, LedgerError, LedgerRows, SqliteRows};

/// Handles open at once through one access: each may be a connection to a networked store,
/// and a full verification holds a copy of the log, so concurrent requests wait their turn
/// rather than open without bound.
pub const MAX_HANDLES: usize = 4;

/// Opens a fresh connection to the ledger's rows.
pub type OpenRows = Arc<dyn Fn() -> Result<Box<dyn LedgerRows>, LedgerError> + Send + Sync>;

#[derive(Clone)]
pub struct LedgerAccess {
    origin: String,
    key: SigningKey,
    describe: String,
    rows: OpenRows,
    /// Handles kept between requests: opening costs a connection on a networked store.
    idle: Arc<Mutex<Vec<Ledger>>>,
    /// How many handles [`with`](Self::with) has out, at most [`MAX_HANDLES`].
    busy: Arc<(Mutex<usize>, Condvar)>,
}

impl std::fmt::Debug for LedgerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerAccess")
            .field("rows", &self.describe)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LedgerAccess {
    /// The ledger in the SQLite file at `path`.
    pub fn sqlite(path: impl Into<PathBuf>, origin: &str, key: SigningKey) -> Self {
        let path = path.into();
        let describe = path.display().to_string();
        let rows: OpenRows =
            Arc::new(move || Ok(Box::new(SqliteRows::open(&path)?) as Box<dyn LedgerRows>));
        Self::new(describe, origin, key, rows)
    }

    /// The ledger whose rows `rows` opens; `describe` names them in messages.
    pub fn new(describe: String, origin: &str, key: SigningKey, rows: OpenRows) -> Self {
        Self {
            origin: origin.to_owned(),
            key,
            describe,
            rows,
            idle: Arc::new(Mutex::new(Vec::new())),
            busy: Arc::new((Mutex::new(0), Condvar::new())),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Where the rows are, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A fresh handle, able to sign.
    pub fn open(&self) -> Result<Ledger, LedgerError> {
        Ledger::open_rows((self.rows)()?, &self.origin, Some(self.key.clone()))
    }

    /// A fresh connection to the rows, for a verification that needs no handle.
    pub fn rows(&self) -> Result<Box<dyn LedgerRows>, LedgerError> {
        (self.rows)()
    }

    /// Starts opening a handle on a blocking thread and keeps it for the next
    /// [`take`](Self::take) or [`with`](Self::with): a command that will record what it
    /// publishes connects while it works rather than after. Needs a Tokio runtime.
    pub fn prepare(&self) {
        let access = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(ledger) = access.open()
                && let Ok(mut idle) = access.idle.lock()
                && idle.is_empty()
            {
                idle.push(ledger);
            }
        });
    }

    /// The kept handle, caught up, or a fresh one. Blocks: call it where blocking is allowed.
    pub fn take(&self) -> Result<Ledger, LedgerError> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        // A handle that cannot catch up (its connection lost, rows removed under it) is
        // replaced by a fresh one, which reads the rows as they are now.
        let kept = kept.filter(|l| l.damage().is_none()).and_then(|mut l| {
            l.refresh().ok()?;
            Some(l)
        });
        match kept {
            Some(ledger) => Ok(ledger),
            None => self.open(),
        }
    }

    /// Runs `f` on a handle brought up to date with what others appended: the one kept from
    /// the last call when it still can be, or a fresh one. Blocks: call it where blocking is
    /// allowed.
    pub fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> Result<T, LedgerError> {
        let _turn = Turn::take(&self.busy);
        let mut ledger = self.take()?;
        let out = f(&mut ledger);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_HANDLES
        {
            idle.push(ledger);
        }
        Ok(out)
    }
}

/// One of the [`MAX_HANDLES`] turns, given back when dropped.
struct Turn<'a>(&'a (Mutex<usize>, Condvar));

impl<'a> Turn<'a> {
    fn take(gate: &'a (Mutex<usize>, Condvar)) -> Self {
        let (count, freed) = gate;
        let mut busy = count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *busy >= MAX_HANDLES {
            busy = freed
                .wait(busy)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy += 1;
        Turn(gate)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let (count, freed) = self.0;
        let mut busy = count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// However many requests arrive at once, at most MAX_HANDLES handles are open, and every
    /// request is served.
    #[test]
    fn concurrent_users_share_a_bounded_number_of_handles() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Arc::new(AtomicUsize::new(0));
        let path = dir.path().join("ledger.db");
        let counted = opened.clone();
        let rows: OpenRows = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(SqliteRows::open(&path)?) as Box<dyn LedgerRows>)
        });
        let access = LedgerAccess::new(
            "test".into(),
            "bridge.test/ledger",
            SigningKey::from_bytes(&[1; 32]),
            rows,
        );
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    access
                        .with(|_| {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            now.fetch_sub(1, Ordering::SeqCst);
                        })
                        .unwrap();
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= MAX_HANDLES);
        assert!(opened.load(Ordering::SeqCst) <= MAX_HANDLES);
    }
}
