//! The state store: one SQLite file (`.bridge/state.db`, WAL, synchronous=FULL) that keeps
//!
//! - **write records**: per target and key, the fingerprint of the value Bridge last wrote,
//!   the platform's `updated_at` after that write, and the value itself, sealed. They make
//!   write-only values comparable (drift from fingerprint and timestamp), define ownership
//!   (Bridge deletes on a platform only keys it wrote there) and let a rollback restore
//!   values the platform will not return;
//! - **journals**: every apply is journalled before its first write: per target, the plan's
//!   ops with the values to write and the pre-image to restore (both sealed), each op marked
//!   done as soon as the platform confirms it. An interrupted apply leaves a journal that
//!   `resume` finishes and `rollback` undoes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bridge_core::diff::Change;
use bridge_core::{Fingerprint, SecretValue};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::sealing::{SealError, Sealer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store: {0}")]
    Seal(#[from] SealError),
    #[error("state store: journal {0} does not exist")]
    NoJournal(i64),
    #[error("journal {journal} is {state}, not unfinished: there is nothing to discard")]
    Finished { journal: i64, state: &'static str },
    #[error(
        "the state store {path} holds records made with another fingerprint key (id {stored}); \
         this run's key has id {given}. Give every runner the key the records were made with \
         (BRIDGE_FINGERPRINT_KEY or BRIDGE_FINGERPRINT_KEY_FILE): judged with another key, every \
         secret would look changed"
    )]
    FingerprintKeyMismatch {
        path: String,
        stored: String,
        given: String,
    },
    #[error("state store: {0}")]
    Corrupt(String),
}

/// What Bridge last wrote to one key of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub fingerprint: Fingerprint,
    pub updated_at: Option<String>,
}

/// What a key held before an apply touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreImage {
    /// The key did not exist.
    Absent,
    /// Its value (read from the platform, or for write-only values our last write).
    Value(SecretValue),
    /// It existed, write-only, with a value Bridge never wrote: a rollback cannot restore it.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalId(pub i64);

impl std::fmt::Display for JournalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalState {
    Applying,
    Done,
    Failed,
    RolledBack,
    /// Given up by `env resume --discard`: its unfinished ops will never be written.
    Discarded,
}

impl JournalState {
    fn as_str(self) -> &'static str {
        match self {
            JournalState::Applying => "applying",
            JournalState::Done => "done",
            JournalState::Failed => "failed",
            JournalState::RolledBack => "rolled_back",
            JournalState::Discarded => "discarded",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "applying" => JournalState::Applying,
            "done" => JournalState::Done,
            "failed" => JournalState::Failed,
            "rolled_back" => JournalState::RolledBack,
            "discarded" => JournalState::Discarded,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown journal state {other}"
                )));
            }
        })
    }
}

/// One op as journalled.
#[derive(Debug, Clone)]
pub struct JournalOp {
    pub key: String,
    pub change: Change,
    pub after: Option<SecretValue>,
    pub before: PreImage,
    /// For a write-only value: the platform's stamp when planned. At resume, a stamp that
    /// has not moved proves the op's write did not land.
    pub before_stamp: Option<String>,
    pub done: bool,
}

/// An op the platform confirmed, recorded in the transaction that marks it done.
#[derive(Debug, Clone, Copy)]
pub enum Landed<'a> {
    /// Written: what the record keeps (its stamp follows with [`StateStore::set_stamps`]).
    Written {
        key: &'a str,
        fingerprint: Fingerprint,
        value: &'a SecretValue,
    },
    /// Deleted: the record goes.
    Deleted { key: &'a str },
}

