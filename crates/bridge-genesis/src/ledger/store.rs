//! The [`Ledger`] handle: SQLite storage, appends, reads, checkpoints and proofs.
//!
//! The tree's right edge (one hash per set bit of the size) lives in memory and is rebuilt
//! from the stored leaf hashes on open, so an append hashes O(log n) nodes and reads nothing.
//! Perfect subtrees of 256 leaves and more are also kept in memory (n/128 hashes, 250 KB per
//! million entries), so a proof costs O(log n) cache lookups plus one read of at most 256
//! leaf hashes, whatever the size of the log.

use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use crate::sqlite_setup::retry_while_busy;
use time::OffsetDateTime;

use super::LedgerError;
use super::checkpoint::{self, Checkpoint, valid_origin, verify_checkpoint};
use super::merkle::{
    EMPTY_ROOT, Frontier, Hash, NodeSource, consistency_path_in, inclusion_path_in, leaf_hash,
    node_hash, root, split, verify_consistency,
};
use super::proof::{ConsistencyProof, InclusionProof};
use super::record::{LedgerEntry, NewEntry, canonical_json, format_timestamp, write_entry};
use super::verify::{self, ROW_COLUMNS, RawRow, VerifyReport};

/// Subtrees of 2^CACHE_LEVEL leaves and larger are cached in memory.
const CACHE_LEVEL: u32 = 8;
/// Leaves per cached subtree at the lowest cached level: the most a proof reads from disk.
const BLOCK: u64 = 1 << CACHE_LEVEL;

// Table names carry a prefix because the ledger may share one SQLite file with the bus and
// the other stores. STRICT makes SQLite refuse values of the wrong type.
const SCHEMA: &str = "
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

/// A checkpoint as stored: its row id and when it was made, besides the signed content.
///
/// Returned as stored, not verified: check `checkpoint.note` with
/// [`verify_checkpoint`](super::verify_checkpoint) before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Row id, from 1; problems in a [`VerifyReport`] refer to checkpoints by it.
    pub id: u64,
    /// RFC 3339 UTC; not signed (C2SP checkpoints carry no time).
    pub created_at: String,
    /// The parsed note.
    pub checkpoint: Checkpoint,
}

/// The tree as this handle knows it: the right edge plus the cache of large subtrees.
#[derive(Debug, Default)]
struct Tree {
    frontier: Frontier,
    /// `cache[l][j]` = hash of leaves `j * 2^(l + CACHE_LEVEL) .. (j + 1) * 2^(l + CACHE_LEVEL)`.
    cache: Vec<Vec<Hash>>,
}

impl Tree {
    fn size(&self) -> u64 {
        self.frontier.size()
    }

    fn root(&self) -> Hash {
        self.frontier.root()
    }

    fn push(&mut self, leaf: Hash) {
        let cache = &mut self.cache;
        self.frontier.push(leaf, |level, hash| {
            if let Some(l) = level.checked_sub(CACHE_LEVEL) {
                let l = l as usize;
                if cache.len() <= l {
                    cache.resize_with(l + 1, Vec::new);
                }
                // Subtrees of one level complete left to right, so this is index j.
                cache[l].push(*hash);
            }
        });
    }

    fn cached(&self, level: u32, index: u64) -> Option<Hash> {
        let l = level.checked_sub(CACHE_LEVEL)? as usize;
        self.cache
            .get(l)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }
}

/// A tamper-evident, append-only log of events in one SQLite file.
///
/// Not `Sync`: share it behind a mutex or give it to one task. Several handles (or processes)
/// may append to one file; each picks up the others' entries at its next write.
pub struct Ledger {
    conn: Connection,
    origin: String,
    key: Option<SigningKey>,
    tree: Tree,
    /// Why the stored log cannot be extended, if it cannot (found at open or while writing).
    damage: Option<String>,
}

