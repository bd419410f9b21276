//! [`FileLocks`]: the apply locks of the embedded store, an exclusive `flock` on
//! `<state>/locks/<scope>.<id>.lock` each. The kernel drops a `flock` when its holder's file
//! closes, which a dying process does whatever killed it, so a lock here is held exactly as
//! long as a live process holds it, with no lease to expire and no clock to trust.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::{Attempt, BoxFuture, Holder, Lease, LockInfo, LockService, holder_line, lock_id};
use crate::OpsError;

/// The lock files of one state directory.
#[derive(Debug, Clone)]
pub struct FileLocks {
    dir: PathBuf,
}

impl FileLocks {
    /// Locks in `dir` (which must exist).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn open(&self, path: &Path) -> Result<File, OpsError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| OpsError::State(format!("the lock {}: {e}", path.display())))
    }

    /// Every lock file held by a live process now.
    fn held(&self) -> Result<Vec<LockInfo>, OpsError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(OpsError::State(format!("{}: {e}", self.dir.display()))),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "lock") {
                continue;
            }
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            match file.try_lock() {
                // Free: nobody holds it (our own handle lets go as it closes).
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(_)) => continue,
            }
            let (holder, scope) = read_holder(&mut file);
            let id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.rsplit('.').next())
                .unwrap_or_default()
                .to_owned();
            out.push(LockInfo {
                id: scope.as_deref().map(lock_id).unwrap_or(id),
                scope: scope.unwrap_or_else(|| path.display().to_string()),
                holder,
            });
        }
        out.sort_by(|a, b| a.scope.cmp(&b.scope));
        Ok(out)
    }
}

/// The lock file of `scope`: readable prefix for people listing the directory, and the
/// scope's [`lock_id`], since a scope holds characters a file name cannot.
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
    dir.join(format!("{readable}.{}.lock", lock_id(scope)))
}

/// Who holds a lock file, as its holder wrote it.
fn read_holder(file: &mut File) -> (Option<Holder>, Option<String>) {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text));
    match super::parse_holder_line(&text) {
        Some((holder, scope)) => (Some(holder), Some(scope)),
        None => (None, None),
    }
}

/// Holds the open file: the flock lives as long as it does.
#[derive(Debug)]
struct FileLease {
    file: File,
}

impl Lease for FileLease {
    fn release(self: Box<Self>, after: Box<dyn Send>) {
        // Closing the file drops the flock, at once.
        drop(self.file);
        drop(after);
    }
}

impl LockService for FileLocks {
    fn describe(&self) -> String {
        format!("the lock files in {}", self.dir.display())
    }

    fn try_lock<'a>(
        &'a self,
        scope: &'a str,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<Attempt, OpsError>> {
        Box::pin(async move {
            let path = lock_path(&self.dir, scope);
            let mut file = self.open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Ok(Attempt::Held(read_holder(&mut file).0));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(OpsError::State(format!("the lock {}: {e}", path.display())));
                }
            }
            // Who holds it, for the next waiter and `state locks`.
            let note = holder_line(holder, scope);
            let _ = file
                .set_len(0)
                .and_then(|()| file.seek(SeekFrom::Start(0)))
                .and_then(|_| file.write_all(note.as_bytes()));
            Ok(Attempt::Taken(Box::new(FileLease { file })))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LockInfo>, OpsError>> {
        Box::pin(async move { self.held() })
    }

    fn force<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<LockInfo>, OpsError>> {
        Box::pin(async move {
            let held = self.held()?;
            let Some(lock) = held.into_iter().find(|l| l.id == id || l.scope == id) else {
                return Err(OpsError::NotFound(format!(
                    "no lock {id} is held in {}: see `genesisctl state locks`",
                    self.dir.display()
                )));
            };
            // A flock outlives no process: the one holding it is running on this machine.
            let who = match &lock.holder {
                Some(h) => format!("pid {} ({h})", h.pid),
                None => "a running process".to_owned(),
            };
            Err(OpsError::Input(format!(
                "{} is held by {who}, which is alive: a lock file is released the moment its \
                 process ends, so there is nothing to break. Wait for it, or stop that process \
                 if it is stuck (kill {})",
                lock.scope,
                lock.holder.as_ref().map_or(0, |h| h.pid)
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::super::{acquire, holder_line};
    use super::*;

    #[tokio::test]
    async fn one_scope_is_held_once_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let locks = FileLocks::new(dir.path());
        let scope = || vec!["render:srv-unit-1".to_owned()];
        let held = acquire(&locks, scope(), "test", Duration::from_secs(1))
            .await
            .unwrap();
        let err = acquire(&locks, scope(), "test", Duration::from_millis(120))
            .await
            .unwrap_err();
        assert!(matches!(err, OpsError::Busy(_)), "{err}");
        assert!(err.to_string().contains("render:srv-unit-1"), "{err}");
        drop(held);
        acquire(&locks, scope(), "test", Duration::from_millis(120))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lock_file_held_elsewhere_is_waited_for_named_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let locks = FileLocks::new(dir.path());
        let scope = "netlify:site-unit-2";
        // Another process, as far as flock can tell: a separate open file description.
        let other = File::create(lock_path(dir.path(), scope)).unwrap();
        other.lock().unwrap();
        let them = Holder {
            owner: "genesisctl serve".into(),
            host: "box-1".into(),
            pid: 4242,
            since: "2026-12-03T10:00:00Z".into(),
        };
        (&other)
            .write_all(holder_line(&them, scope).as_bytes())
            .unwrap();
        let err = acquire(
            &locks,
            [scope.to_owned()],
            "cli",
            Duration::from_millis(150),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("pid 4242") && text.contains("box-1"),
            "{text}"
        );
        assert!(text.contains("since 2026-12-03T10:00:00Z"), "{text}");
        let listed = locks.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].scope, scope);
        assert_eq!(listed[0].id, lock_id(scope));
        assert_eq!(listed[0].holder.as_ref().unwrap().pid, 4242);
        // Breaking a live holder's flock is refused, naming the pid to stop.
        let refused = locks.force(&lock_id(scope)).await.unwrap_err();
        assert!(refused.to_string().contains("kill 4242"), "{refused}");
        drop(other);
        assert!(locks.list().await.unwrap().is_empty());
        let guard = acquire(&locks, [scope.to_owned()], "cli", Duration::from_secs(1))
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
