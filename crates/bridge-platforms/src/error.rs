//! [`PlatformError`]: what went wrong talking to a platform, with what to fix.
//!
//! Variants are what retry logic and exit codes match on; messages name the variable, file
//! or key to fix and never contain a value or a token.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{path}: no such file (create it, or point the spec at an existing file)")]
    NotFound { path: PathBuf },

    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{platform}: {what}")]
    Unsupported { platform: String, what: String },

    #[error("{platform}: {what}")]
    Write { platform: String, what: String },

    /// The apply was stopped between two writes (its progress could not be recorded).
    #[error(transparent)]
    Interrupted(#[from] crate::Interrupted),

    /// Configuration the adapter cannot work without.
    #[error("{platform}: {variable} is not set; {hint}")]
    MissingSetting {
        platform: String,
        variable: &'static str,
        hint: String,
    },

    /// 401 or 403: the token was refused or lacks a permission.
    #[error("{platform}: {method} {path} was refused ({status}): {meaning}")]
    Auth {
        platform: String,
        method: String,
        path: String,
        status: u16,
        meaning: String,
    },

    /// 404 on the resource the spec points at (a wrong service, site or repository id).
    #[error("{platform}: {method} {path} found nothing (404): {meaning}")]
    Missing {
        platform: String,
        method: String,
        path: String,
        meaning: String,
    },

    /// 429 (or GitHub's secondary limit) that outlasted the retries.
    #[error(
        "{platform}: still rate limited after {attempts} attempts (last asked to wait {retry_after:?})"
    )]
    RateLimited {
        platform: String,
        attempts: u32,
        retry_after: Option<Duration>,
    },

    /// Any other unexpected status.
    #[error("{platform}: {method} {path} answered {status}: {message}")]
    Status {
        platform: String,
        method: String,
        path: String,
        status: u16,
        message: String,
    },

    /// The request never got an answer (connection refused, timeout, TLS).
    #[error("{platform}: {method} {path}: {message}")]
    Transport {
        platform: String,
        method: String,
        path: String,
        message: String,
    },

    /// An answer that is not what the API documents.
    #[error("{platform}: unexpected answer to {what}: {message}")]
    Decode {
        platform: String,
        what: String,
        message: String,
    },

    /// A planned write the platform's own rules forbid; found before anything was written.
    #[error("{platform}: {key}: {rule}")]
    Rule {
        platform: String,
        key: String,
        rule: String,
    },
}

impl PlatformError {
    /// Whether the user can fix this by changing input or configuration (exit 2) rather
    /// than it being a failure of the platform or the network (exit 3).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            PlatformError::NotFound { .. }
                | PlatformError::Parse { .. }
                | PlatformError::Unsupported { .. }
                | PlatformError::MissingSetting { .. }
                | PlatformError::Auth { .. }
                | PlatformError::Missing { .. }
                | PlatformError::Rule { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PlatformError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