impl std::fmt::Debug for Ledger {
    // By hand, so that the signing key can never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.origin)
            .field("len", &self.tree.size())
            .field("can_sign", &self.key.is_some())
            .field("damage", &self.damage)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger in the SQLite file at `path`.
    ///
    /// `origin` names the log in its checkpoints (e.g. `bridge.local/ledger`) and is recorded
    /// in the file; opening it under another origin fails. Without `key` the ledger can append
    /// and prove but not sign checkpoints. The key comes from the caller so this crate never
    /// needs a source of randomness.
    ///
    /// A file whose entries have gaps or malformed hashes still opens (so it can be verified
    /// and exported), but refuses appends, checkpoints and proofs.
    pub fn open(
        path: impl AsRef<Path>,
        origin: &str,
        key: Option<SigningKey>,
    ) -> Result<Self, LedgerError> {
        if !valid_origin(origin) {
            return Err(LedgerError::InvalidOrigin(origin.to_owned()));
        }
        let conn = Connection::open(path)?;
        let patience = Duration::from_secs(5);
        conn.busy_timeout(patience)?;
        retry_while_busy(&conn, patience, |conn| {
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
        let found: String = conn.query_row(
            "SELECT value FROM ledger_meta WHERE key = 'origin'",
            [],
            |r| r.get(0),
        )?;
        if found != origin {
            return Err(LedgerError::OriginMismatch {
                expected: origin.to_owned(),
                found,
            });
        }
        let mut ledger = Ledger {
            conn,
            origin: origin.to_owned(),
            key,
            tree: Tree::default(),
            damage: None,
        };
        match catch_up(&ledger.conn, &mut ledger.tree) {
            Ok(()) => {}
            Err(LedgerError::Damaged(why)) => ledger.damage = Some(why),
            Err(e) => return Err(e),
        }
        Ok(ledger)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key checkpoints are signed with, if this handle can sign.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        self.key.as_ref().map(SigningKey::verifying_key)
    }

    /// Number of entries (of the intact prefix, if the file is damaged).
    pub fn len(&self) -> u64 {
        self.tree.size()
    }

    /// True when no entry has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Root of the current tree.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Why the file cannot be extended, if it cannot.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Appends one entry in its own transaction; returns its index (for a bus event the
    /// ledger already records, the index it is recorded at).
    ///
    /// Each call waits for an fsync; use [`append_batch`](Self::append_batch) for volume.
    pub fn append(&mut self, entry: NewEntry) -> Result<u64, LedgerError> {
        let seq = entry.seq;
        if let Some(&index) = self.append_batch(std::slice::from_ref(&entry))?.first() {
            return Ok(index);
        }
        let recorded = match seq {
            Some(seq) => recorded_at(&self.conn, sql_int(seq, "bus sequence")?)?,
            None => None,
        };
        recorded
            .ok_or_else(|| LedgerError::Damaged("an append of one entry returned no index".into()))
    }

    /// Appends entries in one transaction (all or none); returns the indexes of those
    /// appended. A bus event is recorded once: an entry whose `seq` the file already holds
    /// (appended by another handle, thread or process) or that repeats one earlier in the
    /// batch is left out, checked under the write lock, so feeders racing on one file cannot
    /// record an event twice.
    pub fn append_batch(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, LedgerError> {
        self.intact()?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Encode before taking the write lock, so the lock is held only for the inserts.
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            let seq = e.seq.map(|s| sql_int(s, "bus sequence")).transpose()?;
            encoded.push((
                format_timestamp(e.timestamp)?,
                canonical_json(&e.payload),
                seq,
            ));
        }
        let result = append_rows(&mut self.conn, &mut self.tree, entries, &encoded);
        self.note_damage(result)
    }

    /// The entry at `index`, if there is one.
    pub fn entry(&self, index: u64) -> Result<Option<LedgerEntry>, LedgerError> {
        let end = index.saturating_add(1);
        Ok(self.entries(index..end)?.into_iter().next())
    }

    /// The stored entries with indexes in `range`, in order.
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<LedgerEntry>, LedgerError> {
        let (start, end) = (sql_int(range.start, "index")?, sql_int_sat(range.end));
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, timestamp, topic, seq, payload FROM ledger_entries
             WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![start, end])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let index = u64::try_from(row.get::<_, i64>(0)?).unwrap_or_default();
            let payload: String = row.get(4)?;
            out.push(LedgerEntry {
                index,
                timestamp: row.get(1)?,
                topic: row.get(2)?,
                seq: row
                    .get::<_, Option<i64>>(3)?
                    .map(|s| u64::try_from(s).unwrap_or_default()),
                payload: serde_json::from_str(&payload)
                    .map_err(|_| LedgerError::Payload { index })?,
            });
        }
        Ok(out)
    }

