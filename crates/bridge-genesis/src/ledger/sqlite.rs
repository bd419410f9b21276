//! [`SqliteRows`]: the ledger's rows in one SQLite file (WAL, `synchronous=FULL`), the
//! embedded default; and [`VerifyImage`], which copies another backend's rows into an
//! in-memory database so that one verifier checks every backend alike.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use crate::sqlite_setup::retry_while_busy;

use super::LedgerError;
use super::merkle::Hash;
use super::rows::{
    CheckpointRow, Checkpoints, EntryRow, LeafVisitor, LedgerRows, RawRow, RowError, RowVisitor,
};
use super::verify::{self, Scope, VerifyReport};

// Table names carry a prefix because the ledger may share one SQLite file with the bus and
// the other stores. STRICT makes SQLite refuse values of the wrong type.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS ledger_entries (
    idx INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    topic TEXT NOT NULL,
    seq INTEGER,
    payload TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS ledger_checkpoints_by_size ON ledger_checkpoints (size);
CREATE INDEX IF NOT EXISTS ledger_entries_by_seq ON ledger_entries (seq) WHERE seq IS NOT NULL;
";

/// The row columns every scan reads, in this order.
pub(crate) const ROW_COLUMNS: &str = "idx, timestamp, topic, seq, payload, leaf_hash";

/// The ledger's rows in an SQLite file.
pub struct SqliteRows {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for SqliteRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRows")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteRows {
    /// Opens (creating if needed) the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self {
            conn,
            path: path.display().to_string(),
        })
    }

    /// Opens the file at `path` for reading only: what checks a ledger must not change it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self {
            conn,
            path: path.display().to_string(),
        })
    }
}

/// SQLite integers are signed; refuse what does not fit rather than wrap.
pub(crate) fn sql_int(v: u64, what: &'static str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::OutOfRange {
        what,
        value: v,
        size: i64::MAX as u64,
    })
}

fn sql_int_sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LedgerRows for SqliteRows {
    fn describe(&self) -> String {
        self.path.clone()
    }

    fn setup(&self, origin: &str) -> Result<String, LedgerError> {
        let patience = Duration::from_secs(5);
        retry_while_busy(&self.conn, patience, |conn| {
            // WAL lets verifiers and proof readers run beside the writer; FULL makes a
            // committed append survive a power cut, which is what an audit log promises.
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            tx.execute(
                "INSERT OR IGNORE INTO ledger_meta (key, value) VALUES ('origin', ?1)",
                [origin],
            )?;
            tx.commit()
        })?;
        Ok(self.conn.query_row(
            "SELECT value FROM ledger_meta WHERE key = 'origin'",
            [],
            |r| r.get(0),
        )?)
    }

    // The statements are cached: a feed appending a few entries many times a second paid as
    // much for parsing `BEGIN` and `COMMIT` anew as for its inserts. IMMEDIATE takes the
    // write lock at once, so the tail read next cannot move.
    fn begin_write(&self) -> Result<(), LedgerError> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(())
    }

    fn commit(&self) -> Result<(), LedgerError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut stmt| stmt.execute([]));
        }
    }

    fn stored_len(&self) -> Result<u64, LedgerError> {
        let last: Option<i64> =
            self.conn
                .query_row("SELECT max(idx) FROM ledger_entries", [], |r| r.get(0))?;
        match last {
            None => Ok(0),
            Some(i) => Ok(u64::try_from(i)
                .map_err(|_| LedgerError::Damaged("an entry has a negative index".into()))?
                .saturating_add(1)),
        }
    }

    fn leaf_hashes(
        &self,
        start: u64,
        end: u64,
        visit: &mut LeafVisitor<'_>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![sql_int(start, "index")?, sql_int_sat(end)])?;
        while let Some(row) = rows.next()? {
            let idx = row.get::<_, i64>(0)?;
            let leaf = match row.get_ref(1)? {
                ValueRef::Blob(b) => Hash::try_from(b).ok(),
                _ => None,
            };
            visit(idx, leaf)?;
        }
        Ok(())
    }

    fn recorded_seqs(&self, lo: u64, hi: u64) -> Result<Vec<u64>, LedgerError> {
        // One range scan of the seq index (a feed's batch is a run of sequences).
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq FROM ledger_entries WHERE seq >= ?1 AND seq <= ?2 AND seq IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![sql_int(lo, "bus sequence")?, sql_int_sat(hi)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(u64::try_from(row.get::<_, i64>(0)?).unwrap_or_default());
        }
        Ok(out)
    }

    fn index_of_seq(&self, seq: u64) -> Result<Option<u64>, LedgerError> {
        let idx: Option<i64> = self
            .conn
            .prepare_cached("SELECT min(idx) FROM ledger_entries WHERE seq = ?1")?
            .query_row([sql_int(seq, "bus sequence")?], |r| r.get(0))?;
        Ok(idx.and_then(|i| u64::try_from(i).ok()))
    }

    fn insert_entries(&self, rows: &[EntryRow<'_>]) -> Result<(), LedgerError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO ledger_entries (idx, timestamp, topic, seq, payload, leaf_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in rows {
            insert.execute(params![
                sql_int(r.index, "index")?,
                r.timestamp,
                r.topic,
                r.seq.map(|s| sql_int(s, "bus sequence")).transpose()?,
                // The canonical encoder only emits UTF-8; bind it as text without a copy.
                ToSqlOutput::Borrowed(ValueRef::Text(r.payload.as_bytes())),
                &r.leaf_hash[..],
            ])?;
        }
        Ok(())
    }

    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM ledger_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx"
        ))?;
        let mut rows = stmt.query(params![sql_int_sat(start), sql_int_sat(end)])?;
        while let Some(row) = rows.next()? {
            visit(read_row(row)?)?;
        }
        Ok(())
    }

    fn checkpoints(&self, which: Checkpoints) -> Result<Vec<CheckpointRow>, LedgerError> {
        let read = |r: &rusqlite::Row<'_>| {
            Ok(CheckpointRow {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or_default(),
                created_at: r.get(1)?,
                note: r.get(2)?,
            })
        };
        let rows = match which {
            Checkpoints::All => self
                .conn
                .prepare_cached("SELECT id, created_at, note FROM ledger_checkpoints ORDER BY id")?
                .query_map([], read)?
                .collect::<Result<Vec<_>, _>>()?,
            Checkpoints::Latest => self
                .conn
                .prepare_cached(
                    "SELECT id, created_at, note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1",
                )?
                .query_row([], read)
                .optional()?
                .into_iter()
                .collect(),
            Checkpoints::LatestOfSize(size) => self
                .conn
                .prepare_cached(
                    "SELECT id, created_at, note FROM ledger_checkpoints WHERE size = ?1
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row([sql_int(size, "tree size")?], read)
                .optional()?
                .into_iter()
                .collect(),
        };
        Ok(rows)
    }

    fn insert_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
        created_at: &str,
    ) -> Result<u64, LedgerError> {
        self.conn.prepare_cached(
            "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![sql_int(size, "tree size")?, &root[..], note, created_at])?;
        Ok(u64::try_from(self.conn.last_insert_rowid()).unwrap_or_default())
    }

    fn verify(&self, origin: &str, key: &VerifyingKey) -> Result<VerifyReport, LedgerError> {
        verify::run(&self.conn, origin, key, Scope::File)
    }
}

