//! [`SqliteState`]: the state store of one machine, a SQLite file (`.bridge/state.db`, WAL,
//! `synchronous=FULL`). Every write transaction is `IMMEDIATE`, so two processes sharing
//! the file take turns rather than fail on upgrading a read lock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    JournalRow, JournalState, LandedRow, OpRow, RecordHead, RecordRow, SCHEMA_VERSION,
    StateBackend, StateDump, StoreError, TargetRow,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS write_records (
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    updated_at TEXT,
    sealed BLOB NOT NULL,
    written_at TEXT NOT NULL,
    PRIMARY KEY (target, key)
);
CREATE TABLE IF NOT EXISTS journals (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_targets (
    journal_id INTEGER NOT NULL REFERENCES journals(id),
    target TEXT NOT NULL,
    spec TEXT NOT NULL,
    label TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (journal_id, target)
);
CREATE TABLE IF NOT EXISTS journal_ops (
    journal_id INTEGER NOT NULL,
    target TEXT NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    change TEXT NOT NULL,
    after BLOB,
    before_kind TEXT NOT NULL,
    before BLOB,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (journal_id, target, seq)
);
CREATE INDEX IF NOT EXISTS journal_ops_key ON journal_ops (journal_id, target, key);
CREATE TABLE IF NOT EXISTS state_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Columns added since the first schema, `(table, column, type)`: by version 2, for files
/// written before versions were kept, and by version 3 (a `.env` target's image, sealed).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("journal_ops", "before_stamp", "TEXT"),
    ("journal_targets", "untouched", "TEXT"),
    ("journal_targets", "image_before", "BLOB"),
    ("journal_targets", "image_after", "BLOB"),
];

