//! A witnessed checkpoint: a copy of a signed checkpoint kept where the ledger's owner cannot
//! rewrite it, and the check that a ledger still extends it.
//!
//! Signed checkpoints alone cannot show that the tail was cut: whoever can delete the last
//! entries can delete the checkpoints above them too, and what is left verifies. A witness
//! remembers the largest tree it was shown; a ledger shorter than that, or whose first
//! `size` entries hash to another root, has been truncated or rewritten.

use serde::{Deserialize, Serialize};

use super::checkpoint::{Checkpoint, CheckpointError, verify_checkpoint};
use super::merkle::{Hash, root};
use super::rows::LedgerRows;
use super::{LedgerError, to_hex};

/// What is published to a witness: the signed note, and its fields spelled out for people
/// (the note alone is what is trusted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessDocument {
    pub origin: String,
    pub size: u64,
    /// The root, hex.
    pub root: String,
    /// The C2SP signed note.
    pub note: String,
}

impl WitnessDocument {
    pub fn of(checkpoint: &Checkpoint) -> Self {
        Self {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: to_hex(&checkpoint.root),
            note: checkpoint.note.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and an integer always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why a witnessed text was not taken.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WitnessError {
    #[error("the witness holds neither a witness document nor a signed checkpoint note")]
    Unreadable,
    #[error("the witnessed checkpoint does not verify: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the witnessed checkpoint is of the log {found}, not {expected}")]
    OtherLog { expected: String, found: String },
}

/// The checkpoint in what a witness holds (a [`WitnessDocument`] as JSON, or the bare note),
/// verified with `key` and required to be of the log `origin`.
pub fn read_witnessed(
    text: &str,
    origin: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<Checkpoint, WitnessError> {
    let note = match serde_json::from_str::<WitnessDocument>(text.trim()) {
        Ok(document) => document.note,
        Err(_) if text.starts_with(origin) => text.to_string(),
        Err(_) => return Err(WitnessError::Unreadable),
    };
    let checkpoint = verify_checkpoint(&note, key)?;
    if checkpoint.origin != origin {
        return Err(WitnessError::OtherLog {
            expected: origin.to_string(),
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

/// How a ledger stands to a witnessed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witnessed {
    /// Its first `size` entries are the witnessed tree: it extends it.
    Extends { size: u64, entries: u64 },
    /// It holds fewer entries than the witness saw: its tail was cut.
    Shorter { size: u64, entries: u64 },
    /// Its first `size` entries hash to another root: they were rewritten.
    Differs { size: u64, root: Hash },
}

impl Witnessed {
    pub fn extends(&self) -> bool {
        matches!(self, Witnessed::Extends { .. })
    }
}

impl std::fmt::Display for Witnessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Witnessed::Extends { size, entries } => write!(
                f,
                "extends the witnessed checkpoint of {size} entries ({entries} now)"
            ),
            Witnessed::Shorter { size, entries } => write!(
                f,
                "holds {entries} entries, fewer than the {size} a witness saw signed: its tail \
                 was removed"
            ),
            Witnessed::Differs { size, root } => write!(
                f,
                "its first {size} entries hash to {}, not to the root a witness saw signed: \
                 they were rewritten",
                to_hex(root)
            ),
        }
    }
}

/// Compares the stored leaves of `rows` with `witnessed`. The leaves are taken as stored:
/// run the full verification too, which proves them the hashes of the entries.
pub fn compare(rows: &dyn LedgerRows, witnessed: &Checkpoint) -> Result<Witnessed, LedgerError> {
    let entries = rows.stored_len()?;
    let size = witnessed.size;
    if entries < size {
        return Ok(Witnessed::Shorter { size, entries });
    }
    let mut leaves: Vec<Hash> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut expected: i64 = 0;
    let mut gap = false;
    rows.leaf_hashes(0, size, &mut |index, hash| {
        match hash {
            Some(hash) if index == expected => leaves.push(hash),
            _ => gap = true,
        }
        expected += 1;
        Ok(())
    })?;
    if gap || leaves.len() as u64 != size {
        return Ok(Witnessed::Shorter {
            size,
            entries: leaves.len() as u64,
        });
    }
    let found = root(&leaves);
    Ok(if found == witnessed.root {
        Witnessed::Extends { size, entries }
    } else {
        Witnessed::Differs { size, root: found }
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::ledger::Ledger;
    use crate::ledger::{NewEntry, SqliteRows};

    const ORIGIN: &str = "test.local/ledger";

    fn ledger(dir: &std::path::Path, n: usize) -> Ledger {
        let key = SigningKey::from_bytes(&[7; 32]);
        let rows = SqliteRows::open(dir.join("ledger.db")).unwrap();
        let mut ledger = Ledger::open_rows(Box::new(rows), ORIGIN, Some(key)).unwrap();
        for i in 0..n {
            ledger
                .append(NewEntry {
                    timestamp: time::OffsetDateTime::UNIX_EPOCH,
                    topic: "t".into(),
                    seq: Some(i as u64 + 1),
                    payload: serde_json::json!({"i": i}),
                })
                .unwrap();
        }
        ledger
    }

    #[test]
    fn a_ledger_extends_what_it_showed_and_a_cut_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let mut l = ledger(dir.path(), 5);
        let seen = l.checkpoint(time::OffsetDateTime::now_utc()).unwrap();
        let text = WitnessDocument::of(&seen.checkpoint).to_json();
        let witnessed = read_witnessed(&text, ORIGIN, &key).unwrap();
        assert_eq!(
            read_witnessed(&seen.checkpoint.note, ORIGIN, &key).unwrap(),
            witnessed
        );
        let rows = SqliteRows::open(dir.path().join("ledger.db")).unwrap();
        assert_eq!(
            compare(&rows, &witnessed).unwrap(),
            Witnessed::Extends {
                size: 5,
                entries: 5
            }
        );
        drop(l);
        let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
        conn.execute("DELETE FROM ledger_entries WHERE idx = 4", [])
            .unwrap();
        assert_eq!(
            compare(&rows, &witnessed).unwrap(),
            Witnessed::Shorter {
                size: 5,
                entries: 4
            }
        );
        assert!(rows.stored_len().unwrap() == 4);
    }

    #[test]
    fn a_rewritten_history_differs() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let seen = ledger(a.path(), 3)
            .checkpoint(time::OffsetDateTime::now_utc())
            .unwrap();
        // The same history elsewhere, then one of its leaves rewritten.
        let other = ledger(b.path(), 4);
        let text = WitnessDocument::of(&seen.checkpoint).to_json();
        let witnessed = read_witnessed(&text, ORIGIN, &key).unwrap();
        let rows = SqliteRows::open(a.path().join("ledger.db")).unwrap();
        assert!(compare(&rows, &witnessed).unwrap().extends());
        drop(other);
        let conn = rusqlite::Connection::open(b.path().join("ledger.db")).unwrap();
        conn.execute(
            "UPDATE ledger_entries SET leaf_hash = zeroblob(32) WHERE idx = 1",
            [],
        )
        .unwrap();
        let rows = SqliteRows::open(b.path().join("ledger.db")).unwrap();
        assert!(matches!(
            compare(&rows, &witnessed).unwrap(),
            Witnessed::Differs { size: 3, .. }
        ));
    }

    #[test]
    fn another_key_or_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = ledger(dir.path(), 2);
        let seen = l.checkpoint(time::OffsetDateTime::now_utc()).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(matches!(
            read_witnessed(&seen.checkpoint.note, ORIGIN, &other),
            Err(WitnessError::Checkpoint(_))
        ));
        assert!(matches!(
            read_witnessed(&seen.checkpoint.note, "other.log", &key),
            Err(WitnessError::Unreadable)
        ));
        assert_eq!(
            read_witnessed("{}", ORIGIN, &key),
            Err(WitnessError::Unreadable)
        );
    }
}
