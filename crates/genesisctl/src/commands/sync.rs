//! `genesisctl env diff` and `env sync`: plan, guard, apply, report.

use anyhow::anyhow;
use bridge_core::diff::{DeletionGuard, Deletions, DiffOptions, UnknownPolicy};
use bridge_platforms::PlatformKind;
use bridge_sync::{Mode, SyncError, SyncJob, SyncOptions, TargetStatus};

use crate::cli::SyncArgs;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure, code_of};
use crate::present::{Redactor, sync_report, sync_text};

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub allow_empty_source: bool,
}

impl Options {
    pub fn diff() -> Self {
        Self {
            dry_run: true,
            force: false,
            allow_empty_source: false,
        }
    }
}

/// Which keys a sync looks at and whether it may delete: from configuration and flags, or
/// from a saved plan.
#[derive(Debug, Clone)]
pub struct Scope {
    pub include_prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
    pub allow_deletions: bool,
}

impl Scope {
    pub fn from_config(ctx: &Context<'_>) -> Self {
        let cfg = &ctx.config.sync;
        Self {
            include_prefixes: cfg.include_prefixes.clone(),
            exclude_prefixes: cfg.exclude_prefixes.clone(),
            allow_deletions: cfg.allow_deletions,
        }
    }
}

pub async fn run(ctx: &Context<'_>, args: &SyncArgs, options: Options) -> CmdResult {
    let source_spec = ctx.source_spec(args.from.as_deref())?;
    let target_specs = ctx.target_specs(args.target.as_deref())?;
    let scope = Scope::from_config(ctx);
    let outcome = execute(ctx, source_spec, target_specs, &scope, options).await?;
    report(ctx, &outcome, options)
}

/// Runs a sync (or a dry run) and returns what happened, without printing.
pub async fn execute(
    ctx: &Context<'_>,
    source_spec: bridge_platforms::PlatformSpec,
    target_specs: Vec<bridge_platforms::PlatformSpec>,
    scope: &Scope,
    options: Options,
) -> Result<bridge_sync::SyncOutcome, Failure> {
    let to_process = target_specs.iter().any(|s| s.kind == PlatformKind::Process);
    if to_process && ctx.shell.is_json() {
        return Err(anyhow!(
            "a process target prints shell lines on stdout, which --output json keeps for JSON; \
             drop one of them"
        )
        .into());
    }

    let source = ctx.place(&source_spec).await?.platform;
    let targets = ctx.places(&target_specs).await?;

    let key = ctx.fingerprint_key();
    // A dry run reads the records that judge write-only values but creates no store.
    let store = if options.dry_run {
        ctx.state.existing_store()?
    } else {
        Some(ctx.state.store()?)
    };
    let cfg = &ctx.config.sync;
    let progress = if options.dry_run {
        None
    } else {
        ctx.shell.progress()
    };
    let observer: Option<bridge_sync::ProgressObserver> = progress.clone().map(|p| {
        std::sync::Arc::new(move |label: &str, done: usize, total: usize| {
            p.update(label, done, total)
        }) as bridge_sync::ProgressObserver
    });
    let job = SyncJob {
        observer,
        source,
        targets,
        store: store.map(std::sync::Arc::new),
        options: SyncOptions {
            mode: if options.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply
            },
            diff: DiffOptions {
                filter: bridge_core::filter::KeyFilter::new(
                    scope.include_prefixes.clone(),
                    scope.exclude_prefixes.clone(),
                )
                .ignoring(cfg.ignore.clone()),
                deletions: if scope.allow_deletions {
                    Deletions::Allow
                } else {
                    Deletions::Keep
                },
                unknown: UnknownPolicy::Report,
            },
            guard: (!options.force).then_some(DeletionGuard {
                max_share: cfg.max_delete_share,
            }),
            allow_empty_source: options.allow_empty_source,
            fingerprints: key.clone(),
            protect: cfg.protect.clone(),
        },
    };
    if !options.dry_run
        && let Err(e) = publish_init(ctx, &job).await
    {
        ctx.shell
            .warn(format!("could not publish envsync.init: {e:#}"));
    }
    let outcome = bridge_sync::run(job).await;
    if let Some(p) = &progress {
        p.finish();
    }
    if let Ok(outcome) = &outcome
        && !options.dry_run
        && let Err(e) = publish_outcome(ctx, outcome, &key).await
    {
        // The writes happened; say loudly that their record did not.
        ctx.shell.warn(format!(
            "the sync was applied but not published or recorded in the ledger: {e:#}"
        ));
    }
    outcome.map_err(|e| match e {
        SyncError::Source { source, spec } => {
            Failure::platform(source, format!("reading the source {spec}"))
        }
        other => Failure::from(anyhow::Error::new(other)),
    })
}

