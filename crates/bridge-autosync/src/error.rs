//! What can go wrong, named so that a user knows what to fix. Every message that carries
//! text from outside (git's stderr, an API answer) has been through the [`Redactor`]
//! first, so no variant ever holds a token.
//!
//! [`Redactor`]: crate::redact::Redactor

use std::path::PathBuf;

/// An Auto-Sync failure. [`AutosyncError::is_input_error`] separates the user's mistakes
/// (configuration, files; exit 2) from failures of git, the network or GitHub (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum AutosyncError {
    /// The configuration file could not be read.
    #[error("cannot read {}: {message}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The configuration is not valid TOML, has an unknown key or a bad value.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What to fix, naming the key.
        message: String,
    },
    /// A variable the configuration names is not set.
    #[error("{variable} is not set; {purpose}")]
    MissingVariable {
        /// The environment variable.
        variable: String,
        /// What it is needed for and where it was named.
        purpose: String,
    },
    /// A git command failed. `stderr` is redacted.
    #[error("git {op} failed{}: {stderr}", attempts_note(*attempts))]
    Git {
        /// What we were doing (`ls-remote web`, `cherry-pick abc1234`).
        op: String,
        /// The (redacted, trimmed) error output of the last attempt.
        stderr: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// git could not be started at all.
    #[error("cannot run git ({op}): {message}; is git installed and on PATH?")]
    GitMissing {
        /// What we were doing.
        op: String,
        /// The I/O error.
        message: String,
    },
    /// The state file could not be read or written.
    #[error("state file {}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// The GitHub API refused or failed a request.
    #[error("GitHub {op}: {message}")]
    Github {
        /// `create pull request`, `add labels to #12`.
        op: String,
        /// Status and the (redacted) message of the answer.
        message: String,
        /// Whether retrying could help (5xx, transport); 4xx is the user's to fix.
        transient: bool,
    },
    /// Local I/O failed (temporary worktree, validation command).
    #[error("{op}: {message}")]
    Io {
        /// What we were doing.
        op: String,
        /// The error.
        message: String,
    },
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl AutosyncError {
    /// True when the user must change configuration, files or the environment (exit 2);
    /// false for failures of git, the network or GitHub (exit 3).
    pub fn is_input_error(&self) -> bool {
        match self {
            Self::ReadConfig { .. } | Self::Config { .. } | Self::MissingVariable { .. } => true,
            Self::State { .. } => true,
            Self::Github { transient, .. } => !transient,
            Self::Git { .. } | Self::GitMissing { .. } | Self::Io { .. } => false,
        }
    }

    pub(crate) fn io(op: impl Into<String>, e: &std::io::Error) -> Self {
        Self::Io {
            op: op.into(),
            message: e.to_string(),
        }
    }
}

/// The crate's result.
pub type Result<T, E = AutosyncError> = std::result::Result<T, E>;
