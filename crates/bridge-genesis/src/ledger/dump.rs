//! [`LedgerDump`]: every row of a ledger, as stored, for moving a ledger to another backend
//! (`state migrate`) and for backups (`state export` / `state import`).
//!
//! Rows are copied verbatim — payloads as their canonical text, leaf hashes and signed notes
//! as they are — so the copy proves exactly what the original proved; nothing is re-signed.
//! Verify the copy with the public key afterwards.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::LedgerError;
use super::checkpoint::{self, valid_origin};
use super::merkle::Hash;
use super::proof::{from_hex, to_hex};
use super::rows::{CheckpointRow, Checkpoints, EntryRow, LedgerRows};
use super::sqlite::VerifyImage;
use super::verify::VerifyReport;

/// Entries inserted per statement when loading.
const BATCH: usize = 1_000;

/// One entry row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpEntry {
    pub index: u64,
    pub timestamp: String,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The canonical JSON, as text: re-encoding it could change the bytes its leaf hashes.
    pub payload: String,
    /// 64 hex digits.
    pub leaf_hash: String,
}

/// One checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpCheckpoint {
    pub id: u64,
    pub created_at: String,
    /// The signed note.
    pub note: String,
}

/// A whole ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerDump {
    pub origin: String,
    pub entries: Vec<DumpEntry>,
    pub checkpoints: Vec<DumpCheckpoint>,
}