/// `envsync.init`: a sync that may write is starting.
async fn publish_init(ctx: &Context<'_>, job: &SyncJob) -> anyhow::Result<()> {
    let bus = crate::genesis::open_bus(ctx).await?;
    let targets: Vec<String> = job
        .targets
        .iter()
        .map(|t| t.platform.spec().to_string())
        .collect();
    crate::genesis::publish(
        &bus,
        "envsync.init",
        serde_json::json!({
            "source": job.source.spec().to_string(),
            "targets": targets,
            "mode": "enforce",
        }),
    )
    .await?;
    Ok(())
}

/// Publishes what an applied sync did on the bus — `envsync.commit` per target written,
/// `envsync.error` per target that failed or was refused, then `envsync.complete` — with keys,
/// operations and fingerprints, never a value; then lets the ledger record them.
async fn publish_outcome(
    ctx: &Context<'_>,
    outcome: &bridge_sync::SyncOutcome,
    key: &bridge_core::FingerprintKey,
) -> anyhow::Result<()> {
    let bus = crate::genesis::open_bus(ctx).await?;
    let source = outcome.source.to_string();
    let journal = outcome.journal.map(|j| j.0);
    let (mut applied, mut failed) = (0, 0);
    for t in &outcome.targets {
        let changes: Vec<serde_json::Value> = t
            .plan
            .iter()
            .flat_map(|p| p.writes())
            .map(|op| {
                serde_json::json!({
                    "key": op.key,
                    "op": op.change.as_str(),
                    "fingerprint": op.after.as_ref().map(|v| key.fingerprint(v).to_hex()),
                })
            })
            .collect();
        let (topic, status, error) = match &t.status {
            TargetStatus::InSync | TargetStatus::Planned => continue,
            TargetStatus::Applied { .. } => ("envsync.commit", "applied", None),
            TargetStatus::Unverified { remaining, .. } => (
                "envsync.commit",
                "unverified",
                Some(format!(
                    "still differs after writing: {}",
                    remaining.join(", ")
                )),
            ),
            TargetStatus::Refused(e) => ("envsync.error", "refused", Some(e.to_string())),
            TargetStatus::Rejected(v) => (
                "envsync.error",
                "rejected",
                Some(
                    v.iter()
                        .map(|v| format!("{}: {}", v.key, v.rule))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
            TargetStatus::Failed(e) => ("envsync.error", "failed", Some(e.to_string())),
        };
        if topic == "envsync.commit" {
            applied += 1;
        } else {
            failed += 1;
        }
        crate::genesis::publish(
            &bus,
            topic,
            serde_json::json!({
                "source": source,
                "target": t.spec.to_string(),
                "identity": t.identity,
                "status": status,
                "error": error,
                "journal": journal,
                "changes": changes,
            }),
        )
        .await?;
    }
    if applied + failed > 0 {
        crate::genesis::publish(
            &bus,
            "envsync.complete",
            serde_json::json!({
                "source": source,
                "targets": outcome.targets.len(),
                "applied": applied,
                "failed": failed,
                "journal": journal,
            }),
        )
        .await?;
    }
    crate::genesis::record_in_ledger(ctx, &bus).await?;
    Ok(())
}

/// Prints an outcome and picks the exit code.
pub fn report(
    ctx: &Context<'_>,
    outcome: &bridge_sync::SyncOutcome,
    options: Options,
) -> CmdResult {
    let to_process = outcome
        .targets
        .iter()
        .any(|t| t.spec.kind == PlatformKind::Process);
    let key = ctx.fingerprint_key();
    let classifier = ctx.classifier();
    let redactor = Redactor {
        classifier: &classifier,
        key: &key,
    };
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&sync_report(outcome, options.dry_run, &redactor))
            .map_err(anyhow::Error::from)?;
    } else {
        let text = sync_text(outcome, &redactor);
        if to_process {
            // stdout belongs to the export lines that the user evals.
            ctx.shell.print_to_stderr(&text);
        } else {
            ctx.shell.print(&text).map_err(anyhow::Error::from)?;
        }
    }

    let mut code = Code::Ok;
    for t in &outcome.targets {
        let this = match &t.status {
            TargetStatus::InSync | TargetStatus::Applied { .. } => Code::Ok,
            TargetStatus::Planned | TargetStatus::Refused(_) | TargetStatus::Unverified { .. } => {
                Code::Drift
            }
            TargetStatus::Rejected(_) => Code::Input,
            TargetStatus::Failed(e) => code_of(e),
        };
        code = code.max(this);
    }
    Ok(code)
}
