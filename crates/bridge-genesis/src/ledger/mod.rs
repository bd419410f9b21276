//! The Truth ledger: a tamper-evident, append-only Merkle log of the events that matter.
//!
//! - Entries ([`NewEntry`] in, [`LedgerEntry`] out) are hashed as RFC 6962 leaves over their
//!   canonical JSON ([`record`](LedgerEntry::canonical_bytes)); the tree is the RFC 6962 /
//!   RFC 9162 Merkle tree.
//! - [`Ledger`] keeps the tree's right edge in memory, so an append costs O(log n) hashes and
//!   never reads old leaves. Its rows live in a [`LedgerRows`] backend: [`SqliteRows`] (WAL,
//!   `synchronous=FULL`) by default, or the shared PostgreSQL store.
//! - [`Ledger::checkpoint`] signs a C2SP `tlog-checkpoint` note with Ed25519 after proving the
//!   new tree extends the last signed one; every checkpoint is kept.
//! - Inclusion and consistency proofs, and their verifiers ([`verify_inclusion`],
//!   [`verify_consistency`], [`verify_checkpoint`], [`verify_proof_json`]), need only hashes and
//!   the public key, so anyone can check them offline.
//! - [`Ledger::verify`] / [`verify_file`] recompute everything from the stored rows and name
//!   the first entry or checkpoint that does not add up; in an SQLite file they also check
//!   what no hash covers (SQLite's integrity, header fields, schema, bookkeeping rows).
//!   Another backend's rows are checked by the same verifier through a [`VerifyImage`].
//!
//! Payloads must arrive redacted: whatever is appended is kept, in clear, forever.

mod access;
mod checkpoint;
pub mod conformance;
mod dump;
mod merkle;
mod proof;
mod record;
pub mod rows;
mod sqlite;
mod store;
mod structure;
mod verify;
mod witness;

pub use access::{LedgerAccess, MAX_HANDLES, OpenRows};
pub use checkpoint::{Checkpoint, CheckpointError, key_id, verify_checkpoint};
pub use dump::{DumpCheckpoint, DumpEntry, LedgerDump};
pub use merkle::{
    EMPTY_ROOT, Hash, consistency_path, inclusion_path, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};
pub use proof::{
    ConsistencyProof, InclusionProof, ProofDocument, from_hex, to_hex, verify_proof_document,
    verify_proof_json,
};
pub use record::{LedgerEntry, NewEntry, canonical_json};
pub use rows::LedgerRows;
pub use sqlite::{SqliteRows, VerifyImage};
pub use store::{Ledger, StoredCheckpoint};
pub use verify::{Problem, VerifyReport, verify_file};
pub use witness::{
    WitnessDocument, WitnessError, Witnessed, compare as compare_with_witness, read_witnessed,
};

/// Everything that can go wrong in the ledger.
///
/// Messages never contain payloads: an error may end up in a log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed for a reason other than a damaged file (locked, I/O, full disk, ...).
    #[error("ledger storage failed: {0}")]
    Storage(#[source] rusqlite::Error),
    /// A store other than SQLite answered with an error.
    #[error("ledger storage {store} failed: {message}")]
    Backend {
        /// Where the rows are (never a password).
        store: String,
        message: String,
    },
    /// A store other than SQLite could not be reached (refused, reset, or no answer in time).
    #[error("the ledger's store {store} is unreachable: {message}")]
    Unavailable {
        /// Where the rows are (never a password).
        store: String,
        message: String,
    },
    /// The shared ledger is signed with another key than this handle's: every writer of one
    /// log must sign with the same key, or each would refuse the others' checkpoints.
    #[error(
        "the ledger in {store} is signed with the key {stored}, not this run's {given}: every \
         runner of a shared ledger signs with the same key"
    )]
    KeyMismatch {
        /// Where the rows are (never a password).
        store: String,
        /// The public key the log was first signed with (hex).
        stored: String,
        /// This handle's public key (hex).
        given: String,
    },
    /// The database file is not a database, or is truncated or corrupt.
    #[error("ledger database is corrupt or truncated: {0}")]
    Corrupt(String),
    /// The stored entries no longer form a log this handle can extend (missing or malformed
    /// rows); run `verify` to find out what happened.
    #[error("ledger is damaged, refusing to write or prove: {0}")]
    Damaged(String),
    /// Origins double as note key names, so they must be printable, without spaces or `+`.
    #[error("invalid ledger origin {0:?}: use printable ASCII without spaces or '+'")]
    InvalidOrigin(String),
    /// The file was created for another log.
    #[error("this ledger file belongs to origin {found:?}, not {expected:?}")]
    OriginMismatch {
        /// The origin the caller asked for.
        expected: String,
        /// The origin recorded in the file.
        found: String,
    },
    /// A timestamp that RFC 3339 cannot express (year outside 0..=9999).
    #[error("timestamp cannot be written as RFC 3339: {0}")]
    Timestamp(String),
    /// An index or size past the end of the tree (or too large for SQLite's integers).
    #[error("{what} {value} is out of range (tree size {size})")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// The value asked for.
        value: u64,
        /// The bound it exceeded.
        size: u64,
    },
    /// The ledger was opened without a signing key.
    #[error("no signing key was given, so checkpoints cannot be signed")]
    NoSigningKey,
    /// Signing a checkpoint was refused because the log is not a proven extension of the last
    /// checkpoint (or that checkpoint does not verify).
    #[error("refusing to sign a checkpoint: {0}")]
    Refused(String),
    /// A checkpoint note did not parse or verify.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A proof did not parse or verify.
    #[error("proof rejected: {0}")]
    Proof(String),
    /// Writing an export failed.
    #[error("ledger export failed: {0}")]
    Io(#[from] std::io::Error),
    /// A stored payload is not JSON (the row was altered; `verify` says which).
    #[error("stored payload of entry {index} is not valid JSON")]
    Payload {
        /// The entry whose payload failed to parse.
        index: u64,
    },
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        // A short read means the file ends before a page it references: truncation.
        let short_read = matches!(&e, rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHORT_READ);
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => LedgerError::Corrupt(e.to_string()),
            _ if short_read => LedgerError::Corrupt(e.to_string()),
            _ => LedgerError::Storage(e),
        }
    }
}
