//! `process`: the current process environment.
//!
//! As a source it is what `genesisctl` itself was started with. As a target a process cannot
//! change its parent's environment, so applying prints the shell lines that would
//! (`export KEY='value'`, `unset KEY`) for the user to `eval`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bridge_core::EnvSet;
use bridge_core::diff::Change;

use crate::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    WriteRequest, readable,
};

/// Where a `process` target writes its shell lines (stdout in the CLI).
#[derive(Clone)]
pub struct Output(Arc<Mutex<Box<dyn Write + Send>>>);

impl Output {
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(writer))))
    }
}

pub struct ProcessEnv {
    spec: PlatformSpec,
    output: Option<Output>,
}

impl ProcessEnv {
    pub fn new(spec: PlatformSpec, output: Option<Output>) -> Self {
        Self { spec, output }
    }

    fn current() -> EnvSet {
        // Variables whose name or value is not UTF-8 cannot be synced anywhere; skip them.
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

/// Quotes `value` for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[async_trait]
impl Platform for ProcessEnv {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: true,
            bulk_write: true,
            serial_writes: false,
            ownership_applies: false,
            applies_by_printing: true,
            same_place_by_path: false,
            atomic_apply: true,
        }
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        Ok(readable(&Self::current()))
    }

    async fn load(&self) -> Result<EnvSet, PlatformError> {
        Ok(Self::current())
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let Some(output) = &self.output else {
            return Err(PlatformError::Unsupported {
                platform: "process".into(),
                what: "nowhere to print the export lines".into(),
            });
        };
        let mut script = String::new();
        let mut writes = 0;
        let mut keys = Vec::new();
        for op in request.ops.iter().filter(|op| op.change.writes()) {
            match (op.change, &op.after) {
                (Change::Delete, _) => script.push_str(&format!("unset {}\n", op.key)),
                (_, Some(value)) => script.push_str(&format!(
                    "export {}={}\n",
                    op.key,
                    shell_quote(value.expose())
                )),
                (_, None) => continue,
            }
            writes += 1;
            keys.push(op.key.as_str());
        }
        {
            let mut out = output.0.lock().map_err(|_| PlatformError::Write {
                platform: "process".into(),
                what: "the output is unusable after an earlier failure".into(),
            })?;
            out.write_all(script.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| PlatformError::Write {
                    platform: "process".into(),
                    what: format!("printing export lines: {e}"),
                })?;
        }
        progress.applied(&keys).await?;
        Ok(ApplyReport {
            writes,
            ..ApplyReport::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_for_posix_shells() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(shell_quote(""), "''");
    }
}
