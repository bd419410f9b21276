//! `genesisctl token create|list|revoke`: the API's bearer tokens, stored hashed in the state
//! directory (`tokens.json`, 0600). A running server picks up changes within a second.

use anyhow::{Context as _, anyhow};
use bridge_server::Role;
use bridge_server::auth::{TOKENS_FILE, create_token, list_tokens, revoke_token};
use serde_json::json;

use crate::cli::TokenCommand;
use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code};

pub fn run(ctx: &Context<'_>, command: &TokenCommand) -> CmdResult {
    let path = ctx.state.path().join(TOKENS_FILE);
    match command {
        TokenCommand::Create { role } => {
            let role: Role = role.parse().map_err(|e: String| anyhow!("--role: {e}"))?;
            ctx.state.ensure()?;
            let (token, record) = create_token(&path, role, &now_rfc3339())
                .with_context(|| format!("adding a token to {}", path.display()))?;
            if ctx.shell.is_json() {
                ctx.shell
                    .print_json(&json!({ "token": token, "id": record.id, "role": role }))
                    .map_err(anyhow::Error::from)?;
            } else {
                // The token alone on stdout, so that `TOKEN=$(genesisctl token create …)` works.
                ctx.shell
                    .print(&format!("{token}\n"))
                    .map_err(anyhow::Error::from)?;
                ctx.shell.status(
                    "Created",
                    format!(
                        "{role} token {} (stored hashed in {}; shown only now)",
                        record.id,
                        path.display()
                    ),
                );
            }
            Ok(Code::Ok)
        }
        TokenCommand::List => {
            let tokens =
                list_tokens(&path).with_context(|| format!("reading {}", path.display()))?;
            if ctx.shell.is_json() {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| json!({ "id": t.id, "role": t.role, "created_at": t.created_at }))
                    .collect();
                ctx.shell
                    .print_json(&json!({ "tokens": list }))
                    .map_err(anyhow::Error::from)?;
            } else if tokens.is_empty() {
                ctx.shell.status(
                    "None",
                    "no token yet: `genesisctl token create --role observer`",
                );
            } else {
                let mut text = String::new();
                for t in &tokens {
                    text.push_str(&format!("{}  {:<8}  {}\n", t.id, t.role, t.created_at));
                }
                ctx.shell.print(&text).map_err(anyhow::Error::from)?;
            }
            Ok(Code::Ok)
        }
        TokenCommand::Revoke { id } => {
            let removed = revoke_token(&path, id)
                .with_context(|| format!("revoking a token in {}", path.display()))?;
            if !removed {
                return Err(anyhow!(
                    "no token `{id}` in {}; `genesisctl token list` shows the ids",
                    path.display()
                )
                .into());
            }
            if ctx.shell.is_json() {
                ctx.shell
                    .print_json(&json!({ "revoked": id }))
                    .map_err(anyhow::Error::from)?;
            } else {
                ctx.shell.status("Revoked", id);
            }
            Ok(Code::Ok)
        }
    }
}