impl Landed<'_> {
    fn key(&self) -> &str {
        match self {
            Landed::Written { key, .. } | Landed::Deleted { key } => key,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JournalTarget {
    /// `Platform::identity()`.
    pub identity: String,
    /// The spec it was opened from, to open it again on resume.
    pub spec: String,
    pub label: String,
    pub state: JournalState,
    pub error: Option<String>,
    /// A digest of what the target held when planned, outside the keys of `ops`: a resume
    /// refuses when it changed (someone wrote there since), as an apply refuses a stale plan.
    pub untouched: Option<String>,
    pub ops: Vec<JournalOp>,
}

#[derive(Debug, Clone)]
pub struct Journal {
    pub id: JournalId,
    pub created_at: String,
    pub source: String,
    pub state: JournalState,
    pub targets: Vec<JournalTarget>,
}

#[derive(Clone, Copy)]
enum Durability {
    Full,
    Crash,
}

pub struct StateStore {
    conn: Mutex<Connection>,
    path: String,
    sealer: Sealer,
}

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

/// Columns added since the first schema, for state files written by earlier versions:
/// `(table, column, type)`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("journal_ops", "before_stamp", "TEXT"),
    ("journal_targets", "untouched", "TEXT"),
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

/// Switches the file to WAL and creates the tables. Several openers of a fresh file race
/// here: while it is still in rollback-journal mode, SQLite answers "database is locked" at
/// once, without waiting, where waiting could deadlock. So the step is retried, briefly,
/// until [`BUSY_TIMEOUT`].
fn prepare(conn: &Connection) -> rusqlite::Result<()> {
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
                add_missing_columns(&tx)?;
                tx.commit()
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

fn change_str(change: Change) -> &'static str {
    change.as_str()
}

fn parse_change(text: &str) -> Result<Change, StoreError> {
    Ok(match text {
        "create" => Change::Create,
        "update" => Change::Update,
        "delete" => Change::Delete,
        "noop" => Change::Noop,
        "unknown" => Change::Unknown,
        other => return Err(StoreError::Corrupt(format!("unknown op {other}"))),
    })
}

impl StateStore {
    pub fn open(path: &Path, sealer: Sealer) -> Result<Self, StoreError> {
        let display = path.display().to_string();
        let wrap = |source| StoreError::Sqlite {
            path: display.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        // First: switching to WAL needs a lock that another process, or a reaction of the
        // server syncing at the same moment, may hold; without a timeout the open fails at
        // once with "database is locked".
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        prepare(&conn).map_err(wrap)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: display,
            sealer,
        })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
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
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is safe to take over.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn)
    }

    /// Our last write to every key of `target`.
    pub fn records(&self, target: &str) -> Result<BTreeMap<String, WriteRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, fingerprint, updated_at FROM write_records WHERE target = ?1",
                )
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([target], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })
                .map_err(|e| self.sql(e))?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (key, fp, updated_at) = row.map_err(|e| self.sql(e))?;
                let fingerprint = Fingerprint::from_hex(&fp)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad fingerprint for {key}")))?;
                out.insert(
                    key,
                    WriteRecord {
                        fingerprint,
                        updated_at,
                    },
                );
            }
            Ok(out)
        })
    }

    /// The value we last wrote to `key`, if any.
    pub fn recorded_value(
        &self,
        target: &str,
        key: &str,
    ) -> Result<Option<SecretValue>, StoreError> {
        let sealed: Option<Vec<u8>> = self.with(|conn| {
            conn.query_row(
                "SELECT sealed FROM write_records WHERE target = ?1 AND key = ?2",
                params![target, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
        })?;
        sealed
            .map(|s| self.sealer.open(&s).map_err(StoreError::from))
            .transpose()
    }

    /// Records writes (fingerprint, sealed value, the platform's stamp) and forgets deleted keys.
    pub fn record(
        &self,
        target: &str,
        written: &[(&str, Fingerprint, &SecretValue, Option<&str>)],
        deleted: &[&str],
        now: &str,
    ) -> Result<(), StoreError> {
        let sealed: Vec<Vec<u8>> = written
            .iter()
            .map(|(_, _, v, _)| self.sealer.seal(v))
            .collect::<Result<_, _>>()?;
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.sql(e))?;
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO write_records (target, key, fingerprint, updated_at, sealed, written_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (target, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                           updated_at = excluded.updated_at, sealed = excluded.sealed,
                           written_at = excluded.written_at",
                    )
                    .map_err(|e| self.sql(e))?;
                for ((key, fp, _, updated_at), sealed) in written.iter().zip(&sealed) {
                    put.execute(params![target, key, fp.to_hex(), updated_at, sealed, now])
                        .map_err(|e| self.sql(e))?;
                }
                let mut del = tx
                    .prepare_cached("DELETE FROM write_records WHERE target = ?1 AND key = ?2")
                    .map_err(|e| self.sql(e))?;
                for key in deleted {
                    del.execute(params![target, key]).map_err(|e| self.sql(e))?;
                }
            }
            tx.commit().map_err(|e| self.sql(e))
        })
    }

    /// Moves the stamp of `key` from `from` to `to` in the records of every other place that
    /// `shares` names and that still holds `from`: a write elsewhere moved a stamp those
    /// places share, and nothing else changed it. A record holding another stamp keeps it,
    /// and reads as changed outside Bridge, which it was.
    pub fn advance_shared_stamp(
        &self,
        key: &str,
        from: &str,
        to: &str,
        shares: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sql(e))?;
            let targets: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT target FROM write_records WHERE key = ?1 AND updated_at = ?2",
                    )
                    .map_err(|e| self.sql(e))?;
                let rows = stmt
                    .query_map(params![key, from], |row| row.get::<_, String>(0))
                    .map_err(|e| self.sql(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))?
            };
            let mut moved = 0;
            {
                let mut put = tx
                    .prepare_cached(
                        "UPDATE write_records SET updated_at = ?3
                         WHERE target = ?1 AND key = ?2 AND updated_at = ?4",
                    )
                    .map_err(|e| self.sql(e))?;
                for target in targets.iter().filter(|t| shares(t)) {
                    moved += put
                        .execute(params![target, key, to, from])
                        .map_err(|e| self.sql(e))?;
                }
            }
            tx.commit().map_err(|e| self.sql(e))?;
            Ok(moved)
        })
    }

    /// Journals an apply before its first write.
    pub fn begin(
        &self,
        source: &str,
        now: &str,
        targets: &[JournalTarget],
    ) -> Result<JournalId, StoreError> {
        // Seal outside the lock: it is the slow part.
        let mut sealed_targets = Vec::with_capacity(targets.len());
        for t in targets {
            let mut ops = Vec::with_capacity(t.ops.len());
            for op in &t.ops {
                let after = op.after.as_ref().map(|v| self.sealer.seal(v)).transpose()?;
                let (kind, before) = match &op.before {
                    PreImage::Absent => ("absent", None),
                    PreImage::Value(v) => ("value", Some(self.sealer.seal(v)?)),
                    PreImage::Unknown => ("unknown", None),
                };
                ops.push((op, after, kind, before));
            }
            sealed_targets.push((t, ops));
        }
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.sql(e))?;
            tx.execute(
                "INSERT INTO journals (created_at, source, state) VALUES (?1, ?2, 'applying')",
                params![now, source],
            )
            .map_err(|e| self.sql(e))?;
            let id = tx.last_insert_rowid();
            for (t, ops) in &sealed_targets {
                tx.execute(
                    "INSERT INTO journal_targets (journal_id, target, spec, label, state, untouched)
                     VALUES (?1, ?2, ?3, ?4, 'applying', ?5)",
                    params![id, t.identity, t.spec, t.label, t.untouched],
                )
                .map_err(|e| self.sql(e))?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO journal_ops (journal_id, target, seq, key, change, after, before_kind, before, done, before_stamp)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(|e| self.sql(e))?;
                for (seq, (op, after, kind, before)) in ops.iter().enumerate() {
                    insert
                        .execute(params![
                            id,
                            t.identity,
                            seq as i64,
                            op.key,
                            change_str(op.change),
                            after,
                            kind,
                            before,
                            op.done as i64,
                            op.before_stamp
                        ])
                        .map_err(|e| self.sql(e))?;
                }
            }
            tx.commit().map_err(|e| self.sql(e))?;
            Ok(JournalId(id))
        })
    }

    /// Marks ops done and, in the same transaction, records what they wrote: a write's
    /// fingerprint, sealed value and ownership, a deletion's forgetting. A crash therefore
    /// never leaves an op done without its record, nor a record without its op.
    pub fn mark_done(
        &self,
        id: JournalId,
        target: &str,
        landed: &[Landed<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        let sealed: Vec<Option<Vec<u8>>> = landed
            .iter()
            .map(|l| match l {
                Landed::Written { value, .. } => self.sealer.seal(value).map(Some),
                Landed::Deleted { .. } => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        self.with(|conn| {
            self.durability(conn, Durability::Crash)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sql(e))?;
            {
                let mut done = tx
                    .prepare_cached(
                        "UPDATE journal_ops SET done = 1 WHERE journal_id = ?1 AND target = ?2 AND key = ?3",
                    )
                    .map_err(|e| self.sql(e))?;
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO write_records (target, key, fingerprint, updated_at, sealed, written_at)
                         VALUES (?1, ?2, ?3, NULL, ?4, ?5)
                         ON CONFLICT (target, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                           updated_at = NULL, sealed = excluded.sealed, written_at = excluded.written_at",
                    )
                    .map_err(|e| self.sql(e))?;
                let mut forget = tx
                    .prepare_cached("DELETE FROM write_records WHERE target = ?1 AND key = ?2")
                    .map_err(|e| self.sql(e))?;
                for (l, sealed) in landed.iter().zip(&sealed) {
                    done.execute(params![id.0, target, l.key()])
                        .map_err(|e| self.sql(e))?;
                    match (l, sealed) {
                        (Landed::Written { key, fingerprint, .. }, Some(sealed)) => put
                            .execute(params![target, key, fingerprint.to_hex(), sealed, now])
                            .map_err(|e| self.sql(e))?,
                        (_, _) => forget
                            .execute(params![target, l.key()])
                            .map_err(|e| self.sql(e))?,
                    };
                }
            }
            tx.commit().map_err(|e| self.sql(e))
        })
    }

    /// Sets the platform's stamps on records just written (the platform tells them after the
    /// writes, or a resume reads them). With `only_unset`, a record keeps a stamp it has.
    pub fn set_stamps(
        &self,
        target: &str,
        stamps: &BTreeMap<String, String>,
        only_unset: bool,
    ) -> Result<(), StoreError> {
        if stamps.is_empty() {
            return Ok(());
        }
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sql(e))?;
            {
                let sql = if only_unset {
                    "UPDATE write_records SET updated_at = ?3 WHERE target = ?1 AND key = ?2 AND updated_at IS NULL"
                } else {
                    "UPDATE write_records SET updated_at = ?3 WHERE target = ?1 AND key = ?2"
                };
                let mut put = tx.prepare_cached(sql).map_err(|e| self.sql(e))?;
                for (key, stamp) in stamps {
                    put.execute(params![target, key, stamp])
                        .map_err(|e| self.sql(e))?;
                }
            }
            tx.commit().map_err(|e| self.sql(e))
        })
    }

    /// The newest journal that left ops unwritten on `target` and was neither finished,
    /// rolled back nor discarded: while it stands, a new apply there would race its resume.
    pub fn unfinished_on(&self, target: &str) -> Result<Option<JournalId>, StoreError> {
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
            .map(|id| id.map(JournalId))
            .map_err(|e| self.sql(e))
        })
    }

    pub fn finish_target(
        &self,
        id: JournalId,
        target: &str,
        state: JournalState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            conn.execute(
                "UPDATE journal_targets SET state = ?3, error = ?4 WHERE journal_id = ?1 AND target = ?2",
                params![id.0, target, state.as_str(), error],
            )
            .map_err(|e| self.sql(e))?;
            Ok(())
        })
    }

    pub fn finish(&self, id: JournalId, state: JournalState) -> Result<(), StoreError> {
        self.with(|conn| {
            self.durability(conn, Durability::Full)?;
            conn.execute(
                "UPDATE journals SET state = ?2 WHERE id = ?1",
                params![id.0, state.as_str()],
            )
            .map_err(|e| self.sql(e))?;
            Ok(())
        })
    }

    /// Checks that the records were made with the fingerprint key whose id is `key_id` (a
    /// fingerprint of a fixed text under it, which reveals nothing of the key), recording it
    /// on first use.
    pub fn check_fingerprint_key(&self, key_id: &str) -> Result<(), StoreError> {
        let stored: String = self.with(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO state_meta (key, value) VALUES ('fingerprint_key_id', ?1)",
                [key_id],
            )
            .map_err(|e| self.sql(e))?;
            conn.query_row(
                "SELECT value FROM state_meta WHERE key = 'fingerprint_key_id'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.sql(e))
        })?;
        if stored == key_id {
            Ok(())
        } else {
            Err(StoreError::FingerprintKeyMismatch {
                path: self.path.clone(),
                stored,
                given: key_id.to_owned(),
            })
        }
    }

    /// Gives up journal `id`: its unwritten ops will never be written, and applies to its
    /// targets may go ahead. Refused for a journal that finished.
    pub fn discard(&self, id: JournalId) -> Result<Journal, StoreError> {
        let journal = self.journal(id)?;
        if !matches!(journal.state, JournalState::Applying | JournalState::Failed) {
            return Err(StoreError::Finished {
                journal: id.0,
                state: journal.state.as_str(),
            });
        }
        self.finish(id, JournalState::Discarded)?;
        Ok(journal)
    }

    /// The newest journal that did not finish cleanly (applying or failed).
    pub fn latest_unfinished(&self) -> Result<Option<Journal>, StoreError> {
        let id: Option<i64> = self.with(|conn| {
            conn.query_row(
                "SELECT id FROM journals WHERE state IN ('applying', 'failed') ORDER BY id DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
        })?;
        id.map(|id| self.journal(JournalId(id))).transpose()
    }

    /// The newest journal that wrote to `target` and was not rolled back.
    pub fn latest_for_target(&self, target: &str) -> Result<Option<Journal>, StoreError> {
        let id: Option<i64> = self.with(|conn| {
            conn.query_row(
                "SELECT j.id FROM journals j JOIN journal_targets t ON t.journal_id = j.id
                 WHERE t.target = ?1 AND j.state != 'rolled_back' AND t.state != 'rolled_back'
                 ORDER BY j.id DESC LIMIT 1",
                [target],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
        })?;
        id.map(|id| self.journal(JournalId(id))).transpose()
    }

    pub fn journal(&self, id: JournalId) -> Result<Journal, StoreError> {
        type OpRow = (
            String,
            String,
            String,
            Option<Vec<u8>>,
            String,
            Option<Vec<u8>>,
            i64,
            Option<String>,
        );
        type TargetRow = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let (head, targets, ops) = self.with(|conn| {
            let head: Option<(String, String, String)> = conn
                .query_row(
                    "SELECT created_at, source, state FROM journals WHERE id = ?1",
                    [id.0],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(|e| self.sql(e))?;
            let head = head.ok_or(StoreError::NoJournal(id.0))?;
            let mut stmt = conn
                .prepare(
                    "SELECT target, spec, label, state, error, untouched FROM journal_targets
                     WHERE journal_id = ?1 ORDER BY rowid",
                )
                .map_err(|e| self.sql(e))?;
            let targets: Vec<TargetRow> = stmt
                .query_map([id.0], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })
                .map_err(|e| self.sql(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.sql(e))?;
            let mut stmt = conn
                .prepare(
                    "SELECT target, key, change, after, before_kind, before, done, before_stamp
                     FROM journal_ops WHERE journal_id = ?1 ORDER BY target, seq",
                )
                .map_err(|e| self.sql(e))?;
            let ops: Vec<OpRow> = stmt
                .query_map([id.0], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                    ))
                })
                .map_err(|e| self.sql(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.sql(e))?;
            Ok((head, targets, ops))
        })?;

        let mut by_target: BTreeMap<String, Vec<JournalOp>> = BTreeMap::new();
        for (target, key, change, after, before_kind, before, done, before_stamp) in ops {
            let before = match (before_kind.as_str(), before) {
                ("absent", _) => PreImage::Absent,
                ("unknown", _) => PreImage::Unknown,
                ("value", Some(b)) => PreImage::Value(self.sealer.open(&b)?),
                (other, _) => {
                    return Err(StoreError::Corrupt(format!("bad pre-image kind {other}")));
                }
            };
            by_target.entry(target).or_default().push(JournalOp {
                key,
                change: parse_change(&change)?,
                after: after.map(|a| self.sealer.open(&a)).transpose()?,
                before,
                before_stamp,
                done: done != 0,
            });
        }
        let targets = targets
            .into_iter()
            .map(|(identity, spec, label, state, error, untouched)| {
                Ok(JournalTarget {
                    ops: by_target.remove(&identity).unwrap_or_default(),
                    identity,
                    spec,
                    label,
                    state: JournalState::parse(&state)?,
                    error,
                    untouched,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Journal {
            id,
            created_at: head.0,
            source: head.1,
            state: JournalState::parse(&head.2)?,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_core::FingerprintKey;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let (_, sealer) = Sealer::generate();
        let store = StateStore::open(&dir.path().join("state.db"), sealer).unwrap();
        (dir, store)
    }

    #[test]
    fn records_round_trip_and_deletions_forget() {
        let (_dir, s) = store();
        let key = FingerprintKey::from_bytes([1; 32]);
        let v = SecretValue::new("v1");
        s.record(
            "gh",
            &[("A", key.fingerprint(&v), &v, Some("2026-01-01T00:00:00Z"))],
            &[],
            "now",
        )
        .unwrap();
        let r = s.records("gh").unwrap();
        assert_eq!(r["A"].fingerprint, key.fingerprint(&v));
        assert_eq!(r["A"].updated_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(s.recorded_value("gh", "A").unwrap(), Some(v));
        s.record("gh", &[], &["A"], "now").unwrap();
        assert!(s.records("gh").unwrap().is_empty());
    }

    fn journal_target(identity: &str) -> JournalTarget {
        JournalTarget {
            identity: identity.into(),
            spec: "render".into(),
            label: "render".into(),
            state: JournalState::Applying,
            error: None,
            untouched: None,
            ops: vec![JournalOp {
                key: "A".into(),
                change: Change::Create,
                after: Some(SecretValue::new("v")),
                before: PreImage::Absent,
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
                        let s = StateStore::open(&path, sealer)?;
                        let v = SecretValue::new("v");
                        let target = format!("t{i}");
                        for _ in 0..2 {
                            let id = s.begin("src", "now", &[journal_target(&target)])?;
                            s.mark_done(id, &target, &[Landed::Deleted { key: "A" }], "now")?;
                            s.record(
                                &target,
                                &[("A", key.fingerprint(&v), &v, Some("s1"))],
                                &[],
                                "now",
                            )?;
                            s.advance_shared_stamp("A", "s1", "s2", |t| t != target)?;
                            s.finish_target(id, &target, JournalState::Done, None)?;
                            s.finish(id, JournalState::Done)?;
                            s.latest_unfinished()?;
                        }
                        s.records(&target).map(|_| ())
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn a_shared_stamp_advances_only_where_nothing_else_moved_it() {
        let (_dir, s) = store();
        let key = FingerprintKey::from_bytes([1; 32]);
        let v = SecretValue::new("v1");
        let at = |target: &str, stamp: &str| {
            s.record(
                target,
                &[("T", key.fingerprint(&v), &v, Some(stamp))],
                &[],
                "now",
            )
            .unwrap();
        };
        at("netlify:site:production", "s1");
        at("netlify:site:deploy-preview", "s0");
        at("netlify:other:production", "s1");
        let siblings = |t: &str| t.starts_with("netlify:site:");
        let moved = s.advance_shared_stamp("T", "s1", "s2", siblings).unwrap();
        assert_eq!(moved, 1);
        let stamp = |target: &str| s.records(target).unwrap()["T"].updated_at.clone();
        assert_eq!(stamp("netlify:site:production").as_deref(), Some("s2"));
        // Moved by someone else before our write: it keeps its stamp, and reads as such.
        assert_eq!(stamp("netlify:site:deploy-preview").as_deref(), Some("s0"));
        // Not a place that shares the stamp.
        assert_eq!(stamp("netlify:other:production").as_deref(), Some("s1"));
    }

    #[test]
    fn journals_keep_ops_values_and_progress() {
        let (_dir, s) = store();
        let op = |key: &str, change, after: Option<&str>, before| JournalOp {
            key: key.into(),
            change,
            after: after.map(SecretValue::new),
            before,
            before_stamp: None,
            done: false,
        };
        let id = s
            .begin(
                "local:.env",
                "t0",
                &[JournalTarget {
                    identity: "render:srv-1".into(),
                    spec: "render".into(),
                    label: "render".into(),
                    state: JournalState::Applying,
                    error: None,
                    untouched: Some("digest".into()),
                    ops: vec![
                        op("A", Change::Create, Some("1"), PreImage::Absent),
                        op(
                            "B",
                            Change::Update,
                            Some("2"),
                            PreImage::Value(SecretValue::new("old")),
                        ),
                        op("C", Change::Delete, None, PreImage::Unknown),
                    ],
                }],
            )
            .unwrap();
        let key = FingerprintKey::from_bytes([1; 32]);
        let one = SecretValue::new("1");
        let landed = [
            Landed::Written {
                key: "A",
                fingerprint: key.fingerprint(&one),
                value: &one,
            },
            Landed::Deleted { key: "C" },
        ];
        s.record(
            "render:srv-1",
            &[("C", key.fingerprint(&one), &one, Some("s"))],
            &[],
            "t",
        )
        .unwrap();
        assert_eq!(s.unfinished_on("render:srv-1").unwrap(), Some(id));
        s.mark_done(id, "render:srv-1", &landed, "t1").unwrap();
        // Marked done and recorded in one step: A is owned now, C forgotten.
        let records = s.records("render:srv-1").unwrap();
        assert_eq!(records.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(records["A"].fingerprint, key.fingerprint(&one));
        assert_eq!(records["A"].updated_at, None);
        s.set_stamps(
            "render:srv-1",
            &[("A".to_string(), "s1".to_string())].into(),
            true,
        )
        .unwrap();
        s.set_stamps(
            "render:srv-1",
            &[("A".to_string(), "s2".to_string())].into(),
            true,
        )
        .unwrap();
        assert_eq!(
            s.records("render:srv-1").unwrap()["A"]
                .updated_at
                .as_deref(),
            Some("s1")
        );
        let j = s.latest_unfinished().unwrap().unwrap();
        assert_eq!(j.id, id);
        assert_eq!(j.targets[0].untouched.as_deref(), Some("digest"));
        let ops = &j.targets[0].ops;
        assert_eq!(
            ops.iter().map(|o| o.done).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(ops[1].after.as_ref().unwrap().expose(), "2");
        assert_eq!(ops[1].before, PreImage::Value(SecretValue::new("old")));
        s.finish(id, JournalState::Done).unwrap();
        assert!(s.latest_unfinished().unwrap().is_none());
        assert_eq!(s.unfinished_on("render:srv-1").unwrap(), None);
        assert_eq!(s.latest_for_target("render:srv-1").unwrap().unwrap().id, id);
        // The database holds no clear value.
        let raw = std::fs::read(_dir.path().join("state.db")).unwrap_or_default();
        let wal = std::fs::read(_dir.path().join("state.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(3).any(|w| w == b"old"));
        }
    }
}
