//! Full verification: recompute every leaf and every attested root from the stored rows and
//! name the first thing that does not add up.
//!
//! What each kind of tampering looks like, and how it is caught:
//! - a row edited in place (payload, topic, ...) without fixing its leaf hash: the recomputed
//!   leaf differs from the stored one → [`Problem::Changed`] at that index;
//! - two rows' contents swapped: the index is part of the leaf, so both rows mismatch; a second
//!   pass (only run when something is wrong) finds where the original content went →
//!   [`Problem::Reordered`];
//! - a row deleted: a gap in the indexes, or fewer rows than a checkpoint attests →
//!   [`Problem::Removed`];
//! - a row rewritten *with* a recomputed leaf hash (or rows renumbered): every row looks fine on
//!   its own, but the root rebuilt from the rows no longer matches a signed checkpoint →
//!   [`Problem::RootMismatch`]. A root is one hash, so the culprit can only be narrowed to the
//!   entries between the last matching checkpoint and this one; checkpoint often to narrow it;
//! - a checkpoint whose signature was replaced or altered → [`Problem::BadSignature`];
//! - a damaged file → [`Problem::Corrupt`]; the scan never skips what it cannot read;
//! - in an SQLite file, damage the rows do not show (a b-tree page, an index out of step with
//!   its table, a header byte that makes the file read-only, the schema) →
//!   [`Problem::Structure`], and an edited bookkeeping row no signature covers (the origin,
//!   checkpoint ids and their counter, `created_at`) → [`Problem::Unsigned`]; see
//!   [`structure`](super::structure).
//!
//! Entries after the last checkpoint are only as trustworthy as their rows: nothing signed
//! covers them yet (see [`VerifyReport::attested_size`]).

use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::LedgerError;
use super::checkpoint::{CheckpointError, verify_checkpoint};
use super::merkle::{Frontier, Hash, leaf_hash};
use super::record::format_timestamp;
use super::record::write_entry;
use super::sqlite::{ROW_COLUMNS, read_row};
use super::structure;

/// Entry-level problems kept in a report; a wholesale rewrite must not exhaust memory.
const MAX_ENTRY_PROBLEMS: usize = 100;

/// The reason given when a row's content and leaf hash disagree.
const CHANGED: &str = "its content no longer matches its leaf hash";

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The entry's stored content no longer matches its leaf hash (or a column is malformed).
    Changed {
        /// The entry.
        index: u64,
        /// What does not match.
        reason: &'static str,
    },
    /// The content that belongs at `index` was found in the row of entry `found_at`.
    Reordered {
        /// The entry whose content moved.
        index: u64,
        /// Where it is now.
        found_at: u64,
    },
    /// `missing` entries starting at `index` are gone.
    Removed {
        /// The first missing entry.
        index: u64,
        /// How many consecutive entries are missing.
        missing: u64,
    },
    /// The root rebuilt from the stored entries differs from what a checkpoint signed, though
    /// each row is self-consistent: some entry in `first_suspect..size` was rewritten together
    /// with its leaf hash (checkpoints before `first_suspect` still match).
    RootMismatch {
        /// The checkpoint's id.
        checkpoint: u64,
        /// The size it attests.
        size: u64,
        /// The first entry not covered by an earlier matching checkpoint.
        first_suspect: u64,
    },
    /// The checkpoint's signature does not verify with the ledger's key.
    BadSignature {
        /// The checkpoint's id.
        checkpoint: u64,
    },
    /// The checkpoint is malformed, for another log, or disagrees with its own columns.
    BadCheckpoint {
        /// The checkpoint's id.
        checkpoint: u64,
        /// What is wrong.
        reason: String,
    },
    /// The entry records bus event `seq`, which entry `first` already records: an event is
    /// recorded once.
    Duplicate {
        /// The later entry.
        index: u64,
        /// The bus sequence both record.
        seq: u64,
        /// The entry that recorded it first.
        first: u64,
    },
    /// SQLite reported the file as corrupt or truncated; the scan stopped there.
    Corrupt {
        /// SQLite's message.
        detail: String,
    },
    /// The file is damaged where no row shows it: SQLite's integrity check fails, a header
    /// byte is not what the ledger writes, or the schema of the ledger's objects differs.
    Structure {
        /// What is wrong.
        detail: String,
    },
    /// A column no signature covers, but the ledger relies on, is malformed: the origin the
    /// file records, checkpoint ids and their counter, a checkpoint's `created_at`.
    Unsigned {
        /// What is wrong.
        what: String,
    },
}

