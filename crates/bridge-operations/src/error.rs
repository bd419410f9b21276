//! [`OpsError`]: why an operation did not run, sorted by whose move it is.

use bridge_platforms::PlatformError;

/// Why an operation as a whole did not run (a target that fails on its own is recorded in
/// its outcome instead). Messages name what to fix and never carry a value.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A platform could not be opened or read: `context` says which and doing what.
    #[error("{context}: {source}")]
    Platform {
        context: String,
        #[source]
        source: Box<PlatformError>,
    },
    /// The request or the configuration is at fault.
    #[error("{0}")]
    Input(String),
    /// No such provider, journal or target.
    #[error("{0}")]
    NotFound(String),
    /// Another apply holds the lock of a place this one needs, past the lock timeout; or the
    /// lock this apply held was broken while it ran.
    #[error("{0}")]
    Busy(String),
    /// Nothing was written, on purpose: an unfinished journal stands in the way, or a
    /// journal is stale. The message names the way out.
    #[error("{0}")]
    NotApplied(String),
    /// The state directory, the state store or the bus failed.
    #[error("{0}")]
    State(String),
}

/// Whose move it is: how callers turn an [`OpsError`] into an exit code or an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input or configuration (exit 2, HTTP 422).
    Input,
    /// Nothing by that name (exit 2, HTTP 404).
    NotFound,
    /// A platform or the network (exit 3, HTTP 502).
    Upstream,
    /// Another apply is running (exit 3, HTTP 409).
    Busy,
    /// Refused before any write, as a plan not applied (exit 1, HTTP 409).
    NotApplied,
    /// Bridge's own state (exit 3, HTTP 500).
    Internal,
}

impl OpsError {
    pub fn platform(source: PlatformError, context: impl Into<String>) -> Self {
        OpsError::Platform {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            OpsError::Platform { source, .. } if source.is_input_error() => ErrorKind::Input,
            OpsError::Platform { .. } => ErrorKind::Upstream,
            OpsError::Input(_) => ErrorKind::Input,
            OpsError::NotFound(_) => ErrorKind::NotFound,
            OpsError::Busy(_) => ErrorKind::Busy,
            OpsError::NotApplied(_) => ErrorKind::NotApplied,
            OpsError::State(_) => ErrorKind::Internal,
        }
    }
}
