//! `genesisctl env verify`: parity across places, the seed's report, an audit summary.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use bridge_core::parity::{ParityMatrix, ParityReport};
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
    Ok(if report.has_drift {
        Code::Drift
    } else {
        Code::Ok
    })
}

/// Parity across `specs` (the first is the reference); publishes `envsync.drift` when
/// there is drift.
pub async fn compute(
    ctx: &Context<'_>,
    specs: &[PlatformSpec],
) -> Result<(ParityMatrix, ParityReport), Failure> {
    let places = ctx.places(specs).await?;
    // Fingerprints are needed only to judge write-only values; comparing readable values
    // needs no key, so a plain verify leaves the state directory alone.
    let key = ctx.state.load_key().ok().flatten();
    let store = ctx.state.existing_store()?;
    let matrix = bridge_sync::verify(
        &places,
        &ctx.filter(),
        &ctx.classifier(),
        key.as_ref(),
        store.as_ref(),
    )
    .await
    .map_err(|e| Failure::platform(e.source, format!("reading {}", e.spec)))?;
    let report = matrix.report(now_rfc3339());

    if report.has_drift
        && let Err(e) = publish_drift(ctx, &report).await
    {
        ctx.shell
            .warn(format!("could not publish envsync.drift: {e:#}"));
    }
    Ok((matrix, report))
}

/// `envsync.drift`: which keys are out of parity where (names only; the ledger records it on
/// the next command that runs its consumer).
async fn publish_drift(ctx: &Context<'_>, report: &ParityReport) -> anyhow::Result<()> {
    let bus = crate::genesis::open_bus(ctx).await?;
    let conflicts: Vec<&String> = report.conflicts.keys().collect();
    // Keys each place differs on from the first (the reference): what a heal would write.
    let mut by_platform = serde_json::Map::new();
    if let Some(reference) = report.platforms.first() {
        for place in report.platforms.iter().skip(1) {
            let missing = report
                .missing
                .get(&format!("missing_in_{place}"))
                .map_or(0, Vec::len);
            let differing = report
                .conflicts
                .values()
                .filter(|values| {
                    matches!((values.get(place), values.get(reference)), (Some(a), Some(b)) if a != b)
                })
                .count();
            by_platform.insert(place.clone(), (missing + differing).into());
        }
    }
    crate::genesis::publish(
        &bus,
        "envsync.drift",
        serde_json::json!({
            "verified_at": report.verified_at,
            "platforms": report.platforms,
            "missing": report.missing,
            "conflicts": conflicts,
            "by_platform": by_platform,
            "drift_count": report.summary.drift_count,
            "total_keys": report.summary.total_keys,
        }),
    )
    .await?;
    Ok(())
}