impl Problem {
    /// The first entry this problem concerns, if it concerns entries.
    pub fn entry(&self) -> Option<u64> {
        match *self {
            Problem::Changed { index, .. }
            | Problem::Reordered { index, .. }
            | Problem::Removed { index, .. }
            | Problem::Duplicate { index, .. } => Some(index),
            Problem::RootMismatch { first_suspect, .. } => Some(first_suspect),
            _ => None,
        }
    }

    fn sort_key(&self) -> (u8, u64) {
        match self {
            Problem::Corrupt { .. } | Problem::Structure { .. } => (0, 0),
            Problem::Unsigned { .. } => (3, 0),
            Problem::BadSignature { checkpoint } | Problem::BadCheckpoint { checkpoint, .. } => {
                (2, *checkpoint)
            }
            p => (1, p.entry().unwrap_or_default()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Changed { index, reason } => write!(f, "entry {index} was changed: {reason}"),
            Problem::Reordered { index, found_at } => write!(
                f,
                "entry {index} was reordered: its recorded content is now in entry {found_at}"
            ),
            Problem::Removed { index, missing: 1 } => write!(f, "entry {index} was removed"),
            Problem::Removed { index, missing } => {
                write!(f, "entries {index}..{} were removed", index + missing)
            }
            Problem::RootMismatch {
                checkpoint,
                size,
                first_suspect,
            } => write!(
                f,
                "checkpoint #{checkpoint} (size {size}) does not match the stored entries: an \
                 entry in {first_suspect}..{size} was rewritten along with its leaf hash"
            ),
            Problem::BadSignature { checkpoint } => write!(
                f,
                "checkpoint #{checkpoint} has no signature that verifies with the ledger key"
            ),
            Problem::BadCheckpoint { checkpoint, reason } => {
                write!(f, "checkpoint #{checkpoint} is invalid: {reason}")
            }
            Problem::Duplicate { index, seq, first } => write!(
                f,
                "entry {index} records bus event {seq} again (entry {first} records it first)"
            ),
            Problem::Corrupt { detail } => {
                write!(f, "the database file is corrupt or truncated: {detail}")
            }
            Problem::Structure { detail } => write!(f, "the database file is damaged: {detail}"),
            Problem::Unsigned { what } => {
                write!(
                    f,
                    "a bookkeeping row no signature covers was altered: {what}"
                )
            }
        }
    }
}

/// The outcome of [`Ledger::verify`](super::Ledger::verify) / [`verify_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entry rows read.
    pub entries: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// The largest size attested by a checkpoint that verified and matched; entries at or past
    /// it are covered by no signature yet.
    pub attested_size: u64,
    /// Root recomputed from the stored entries.
    pub root: Hash,
    /// What is wrong, most serious and earliest first: corruption, then entries by index, then
    /// checkpoints by id. Empty when everything checks out.
    pub problems: Vec<Problem>,
    /// Entry-level problems beyond the first 100, counted but not listed.
    pub omitted: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problem to tell the user about first.
    pub fn first(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// The earliest entry index any problem points at (for a root mismatch, the first entry
    /// that may be the altered one).
    pub fn first_bad_entry(&self) -> Option<u64> {
        self.problems.iter().filter_map(Problem::entry).min()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first() {
            None => write!(
                f,
                "ok: {} entries, {} checkpoints, {} entries attested",
                self.entries, self.checkpoints, self.attested_size
            ),
            Some(p) => {
                let more = self.problems.len() as u64 - 1 + self.omitted;
                write!(f, "ALTERED: {p}")?;
                if more > 0 {
                    write!(f, " (and {more} more problems)")?;
                }
                Ok(())
            }
        }
    }
}

/// Verifies the ledger file at `path` without opening it for writing: the command-line
/// verifier. `origin` is the log identity checkpoints must carry.
///
/// A file SQLite cannot read is reported as [`Problem::Corrupt`], not as an error; errors are
/// kept for conditions that say nothing about the ledger (a missing file, a locked database).
pub fn verify_file(
    path: impl AsRef<Path>,
    origin: &str,
    key: &VerifyingKey,
) -> Result<VerifyReport, LedgerError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    run(&conn, origin, key, Scope::File)
}