/// Reads a row selected with [`ROW_COLUMNS`], checking each column's type: only tampering
/// gives one of another type.
pub(crate) fn read_row<'a>(
    row: &'a rusqlite::Row<'_>,
) -> rusqlite::Result<Result<RawRow<'a>, RowError>> {
    let ValueRef::Integer(idx) = row.get_ref(0)? else {
        return Ok(Err((None, "its index is not an integer")));
    };
    let Ok(index) = u64::try_from(idx) else {
        return Ok(Err((None, "its index is negative")));
    };
    let bad = |reason| -> rusqlite::Result<Result<RawRow<'a>, RowError>> {
        Ok(Err((Some(index), reason)))
    };
    let ValueRef::Text(timestamp) = row.get_ref(1)? else {
        return bad("its timestamp is not text");
    };
    let ValueRef::Text(topic) = row.get_ref(2)? else {
        return bad("its topic is not text");
    };
    let seq = match row.get_ref(3)? {
        ValueRef::Null => None,
        ValueRef::Integer(s) => match u64::try_from(s) {
            Ok(s) => Some(s),
            Err(_) => return bad("its bus sequence is negative"),
        },
        _ => return bad("its bus sequence is not an integer"),
    };
    let ValueRef::Text(payload) = row.get_ref(4)? else {
        return bad("its payload is not text");
    };
    let stored = match row.get_ref(5)? {
        ValueRef::Blob(b) => match Hash::try_from(b) {
            Ok(h) => h,
            Err(_) => return bad("its stored leaf hash is not 32 bytes"),
        },
        _ => return bad("its stored leaf hash is not a blob"),
    };
    Ok(Ok(RawRow {
        index,
        timestamp,
        topic,
        seq,
        payload,
        stored,
    }))
}

/// Another backend's rows copied, as stored, into an in-memory SQLite database with the
/// embedded schema (minus its type checks, so a malformed value arrives as it is and is
/// reported as one), then verified by the one verifier.
pub struct VerifyImage {
    conn: Connection,
}

impl std::fmt::Debug for VerifyImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyImage").finish_non_exhaustive()
    }
}

impl VerifyImage {
    pub fn new() -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE ledger_entries (idx INTEGER PRIMARY KEY, timestamp, topic, seq,
                                          payload, leaf_hash);
             CREATE TABLE ledger_checkpoints (id INTEGER PRIMARY KEY, size, root, note,
                                              created_at);
             BEGIN;",
        )?;
        Ok(Self { conn })
    }

    /// Adds one entry row as the other backend holds it (`None` for a NULL someone put in a
    /// column the ledger always fills: the verifier names it).
    pub fn entry(
        &self,
        index: i64,
        timestamp: Option<&str>,
        topic: Option<&str>,
        seq: Option<i64>,
        payload: Option<&str>,
        leaf_hash: Option<&[u8]>,
    ) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "INSERT INTO ledger_entries (idx, timestamp, topic, seq, payload, leaf_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![index, timestamp, topic, seq, payload, leaf_hash])?;
        Ok(())
    }

    /// Adds one checkpoint row as the other backend holds it.
    pub fn checkpoint(
        &self,
        id: i64,
        size: i64,
        root: &[u8],
        note: &str,
        created_at: &str,
    ) -> Result<(), LedgerError> {
        self.conn
            .prepare_cached(
                "INSERT INTO ledger_checkpoints (id, size, root, note, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, size, root, note, created_at])?;
        Ok(())
    }

    /// Verifies what was copied.
    pub fn verify(self, origin: &str, key: &VerifyingKey) -> Result<VerifyReport, LedgerError> {
        self.conn.execute_batch("COMMIT")?;
        verify::run(&self.conn, origin, key, Scope::Image)
    }
}
