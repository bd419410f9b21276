//! [`LedgerRows`]: where a [`Ledger`](super::Ledger) keeps its rows. The ledger's logic — the
//! tree, the de-duplication of bus events, checkpoints, proofs — is written once over this
//! trait; a backend only stores and returns rows, inside the write transaction the ledger
//! opens. [`SqliteRows`](super::SqliteRows) is the embedded one; the PostgreSQL store brings
//! its own, so every runner on one store appends to one log.
//!
//! Backends are synchronous: the ledger hashes and signs on a blocking thread, and a
//! backend for an asynchronous client keeps that client on a thread of its own.

use ed25519_dalek::VerifyingKey;

use super::merkle::Hash;
use super::record::write_entry;
use super::verify::VerifyReport;
use super::{LedgerError, leaf_hash};

/// One entry row as the ledger writes it: the canonical encoding's parts and its leaf hash.
#[derive(Debug, Clone, Copy)]
pub struct EntryRow<'a> {
    pub index: u64,
    /// RFC 3339, UTC.
    pub timestamp: &'a str,
    pub topic: &'a str,
    /// The bus sequence the entry records, if it records a bus event.
    pub seq: Option<u64>,
    /// Canonical JSON (UTF-8).
    pub payload: &'a str,
    pub leaf_hash: &'a Hash,
}

/// One stored entry row, read back as bytes so that nothing is re-encoded before it is
/// hashed again. Only tampering makes a row unreadable as one ([`RowError`]).
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    pub index: u64,
    pub timestamp: &'a [u8],
    pub topic: &'a [u8],
    pub seq: Option<u64>,
    pub payload: &'a [u8],
    /// The leaf hash stored beside the content.
    pub stored: Hash,
}

impl RawRow<'_> {
    /// The leaf hash of the row's content; `buf` is reused so a scan does not allocate.
    pub fn recompute(&self, buf: &mut Vec<u8>) -> Hash {
        buf.clear();
        write_entry(
            buf,
            self.index,
            self.timestamp,
            self.topic,
            self.seq,
            self.payload,
        );
        leaf_hash(buf)
    }
}

/// Why a row could not be read as an entry: its index if that much was readable, and the
/// column that is not what the ledger writes.
pub type RowError = (Option<u64>, &'static str);

/// A stored checkpoint row: its id (from 1, in the order they were made), when, and the
/// signed note. Size and root are parsed from the note, which is what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub id: u64,
    pub created_at: String,
    pub note: String,
}

/// Which checkpoints to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// Every one, oldest first.
    All,
    /// The newest.
    Latest,
    /// The newest made for exactly this many entries.
    LatestOfSize(u64),
}

/// Visits rows in index order; an error from the visitor stops the scan and is returned.
pub type RowVisitor<'v> = dyn FnMut(Result<RawRow<'_>, RowError>) -> Result<(), LedgerError> + 'v;

/// Visits `(index, leaf hash)` in index order; `None` for a leaf hash that is not 32 bytes.
pub type LeafVisitor<'v> = dyn FnMut(i64, Option<Hash>) -> Result<(), LedgerError> + 'v;

/// The storage of one ledger: entries, checkpoints and the origin.
///
/// Every method but the three transaction ones runs inside or outside the write transaction,
/// as the ledger calls it. Between [`begin_write`](Self::begin_write) and
/// [`commit`](Self::commit) the backend must exclude every other writer of the same log,
/// in this process or any other, so that the tail the ledger reads cannot move under it.
pub trait LedgerRows: Send {
    /// Where the rows are, for messages (never a password).
    fn describe(&self) -> String;

    /// Creates the tables if needed and records `origin` unless one is recorded; returns
    /// the recorded origin.
    fn setup(&self, origin: &str) -> Result<String, LedgerError>;

    /// Starts the write transaction, waiting for any other writer to finish.
    fn begin_write(&self) -> Result<(), LedgerError>;
    fn commit(&self) -> Result<(), LedgerError>;
    /// Abandons the write transaction, if one is open; never fails.
    fn rollback(&self);

    /// One past the highest stored index (0 when empty); [`LedgerError::Damaged`] when an
    /// index is negative.
    fn stored_len(&self) -> Result<u64, LedgerError>;

    /// The stored leaf hashes of the entries with indexes in `start..end`.
    fn leaf_hashes(
        &self,
        start: u64,
        end: u64,
        visit: &mut LeafVisitor<'_>,
    ) -> Result<(), LedgerError>;

    /// The bus sequences in `lo..=hi` that some entry records.
    fn recorded_seqs(&self, lo: u64, hi: u64) -> Result<Vec<u64>, LedgerError>;

    /// The lowest index of an entry that records bus event `seq`.
    fn index_of_seq(&self, seq: u64) -> Result<Option<u64>, LedgerError>;

    fn insert_entries(&self, rows: &[EntryRow<'_>]) -> Result<(), LedgerError>;

    /// The rows with indexes in `start..end`, as stored.
    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), LedgerError>;

    fn checkpoints(&self, which: Checkpoints) -> Result<Vec<CheckpointRow>, LedgerError>;

    /// Stores a checkpoint; returns its id.
    fn insert_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
        created_at: &str,
    ) -> Result<u64, LedgerError>;

    /// The full verification over every stored row (see [`VerifyReport`]).
    fn verify(&self, origin: &str, key: &VerifyingKey) -> Result<VerifyReport, LedgerError>;
}