/// Adds the columns an older file lacks (inside the caller's transaction).
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let has = stmt
            .query_map([], |row| row.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .iter()
            .any(|c| c == column);
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

/// How long a call waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What opening found: the version the file had, if it was newer than this build's.
enum Prepared {
    Ready,
    TooNew(i64),
}

/// Switches the file to WAL, creates the tables and brings an older schema up to
/// [`SCHEMA_VERSION`]. Several openers of a fresh file race here: while it is still in
/// rollback-journal mode, SQLite answers "database is locked" at once, without waiting,
/// where waiting could deadlock. So the step is retried, briefly, until [`BUSY_TIMEOUT`].
fn prepare(conn: &Connection) -> rusqlite::Result<Prepared> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt = conn
            .pragma_update(None, "journal_mode", "WAL")
            // A journal entry must be on disk before the write it describes.
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| {
                let tx =
                    rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
                tx.execute_batch(SCHEMA)?;
                let found: Option<i64> = tx
                    .query_row(
                        "SELECT CAST(value AS INTEGER) FROM state_meta WHERE key = 'schema_version'",
                        [],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(found) = found.filter(|v| *v > SCHEMA_VERSION) {
                    return Ok(Prepared::TooNew(found));
                }
                // Older versions (or a file from before versions were kept) lack these.
                add_missing_columns(&tx)?;
                tx.execute(
                    "INSERT INTO state_meta (key, value) VALUES ('schema_version', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [SCHEMA_VERSION.to_string()],
                )?;
                tx.commit()?;
                Ok(Prepared::Ready)
            });
        match attempt {
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

#[derive(Clone, Copy)]
enum Durability {
    Full,
    Crash,
}

pub struct SqliteState {
    conn: Mutex<Connection>,
    path: String,
}

impl SqliteState {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let display = path.display().to_string();
        let wrap = |source: rusqlite::Error| StoreError::Backend {
            store: format!("state store {display}"),
            source: Box::new(source),
        };
        let conn = Connection::open(path).map_err(wrap)?;
        // First: switching to WAL needs a lock that another process, or a reaction of the
        // server syncing at the same moment, may hold; without a timeout the open fails at
        // once with "database is locked".
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        if let Prepared::TooNew(found) = prepare(&conn).map_err(wrap)? {
            return Err(StoreError::SchemaTooNew {
                store: format!("state store {display}"),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path: display,
        })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Backend {
            store: self.describe(),
            source: Box::new(source),
        }
    }

    /// Sets how durable the next commits are. A journal entry must survive a power loss
    /// before the writes it describes (`Full`); marking an op done needs only to survive a
    /// crash of this process (`Crash`: WAL with synchronous=NORMAL), because an op whose mark
    /// a power loss forgets is re-applied by `resume` as an idempotent write of the same
    /// value. That spares an fsync per op, which would otherwise dominate a large apply.
    fn durability(&self, conn: &Connection, level: Durability) -> Result<(), StoreError> {
        let value = match level {
            Durability::Full => "FULL",
            Durability::Crash => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", value)
            .map_err(|e| self.sql(e))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is safe to take over.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|e| self.sql(e))
    }

    /// One `IMMEDIATE` write transaction at `level`.
    fn write<T>(
        &self,
        level: Durability,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        self.durability(&conn, level)?;
        let run = || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.sql(e))
    }

    fn journal_row(conn: &Connection, id: i64) -> rusqlite::Result<Option<JournalRow>> {
        let head: Option<(String, String, String)> = conn
            .query_row(
                "SELECT created_at, source, state FROM journals WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((created_at, source, state)) = head else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT target, spec, label, state, error, untouched, image_before, image_after
             FROM journal_targets WHERE journal_id = ?1 ORDER BY rowid",
        )?;
        let mut targets: Vec<TargetRow> = stmt
            .query_map([id], |row| {
                Ok(TargetRow {
                    identity: row.get(0)?,
                    spec: row.get(1)?,
                    label: row.get(2)?,
                    state: row.get(3)?,
                    error: row.get(4)?,
                    untouched: row.get(5)?,
                    image_before: row.get(6)?,
                    image_after: row.get(7)?,
                    ops: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = conn.prepare_cached(
            "SELECT target, key, change, after, before_kind, before, done, before_stamp
             FROM journal_ops WHERE journal_id = ?1 ORDER BY target, seq",
        )?;
        let ops = stmt.query_map([id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                OpRow {
                    key: row.get(1)?,
                    change: row.get(2)?,
                    after: row.get(3)?,
                    before_kind: row.get(4)?,
                    before: row.get(5)?,
                    done: row.get::<_, i64>(6)? != 0,
                    before_stamp: row.get(7)?,
                },
            ))
        })?;
        for op in ops {
            let (target, op) = op?;
            if let Some(t) = targets.iter_mut().find(|t| t.identity == target) {
                t.ops.push(op);
            }
        }
        Ok(Some(JournalRow {
            id,
            created_at,
            source,
            state,
            targets,
        }))
    }

    fn insert_journal(tx: &Connection, id: Option<i64>, j: &JournalRow) -> rusqlite::Result<i64> {
        tx.execute(
            "INSERT INTO journals (id, created_at, source, state) VALUES (?1, ?2, ?3, ?4)",
            params![id, j.created_at, j.source, j.state],
        )?;
        let id = tx.last_insert_rowid();
        for t in &j.targets {
            tx.execute(
                "INSERT INTO journal_targets
                   (journal_id, target, spec, label, state, error, untouched, image_before, image_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    t.identity,
                    t.spec,
                    t.label,
                    t.state,
                    t.error,
                    t.untouched,
                    t.image_before,
                    t.image_after
                ],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO journal_ops (journal_id, target, seq, key, change, after, before_kind, before, done, before_stamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (seq, op) in t.ops.iter().enumerate() {
                insert.execute(params![
                    id,
                    t.identity,
                    seq as i64,
                    op.key,
                    op.change,
                    op.after,
                    op.before_kind,
                    op.before,
                    op.done as i64,
                    op.before_stamp
                ])?;
            }
        }
        Ok(id)
    }

    fn upsert_record(tx: &Connection, r: &RecordRow) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO write_records (target, key, fingerprint, updated_at, sealed, written_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (target, key) DO UPDATE SET fingerprint = excluded.fingerprint,
               updated_at = excluded.updated_at, sealed = excluded.sealed,
               written_at = excluded.written_at",
        )?
        .execute(params![
            r.target,
            r.key,
            r.fingerprint,
            r.updated_at,
            r.sealed,
            r.written_at
        ])?;
        Ok(())
    }
}

fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        target: row.get(0)?,
        key: row.get(1)?,
        fingerprint: row.get(2)?,
        updated_at: row.get(3)?,
        sealed: row.get(4)?,
        written_at: row.get(5)?,
    })
}

#[async_trait::async_trait]
impl StateBackend for SqliteState {
    fn describe(&self) -> String {
        format!("state store {}", self.path)
    }

    async fn records(&self, target: &str) -> Result<Vec<RecordHead>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT key, fingerprint, updated_at FROM write_records WHERE target = ?1",
            )?
            .query_map([target], |row| {
                Ok(RecordHead {
                    key: row.get(0)?,
                    fingerprint: row.get(1)?,
                    updated_at: row.get(2)?,
                })
            })?
            .collect()
        })
    }

    async fn sealed_value(&self, target: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT sealed FROM write_records WHERE target = ?1 AND key = ?2",
                params![target, key],
                |row| row.get(0),
            )
            .optional()
        })
    }

    async fn record(
        &self,
        target: &str,
        written: Vec<RecordRow>,
        deleted: Vec<String>,
    ) -> Result<(), StoreError> {
        self.write(Durability::Full, |tx| {
            for r in &written {
                Self::upsert_record(tx, r)?;
            }
            let mut del =
                tx.prepare_cached("DELETE FROM write_records WHERE target = ?1 AND key = ?2")?;
            for key in &deleted {
                del.execute(params![target, key])?;
            }
            Ok(())
        })
    }

    async fn holding_stamp(&self, key: &str, stamp: &str) -> Result<Vec<String>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT target FROM write_records WHERE key = ?1 AND updated_at = ?2",
            )?
            .query_map(params![key, stamp], |row| row.get(0))?
            .collect()
        })
    }

    async fn move_stamp(
        &self,
        key: &str,
        from: &str,
        to: &str,
        targets: Vec<String>,
    ) -> Result<usize, StoreError> {
        self.write(Durability::Full, |tx| {
            let mut put = tx.prepare_cached(
                "UPDATE write_records SET updated_at = ?3
                 WHERE target = ?1 AND key = ?2 AND updated_at = ?4",
            )?;
            let mut moved = 0;
            for target in &targets {
                moved += put.execute(params![target, key, to, from])?;
            }
            Ok(moved)
        })
    }

    async fn begin(
        &self,
        created_at: &str,
        source: &str,
        targets: Vec<TargetRow>,
    ) -> Result<i64, StoreError> {
        let journal = JournalRow {
            id: 0,
            created_at: created_at.to_owned(),
            source: source.to_owned(),
            state: JournalState::Applying.as_str().to_owned(),
            targets,
        };
        self.write(Durability::Full, |tx| {
            Self::insert_journal(tx, None, &journal)
        })
    }

    async fn mark_done(
        &self,
        journal: i64,
        target: &str,
        landed: Vec<LandedRow>,
        now: &str,
    ) -> Result<(), StoreError> {
        self.write(Durability::Crash, |tx| {
            let mut done = tx.prepare_cached(
                "UPDATE journal_ops SET done = 1 WHERE journal_id = ?1 AND target = ?2 AND key = ?3",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT INTO write_records (target, key, fingerprint, updated_at, sealed, written_at)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5)
                 ON CONFLICT (target, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                   updated_at = NULL, sealed = excluded.sealed, written_at = excluded.written_at",
            )?;
            let mut forget =
                tx.prepare_cached("DELETE FROM write_records WHERE target = ?1 AND key = ?2")?;
            for l in &landed {
                done.execute(params![journal, target, l.key()])?;
                match l {
                    LandedRow::Written {
                        key,
                        fingerprint,
                        sealed,
                    } => put.execute(params![target, key, fingerprint, sealed, now])?,
                    LandedRow::Deleted { key } => forget.execute(params![target, key])?,
                };
            }
            Ok(())
        })
    }

    async fn set_stamps(
        &self,
        target: &str,
        stamps: BTreeMap<String, String>,
        only_unset: bool,
    ) -> Result<(), StoreError> {
        self.write(Durability::Full, |tx| {
            let sql = if only_unset {
                "UPDATE write_records SET updated_at = ?3 WHERE target = ?1 AND key = ?2 AND updated_at IS NULL"
            } else {
                "UPDATE write_records SET updated_at = ?3 WHERE target = ?1 AND key = ?2"
            };
            let mut put = tx.prepare_cached(sql)?;
            for (key, stamp) in &stamps {
                put.execute(params![target, key, stamp])?;
            }
            Ok(())
        })
    }

    async fn unfinished_on(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT j.id FROM journals j JOIN journal_targets t ON t.journal_id = j.id
                 WHERE t.target = ?1 AND j.state IN ('applying', 'failed')
                   AND t.state IN ('applying', 'failed')
                   AND EXISTS (SELECT 1 FROM journal_ops o
                               WHERE o.journal_id = j.id AND o.target = t.target AND o.done = 0
                                 AND o.change IN ('create', 'update', 'delete'))
                 ORDER BY j.id DESC LIMIT 1",
                [target],
                |row| row.get(0),
            )
            .optional()
        })
    }

    async fn finish_target(
        &self,
        journal: i64,
        target: &str,
        state: JournalState,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE journal_targets SET state = ?3, error = ?4 WHERE journal_id = ?1 AND target = ?2",
                params![journal, target, state.as_str(), error],
            )
            .map(drop)
        })
    }

    async fn finish(&self, journal: i64, state: JournalState) -> Result<(), StoreError> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "UPDATE journals SET state = ?2 WHERE id = ?1",
                params![journal, state.as_str()],
            )
            .map(drop)
        })
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.write(Durability::Full, |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO state_meta (key, value) VALUES (?1, ?2)",
                [key, value],
            )?;
            tx.query_row(
                "SELECT value FROM state_meta WHERE key = ?1",
                [key],
                |row| row.get(0),
            )
        })
    }

    async fn latest_unfinished(&self) -> Result<Option<i64>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT id FROM journals WHERE state IN ('applying', 'failed') ORDER BY id DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
        })
    }

    async fn latest_for_target(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT j.id FROM journals j JOIN journal_targets t ON t.journal_id = j.id
                 WHERE t.target = ?1 AND j.state != 'rolled_back' AND t.state != 'rolled_back'
                 ORDER BY j.id DESC LIMIT 1",
                [target],
                |row| row.get(0),
            )
            .optional()
        })
    }

    async fn journal(&self, id: i64) -> Result<Option<JournalRow>, StoreError> {
        self.with(|conn| Self::journal_row(conn, id))
    }

    async fn export(&self) -> Result<StateDump, StoreError> {
        self.with(|conn| {
            // One read transaction: a consistent picture while others write.
            let tx = conn.transaction()?;
            let meta = tx
                .prepare("SELECT key, value FROM state_meta")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
            let records = tx
                .prepare(
                    "SELECT target, key, fingerprint, updated_at, sealed, written_at
                     FROM write_records ORDER BY target, key",
                )?
                .query_map([], record_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let ids = tx
                .prepare("SELECT id FROM journals ORDER BY id")?
                .query_map([], |row| row.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut journals = Vec::with_capacity(ids.len());
            for id in ids {
                journals.extend(Self::journal_row(&tx, id)?);
            }
            Ok(StateDump {
                meta,
                records,
                journals,
            })
        })
    }

    async fn import(&self, dump: StateDump) -> Result<(), StoreError> {
        let refused = self.write(Durability::Full, |tx| {
            let held: i64 = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM journals) + (SELECT COUNT(*) FROM write_records)",
                [],
                |row| row.get(0),
            )?;
            if held > 0 {
                return Ok(true);
            }
            for (key, value) in &dump.meta {
                if key == "schema_version" {
                    continue;
                }
                tx.execute(
                    "INSERT INTO state_meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )?;
            }
            for r in &dump.records {
                Self::upsert_record(tx, r)?;
            }
            for j in &dump.journals {
                Self::insert_journal(tx, Some(j.id), j)?;
            }
            Ok(false)
        })?;
        if refused {
            return Err(StoreError::NotEmpty {
                store: self.describe(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bridge_core::diff::Change;
    use bridge_core::{FingerprintKey, SecretValue};

    use super::*;
    use crate::sealing::Sealer;
    use crate::store::{
        JournalId, JournalOp, JournalTarget, Landed, PreImage, StateStore, conformance,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn sqlite_passes_the_conformance_suite() {
        let dirs = std::sync::Mutex::new(Vec::new());
        runtime().block_on(conformance::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let backend: Arc<dyn StateBackend> =
                Arc::new(SqliteState::open(&dir.path().join("state.db")).unwrap());
            dirs.lock().unwrap().push(dir);
            async move { backend }
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        runtime().block_on(conformance::two_handles_share_one_history(
            Arc::new(SqliteState::open(&path).unwrap()),
            Arc::new(SqliteState::open(&path).unwrap()),
        ));
    }

    fn journal_target(identity: &str) -> JournalTarget {
        JournalTarget {
            identity: identity.into(),
            spec: "render".into(),
            label: "render".into(),
            state: JournalState::Applying,
            error: None,
            untouched: None,
            image: None,
            ops: vec![JournalOp {
                key: "A".into(),
                change: Change::Create,
                after: Some(SecretValue::new("old-secret")),
                before: PreImage::Value(SecretValue::new("older-secret")),
                before_stamp: None,
                done: false,
            }],
        }
    }

    /// Two processes (or two applies of one server) opening a fresh state directory at
    /// once: the first switches the file to WAL and creates the tables while the other
    /// waits, and neither fails with "database is locked".
    #[test]
    fn opening_one_fresh_store_from_many_threads_at_once_succeeds() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let key = FingerprintKey::from_bytes([1; 32]);
            let (_, sealer) = Sealer::generate();
            let threads: Vec<_> = (0..6)
                .map(|i| {
                    let path = path.clone();
                    let key = key.clone();
                    let sealer = sealer.clone();
                    std::thread::spawn(move || -> Result<(), StoreError> {
                        runtime().block_on(async {
                            let s = StateStore::open_sqlite(&path, sealer)?;
                            let v = SecretValue::new("v");
                            let target = format!("t{i}");
                            for _ in 0..2 {
                                let id = s.begin("src", "now", &[journal_target(&target)]).await?;
                                s.mark_done(id, &target, &[Landed::Deleted { key: "A" }], "now")
                                    .await?;
                                s.record(
                                    &target,
                                    &[("A", key.fingerprint(&v), &v, Some("s1"))],
                                    &[],
                                    "now",
                                )
                                .await?;
                                s.advance_shared_stamp("A", "s1", "s2", |t| t != target)
                                    .await?;
                                s.finish_target(id, &target, JournalState::Done, None)
                                    .await?;
                                s.finish(id, JournalState::Done).await?;
                                s.latest_unfinished().await?;
                            }
                            s.records(&target).await.map(|_| ())
                        })
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn the_file_holds_no_clear_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = StateStore::open_sqlite(&path, Sealer::generate().1).unwrap();
        runtime().block_on(async {
            s.begin("src", "t", &[journal_target("t")]).await.unwrap();
            let v = SecretValue::new("old-secret");
            let key = FingerprintKey::from_bytes([1; 32]);
            s.record("t", &[("A", key.fingerprint(&v), &v, None)], &[], "t")
                .await
                .unwrap();
        });
        let raw = std::fs::read(&path).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("state.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(10).any(|w| w == b"old-secret"));
        }
    }

    /// A version-2 file, which keeps no images, opens and its journals read as without one:
    /// a rollback of them restores values, as the Bridge that wrote them did.
    #[test]
    fn a_version_2_file_keeps_its_journals_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "ALTER TABLE journal_ops ADD COLUMN before_stamp TEXT;
                 ALTER TABLE journal_targets ADD COLUMN untouched TEXT;
                 INSERT INTO state_meta (key, value) VALUES ('schema_version', '2');
                 INSERT INTO journals (id, created_at, source, state)
                     VALUES (7, 't0', 'local:.env', 'done');
                 INSERT INTO journal_targets (journal_id, target, spec, label, state, untouched)
                     VALUES (7, 'local:/x/.env', 'local:/x/.env', 'x', 'done', 'digest');
                 INSERT INTO journal_ops
                     (journal_id, target, seq, key, change, before_kind, done, before_stamp)
                     VALUES (7, 'local:/x/.env', 0, 'K', 'delete', 'absent', 1, NULL);",
            )
            .unwrap();
        }
        let s = StateStore::open_sqlite(&path, Sealer::generate().1).unwrap();
        let j = runtime().block_on(s.journal(JournalId(7))).unwrap();
        let t = &j.targets[0];
        assert_eq!(t.image, None);
        assert_eq!(t.untouched.as_deref(), Some("digest"));
        assert_eq!((t.ops[0].key.as_str(), t.ops[0].done), ("K", true));
        // New journals there keep their images.
        let image = bridge_platforms::Image {
            before: SecretValue::new("K=1\n"),
            after: SecretValue::new(""),
        };
        let entry = JournalTarget {
            image: Some(image.clone()),
            ..journal_target("local:/x/.env")
        };
        let id = runtime().block_on(s.begin("src", "t1", &[entry])).unwrap();
        let j = runtime().block_on(s.journal(id)).unwrap();
        assert_eq!(j.targets[0].image, Some(image));
    }

    /// A dump written before images were journalled imports, as journals without one.
    #[test]
    fn a_dump_without_images_reads() {
        let old = r#"{"identity":"local:/x/.env","spec":"local:.env","label":"x",
            "state":"done","error":null,"untouched":null,"ops":[]}"#;
        let row: crate::store::TargetRow = serde_json::from_str(old).unwrap();
        assert_eq!((&row.image_before, &row.image_after), (&None, &None));
        let text = serde_json::to_string(&row).unwrap();
        assert!(!text.contains("image"), "{text}");
    }

    /// A file written by a newer Bridge is refused, naming both versions; one from before
    /// versions were kept is brought up to date.
    #[test]
    fn schema_versions_are_checked_and_older_files_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A version-1 file: the first schema, no version row, no added columns.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch("DELETE FROM state_meta").unwrap();
        }
        SqliteState::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: String = conn
            .query_row(
                "SELECT value FROM state_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        conn.execute("SELECT before_stamp FROM journal_ops", [])
            .ok();
        conn.execute(
            "UPDATE state_meta SET value = ?1 WHERE key = 'schema_version'",
            [(SCHEMA_VERSION + 1).to_string()],
        )
        .unwrap();
        drop(conn);
        let err = SqliteState::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("upgrade genesisctl"), "{text}");
        assert!(
            text.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "{text}"
        );
    }
}
