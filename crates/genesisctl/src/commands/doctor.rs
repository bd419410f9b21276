//! `genesisctl platforms doctor`: for each remote platform, where its token came from (never
//! the token), whether the settings it needs are there, and whether its API accepts them.

use anyhow::anyhow;
use bridge_platforms::{PlatformKind, PlatformSpec};
use serde::Serialize;

use crate::context::Context;
use crate::exit::{CmdResult, Code, code_of};
use crate::shell::{GREEN, RED, YELLOW};

#[derive(Serialize)]
struct Check {
    platform: String,
    token_source: Option<String>,
    tried: Vec<String>,
    /// ok | failed | no_token
    api: &'static str,
    keys: Option<usize>,
    detail: Option<String>,
}

pub async fn run(ctx: &Context<'_>, platforms: Option<&str>) -> CmdResult {
    let specs = match platforms {
        Some(text) => PlatformSpec::parse_list(text).map_err(|e| anyhow!("--platforms: {e}"))?,
        None => PlatformSpec::parse_list("render,netlify,github").map_err(|e| anyhow!(e))?,
    };
    let mut checks = Vec::new();
    let mut code = Code::Ok;
    for spec in &specs {
        if matches!(spec.kind, PlatformKind::Local | PlatformKind::Process) {
            continue;
        }
        let discovery = ctx.discover(spec.kind).await;
        let mut check = Check {
            platform: spec.to_string(),
            token_source: discovery.found.as_ref().map(|d| d.source.to_string()),
            tried: discovery.tried,
            api: "no_token",
            keys: None,
            detail: None,
        };
        if check.token_source.is_none() {
            code = code.max(Code::Input);
            check.detail = Some(format!(
                "no token found; set {}",
                crate::discovery::token_vars(spec.kind).join(" or ")
            ));
            checks.push(check);
            continue;
        }
        let result = match ctx.place(spec).await {
            Ok(place) => place
                .platform
                .read()
                .await
                .map_err(|e| (code_of(&e), e.to_string())),
            Err(failure) => Err((failure.code, format!("{:#}", failure.error))),
        };
        match result {
            Ok(set) => {
                check.api = "ok";
                check.keys = Some(set.len());
            }
            Err((c, message)) => {
                code = code.max(c);
                check.api = "failed";
                check.detail = Some(message);
            }
        }
        checks.push(check);
    }
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&serde_json::json!({ "platforms": checks }))
            .map_err(anyhow::Error::from)?;
        return Ok(code);
    }
    let mut text = String::new();
    for c in &checks {
        let verdict = match c.api {
            "ok" => format!("{GREEN}ok{GREEN:#}"),
            "no_token" => format!("{YELLOW}no token{YELLOW:#}"),
            _ => format!("{RED}failed{RED:#}"),
        };
        text.push_str(&format!("{}: {verdict}\n", c.platform));
        match &c.token_source {
            Some(source) => text.push_str(&format!("  token from {source}\n")),
            None => text.push_str(&format!("  looked in: {}\n", c.tried.join(", "))),
        }
        if let Some(n) = c.keys {
            text.push_str(&format!("  the API answered: {n} variables visible\n"));
        }
        if let Some(detail) = &c.detail {
            text.push_str(&format!("  {detail}\n"));
        }
    }
    ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    Ok(code)
}