    /// Writes every entry as one line of canonical JSON (the exact bytes its leaf hashes, so
    /// `SHA-256(0x00 || line)` is its leaf hash); returns the number written.
    pub fn export_jsonl(&self, mut w: impl Write) -> Result<u64, LedgerError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM ledger_entries ORDER BY idx"
        ))?;
        let mut rows = stmt.query([])?;
        let mut buf = Vec::with_capacity(1024);
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let r = RawRow::read(row)?.map_err(|(index, why)| {
                LedgerError::Damaged(format!(
                    "entry {} cannot be exported: {why}",
                    index.map_or_else(|| "?".to_owned(), |i| i.to_string())
                ))
            })?;
            buf.clear();
            write_entry(&mut buf, r.index, r.timestamp, r.topic, r.seq, r.payload);
            buf.push(b'\n');
            w.write_all(&buf)?;
            n += 1;
        }
        w.flush()?;
        Ok(n)
    }

    /// Signs a checkpoint of the current tree, after proving it extends the last one.
    ///
    /// Refuses ([`LedgerError::Refused`]) when the last stored checkpoint does not verify with
    /// this ledger's key, when the log is shorter than it, when an entry appended since no
    /// longer matches its leaf hash, or when the consistency proof from it to the current tree
    /// fails: a log must never sign two views of history that disagree.
    pub fn checkpoint(&mut self, now: OffsetDateTime) -> Result<StoredCheckpoint, LedgerError> {
        self.intact()?;
        let created_at = format_timestamp(now)?;
        let Some(key) = self.key.as_ref() else {
            return Err(LedgerError::NoSigningKey);
        };
        let result = sign_checkpoint(
            &mut self.conn,
            &mut self.tree,
            &self.origin,
            key,
            &created_at,
        );
        self.note_damage(result)
    }

    /// The most recent checkpoint, as stored (not verified).
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        last_checkpoint(&self.conn)
    }

    /// Every checkpoint, oldest first, as stored (not verified).
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, created_at, note FROM ledger_checkpoints ORDER BY id")?;
        let rows = stmt.query_map([], checkpoint_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_stored(row?)?);
        }
        Ok(out)
    }

    /// The root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        self.intact()?;
        self.check_size(size)?;
        if size == self.tree.size() {
            return Ok(self.tree.root());
        }
        if size == 0 {
            return Ok(EMPTY_ROOT);
        }
        StoredNodes::new(&self.conn, &self.tree).subtree(0, size)
    }

    /// Proof that entry `index` is in the tree of the first `size` entries, with the latest
    /// checkpoint stored for exactly that size (if any) so it can be checked offline.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, LedgerError> {
        self.intact()?;
        self.check_size(size)?;
        let mut src = StoredNodes::new(&self.conn, &self.tree);
        let audit_path = inclusion_path_in(&mut src, index, size)?;
        let leaf_hash = src.subtree(index, index + 1)?;
        let root = if size == self.tree.size() {
            self.tree.root()
        } else {
            src.subtree(0, size)?
        };
        let checkpoint = self.signed_note(size)?;
        Ok(InclusionProof {
            index,
            tree_size: size,
            leaf_hash,
            audit_path,
            root,
            checkpoint,
        })
    }

    /// Proof that the tree of the first `m` entries is a prefix of the tree of the first `n`.
    pub fn consistency_proof(&self, m: u64, n: u64) -> Result<Vec<Hash>, LedgerError> {
        self.intact()?;
        self.check_size(n)?;
        consistency_path_in(&mut StoredNodes::new(&self.conn, &self.tree), m, n)
    }

    /// The latest signed checkpoint stored for exactly `size` entries, if any.
    fn signed_note(&self, size: u64) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT note FROM ledger_checkpoints WHERE size = ?1 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([sql_int(size, "tree size")?], |r| r.get::<_, String>(0))
            .optional()?)
    }

    /// A portable proof that the signed tree of `n` entries extends the signed tree of `m`,
    /// with both checkpoints, so that it can be checked offline with the public key only.
    /// Both sizes must have a stored checkpoint.
    pub fn signed_consistency_proof(
        &self,
        m: u64,
        n: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        let note = |size: u64| match self.signed_note(size)? {
            Some(note) => Ok(note),
            None => {
                let mut sizes: Vec<u64> = self
                    .checkpoints()?
                    .iter()
                    .map(|c| c.checkpoint.size)
                    .collect();
                sizes.dedup();
                let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
                Err(LedgerError::Proof(format!(
                    "no signed checkpoint covers exactly {size} entries; checkpoints cover: {}",
                    if sizes.is_empty() {
                        "none yet".to_owned()
                    } else {
                        sizes.join(", ")
                    }
                )))
            }
        };
        let from_checkpoint = note(m)?;
        let to_checkpoint = note(n)?;
        Ok(ConsistencyProof {
            from_size: m,
            to_size: n,
            from_root: self.root_at(m)?,
            to_root: self.root_at(n)?,
            proof: self.consistency_proof(m, n)?,
            from_checkpoint,
            to_checkpoint,
        })
    }

    /// Recomputes everything from the stored rows; see [`VerifyReport`]. Corruption is a
    /// finding, not an error; errors are left for conditions such as a locked database.
    pub fn verify(&self, key: &VerifyingKey) -> Result<VerifyReport, LedgerError> {
        verify::run(&self.conn, &self.origin, key)
    }

    fn intact(&self) -> Result<(), LedgerError> {
        match &self.damage {
            Some(why) => Err(LedgerError::Damaged(why.clone())),
            None => Ok(()),
        }
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.tree.size() {
            return Err(LedgerError::OutOfRange {
                what: "tree size",
                value: size,
                size: self.tree.size(),
            });
        }
        Ok(())
    }

    /// Remembers damage found while writing, so later calls refuse at once.
    fn note_damage<T>(&mut self, result: Result<T, LedgerError>) -> Result<T, LedgerError> {
        if let Err(LedgerError::Damaged(why)) = &result {
            self.damage = Some(why.clone());
        }
        result
    }
}

