//! The [`Ledger`] handle: appends, reads, checkpoints and proofs, over any [`LedgerRows`].
//!
//! The tree's right edge (one hash per set bit of the size) lives in memory and is rebuilt
//! from the stored leaf hashes on open, so an append hashes O(log n) nodes and reads nothing.
//! Perfect subtrees of 256 leaves and more are also kept in memory (n/128 hashes, 250 KB per
//! million entries), so a proof costs O(log n) cache lookups plus one read of at most 256
//! leaf hashes, whatever the size of the log.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use time::OffsetDateTime;

use super::LedgerError;
use super::checkpoint::{self, Checkpoint, valid_origin, verify_checkpoint};
use super::merkle::{
    EMPTY_ROOT, Frontier, Hash, NodeSource, consistency_path_in, inclusion_path_in, leaf_hash,
    node_hash, root, split, verify_consistency,
};
use super::proof::{ConsistencyProof, InclusionProof};
use super::record::{LedgerEntry, NewEntry, canonical_json, format_timestamp, write_entry};
use super::rows::{CheckpointRow, Checkpoints, EntryRow, LedgerRows};
use super::sqlite::SqliteRows;
use super::verify::VerifyReport;

/// Subtrees of 2^CACHE_LEVEL leaves and larger are cached in memory.
const CACHE_LEVEL: u32 = 8;
/// Leaves per cached subtree at the lowest cached level: the most a proof reads from disk.
const BLOCK: u64 = 1 << CACHE_LEVEL;

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

