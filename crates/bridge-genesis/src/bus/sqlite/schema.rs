//! Tables, connection settings, and the integrity check run on open.
//!
//! The file may be shared with the ledger and the sync state, so every table is prefixed
//! `genesis_`. Sequence numbers are the rowid (`seq INTEGER PRIMARY KEY`), assigned by the
//! writer inside each transaction; per-topic counts are kept up to date by the same
//! transaction so that `stats` does not scan the log. `genesis_schedule_runs` holds the
//! claimed slots of scheduled jobs ([`crate::schedule`]) and `genesis_webhook_deliveries`
//! the claimed webhook deliveries ([`crate::deliveries`]); they came without a version
//! bump, as `CREATE TABLE IF NOT EXISTS` adds them to older files on open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sqlite_setup::retry_while_busy;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::bus::store::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS genesis_events (
    seq     INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    at_us   INTEGER NOT NULL,
    who     TEXT    NOT NULL,
    payload TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS genesis_events_by_topic ON genesis_events (topic);
CREATE INDEX IF NOT EXISTS genesis_events_by_time ON genesis_events (at_us);
CREATE TABLE IF NOT EXISTS genesis_topic_counts (
    topic  TEXT    PRIMARY KEY,
    events INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS genesis_consumers (
    name      TEXT    PRIMARY KEY,
    pattern   TEXT    NOT NULL,
    acked_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS genesis_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO genesis_meta (key, value) VALUES ('schema_version', '1');
CREATE TABLE IF NOT EXISTS genesis_schedule_runs (
    job         TEXT    NOT NULL,
    slot_us     INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    claimed_us  INTEGER NOT NULL,
    finished_us INTEGER,
    outcome     TEXT,
    PRIMARY KEY (job, slot_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS genesis_webhook_deliveries (
    id         TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    claimed_us INTEGER NOT NULL,
    published  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS genesis_webhook_deliveries_by_time
    ON genesis_webhook_deliveries (claimed_us);
";

const SCHEMA_VERSION: &str = "1";

/// Another process (or this one's readers) may hold the lock briefly; wait rather than fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How thoroughly [`open_writer`] checks the file before the store accepts work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    /// Invariants of the log itself, in one pass over the smallest index: sequences
    /// contiguous from 1, per-topic counts adding up, no consumer acked past the end, the
    /// newest event readable. Catches truncation and hand edits.
    #[default]
    Log,
    /// [`IntegrityCheck::Log`] plus SQLite's `PRAGMA quick_check`, which reads every page of
    /// the file (damage in pages the log check does not touch).
    Full,
}

/// Maps a SQLite error to [`StoreError`], turning "this is not a database" and "malformed"
/// into [`StoreError::Corrupt`] so callers see damage as damage.
pub(super) fn sqlite_error(store: &str, op: &'static str, err: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(e, _) = &err
        && matches!(e.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    {
        return StoreError::Corrupt {
            store: store.to_owned(),
            what: format!("{op}: {err}"),
        };
    }
    StoreError::Sqlite {
        store: store.to_owned(),
        op,
        source: Arc::new(err),
    }
}

fn corrupt(store: &str, what: String) -> StoreError {
    StoreError::Corrupt {
        store: store.to_owned(),
        what,
    }
}

/// Opens the write connection: WAL, `synchronous=FULL`, schema, then the integrity check.
pub(super) fn open_writer(
    path: &Path,
    store: &str,
    check: IntegrityCheck,
) -> Result<Connection, StoreError> {
    let err = |op| move |e| sqlite_error(store, op, e);
    let conn = Connection::open(path).map_err(err("open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("set busy timeout"))?;
    stable_plans(&conn).map_err(err("fix query plans"))?;
    let mode: String = retry_while_busy(&conn, BUSY_TIMEOUT, |conn| {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
    })
    .map_err(err("first read (journal_mode=WAL)"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(corrupt(
            store,
            format!("SQLite refused WAL mode (journal_mode is {mode})"),
        ));
    }
    // FULL: a commit is on disk (WAL fsynced) before any publisher is told it succeeded.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err("set synchronous=FULL"))?;
    // Checkpoints run on their own thread (see `checkpointer.rs`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(err("turn off automatic checkpoints"))?;
    retry_while_busy(&conn, BUSY_TIMEOUT, |conn| {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
    })
    .map_err(err("create tables"))?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM genesis_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(err("read schema version"))?;
    if version.as_deref() != Some(SCHEMA_VERSION) {
        return Err(corrupt(
            store,
            format!("genesis schema version is {version:?}; this build reads {SCHEMA_VERSION:?}"),
        ));
    }
    verify(&conn, store, check)?;
    Ok(conn)
}

/// Opens a read-only connection for history, stats and consumer listings.
pub(super) fn open_reader(path: &Path, store: &str) -> Result<Connection, StoreError> {
    let err = |op| move |e| sqlite_error(store, op, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err("open reader"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("set busy timeout"))?;
    stable_plans(&conn).map_err(err("fix query plans"))?;
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee. Without it SQLite plans some
/// statements for the values bound to them (a `LIMIT ?`, with this build's STAT4), so a
/// cached statement rebound with another value is parsed and planned again on its next
/// step: consumers reading batches of different sizes through the same cached history
/// statement re-prepared it on almost every read (a tenth of a busy server's CPU). Every
/// history statement has one plan whatever its values, checked by a test in `history.rs`.
pub(super) fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
}

/// The checks described on [`IntegrityCheck`]. Errors name what is wrong.
fn verify(conn: &Connection, store: &str, check: IntegrityCheck) -> Result<(), StoreError> {
    let err = |op| move |e| sqlite_error(store, op, e);
    if check == IntegrityCheck::Full {
        let mut stmt = conn
            .prepare("PRAGMA quick_check")
            .map_err(err("quick_check"))?;
        let problems: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .map_err(err("quick_check"))?
            .collect::<Result<_, _>>()
            .map_err(err("quick_check"))?;
        if problems.iter().any(|p| p != "ok") {
            return Err(corrupt(
                store,
                format!("quick_check: {}", problems.join("; ")),
            ));
        }
    }

    let (count, first, last): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT count(*), min(seq), max(seq) FROM genesis_events",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(err("count events"))?;
    let last = last.unwrap_or(0);
    if let Some(first) = first
        && first != 1
    {
        return Err(corrupt(
            store,
            format!("the log starts at seq {first} instead of 1: its oldest events are gone"),
        ));
    }
    if count != last {
        return Err(corrupt(
            store,
            format!(
                "the log holds {count} events for seqs 1..={last}: {} missing",
                last - count
            ),
        ));
    }

    let counted: i64 = conn
        .query_row(
            "SELECT coalesce(sum(events), 0) FROM genesis_topic_counts",
            [],
            |row| row.get(0),
        )
        .map_err(err("sum topic counts"))?;
    if counted != count {
        return Err(corrupt(
            store,
            format!("per-topic counts add up to {counted} but the log holds {count} events"),
        ));
    }

    let ahead: Option<(String, i64)> = conn
        .query_row(
            "SELECT name, acked_seq FROM genesis_consumers WHERE acked_seq > ?1 LIMIT 1",
            [last],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(err("check consumers"))?;
    if let Some((name, acked)) = ahead {
        return Err(corrupt(
            store,
            format!(
                "consumer {name:?} acknowledged seq {acked} but the log ends at {last}: \
                 the newest events were lost"
            ),
        ));
    }

    if last > 0 {
        // Reading the newest row walks the table's right edge, where truncation bites first.
        let payload: String = conn
            .query_row(
                "SELECT payload FROM genesis_events WHERE seq = ?1",
                [last],
                |row| row.get(0),
            )
            .map_err(err("read newest event"))?;
        if !serde_json::from_str::<serde_json::Value>(&payload).is_ok_and(|v| v.is_object()) {
            return Err(corrupt(
                store,
                format!("event {last} has a payload that is not a JSON object"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both connections the store opens plan their statements once, whatever is bound.
    #[test]
    fn store_connections_keep_stable_plans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let writer = open_writer(&path, "test", IntegrityCheck::Log).expect("writer");
        let reader = open_reader(&path, "test").expect("reader");
        for conn in [&writer, &reader] {
            assert!(
                conn.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
                    .expect("db_config")
            );
        }
    }
}