fn append_rows(
    conn: &mut Connection,
    tree: &mut Tree,
    entries: &[NewEntry],
    encoded: &[Encoded],
) -> Result<Vec<u64>, LedgerError> {
    // IMMEDIATE takes the write lock now, so the tail we catch up to (and the events it
    // records) cannot move under us.
    let hashes = in_immediate_transaction(conn, |tx| {
        let keep = unrecorded(tx, encoded)?;
        insert_rows(tx, tree, entries, encoded, &keep)
    })?;
    let start = tree.size();
    let added = hashes.len() as u64;
    // Only now: a failed commit must leave the in-memory tree as it was.
    for h in hashes {
        tree.push(h);
    }
    Ok((start..start + added).collect())
}

type Encoded = (String, Vec<u8>, Option<i64>);

/// The positions in a batch of the entries that record no bus event the file already
/// holds, nor one recorded earlier in the same batch.
fn unrecorded(tx: &Connection, encoded: &[Encoded]) -> Result<Vec<usize>, LedgerError> {
    let seqs = || encoded.iter().filter_map(|(_, _, seq)| *seq);
    let (Some(lo), Some(hi)) = (seqs().min(), seqs().max()) else {
        return Ok((0..encoded.len()).collect());
    };
    // One range scan of the seq index for the batch (a feed's batch is a run of sequences),
    // rather than a lookup per entry.
    let mut seen = std::collections::HashSet::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT seq FROM ledger_entries WHERE seq >= ?1 AND seq <= ?2 AND seq IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![lo, hi])?;
        while let Some(row) = rows.next()? {
            seen.insert(row.get::<_, i64>(0)?);
        }
    }
    let mut keep = Vec::with_capacity(encoded.len());
    for (i, (_, _, seq)) in encoded.iter().enumerate() {
        if let Some(seq) = *seq
            && !seen.insert(seq)
        {
            continue;
        }
        keep.push(i);
    }
    Ok(keep)
}

