//! `genesisctl init`: the state directory (0700) and the fingerprint key (0600).

use serde_json::json;

use crate::context::Context;
use crate::exit::{CmdResult, Code};
use crate::state::Created;

pub fn run(ctx: &Context<'_>) -> CmdResult {
    let dir = ctx.state.ensure()?;
    let (_, key) = ctx.state.key()?;
    let path = ctx.state.path().display().to_string();
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "state_dir": path,
                "created_state_dir": dir == Created::Now,
                "created_key": key == Created::Now,
            }))
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    }
    match (dir, key) {
        (Created::AlreadyThere, Created::AlreadyThere) => ctx
            .shell
            .status("Ready", format!("{path} is already initialised")),
        (_, Created::Now) => ctx.shell.status(
            "Created",
            format!("{path} (0700) with a new fingerprint key; keep it out of version control"),
        ),
        (Created::Now, Created::AlreadyThere) => ctx.shell.status("Created", path),
    }
    Ok(Code::Ok)
}