/// A tamper-evident, append-only log of events.
///
/// Not `Sync`: share it behind a mutex or give it to one task. Several handles (or processes)
/// may append to one log; each picks up the others' entries at its next write.
pub struct Ledger {
    rows: Box<dyn LedgerRows>,
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
            .field("rows", &self.rows.describe())
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
        Self::open_rows(Box::new(SqliteRows::open(path)?), origin, key)
    }

    /// Opens the ledger kept by `rows`, as [`open`](Self::open) does a file.
    pub fn open_rows(
        rows: Box<dyn LedgerRows>,
        origin: &str,
        key: Option<SigningKey>,
    ) -> Result<Self, LedgerError> {
        if !valid_origin(origin) {
            return Err(LedgerError::InvalidOrigin(origin.to_owned()));
        }
        let found = rows.setup(origin)?;
        if found != origin {
            return Err(LedgerError::OriginMismatch {
                expected: origin.to_owned(),
                found,
            });
        }
        let mut ledger = Ledger {
            rows,
            origin: origin.to_owned(),
            key,
            tree: Tree::default(),
            damage: None,
        };
        match catch_up(&*ledger.rows, &mut ledger.tree) {
            Ok(()) => {}
            Err(LedgerError::Damaged(why)) => ledger.damage = Some(why),
            Err(e) => return Err(e),
        }
        Ok(ledger)
    }

    /// Where the rows are kept, for messages.
    pub fn describe(&self) -> String {
        self.rows.describe()
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key checkpoints are signed with, if this handle can sign.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        self.key.as_ref().map(SigningKey::verifying_key)
    }

    /// Number of entries (of the intact prefix, if the log is damaged).
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

    /// Why the log cannot be extended, if it cannot.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Picks up what other handles appended since this one last read or wrote.
    pub fn refresh(&mut self) -> Result<(), LedgerError> {
        self.intact()?;
        let result = catch_up(&*self.rows, &mut self.tree);
        self.note_damage(result)
    }

    /// Appends one entry in its own transaction; returns its index (for a bus event the
    /// ledger already records, the index it is recorded at).
    ///
    /// Each call waits for a durable commit; use [`append_batch`](Self::append_batch) for
    /// volume.
    pub fn append(&mut self, entry: NewEntry) -> Result<u64, LedgerError> {
        let seq = entry.seq;
        if let Some(&index) = self.append_batch(std::slice::from_ref(&entry))?.first() {
            return Ok(index);
        }
        let recorded = match seq {
            Some(seq) => self.rows.index_of_seq(seq)?,
            None => None,
        };
        recorded
            .ok_or_else(|| LedgerError::Damaged("an append of one entry returned no index".into()))
    }

    /// Appends entries in one transaction (all or none); returns the indexes of those
    /// appended. A bus event is recorded once: an entry whose `seq` the log already holds
    /// (appended by another handle, thread or process) or that repeats one earlier in the
    /// batch is left out, checked under the write lock, so feeders racing on one log cannot
    /// record an event twice.
    pub fn append_batch(&mut self, entries: &[NewEntry]) -> Result<Vec<u64>, LedgerError> {
        self.intact()?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Encode before taking the write lock, so the lock is held only for the inserts.
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            encoded.push(Encoded {
                timestamp: format_timestamp(e.timestamp)?,
                payload: canonical_json(&e.payload),
            });
        }
        let result = append_rows(&*self.rows, &mut self.tree, entries, &encoded);
        self.note_damage(result)
    }

    /// The entry at `index`, if there is one.
    pub fn entry(&self, index: u64) -> Result<Option<LedgerEntry>, LedgerError> {
        let end = index.saturating_add(1);
        Ok(self.entries(index..end)?.into_iter().next())
    }

    /// The stored entries with indexes in `range`, in order.
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<LedgerEntry>, LedgerError> {
        let mut out = Vec::new();
        self.rows.scan_entries(range.start, range.end, &mut |row| {
            let (index, row) = match row {
                Ok(r) => (r.index, r),
                Err((index, why)) => {
                    return Err(LedgerError::Damaged(format!(
                        "entry {} cannot be read: {why}",
                        index.map_or_else(|| "?".to_owned(), |i| i.to_string())
                    )));
                }
            };
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            out.push(LedgerEntry {
                index,
                timestamp: text(row.timestamp),
                topic: text(row.topic),
                seq: row.seq,
                payload: serde_json::from_slice(row.payload)
                    .map_err(|_| LedgerError::Payload { index })?,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Writes every entry as one line of canonical JSON (the exact bytes its leaf hashes, so
    /// `SHA-256(0x00 || line)` is its leaf hash); returns the number written.
    pub fn export_jsonl(&self, mut w: impl Write) -> Result<u64, LedgerError> {
        let mut buf = Vec::with_capacity(1024);
        let mut n = 0;
        self.rows.scan_entries(0, u64::MAX, &mut |row| {
            let r = row.map_err(|(index, why)| {
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
            Ok(())
        })?;
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
        let rows = &*self.rows;
        let tree = &mut self.tree;
        let origin = &self.origin;
        let result = in_write_transaction(rows, || {
            sign_checkpoint(rows, tree, origin, key, &created_at)
        });
        self.note_damage(result)
    }

    /// The most recent checkpoint, as stored (not verified).
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        last_checkpoint(&*self.rows)
    }

    /// Every checkpoint, oldest first, as stored (not verified).
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        self.rows
            .checkpoints(Checkpoints::All)?
            .into_iter()
            .map(parse_stored)
            .collect()
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
        StoredNodes::new(&*self.rows, &self.tree).subtree(0, size)
    }

    /// Proof that entry `index` is in the tree of the first `size` entries, with the latest
    /// checkpoint stored for exactly that size (if any) so it can be checked offline.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, LedgerError> {
        self.intact()?;
        self.check_size(size)?;
        let mut src = StoredNodes::new(&*self.rows, &self.tree);
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
        consistency_path_in(&mut StoredNodes::new(&*self.rows, &self.tree), m, n)
    }

    /// The latest signed checkpoint stored for exactly `size` entries, if any.
    fn signed_note(&self, size: u64) -> Result<Option<String>, LedgerError> {
        Ok(self
            .rows
            .checkpoints(Checkpoints::LatestOfSize(size))?
            .into_iter()
            .next()
            .map(|c| c.note))
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
        self.rows.verify(&self.origin, key)
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

/// An entry's encoded parts, made before the write lock is taken.
struct Encoded {
    timestamp: String,
    payload: Vec<u8>,
}

fn append_rows(
    rows: &dyn LedgerRows,
    tree: &mut Tree,
    entries: &[NewEntry],
    encoded: &[Encoded],
) -> Result<Vec<u64>, LedgerError> {
    // The write transaction excludes every other writer, so the tail we catch up to (and the
    // events it records) cannot move under us.
    let hashes = in_write_transaction(rows, || {
        let keep = unrecorded(rows, entries)?;
        insert_rows(rows, tree, entries, encoded, &keep)
    })?;
    let start = tree.size();
    let added = hashes.len() as u64;
    // Only now: a failed commit must leave the in-memory tree as it was.
    for h in hashes {
        tree.push(h);
    }
    Ok((start..start + added).collect())
}

/// The positions in a batch of the entries that record no bus event the log already
/// holds, nor one recorded earlier in the same batch.
fn unrecorded(rows: &dyn LedgerRows, entries: &[NewEntry]) -> Result<Vec<usize>, LedgerError> {
    let seqs = || entries.iter().filter_map(|e| e.seq);
    let (Some(lo), Some(hi)) = (seqs().min(), seqs().max()) else {
        return Ok((0..entries.len()).collect());
    };
    let mut seen: std::collections::HashSet<u64> =
        rows.recorded_seqs(lo, hi)?.into_iter().collect();
    let mut keep = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if let Some(seq) = e.seq
            && !seen.insert(seq)
        {
            continue;
        }
        keep.push(i);
    }
    Ok(keep)
}

/// Runs `f` in the backend's write transaction, committed when it succeeds and rolled back
/// when it (or the commit) fails.
fn in_write_transaction<T>(
    rows: &dyn LedgerRows,
    f: impl FnOnce() -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    if let Err(e) = rows.begin_write() {
        // A BEGIN that failed half-way (its lock wait cut short, say) may have left a
        // transaction open: close it, so it holds nothing.
        rows.rollback();
        return Err(e);
    }
    let result = f().and_then(|value| {
        rows.commit()?;
        Ok(value)
    });
    if result.is_err() {
        rows.rollback();
    }
    result
}

/// Inserts the entries at positions `keep` after the stored tail (caught up first); returns
/// their leaf hashes.
fn insert_rows(
    rows: &dyn LedgerRows,
    tree: &mut Tree,
    entries: &[NewEntry],
    encoded: &[Encoded],
    keep: &[usize],
) -> Result<Vec<Hash>, LedgerError> {
    catch_up(rows, tree)?;
    let start = tree.size();
    let mut hashes = Vec::with_capacity(keep.len());
    let mut buf = Vec::with_capacity(512);
    for (i, &at) in keep.iter().enumerate() {
        let (Some(e), Some(enc)) = (entries.get(at), encoded.get(at)) else {
            continue;
        };
        buf.clear();
        write_entry(
            &mut buf,
            start + i as u64,
            enc.timestamp.as_bytes(),
            e.topic.as_bytes(),
            e.seq,
            &enc.payload,
        );
        hashes.push(leaf_hash(&buf));
    }
    let mut new_rows = Vec::with_capacity(hashes.len());
    for ((i, &at), hash) in keep.iter().enumerate().zip(&hashes) {
        let (Some(e), Some(enc)) = (entries.get(at), encoded.get(at)) else {
            continue;
        };
        new_rows.push(EntryRow {
            index: start + i as u64,
            timestamp: &enc.timestamp,
            topic: &e.topic,
            seq: e.seq,
            // The canonical encoder only emits UTF-8.
            payload: std::str::from_utf8(&enc.payload)
                .map_err(|_| LedgerError::Damaged("a canonical payload is not UTF-8".into()))?,
            leaf_hash: hash,
        });
    }
    rows.insert_entries(&new_rows)?;
    Ok(hashes)
}

/// Inside the write transaction: catches up, proves the tree extends the last checkpoint and
/// stores a signed one of it.
fn sign_checkpoint(
    rows: &dyn LedgerRows,
    tree: &mut Tree,
    origin: &str,
    key: &SigningKey,
    created_at: &str,
) -> Result<StoredCheckpoint, LedgerError> {
    catch_up(rows, tree)?;
    let n = tree.size();
    let root_n = tree.root();
    if let Some(last) = last_checkpoint(rows)? {
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
        check_rows(rows, m, n)?;
        let proof = consistency_path_in(&mut StoredNodes::new(rows, tree), m, n)?;
        if !verify_consistency(m, n, &prev.root, &root_n, &proof) {
            return Err(LedgerError::Refused(format!(
                "the ledger is not an extension of the last checkpoint (#{id}, size {m}): \
                 history was rewritten"
            )));
        }
    }
    let cp = checkpoint::sign(origin, n, &root_n, key);
    let id = rows.insert_checkpoint(n, &root_n, &cp.note, created_at)?;
    Ok(StoredCheckpoint {
        id,
        created_at: created_at.to_owned(),
        checkpoint: cp,
    })
}

/// Checks that rows `from..to` exist and match their stored leaf hashes.
fn check_rows(rows: &dyn LedgerRows, from: u64, to: u64) -> Result<(), LedgerError> {
    let mut buf = Vec::with_capacity(1024);
    let mut expected = from;
    rows.scan_entries(from, to, &mut |row| {
        let refuse = |why: &str| LedgerError::Refused(format!("entry {expected} {why}"));
        let r = row.map_err(|(_, why)| refuse(why))?;
        if r.index != expected {
            return Err(refuse("is missing"));
        }
        if r.recompute(&mut buf) != r.stored {
            return Err(refuse("no longer matches its leaf hash"));
        }
        expected += 1;
        Ok(())
    })?;
    if expected != to {
        return Err(LedgerError::Refused(format!("entry {expected} is missing")));
    }
    Ok(())
}

/// Brings `tree` up to the stored tail: on open, and before each write in case another handle
/// appended. Uses the stored leaf hashes (checked later by checkpoints and `verify`).
fn catch_up(rows: &dyn LedgerRows, tree: &mut Tree) -> Result<(), LedgerError> {
    let stored = rows.stored_len()?;
    if stored < tree.size() {
        return Err(LedgerError::Damaged(format!(
            "the log holds {stored} entries but {} were appended",
            tree.size()
        )));
    }
    if stored == tree.size() {
        return Ok(());
    }
    rows.leaf_hashes(tree.size(), u64::MAX, &mut |idx, leaf| {
        if u64::try_from(idx).ok() != Some(tree.size()) {
            return Err(LedgerError::Damaged(format!(
                "entry {} is missing",
                tree.size()
            )));
        }
        let Some(leaf) = leaf else {
            return Err(LedgerError::Damaged(format!(
                "entry {idx} has a malformed leaf hash"
            )));
        };
        tree.push(leaf);
        Ok(())
    })
}

fn parse_stored(row: CheckpointRow) -> Result<StoredCheckpoint, LedgerError> {
    let id = row.id;
    let (checkpoint, _, _) = checkpoint::parse(&row.note)
        .map_err(|e| LedgerError::Damaged(format!("checkpoint #{id} cannot be read: {e}")))?;
    Ok(StoredCheckpoint {
        id,
        created_at: row.created_at,
        checkpoint,
    })
}

fn last_checkpoint(rows: &dyn LedgerRows) -> Result<Option<StoredCheckpoint>, LedgerError> {
    rows.checkpoints(Checkpoints::Latest)?
        .into_iter()
        .next()
        .map(parse_stored)
        .transpose()
}

/// Node hashes from the cache, falling back to the stored leaf hashes of one 256-leaf block.
struct StoredNodes<'a> {
    rows: &'a dyn LedgerRows,
    tree: &'a Tree,
    /// The last block read: `(first index, leaf hashes)`; proofs revisit the same block.
    block: Option<(u64, Vec<Hash>)>,
}

impl<'a> StoredNodes<'a> {
    fn new(rows: &'a dyn LedgerRows, tree: &'a Tree) -> Self {
        StoredNodes {
            rows,
            tree,
            block: None,
        }
    }

    fn read_leaves(&self, start: u64, end: u64) -> Result<Vec<Hash>, LedgerError> {
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        self.rows.leaf_hashes(start, end, &mut |idx, leaf| {
            let expected = start + out.len() as u64;
            let leaf = leaf.filter(|_| u64::try_from(idx).ok() == Some(expected));
            let leaf = leaf.ok_or_else(|| {
                LedgerError::Damaged(format!("entry {expected} is missing or malformed"))
            })?;
            out.push(leaf);
            Ok(())
        })?;
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

    /// A checkpoint committed by a writer while a verify runs, at every point of the verify
    /// in turn (between any two of its SQLite steps): the verify sees one snapshot and finds
    /// nothing wrong. Run as separate statements, it once read the checkpoint rows before the
    /// commit and the id counter after it, and called the ledger altered.
    #[test]
    fn a_checkpoint_committed_during_a_verify_is_not_an_alteration() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};

        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let origin = "bridge.local/ledger";
        let entry = |n: u64| NewEntry {
            timestamp: OffsetDateTime::UNIX_EPOCH,
            topic: "envsync.commit".into(),
            seq: None,
            payload: serde_json::json!({"n": n}),
        };
        let mut k = 1;
        let points = loop {
            let path = dir.path().join(format!("ledger-{k}.db"));
            let mut writer = Ledger::open(&path, origin, Some(key.clone())).unwrap();
            for n in 0..3 {
                writer.append(entry(n)).unwrap();
                writer.checkpoint(OffsetDateTime::UNIX_EPOCH).unwrap();
            }
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            let conn = rusqlite::Connection::open_with_flags(&path, flags).unwrap();
            // Every 10 virtual-machine steps of the verify's statements; the k-th time, the
            // writer commits an entry and a checkpoint.
            let calls = Arc::new(AtomicUsize::new(0));
            let committed = Arc::new(AtomicBool::new(false));
            let (seen, done) = (calls.clone(), committed.clone());
            let writer = Mutex::new(writer);
            conn.progress_handler(
                10,
                Some(move || {
                    if seen.fetch_add(1, Ordering::Relaxed) + 1 == k
                        && !done.swap(true, Ordering::Relaxed)
                    {
                        let mut w = writer.lock().unwrap();
                        w.append(entry(99)).unwrap();
                        w.checkpoint(OffsetDateTime::UNIX_EPOCH).unwrap();
                    }
                    false
                }),
            )
            .unwrap();
            let report = super::super::verify::run(
                &conn,
                origin,
                &key.verifying_key(),
                super::super::verify::Scope::File,
            )
            .unwrap();
            assert!(
                report.is_ok(),
                "a commit at step {k} of the verify: {report}"
            );
            if !committed.load(Ordering::Relaxed) {
                // The verify ended before its k-th step: every point was tried.
                break k - 1;
            }
            k += 1;
        };
        assert!(points > 20, "the verify took only {points} steps");
    }

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
        let encoded = [Encoded {
            timestamp: format_timestamp(again[0].timestamp).unwrap(),
            payload: canonical_json(&again[0].payload),
        }];
        let rows = &*l.rows;
        let tree = &mut l.tree;
        let hashes =
            in_write_transaction(rows, || insert_rows(rows, tree, &again, &encoded, &[0])).unwrap();
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
