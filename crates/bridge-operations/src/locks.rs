//! The apply lock: one apply at a time per place, whoever starts it (a CLI command, an API
//! request, a reaction, the scheduler, a resume or a rollback) and whatever label it uses.
//!
//! A place is named by its lock scope ([`bridge_platforms::Platform::lock_scope`]: the Render
//! service, the Netlify site, the GitHub repository or environment, the file's absolute
//! path), never by a label, so two labels for one service are one lock. Each scope is held
//! twice over:
//!
//! - in the process, by a tokio mutex from one table for the whole process, so tasks wait
//!   their turn without blocking a runtime thread;
//! - across processes on one machine, by an exclusive `flock` on `locks/<scope>.lock` in the
//!   state directory, which the kernel releases when the holder exits, `kill -9` included,
//!   so a crash never leaves a lock behind.
//!
//! Scopes are taken in sorted order, so two applies that need overlapping sets cannot
//! deadlock. A lock not had within the timeout is an error that names the holder.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::OpsError;

/// How often a lock held by another process is tried again.
const RETRY: Duration = Duration::from_millis(50);

type Table = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

static IN_PROCESS: LazyLock<Table> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Held locks; dropping it releases them all.
#[derive(Debug)]
pub struct ApplyGuard {
    scopes: Vec<String>,
    _files: Vec<File>,
    _tasks: Vec<OwnedMutexGuard<()>>,
}

impl ApplyGuard {
    /// The scopes held, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

/// Takes the apply lock of every scope in `scopes`, waiting at most `timeout` in all.
/// `owner` says who holds it, for the error another waiter gets.
pub async fn acquire(
    dir: &Path,
    scopes: impl IntoIterator<Item = String>,
    owner: &str,
    timeout: Duration,
) -> Result<ApplyGuard, OpsError> {
    acquire_saying(dir, scopes, owner, timeout, &|_| {}).await
}

/// [`acquire`], telling `waiting` once per scope it has to wait for, and for whom.
pub async fn acquire_saying(
    dir: &Path,
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
    let mut tasks = Vec::with_capacity(scopes.len());
    let mut files = Vec::with_capacity(scopes.len());
    for scope in &scopes {
        let mutex = {
            let mut table = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
            table.entry(scope.clone()).or_default().clone()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let task = tokio::time::timeout(left, mutex.lock_owned())
            .await
            .map_err(|_| busy(scope, "another apply in this process", timeout))?;
        tasks.push(task);
        files.push(lock_file(dir, scope, owner, deadline, timeout, waiting).await?);
    }
    Ok(ApplyGuard {
        scopes,
        _files: files,
        _tasks: tasks,
    })
}

fn busy(scope: &str, holder: &str, waited: Duration) -> OpsError {
    OpsError::Busy(format!(
        "{scope} is being applied by {holder}; waited {} for it to finish (--lock-timeout): \
         try again once it has (a dead holder's lock is released by the system)",
        span(waited)
    ))
}

/// The lock file of `scope`: readable prefix for people listing the directory, and a digest,
/// since a scope holds characters a file name cannot.
pub fn lock_path(dir: &Path, scope: &str) -> PathBuf {
    let readable: String = scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let digest = Sha256::digest(scope.as_bytes());
    let short = bridge_core::hex::encode(&digest[..8]);
    dir.join(format!("{readable}.{short}.lock"))
}

/// A wait as people read it: `300s`, `250ms`.
fn span(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Who holds a lock file, as its holder wrote it.
fn holder_of(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut holder));
    match holder.trim() {
        "" => "another process".to_owned(),
        holder => format!("another process ({holder})"),
    }
}

async fn lock_file(
    dir: &Path,
    scope: &str,
    owner: &str,
    deadline: Instant,
    timeout: Duration,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<File, OpsError> {
    let path = lock_path(dir, scope);
    let state = |e: std::io::Error| OpsError::State(format!("the lock {}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(state)?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                if !told {
                    told = true;
                    waiting(&format!(
                        "waiting for {scope}: {} is applying to it (up to {})",
                        holder_of(&mut file),
                        span(timeout)
                    ));
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(busy(scope, &holder_of(&mut file), timeout));
            }
            Err(TryLockError::Error(e)) => return Err(state(e)),
        }
    }
    // Who holds it, for the next waiter's error; the lock, not this text, is what counts.
    let note = format!("{owner}, pid {}, {scope}\n", std::process::id());
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(note.as_bytes()));
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn one_scope_is_held_once_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let scope = || vec!["render:srv-unit-1".to_owned()];
        let held = acquire(dir.path(), scope(), "test", Duration::from_secs(1))
            .await
            .unwrap();
        let err = acquire(dir.path(), scope(), "test", Duration::from_millis(120))
            .await
            .unwrap_err();
        assert!(matches!(err, OpsError::Busy(_)), "{err}");
        assert!(err.to_string().contains("render:srv-unit-1"), "{err}");
        drop(held);
        acquire(dir.path(), scope(), "test", Duration::from_millis(120))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_file_held_elsewhere_is_waited_for_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let scope = "netlify:site-unit-2";
        // Another process, as far as flock can tell: a separate open file description.
        let other = File::create(lock_path(dir.path(), scope)).unwrap();
        other.lock().unwrap();
        (&other).write_all(b"serve, pid 4242").unwrap();
        let err = acquire(
            dir.path(),
            [scope.to_owned()],
            "cli",
            Duration::from_millis(150),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pid 4242"), "{err}");
        drop(other);
        let guard = acquire(
            dir.path(),
            [scope.to_owned()],
            "cli",
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(guard.scopes(), [scope.to_owned()]);
    }

    #[test]
    fn lock_files_are_named_by_scope() {
        let dir = Path::new("/x");
        let a = lock_path(dir, "github:o/r:environment=prod");
        assert_ne!(a, lock_path(dir, "github:o/r"));
        assert!(
            a.to_string_lossy()
                .starts_with("/x/github_o_r_environment_prod.")
        );
    }
}
