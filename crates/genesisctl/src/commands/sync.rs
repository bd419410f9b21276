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

pub async fn run(ctx: &Context<'_>, args: &SyncArgs, options: Options) -> CmdResult {
    let source_spec = ctx.source_spec(args.from.as_deref())?;
    let target_specs = ctx.target_specs(args.target.as_deref())?;
    let to_process = target_specs.iter().any(|s| s.kind == PlatformKind::Process);
    if to_process && ctx.shell.is_json() {
        return Err(anyhow!(
            "a process target prints shell lines on stdout, which --output json keeps for JSON; \
             drop one of them"
        )
        .into());
    }

    let source = ctx.open(&source_spec)?;
    let targets = ctx.targets(&target_specs)?;

    let key = ctx.fingerprint_key();
    let cfg = &ctx.config.sync;
    let job = SyncJob {
        source,
        targets,
        options: SyncOptions {
            mode: if options.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply
            },
            diff: DiffOptions {
                filter: ctx.filter(),
                deletions: if cfg.allow_deletions {
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
            fingerprints: Some(key.clone()),
        },
    };
    let outcome = bridge_sync::run(job).await.map_err(|e| match e {
        SyncError::Source { source, spec } => {
            Failure::platform(source, format!("reading the source {spec}"))
        }
        other => Failure::from(anyhow::Error::new(other)),
    })?;

    let classifier = ctx.classifier();
    let redactor = Redactor {
        classifier: &classifier,
        key: &key,
    };
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&sync_report(&outcome, options.dry_run, &redactor))
            .map_err(anyhow::Error::from)?;
    } else {
        let text = sync_text(&outcome, &redactor);
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
            TargetStatus::Planned | TargetStatus::Refused(_) => Code::Drift,
            TargetStatus::Failed(e) => code_of(e),
        };
        code = code.max(this);
    }
    Ok(code)
}