/// What the connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The ledger's own SQLite file: its structure and bookkeeping rows are checked too.
    File,
    /// Another backend's rows copied into memory ([`VerifyImage`](super::VerifyImage)):
    /// only what every backend stores alike.
    Image,
}

/// Runs the full verification over an open connection.
pub(crate) fn run(
    conn: &Connection,
    origin: &str,
    key: &VerifyingKey,
    scope: Scope,
) -> Result<VerifyReport, LedgerError> {
    // One read transaction, so every check sees one snapshot: a checkpoint committed by a
    // writer between two of the checks (its row read by one, the id counter by the next)
    // would otherwise look like an altered bookkeeping row. A connection already inside a
    // transaction has its snapshot.
    let own_snapshot = conn.is_autocommit();
    if own_snapshot {
        conn.execute_batch("BEGIN DEFERRED")?;
    }
    let verified = run_in_snapshot(conn, origin, key, scope);
    if own_snapshot {
        // A read-only transaction: ending it cannot lose anything.
        let _ = conn.execute_batch("COMMIT");
    }
    verified
}

fn run_in_snapshot(
    conn: &Connection,
    origin: &str,
    key: &VerifyingKey,
    scope: Scope,
) -> Result<VerifyReport, LedgerError> {
    let mut v = Verifier::default();
    if scope == Scope::File {
        let checked = structure::check(conn, origin, &mut v.problems);
        v.absorb(checked)?;
    }
    // Even in a damaged file, the rows that can be read are checked and named.
    let scanned = v.scan(conn, origin, key);
    v.absorb(scanned)?;
    Ok(v.finish())
}

/// True for a timestamp exactly as the ledger writes one (RFC 3339, UTC, the fraction only as
/// long as it needs to be). Nothing signs a checkpoint's time, so its form is all there is to
/// check; its order is not, since a clock may step back between two checkpoints.
fn well_formed_time(v: ValueRef<'_>) -> bool {
    let ValueRef::Text(text) = v else {
        return false;
    };
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok().map(|at| (t, at)))
        .and_then(|(t, at)| Some(format_timestamp(at).ok()? == t))
        .unwrap_or(false)
}

/// A checkpoint that verified: what the scan must reproduce.
struct Attestation {
    id: u64,
    size: u64,
    root: Hash,
}

/// Content of the first changed row, kept for the reorder search.
struct Suspect {
    index: u64,
    timestamp: Vec<u8>,
    topic: Vec<u8>,
    seq: Option<u64>,
    stored: Hash,
}

#[derive(Default)]
struct Verifier {
    entries: u64,
    checkpoints: u64,
    attested_size: u64,
    root: Hash,
    problems: Vec<Problem>,
    entry_problems: usize,
    omitted: u64,
    suspect: Option<Suspect>,
}

impl Verifier {
    fn scan(
        &mut self,
        conn: &Connection,
        origin: &str,
        key: &VerifyingKey,
    ) -> Result<(), LedgerError> {
        let attestations = self.load_checkpoints(conn, origin, key)?;
        self.scan_entries(conn, &attestations)?;
        if let Some(s) = self.suspect.take() {
            self.find_reorder(conn, &s)?;
        }
        self.find_duplicates(conn)
    }

    /// Entries that record a bus event an earlier entry records. Each row hashes fine, so
    /// only this query finds them.
    fn find_duplicates(&mut self, conn: &Connection) -> Result<(), LedgerError> {
        let mut stmt = conn.prepare(
            "SELECT e.idx, e.seq, d.first FROM ledger_entries e
             JOIN (SELECT seq, min(idx) AS first FROM ledger_entries WHERE seq IS NOT NULL
                   GROUP BY seq HAVING count(*) > 1) d ON e.seq = d.seq
             WHERE e.idx > d.first ORDER BY e.idx",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (index, seq, first): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let as_u64 = |v: i64| u64::try_from(v).unwrap_or_default();
            self.entry_problem(Problem::Duplicate {
                index: as_u64(index),
                seq: as_u64(seq),
                first: as_u64(first),
            });
        }
        Ok(())
    }

