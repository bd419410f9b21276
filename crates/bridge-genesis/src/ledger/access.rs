//! [`LedgerAccess`]: where a long-running process's ledger is and how to sign its
//! checkpoints, so each user (the feed, a request) opens a handle of its own.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;

use super::{Ledger, LedgerError};

#[derive(Clone)]
pub struct LedgerAccess {
    pub path: PathBuf,
    pub origin: String,
    pub key: SigningKey,
}

impl std::fmt::Debug for LedgerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerAccess")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LedgerAccess {
    /// A fresh handle, able to sign.
    pub fn open(&self) -> Result<Ledger, LedgerError> {
        Ledger::open(&self.path, &self.origin, Some(self.key.clone()))
    }
}
