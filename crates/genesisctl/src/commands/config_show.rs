//! `genesisctl config show`: every setting, its value and where it came from.

use std::fmt::Write as _;

use serde_json::json;

use crate::context::Context;
use crate::exit::{CmdResult, Code};
use crate::shell::{BOLD, DIM};

pub fn run(ctx: &Context<'_>) -> CmdResult {
    let cfg = &ctx.config;
    let file = cfg.file.as_ref().map(|p| p.display().to_string());
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "config_file": file,
                "settings": cfg.shown,
                "schema": cfg.schema,
            }))
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{BOLD}config file{BOLD:#}: {}",
        file.as_deref()
            .unwrap_or("(none; defaults and environment only)")
    );
    let width = cfg.shown.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &cfg.shown {
        let value = match &s.value {
            serde_json::Value::String(v) if v.is_empty() => "\"\"".to_string(),
            serde_json::Value::String(v) => v.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {value}  {DIM}({}){DIM:#}",
            s.name, s.origin
        );
    }
    if !cfg.schema.is_empty() {
        let _ = writeln!(
            out,
            "schema: {} key rules{}",
            cfg.schema.keys.len(),
            cfg.schema
                .min_keys
                .map(|n| format!(", at least {n} keys"))
                .unwrap_or_default()
        );
    }
    ctx.shell.print(&out).map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}