    /// Turns a failure that is itself a finding into a problem: a corrupt file, or any query
    /// failing in a file already found damaged (a table renamed in its schema, say).
    fn absorb(&mut self, result: Result<(), LedgerError>) -> Result<(), LedgerError> {
        let found = |v: &Self, f: fn(&Problem) -> bool| v.problems.iter().any(f);
        match result {
            Ok(()) => Ok(()),
            Err(LedgerError::Corrupt(detail)) => {
                if !found(self, |p| matches!(p, Problem::Corrupt { .. })) {
                    self.problems.push(Problem::Corrupt { detail });
                }
                Ok(())
            }
            Err(_) if found(self, |p| matches!(p, Problem::Structure { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn entry_problem(&mut self, p: Problem) {
        if self.entry_problems < MAX_ENTRY_PROBLEMS {
            self.entry_problems += 1;
            self.problems.push(p);
        } else {
            self.omitted += 1;
        }
    }

    fn load_checkpoints(
        &mut self,
        conn: &Connection,
        origin: &str,
        key: &VerifyingKey,
    ) -> Result<Vec<Attestation>, LedgerError> {
        let mut stmt = conn.prepare(
            "SELECT id, size, root, note, created_at FROM ledger_checkpoints ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out: Vec<Attestation> = Vec::new();
        let mut largest = 0;
        while let Some(row) = rows.next()? {
            self.checkpoints += 1;
            let id = match row.get_ref(0)? {
                ValueRef::Integer(i) => i.max(0) as u64,
                _ => 0,
            };
            let bad = |reason: &str| Problem::BadCheckpoint {
                checkpoint: id,
                reason: reason.to_owned(),
            };
            if !well_formed_time(row.get_ref(4)?) {
                self.problems.push(Problem::Unsigned {
                    what: format!(
                        "checkpoint #{id} has a created_at that is not a timestamp the ledger \
                         writes"
                    ),
                });
            }
            let ValueRef::Text(note) = row.get_ref(3)? else {
                self.problems.push(bad("the note is not text"));
                continue;
            };
            let Ok(note) = std::str::from_utf8(note) else {
                self.problems.push(bad("the note is not UTF-8"));
                continue;
            };
            let cp = match verify_checkpoint(note, key) {
                Ok(cp) => cp,
                Err(CheckpointError::BadSignature) => {
                    self.problems.push(Problem::BadSignature { checkpoint: id });
                    continue;
                }
                Err(e) => {
                    self.problems.push(bad(&e.to_string()));
                    continue;
                }
            };
            if cp.origin != origin {
                self.problems
                    .push(bad(&format!("it is signed for origin {:?}", cp.origin)));
                continue;
            }
            let size_col = match row.get_ref(1)? {
                ValueRef::Integer(i) => u64::try_from(i).ok(),
                _ => None,
            };
            let root_col = match row.get_ref(2)? {
                ValueRef::Blob(b) => Some(b),
                _ => None,
            };
            if size_col != Some(cp.size) || root_col != Some(&cp.root[..]) {
                // The note is what is signed; the columns are an index. Still, a mismatch means
                // someone edited the table.
                self.problems
                    .push(bad("its size/root columns disagree with its signed note"));
            }
            if cp.size < largest {
                self.problems.push(bad(
                    "it attests fewer entries than an earlier checkpoint (checkpoints reordered?)",
                ));
            }
            largest = largest.max(cp.size);
            out.push(Attestation {
                id,
                size: cp.size,
                root: cp.root,
            });
        }
        out.sort_by_key(|a| (a.size, a.id));
        Ok(out)
    }

    fn scan_entries(
        &mut self,
        conn: &Connection,
        attestations: &[Attestation],
    ) -> Result<(), LedgerError> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM ledger_entries ORDER BY idx"
        ))?;
        let mut rows = stmt.query([])?;
        let mut frontier = Frontier::default();
        let mut buf = Vec::with_capacity(1024);
        let mut next_att = 0;
        let mut last_good = 0;
        let mut mismatch_seen = false;
        let mut expected: u64 = 0;
        self.check_roots(
            &frontier,
            attestations,
            &mut next_att,
            &mut last_good,
            &mut mismatch_seen,
        );
        while let Some(row) = rows.next()? {
            self.entries += 1;
            let (index, parsed) = match read_row(row)? {
                Ok(r) => (Some(r.index), Ok(r)),
                Err((index, reason)) => (index, Err(reason)),
            };
            let index = match index {
                Some(i) if i > expected => {
                    self.entry_problem(Problem::Removed {
                        index: expected,
                        missing: i - expected,
                    });
                    i
                }
                Some(i) => i,
                None => expected,
            };
            expected = index + 1;
            let leaf = match parsed {
                Err(reason) => {
                    self.entry_problem(Problem::Changed { index, reason });
                    // Keep the tree the right size; every root from here on is wrong anyway.
                    [0; 32]
                }
                Ok(r) => {
                    let leaf = r.recompute(&mut buf);
                    if leaf != r.stored {
                        self.entry_problem(Problem::Changed {
                            index,
                            reason: CHANGED,
                        });
                        if self.suspect.is_none() {
                            self.suspect = Some(Suspect {
                                index,
                                timestamp: r.timestamp.to_vec(),
                                topic: r.topic.to_vec(),
                                seq: r.seq,
                                stored: r.stored,
                            });
                        }
                    }
                    leaf
                }
            };
            frontier.push(leaf, |_, _| {});
            self.check_roots(
                &frontier,
                attestations,
                &mut next_att,
                &mut last_good,
                &mut mismatch_seen,
            );
        }
        self.root = frontier.root();
        // Checkpoints beyond the last row: the tail was cut off.
        if let (Some(_), Some(last)) = (attestations.get(next_att), attestations.last()) {
            let have = frontier.size();
            let want = last.size;
            self.entry_problem(Problem::Removed {
                index: have,
                missing: want - have,
            });
        }
        Ok(())
    }

    /// Compares the root of the tree so far with every checkpoint of exactly this size.
    fn check_roots(
        &mut self,
        frontier: &Frontier,
        attestations: &[Attestation],
        next: &mut usize,
        last_good: &mut u64,
        mismatch_seen: &mut bool,
    ) {
        let size = frontier.size();
        let mut root = None;
        while let Some(a) = attestations.get(*next).filter(|a| a.size == size) {
            *next += 1;
            let r = *root.get_or_insert_with(|| frontier.root());
            if r == a.root {
                *last_good = size;
                self.attested_size = self.attested_size.max(size);
            } else if !*mismatch_seen {
                // Later mismatches follow from the first one; listing them adds only noise.
                *mismatch_seen = true;
                self.entry_problem(Problem::RootMismatch {
                    checkpoint: a.id,
                    size,
                    first_suspect: *last_good,
                });
            }
        }
    }

    /// Second pass, run only when a row changed: was its content moved rather than edited?
    fn find_reorder(&mut self, conn: &Connection, s: &Suspect) -> Result<(), LedgerError> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM ledger_entries ORDER BY idx"
        ))?;
        let mut rows = stmt.query([])?;
        let mut buf = Vec::with_capacity(1024);
        let mut found = None;
        while let Some(row) = rows.next()? {
            let Ok(r) = read_row(row)? else { continue };
            if r.index == s.index {
                continue;
            }
            // Payloads swapped: the suspect's original payload sits in row r.
            buf.clear();
            write_entry(&mut buf, s.index, &s.timestamp, &s.topic, s.seq, r.payload);
            if leaf_hash(&buf) == s.stored {
                found = Some(r.index);
                break;
            }
            // Whole rows swapped: row r holds the suspect's content and leaf hash.
            buf.clear();
            write_entry(&mut buf, s.index, r.timestamp, r.topic, r.seq, r.payload);
            if leaf_hash(&buf) == r.stored {
                found = Some(r.index);
                break;
            }
        }
        if let Some(found_at) = found {
            for p in &mut self.problems {
                if *p
                    == (Problem::Changed {
                        index: s.index,
                        reason: CHANGED,
                    })
                {
                    *p = Problem::Reordered {
                        index: s.index,
                        found_at,
                    };
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> VerifyReport {
        // A root mismatch past an entry already named is a consequence of it, not news.
        let first_entry = self
            .problems
            .iter()
            .filter(|p| !matches!(p, Problem::RootMismatch { .. }))
            .filter_map(Problem::entry)
            .min();
        if let Some(first) = first_entry {
            self.problems.retain(|p| match p {
                Problem::RootMismatch { size, .. } => *size <= first,
                _ => true,
            });
        }
        self.problems.sort_by_key(Problem::sort_key);
        VerifyReport {
            entries: self.entries,
            checkpoints: self.checkpoints,
            attested_size: self.attested_size,
            root: self.root,
            problems: self.problems,
            omitted: self.omitted,
        }
    }
}
