//! The state file: per source, the commits already processed (with their outcome) and the
//! source head up to which everything has an outcome; and the last run's summary. It is
//! replaced atomically (temporary file in the same directory, fsync, rename, fsync of the
//! directory), so a crash leaves the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AutosyncError, Result};

/// The format version written.
pub const STATE_VERSION: u32 = 1;

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// By source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceState>,
    /// The last run's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// One source's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceState {
    /// The source URL without credentials (for humans).
    #[serde(default)]
    pub url: String,
    /// Every commit up to this head has an outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_head: Option<String>,
    /// Commit id → outcome.
    #[serde(default)]
    pub processed: BTreeMap<String, Processed>,
}

/// What happened to one commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processed {
    /// `merged`, `pull_request`, `review`, `conflict`, `empty`, or `skipped:<reason>`.
    pub outcome: String,
    /// When (RFC 3339).
    pub at: String,
    /// The pull request it went into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// Its commit id in the target, when carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_sha: Option<String>,
}

/// The last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastRun {
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// The overall outcome (`merged`, `pull_request`, `nothing_to_do`, …).
    pub outcome: String,
    /// Per source: name → outcome.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
}

impl StateFile {
    /// Reads `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: STATE_VERSION,
                    ..Self::default()
                });
            }
            Err(e) => {
                return Err(AutosyncError::State {
                    path: path.to_owned(),
                    message: format!("cannot read it: {e}"),
                });
            }
        };
        let state: Self = serde_json::from_str(&text).map_err(|e| AutosyncError::State {
            path: path.to_owned(),
            message: format!(
                "not a valid Auto-Sync state file ({e}); restore it, or move it away to start \
                 over (commits already carried are recognised by their Auto-Sync-Commit trailers)"
            ),
        })?;
        if state.version > STATE_VERSION {
            return Err(AutosyncError::State {
                path: path.to_owned(),
                message: format!(
                    "written by a newer Bridge (version {}); upgrade genesisctl",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Writes atomically, creating the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        let fail = |what: &str, e: std::io::Error| AutosyncError::State {
            path: path.to_owned(),
            message: format!("{what}: {e}"),
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create its directory", e))?;
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| AutosyncError::State {
            path: path.to_owned(),
            message: format!("cannot serialise: {e}"),
        })?;
        json.push(b'\n');
        // Beside it, fsynced, renamed over it, the directory fsynced: the one atomic writer.
        bridge_platforms::local::write_atomically(path, &json).map_err(|e| AutosyncError::State {
            path: path.to_owned(),
            message: format!("cannot write: {e}"),
        })
    }
}

/// Held while a run works, so two runs never carry into the same target at once: a file
/// beside the state file, created exclusively, holding the owner's process id. A lock whose
/// process is gone (a crash) is taken over.
#[derive(Debug)]
pub(crate) struct RunLock {
    path: std::path::PathBuf,
}

impl RunLock {
    pub(crate) fn acquire(state_file: &Path) -> Result<Self> {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        let fail = |message: String| AutosyncError::State {
            path: path.clone(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let owner = owner.trim();
                    // An empty file is a run that is just starting; without /proc we cannot
                    // tell a crashed owner from a live one, so we assume it is alive.
                    let alive = match owner.parse::<u32>() {
                        Ok(pid) => {
                            !Path::new("/proc/self").exists()
                                || Path::new(&format!("/proc/{pid}")).exists()
                        }
                        Err(_) => true,
                    };
                    if alive {
                        return Err(fail(format!(
                            "another autosync run (process {owner}) is working on this target; \
                             wait for it, or delete this file if no run is active"
                        )));
                    }
                    // The owner is gone: take over.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(fail(format!("cannot create it: {e}"))),
            }
        }
        Err(fail(
            "cannot take it over from a finished run; delete it".into(),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.json");
        let empty = StateFile::load(&path).unwrap();
        assert!(empty.sources.is_empty());
        let mut s = StateFile {
            version: STATE_VERSION,
            ..StateFile::default()
        };
        s.sources.entry("web".into()).or_default().processed.insert(
            "abc".into(),
            Processed {
                outcome: "merged".into(),
                at: "now".into(),
                pull_request: None,
                target_sha: Some("def".into()),
            },
        );
        s.save(&path).unwrap();
        assert_eq!(StateFile::load(&path).unwrap(), s);
        // Only the file itself is left: the temporary was renamed over it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn one_run_at_a_time_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.json");
        let lock = RunLock::acquire(&state).unwrap();
        // The same process holds it: a second acquire (another run) is refused only for
        // other live processes, so simulate one with pid 1, which always exists.
        std::fs::write(dir.path().join("s.json.lock"), "1\n").unwrap();
        let e = RunLock::acquire(&state).unwrap_err().to_string();
        assert!(e.contains("another autosync run (process 1)"), "{e}");
        // A pid that cannot exist is a stale lock.
        std::fs::write(dir.path().join("s.json.lock"), "4294967290\n").unwrap();
        let again = RunLock::acquire(&state).unwrap();
        drop(again);
        assert!(!dir.path().join("s.json.lock").exists());
        drop(lock);
    }

    #[test]
    fn corrupt_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{nope").unwrap();
        let e = StateFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("move it away"), "{e}");
    }
}
