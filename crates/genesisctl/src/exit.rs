//! Exit codes and the error that carries one.

use bridge_platforms::PlatformError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    /// Drift found, or a plan not applied.
    Drift = 1,
    /// Usage, configuration or input error.
    Input = 2,
    /// A platform or the network failed.
    Platform = 3,
}

/// A command that failed, and the exit code that says how.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn platform(error: PlatformError, context: impl std::fmt::Display) -> Self {
        let code = if error.is_input_error() {
            Code::Input
        } else {
            Code::Platform
        };
        let error = anyhow::Error::new(error).context(context.to_string());
        Self { code, error }
    }
}

/// Anything else is the user's to fix: configuration, arguments, files.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self {
            code: Code::Input,
            error,
        }
    }
}

pub type CmdResult = Result<Code, Failure>;

/// The code for a platform error (2 when the input is at fault, 3 otherwise).
pub fn code_of(error: &PlatformError) -> Code {
    if error.is_input_error() {
        Code::Input
    } else {
        Code::Platform
    }
}

/// An operation's failure, with the exit code its kind calls for.
impl From<bridge_operations::OpsError> for Failure {
    fn from(error: bridge_operations::OpsError) -> Self {
        use bridge_operations::{ErrorKind, OpsError};
        match error {
            OpsError::Platform { context, source } => Failure::platform(*source, context),
            other => {
                let code = match other.kind() {
                    ErrorKind::Input | ErrorKind::NotFound => Code::Input,
                    ErrorKind::NotApplied => Code::Drift,
                    ErrorKind::Upstream | ErrorKind::Busy | ErrorKind::Internal => Code::Platform,
                };
                Failure {
                    code,
                    error: anyhow::Error::new(other),
                }
            }
        }
    }
}
