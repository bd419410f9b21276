//! `genesisctl run --from SRC -- COMMAND…`: run a command with a source's variables in its
//! environment, as `doppler run` and `teller run` do; the command's exit code passes through.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use anyhow::anyhow;

use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure};

pub async fn run(ctx: &Context<'_>, from: Option<&str>, command: &[String]) -> CmdResult {
    let spec = ctx.source_spec(from)?;
    let vars = ctx
        .place(&spec)
        .await?
        .platform
        .load()
        .await
        .map_err(|e| Failure::platform(e, format!("reading {spec}")))?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow!("no command given after --"))?;
    let mut child = Command::new(program);
    child.args(args);
    for (key, value) in &vars {
        child.env(key, value.expose());
    }
    let status = match child.status() {
        Ok(status) => status,
        // As a shell says it: 127 for a command not found, 126 for one that cannot run.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
            let code = if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            };
            ctx.shell.error(format!("running `{program}`: {e}"));
            std::process::exit(code);
        }
        Err(e) => return Err(anyhow!("running `{program}`: {e}").into()),
    };
    // The child's code is ours; a signal death maps to 128+N as shells do.
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    std::process::exit(code);
    #[allow(unreachable_code)]
    Ok(Code::Ok)
}
