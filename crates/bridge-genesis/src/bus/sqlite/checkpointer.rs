//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside whichever commit pushes the WAL past 1,000
//! pages: that commit then copies the log into the database file and fsyncs it, and every
//! publisher queued behind it waits (a latency spike of several milliseconds every few
//! thousand events). The writer turns automatic checkpoints off; this thread, on its own
//! connection, runs a PASSIVE checkpoint a few times a second instead. PASSIVE never blocks
//! the writer or readers: it copies what no reader still needs, and SQLite restarts the WAL
//! from its beginning at the writer's next commit once everything has been copied.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema::sqlite_error;
use crate::bus::store::StoreError;

/// How often the WAL is copied into the database file.
const INTERVAL: Duration = Duration::from_millis(250);

/// The running checkpointer; stops (and is joined) when dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path, store: &str) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|e| sqlite_error(store, "open", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| sqlite_error(store, "set busy timeout", e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("genesis-checkpoint".into())
            .spawn(move || {
                // Ends when the store drops the sender.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    // A failed checkpoint only leaves the WAL longer; the next one retries.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| StoreError::Io {
                store: store.to_owned(),
                op: "start the checkpoint thread",
                source: std::sync::Arc::new(e),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
