//! [`PlatformError`]: what went wrong talking to a platform, with what to fix.

use std::path::PathBuf;

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
}

impl PlatformError {
    /// Whether the user can fix this by changing input (exit 2) rather than it being a
    /// failure of the platform or the network (exit 3).
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            PlatformError::NotFound { .. }
                | PlatformError::Parse { .. }
                | PlatformError::Unsupported { .. }
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
