//! `genesisctl env check`: a source against the `[schema]` of `bridge.toml`.

use anyhow::anyhow;
use serde_json::json;

use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure};
use crate::shell::{GREEN, RED};

pub async fn run(ctx: &Context<'_>, from: Option<&str>) -> CmdResult {
    let schema = &ctx.config.schema;
    if schema.is_empty() {
        let file = ctx
            .config
            .file
            .as_ref()
            .map_or("bridge.toml".into(), |p| p.display().to_string());
        return Err(anyhow!(
            "no schema to check against: add a [schema] table to {file} (see `genesisctl env check --help`)"
        )
        .into());
    }
    let compiled = schema.compile().map_err(|e| anyhow!("bridge.toml: {e}"))?;
    let spec = ctx.source_spec(from)?;
    let vars = ctx
        .place(&spec)
        .await?
        .platform
        .load()
        .await
        .map_err(|e| Failure::platform(e, format!("reading {spec}")))?;
    let violations = compiled.check(&vars);

    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "source": spec.to_string(),
                "keys": vars.len(),
                "ok": violations.is_empty(),
                "violations": violations,
            }))
            .map_err(anyhow::Error::from)?;
    } else if violations.is_empty() {
        ctx.shell
            .print(&format!(
                "{GREEN}ok{GREEN:#}: {spec} satisfies the schema ({} keys)\n",
                vars.len()
            ))
            .map_err(anyhow::Error::from)?;
    } else {
        let mut text = String::new();
        for v in &violations {
            text.push_str(&format!("  {RED}✗{RED:#} {v}\n"));
        }
        text.push_str(&format!(
            "{RED}{} violation{}{RED:#} in {spec}\n",
            violations.len(),
            if violations.len() == 1 { "" } else { "s" }
        ));
        ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    }
    Ok(if violations.is_empty() {
        Code::Ok
    } else {
        Code::Drift
    })
}
