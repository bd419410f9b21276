//! Opening a SQLite file that another process may be opening at the same moment.

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Runs `setup` (switching the file to WAL, creating tables) until it gets past the other
/// openers of the file, for up to `patience`. While a fresh file is still in rollback-journal
/// mode, SQLite answers "database is locked" at once, without calling the busy handler, where
/// waiting could deadlock; two `genesisctl` commands started together on a new state
/// directory meet exactly that. A failed attempt's open transaction is rolled back first.
pub(crate) fn retry_while_busy<T>(
    conn: &Connection,
    patience: Duration,
    mut setup: impl FnMut(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(2);
    loop {
        match setup(conn) {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