/// The index of the entry that records bus event `seq`, if one does.
fn recorded_at(conn: &Connection, seq: i64) -> Result<Option<u64>, LedgerError> {
    let idx: Option<i64> = conn
        .prepare_cached("SELECT min(idx) FROM ledger_entries WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))?;
    Ok(idx.and_then(|i| u64::try_from(i).ok()))
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed when it succeeds and rolled back
/// when it fails. The statements are cached: a feed appending a few entries many times a
/// second paid as much for parsing `BEGIN` and `COMMIT` anew as for its inserts.
fn in_immediate_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = f(conn).and_then(|value| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(value)
    });
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut stmt| stmt.execute([]));
    }
    result
}

/// Inserts the entries at positions `keep` after the stored tail (caught up first); returns
/// their leaf hashes.
fn insert_rows(
    tx: &Connection,
    tree: &mut Tree,
    entries: &[NewEntry],
    encoded: &[Encoded],
    keep: &[usize],
) -> Result<Vec<Hash>, LedgerError> {
    catch_up(tx, tree)?;
    let start = tree.size();
    let mut hashes = Vec::with_capacity(keep.len());
    let mut buf = Vec::with_capacity(512);
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO ledger_entries (idx, timestamp, topic, seq, payload, leaf_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (i, &at) in keep.iter().enumerate() {
            let (Some(e), Some((ts, payload, seq))) = (entries.get(at), encoded.get(at)) else {
                continue;
            };
            let index = start + i as u64;
            buf.clear();
            write_entry(
                &mut buf,
                index,
                ts.as_bytes(),
                e.topic.as_bytes(),
                e.seq,
                payload,
            );
            let leaf = leaf_hash(&buf);
            insert.execute(params![
                sql_int(index, "index")?,
                ts,
                e.topic,
                seq,
                // The canonical encoder only emits UTF-8; bind it as text without a copy.
                ToSqlOutput::Borrowed(ValueRef::Text(payload)),
                &leaf[..],
            ])?;
            hashes.push(leaf);
        }
    }
    Ok(hashes)
}

fn sign_checkpoint(
    conn: &mut Connection,
    tree: &mut Tree,
    origin: &str,
    key: &SigningKey,
    created_at: &str,
) -> Result<StoredCheckpoint, LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    catch_up(&tx, tree)?;
    let n = tree.size();
    let root_n = tree.root();
    if let Some(last) = last_checkpoint(&tx)? {
        let id = last.id;
        let prev = verify_checkpoint(&last.checkpoint.note, &key.verifying_key())
            .map_err(|e| LedgerError::Refused(format!("the last checkpoint (#{id}): {e}")))?;
        if prev.origin != origin {
            return Err(LedgerError::Refused(format!(
                "the last checkpoint (#{id}) is for origin {:?}",
                prev.origin
            )));
        }
        let m = prev.size;
        if m > n {
            return Err(LedgerError::Refused(format!(
                "the last checkpoint (#{id}) attests {m} entries but the ledger holds {n}"
            )));
        }
        // Entries since the last checkpoint are what this signature newly vouches for: make
        // sure each still matches the leaf hash the tree was built from.
        check_rows(&tx, m, n)?;
        let proof = consistency_path_in(&mut StoredNodes::new(&tx, tree), m, n)?;
        if !verify_consistency(m, n, &prev.root, &root_n, &proof) {
            return Err(LedgerError::Refused(format!(
                "the ledger is not an extension of the last checkpoint (#{id}, size {m}): \
                 history was rewritten"
            )));
        }
    }
    let cp = checkpoint::sign(origin, n, &root_n, key);
    tx.execute(
        "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![sql_int(n, "tree size")?, &root_n[..], cp.note, created_at],
    )?;
    let id = u64::try_from(tx.last_insert_rowid()).unwrap_or_default();
    tx.commit()?;
    Ok(StoredCheckpoint {
        id,
        created_at: created_at.to_owned(),
        checkpoint: cp,
    })
}