impl LedgerDump {
    /// Reads every row of the log `rows` keeps under `origin`. A row that cannot be read
    /// as one the ledger wrote refuses the dump: verify the ledger to see what happened.
    pub fn read(rows: &dyn LedgerRows, origin: &str) -> Result<Self, LedgerError> {
        check_origin(rows, origin)?;
        // Checkpoints first: the log only grows, so every checkpoint read attests entries
        // the scan that follows still finds, even with a writer appending meanwhile.
        let checkpoints = rows
            .checkpoints(Checkpoints::All)?
            .into_iter()
            .map(|c: CheckpointRow| DumpCheckpoint {
                id: c.id,
                created_at: c.created_at,
                note: c.note,
            })
            .collect();
        let mut entries = Vec::new();
        rows.scan_entries(0, u64::MAX, &mut |row| {
            let r = row.map_err(|(index, why)| {
                LedgerError::Damaged(format!(
                    "entry {} cannot be copied: {why}",
                    index.map_or_else(|| "?".to_owned(), |i| i.to_string())
                ))
            })?;
            let text = |bytes: &[u8], what: &str| {
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    LedgerError::Damaged(format!("entry {}: its {what} is not UTF-8", r.index))
                })
            };
            entries.push(DumpEntry {
                index: r.index,
                timestamp: text(r.timestamp, "timestamp")?,
                topic: text(r.topic, "topic")?,
                seq: r.seq,
                payload: text(r.payload, "payload")?,
                leaf_hash: to_hex(&r.stored),
            });
            Ok(())
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            entries,
            checkpoints,
        })
    }

    /// Why the dump cannot be loaded as it is, checked before anything is written: ids out
    /// of order or repeated (a load writes checkpoints in order), values a store cannot hold.
    pub fn check_loadable(&self) -> Result<(), LedgerError> {
        let bad = |why: String| Err(LedgerError::Damaged(why));
        if !valid_origin(&self.origin) {
            return Err(LedgerError::InvalidOrigin(self.origin.clone()));
        }
        if self.checkpoints.windows(2).any(|w| w[0].id >= w[1].id) {
            return bad("its checkpoints are not in the order they were made".into());
        }
        if self.entries.windows(2).any(|w| w[0].index >= w[1].index) {
            return bad("its entries are not in index order".into());
        }
        let fits = |v: u64| i64::try_from(v).is_ok();
        for e in &self.entries {
            if !fits(e.index) || e.seq.is_some_and(|s| !fits(s)) {
                return bad(format!("entry {}: a number is out of range", e.index));
            }
            if [&e.timestamp, &e.topic, &e.payload]
                .iter()
                .any(|t| t.contains('\0'))
            {
                return bad(format!("entry {}: a text holds a NUL byte", e.index));
            }
        }
        for c in &self.checkpoints {
            if !fits(c.id) || c.note.contains('\0') || c.created_at.contains('\0') {
                return bad(format!("checkpoint #{} cannot be stored", c.id));
            }
        }
        Ok(())
    }

    /// The highest bus sequence an entry records, if any does.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.iter().filter_map(|e| e.seq).max()
    }

    /// Verifies the dump as a ledger, as [`LedgerRows::verify`] would once loaded: before
    /// loading a file someone else made, so that one that does not prove itself is refused
    /// before anything is written.
    pub fn verify(&self, key: &VerifyingKey) -> Result<VerifyReport, LedgerError> {
        let image = VerifyImage::new()?;
        for e in &self.entries {
            let leaf = from_hex(&e.leaf_hash)
                .map_or_else(|| e.leaf_hash.as_bytes().to_vec(), |h| h.to_vec());
            image.entry(
                i64::try_from(e.index).unwrap_or(i64::MAX),
                Some(&e.timestamp),
                Some(&e.topic),
                e.seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                Some(&e.payload),
                Some(&leaf),
            )?;
        }
        // Ids as a load into an empty log gives them: 1, 2, … in the file's order.
        for (id, c) in (1_i64..).zip(&self.checkpoints) {
            let (size, root) = match checkpoint::parse(&c.note) {
                Ok((cp, _, _)) => (i64::try_from(cp.size).unwrap_or(i64::MAX), cp.root.to_vec()),
                // The verifier reports an unreadable note; the columns do not matter then.
                Err(_) => (-1, Vec::new()),
            };
            image.checkpoint(id, size, &root, &c.note, &c.created_at)?;
        }
        image.verify(&self.origin, key)
    }

    /// Loads the dump into `rows`, which must hold no entry and no checkpoint yet (one
    /// transaction: all or nothing). Checkpoints keep their order; their ids are the
    /// target's.
    pub fn load(&self, rows: &dyn LedgerRows) -> Result<(), LedgerError> {
        self.check_loadable()?;
        check_origin(rows, &self.origin)?;
        let mut hashes = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let hash: Hash = from_hex(&e.leaf_hash).ok_or_else(|| {
                LedgerError::Damaged(format!(
                    "entry {}: its leaf hash is not 64 hex digits",
                    e.index
                ))
            })?;
            hashes.push(hash);
        }
        let mut parsed = Vec::with_capacity(self.checkpoints.len());
        for c in &self.checkpoints {
            let (cp, _, _) = checkpoint::parse(&c.note).map_err(|e| {
                LedgerError::Damaged(format!("checkpoint #{} cannot be read: {e}", c.id))
            })?;
            parsed.push((cp.size, cp.root));
        }
        if let Err(e) = rows.begin_write() {
            rows.rollback();
            return Err(e);
        }
        let loaded = (|| {
            if rows.stored_len()? > 0 || !rows.checkpoints(Checkpoints::Latest)?.is_empty() {
                return Err(LedgerError::Refused(format!(
                    "{} already holds a ledger; load into an empty one",
                    rows.describe()
                )));
            }
            for (chunk, chunk_hashes) in self.entries.chunks(BATCH).zip(hashes.chunks(BATCH)) {
                let batch: Vec<EntryRow<'_>> = chunk
                    .iter()
                    .zip(chunk_hashes)
                    .map(|(e, hash)| EntryRow {
                        index: e.index,
                        timestamp: &e.timestamp,
                        topic: &e.topic,
                        seq: e.seq,
                        payload: &e.payload,
                        leaf_hash: hash,
                    })
                    .collect();
                rows.insert_entries(&batch)?;
            }
            for (c, (size, root)) in self.checkpoints.iter().zip(&parsed) {
                rows.insert_checkpoint(*size, root, &c.note, &c.created_at)?;
            }
            rows.commit()
        })();
        if loaded.is_err() {
            rows.rollback();
        }
        loaded
    }
}

fn check_origin(rows: &dyn LedgerRows, origin: &str) -> Result<(), LedgerError> {
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
    Ok(())
}
