//! `genesisctl env verify`: parity across places, the seed's report, an audit summary.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use bridge_core::parity::{ParityMatrix, ParityReport};
use bridge_operations::{DriftNotice, Origin};
use bridge_platforms::PlatformSpec;
use bridge_platforms::local::write_atomically;

use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code, Failure};
use crate::present::{audit_markdown, parity_text};

pub async fn run(
    ctx: &Context<'_>,
    platforms: Option<&str>,
    report_path: Option<PathBuf>,
    audit_path: Option<PathBuf>,
    allow_unknown: bool,
) -> CmdResult {
    let specs = match platforms {
        Some(text) => PlatformSpec::parse_list(text).map_err(|e| anyhow!("--platforms: {e}"))?,
        None => {
            let mut specs = vec![ctx.config.sync.source.clone()];
            specs.extend(ctx.config.sync.targets.iter().cloned());
            specs
        }
    };
    if specs.len() < 2 {
        return Err(anyhow!(
            "parity needs at least two places: pass --platforms a,b[,c…] or set sync.targets"
        )
        .into());
    }
    let (matrix, report) = compute(ctx, &specs).await?;

    if let Some(path) = &report_path {
        let mut text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        text.push('\n');
        write_atomically(path, text.as_bytes())
            .map_err(|e| Failure::platform(e, format!("writing {}", path.display())))?;
    }
    if let Some(path) = &audit_path {
        write_atomically(path, audit_markdown(&matrix, &report).as_bytes())
            .map_err(|e| Failure::platform(e, format!("writing {}", path.display())))?;
    }
    if ctx.shell.is_json() {
        ctx.shell.print_json(&report).map_err(anyhow::Error::from)?;
    } else {
        ctx.shell
            .print(&parity_text(&matrix))
            .map_err(anyhow::Error::from)?;
        for path in report_path.iter().chain(&audit_path) {
            ctx.shell.status("Wrote", path.display().to_string());
        }
    }
    // Parity only when proven: an unknown value may differ.
    Ok(if report.has_drift || !(report.proven || allow_unknown) {
        Code::Drift
    } else {
        Code::Ok
    })
}

/// Parity across `specs` (the first is the reference); an operator's verify, so the drift
/// it finds is announced (`envsync.drift`) for the server's reactions to heal.
pub async fn compute(
    ctx: &Context<'_>,
    specs: &[PlatformSpec],
) -> Result<(ParityMatrix, ParityReport), Failure> {
    let ops = ctx.operations()?;
    Ok(ops
        .verify(specs, DriftNotice::Publish(Origin::Cli), now_rfc3339())
        .await?)
}
