//! `genesisctl env export`: a snapshot of a source in the seed's `.env.sync.json` shape,
//! `{provider, source, synced_at, variables}`, secrets as `<redacted:FINGERPRINT>` unless
//! `--reveal`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use bridge_platforms::local::write_atomically;
use serde::Serialize;
use serde_json::json;

use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code, Failure};
use crate::present::Redactor;

#[derive(Serialize)]
struct Snapshot {
    provider: String,
    source: String,
    synced_at: String,
    variables: BTreeMap<String, String>,
}

pub async fn run(
    ctx: &Context<'_>,
    source: Option<&str>,
    target: Option<String>,
    out: Option<PathBuf>,
    reveal: bool,
) -> CmdResult {
    let spec = ctx.source_spec(source)?;
    let platform = ctx.place(&spec).await?.platform;
    let mut vars = platform
        .load()
        .await
        .map_err(|e| Failure::platform(e, format!("reading {spec}")))?;
    let filter = ctx.filter();
    vars.retain(|k| filter.allows(k));

    let key = ctx.fingerprint_key()?;
    let classifier = ctx.classifier();
    let redactor = Redactor {
        classifier: &classifier,
        key: &key,
    };
    let variables = vars
        .iter()
        .map(|(k, v)| {
            let shown = if reveal {
                v.expose().to_string()
            } else {
                redactor.full(k, v)
            };
            (k.clone(), shown)
        })
        .collect();
    let source_name = spec.to_string();
    let snapshot = Snapshot {
        provider: target.unwrap_or_else(|| spec.kind.name().to_string()),
        source: source_name,
        synced_at: now_rfc3339(),
        variables,
    };

    let Some(path) = out else {
        ctx.shell
            .print_json(&snapshot)
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    };
    let mut text = serde_json::to_string_pretty(&snapshot).context("encoding the snapshot")?;
    text.push('\n');
    write_atomically(&path, text.as_bytes())
        .map_err(|e| Failure::platform(e, format!("writing {}", path.display())))?;
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({"out": path.display().to_string(), "variables": vars.len(), "revealed": reveal}))
            .map_err(anyhow::Error::from)?;
    } else {
        ctx.shell.status(
            "Exported",
            format!(
                "{} from {spec} to {}{}",
                match vars.len() {
                    1 => "1 variable".to_string(),
                    n => format!("{n} variables"),
                },
                path.display(),
                if reveal { " (secrets in clear)" } else { "" }
            ),
        );
    }
    Ok(Code::Ok)
}
