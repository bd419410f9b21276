//! `genesisctl token create|list|revoke`: the API's bearer tokens, stored hashed where the
//! store keeps them: `tokens.json` in the state directory (0600) for the embedded store, the
//! store's `bridge_tokens` table for `--store postgres://…` (the file is then not used). A
//! running server, every server of the store, picks up changes within a second.

use anyhow::{Context as _, anyhow};
use bridge_server::Role;
use bridge_server::auth::create_token_in;
use serde_json::json;

use crate::cli::TokenCommand;
use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code};
use crate::store::{StoreUrl, open_tokens};

pub async fn run(ctx: &Context<'_>, command: &TokenCommand) -> CmdResult {
    let url = ctx.store_url()?;
    if let TokenCommand::Create { role } = command {
        // Checked before anything is opened or created.
        role.parse::<Role>()
            .map_err(|e: String| anyhow!("--role: {e}"))?;
    }
    if url == StoreUrl::Local && matches!(command, TokenCommand::Create { .. }) {
        ctx.state.ensure()?;
    }
    let backend = open_tokens(&url, &ctx.state).await?;
    let store = backend.describe();
    match command {
        TokenCommand::Create { role } => {
            let role: Role = role.parse().map_err(|e: String| anyhow!("--role: {e}"))?;
            let (token, record) = create_token_in(&*backend, role, &now_rfc3339())
                .await
                .with_context(|| format!("adding a token to {store}"))?;
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
                        "{role} token {} (stored hashed in {store}; shown only now)",
                        record.id
                    ),
                );
            }
            Ok(Code::Ok)
        }
        TokenCommand::List => {
            let tokens = backend
                .list()
                .await
                .with_context(|| format!("reading the tokens of {store}"))?;
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
            let removed = backend
                .revoke(id.clone())
                .await
                .with_context(|| format!("revoking a token in {store}"))?;
            if !removed {
                return Err(anyhow!(
                    "no token `{id}` in {store}; `genesisctl token list` shows the ids"
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