/// Checks that rows `from..to` exist and match their stored leaf hashes.
fn check_rows(conn: &Connection, from: u64, to: u64) -> Result<(), LedgerError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM ledger_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx"
    ))?;
    let mut rows = stmt.query(params![sql_int(from, "index")?, sql_int(to, "index")?])?;
    let mut buf = Vec::with_capacity(1024);
    let mut expected = from;
    while let Some(row) = rows.next()? {
        let refuse = |why: &str| LedgerError::Refused(format!("entry {expected} {why}"));
        let r = RawRow::read(row)?.map_err(|(_, why)| refuse(why))?;
        if r.index != expected {
            return Err(refuse("is missing"));
        }
        if r.recompute(&mut buf) != r.stored {
            return Err(refuse("no longer matches its leaf hash"));
        }
        expected += 1;
    }
    if expected != to {
        return Err(LedgerError::Refused(format!("entry {expected} is missing")));
    }
    Ok(())
}

/// Brings `tree` up to the stored tail: on open, and before each write in case another handle
/// appended. Uses the stored leaf hashes (checked later by checkpoints and `verify`).
fn catch_up(conn: &Connection, tree: &mut Tree) -> Result<(), LedgerError> {
    let last: Option<i64> =
        conn.query_row("SELECT max(idx) FROM ledger_entries", [], |r| r.get(0))?;
    let stored = match last {
        None => 0,
        Some(i) => u64::try_from(i)
            .map_err(|_| LedgerError::Damaged("an entry has a negative index".into()))?
            .saturating_add(1),
    };
    if stored < tree.size() {
        return Err(LedgerError::Damaged(format!(
            "the file holds {stored} entries but {} were appended",
            tree.size()
        )));
    }
    if stored == tree.size() {
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached("SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= ?1 ORDER BY idx")?;
    let mut rows = stmt.query([sql_int(tree.size(), "index")?])?;
    while let Some(row) = rows.next()? {
        let idx = row.get::<_, i64>(0)?;
        if u64::try_from(idx).ok() != Some(tree.size()) {
            return Err(LedgerError::Damaged(format!(
                "entry {} is missing",
                tree.size()
            )));
        }
        let leaf = match row.get_ref(1)? {
            ValueRef::Blob(b) => Hash::try_from(b).ok(),
            _ => None,
        };
        let Some(leaf) = leaf else {
            return Err(LedgerError::Damaged(format!(
                "entry {idx} has a malformed leaf hash"
            )));
        };
        tree.push(leaf);
    }
    Ok(())
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn parse_stored(
    (id, created_at, note): (i64, String, String),
) -> Result<StoredCheckpoint, LedgerError> {
    let id = u64::try_from(id).unwrap_or_default();
    let (checkpoint, _, _) = checkpoint::parse(&note)
        .map_err(|e| LedgerError::Damaged(format!("checkpoint #{id} cannot be read: {e}")))?;
    Ok(StoredCheckpoint {
        id,
        created_at,
        checkpoint,
    })
}

fn last_checkpoint(conn: &Connection) -> Result<Option<StoredCheckpoint>, LedgerError> {
    conn.prepare_cached(
        "SELECT id, created_at, note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1",
    )?
    .query_row([], checkpoint_row)
    .optional()?
    .map(parse_stored)
    .transpose()
}

/// SQLite integers are signed; refuse what does not fit rather than wrap.
fn sql_int(v: u64, what: &'static str) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::OutOfRange {
        what,
        value: v,
        size: i64::MAX as u64,
    })
}

fn sql_int_sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Node hashes from the cache, falling back to the stored leaf hashes of one 256-leaf block.
struct StoredNodes<'a> {
    conn: &'a Connection,
    tree: &'a Tree,
    /// The last block read: `(first index, leaf hashes)`; proofs revisit the same block.
    block: Option<(u64, Vec<Hash>)>,
}

impl<'a> StoredNodes<'a> {
    fn new(conn: &'a Connection, tree: &'a Tree) -> Self {
        StoredNodes {
            conn,
            tree,
            block: None,
        }
    }

    fn read_leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, leaf_hash FROM ledger_entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![sql_int(start, "index")?, sql_int(end, "index")?])?;
        let mut out = Vec::with_capacity((end - start) as usize);
        while let Some(row) = rows.next()? {
            let expected = start + out.len() as u64;
            let leaf = match (row.get_ref(0)?, row.get_ref(1)?) {
                (ValueRef::Integer(i), ValueRef::Blob(b))
                    if u64::try_from(i).ok() == Some(expected) =>
                {
                    Hash::try_from(b).ok()
                }
                _ => None,
            };
            let leaf = leaf.ok_or_else(|| {
                LedgerError::Damaged(format!("entry {expected} is missing or malformed"))
            })?;
            out.push(leaf);
        }
        if out.len() as u64 != end - start {
            return Err(LedgerError::Damaged(format!(
                "entry {} is missing",
                start + out.len() as u64
            )));
        }
        Ok(out)
    }
}

