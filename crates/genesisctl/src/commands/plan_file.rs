//! `genesisctl env plan --out FILE` and `genesisctl env apply FILE`: a plan reviewed now and
//! applied exactly later. The file holds keys, operations and keyed fingerprints — never a
//! value — plus digests of the source and of every target as planned. `apply` plans again
//! and refuses unless the source, the targets and the changes are all the same.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use bridge_core::FingerprintKey;
use bridge_core::diff::Change;
use bridge_platforms::PlatformSpec;
use bridge_platforms::local::write_atomically;
use bridge_sync::SyncOutcome;
use serde::{Deserialize, Serialize};

use crate::cli::SyncArgs;
use crate::commands::sync::{self, Options, Scope};
use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code, Failure, code_of};

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PlanFile {
    version: u32,
    created_at: String,
    source: String,
    source_digest: String,
    include_prefixes: Vec<String>,
    exclude_prefixes: Vec<String>,
    allow_deletions: bool,
    /// `--unknown=skip`: unknown write-only values were left out of the plan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    skip_unknown: bool,
    targets: Vec<PlannedTarget>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PlannedTarget {
    label: String,
    spec: String,
    identity: String,
    state_digest: Option<String>,
    changes: Vec<PlannedChange>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PlannedChange {
    key: String,
    op: String,
    /// Fingerprint of the value to write (creates, updates).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    after: Option<String>,
}

fn describe(outcome: &SyncOutcome, scope: &Scope, key: &FingerprintKey) -> PlanFile {
    PlanFile {
        version: VERSION,
        created_at: now_rfc3339(),
        source: outcome.source.to_string(),
        source_digest: outcome.source_digest.to_hex(),
        include_prefixes: scope.include_prefixes.clone(),
        exclude_prefixes: scope.exclude_prefixes.clone(),
        allow_deletions: scope.allow_deletions,
        skip_unknown: scope.unknown == bridge_operations::UnknownPolicy::Report,
        targets: outcome
            .targets
            .iter()
            .map(|t| PlannedTarget {
                label: t.label.clone(),
                spec: t.spec.to_string(),
                identity: t.identity.clone(),
                state_digest: t.state_digest.map(|d| d.to_hex()),
                changes: t
                    .plan
                    .iter()
                    .flat_map(|p| p.writes())
                    .map(|op| PlannedChange {
                        key: op.key.clone(),
                        op: op.op_name().into(),
                        after: match op.change {
                            Change::Delete => None,
                            _ => op.after.as_ref().map(|v| key.fingerprint(v).to_hex()),
                        },
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Writes the plan; exits 0 once written, or with `detailed` 1 when it has changes.
pub async fn plan(ctx: &Context<'_>, args: &SyncArgs, out: &Path, detailed: bool) -> CmdResult {
    let source = ctx.source_spec(args.from.as_deref())?;
    let targets = ctx.target_specs(args.target.as_deref())?;
    let scope = Scope {
        unknown: args.unknown.into(),
        ..sync::configured_scope(ctx)
    };
    let outcome = sync::execute(ctx, source, targets, &scope, Options::diff(), None).await?;
    if let Some((t, e)) = outcome.failures().next() {
        return Err(Failure {
            code: code_of(e),
            error: anyhow!("planning {}: {e}; no plan written", t.spec),
        });
    }
    let key = ctx.fingerprint_key()?;
    let file = describe(&outcome, &scope, &key);
    let mut text = serde_json::to_string_pretty(&file).context("encoding the plan")?;
    text.push('\n');
    write_atomically(out, text.as_bytes())
        .map_err(|e| Failure::platform(e, format!("writing {}", out.display())))?;
    let code = sync::report(ctx, &outcome, Options::diff())?;
    ctx.shell
        .status("Wrote", format!("plan to {}", out.display()));
    // The report says 1 for changes (a diff's answer); a plan written is a success unless the
    // caller asked for the detailed answer. Input and platform errors keep 2 and 3.
    Ok(if detailed || code > Code::Drift {
        code
    } else {
        Code::Ok
    })
}

pub async fn apply(ctx: &Context<'_>, path: &Path, force: bool, yes: bool) -> CmdResult {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan {}", path.display()))?;
    let saved: PlanFile = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: not a plan written by `genesisctl env plan`: {e}",
            path.display()
        )
    })?;
    if saved.version != VERSION {
        return Err(anyhow!(
            "{}: plan version {} is not supported (this genesisctl writes version {VERSION})",
            path.display(),
            saved.version
        )
        .into());
    }
    let source: PlatformSpec = saved
        .source
        .parse()
        .map_err(|e| anyhow!("{}: source: {e}", path.display()))?;
    let targets: Vec<PlatformSpec> = saved
        .targets
        .iter()
        .map(|t| t.spec.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: target: {e}", path.display()))?;
    let scope = Scope {
        include_prefixes: saved.include_prefixes.clone(),
        exclude_prefixes: saved.exclude_prefixes.clone(),
        allow_deletions: saved.allow_deletions,
        unknown: if saved.skip_unknown {
            bridge_operations::UnknownPolicy::Report
        } else {
            bridge_operations::UnknownPolicy::Write
        },
    };

    // Plan again, and compare everything but the time.
    let key = ctx.fingerprint_key()?;
    let now = sync::execute(
        ctx,
        source.clone(),
        targets.clone(),
        &scope,
        Options::diff(),
        None,
    )
    .await?;
    let fresh = describe(&now, &scope, &key);
    if let Some(why) = staleness(&saved, &fresh) {
        ctx.shell.error(format!(
            "the plan in {} is stale: {why}; nothing was written. Make a new plan with `genesisctl env plan`",
            path.display()
        ));
        return Ok(Code::Drift);
    }
    let options = Options {
        dry_run: false,
        force,
        allow_empty_source: false,
        yes,
    };
    sync::apply(ctx, source, targets, &scope, options).await
}

/// Why a saved plan no longer describes what applying it would do, if it doesn't.
fn staleness(saved: &PlanFile, fresh: &PlanFile) -> Option<String> {
    if saved.source_digest != fresh.source_digest {
        return Some(format!(
            "the source {} changed since it was planned",
            saved.source
        ));
    }
    for (a, b) in saved.targets.iter().zip(&fresh.targets) {
        if a.state_digest != b.state_digest {
            return Some(format!("{} changed since it was planned", a.spec));
        }
        if a.changes != b.changes {
            return Some(format!("the changes planned for {} differ now", a.spec));
        }
    }
    if saved.targets.len() != fresh.targets.len() {
        return Some("the targets differ".into());
    }
    None
}