impl NodeSource for StoredNodes<'_> {
    fn subtree(&mut self, start: u64, end: u64) -> Result<Hash, LedgerError> {
        let len = end - start;
        if len.is_power_of_two() {
            let level = len.trailing_zeros();
            if let Some(h) = self.tree.cached(level, start >> level) {
                return Ok(h);
            }
        }
        if len > BLOCK {
            let k = split(len);
            let left = self.subtree(start, start + k)?;
            let right = self.subtree(start + k, end)?;
            return Ok(node_hash(&left, &right));
        }
        // A node of at most 256 leaves lies inside one aligned block (see NodeSource).
        let first = start - start % BLOCK;
        if end > first + BLOCK {
            return Ok(root(&self.read_leaves(start, end)?));
        }
        if self.block.as_ref().map(|(s, _)| *s) != Some(first) {
            let last = (first + BLOCK).min(self.tree.size());
            self.block = Some((first, self.read_leaves(first, last)?));
        }
        let leaves = self
            .block
            .as_ref()
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default();
        let lo = (start - first) as usize;
        let hi = (end - first) as usize;
        match leaves.get(lo..hi) {
            Some(slice) => Ok(root(slice)),
            None => Err(LedgerError::OutOfRange {
                what: "subtree end",
                value: end,
                size: self.tree.size(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Problem;

    /// What feeds before each event was recorded once did: the same event appended twice.
    /// `verify` names the second entry.
    #[test]
    fn verify_reports_an_event_recorded_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let key = SigningKey::from_bytes(&[3; 32]);
        let origin = "bridge.local/ledger";
        let mut l = Ledger::open(&path, origin, Some(key.clone())).unwrap();
        let entry = |seq: u64, n: u64| NewEntry {
            timestamp: OffsetDateTime::UNIX_EPOCH,
            topic: "envsync.commit".into(),
            seq: Some(seq),
            payload: serde_json::json!({"n": n}),
        };
        l.append_batch(&[entry(1, 0), entry(2, 1)]).unwrap();
        let again = [entry(2, 1)];
        let encoded = [(
            format_timestamp(again[0].timestamp).unwrap(),
            canonical_json(&again[0].payload),
            Some(2),
        )];
        let hashes = in_immediate_transaction(&l.conn, |tx| {
            insert_rows(tx, &mut l.tree, &again, &encoded, &[0])
        })
        .unwrap();
        for h in hashes {
            l.tree.push(h);
        }
        l.checkpoint(OffsetDateTime::UNIX_EPOCH).unwrap();

        let report = l.verify(&key.verifying_key()).unwrap();
        assert_eq!(
            report.problems,
            vec![Problem::Duplicate {
                index: 2,
                seq: 2,
                first: 1
            }],
            "{report}"
        );
        assert_eq!(report.first_bad_entry(), Some(2));
        assert!(
            report
                .to_string()
                .contains("entry 2 records bus event 2 again"),
            "{report}"
        );
    }

    #[test]
    fn cache_holds_exactly_the_completed_large_subtrees() {
        let leaves: Vec<Hash> = (0..1300u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut t = Tree::default();
        for l in &leaves {
            t.push(*l);
        }
        assert_eq!(t.cache[0].len(), 1300 / 256);
        assert_eq!(t.cache[1].len(), 1300 / 512);
        assert_eq!(t.cache[2].len(), 1300 / 1024);
        assert_eq!(t.cache.len(), 3);
        assert_eq!(t.cached(8, 3), Some(root(&leaves[768..1024])));
        assert_eq!(t.cached(10, 0), Some(root(&leaves[..1024])));
        assert_eq!(t.cached(8, 5), None);
        assert_eq!(t.cached(7, 0), None);
        assert_eq!(t.root(), root(&leaves));
    }
}
