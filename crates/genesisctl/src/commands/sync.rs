//! `genesisctl env diff` and `env sync`: plan, guard, apply, report.

use anyhow::anyhow;
use bridge_operations::{Origin, SyncRequest};
use bridge_platforms::PlatformKind;
use bridge_sync::{Mode, TargetStatus};

use crate::cli::SyncArgs;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure, code_of};
use crate::present::{Redactor, sync_report, sync_text};

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub allow_empty_source: bool,
    /// Write without asking, even on a terminal.
    pub yes: bool,
}

impl Options {
    pub fn diff() -> Self {
        Self {
            dry_run: true,
            force: false,
            allow_empty_source: false,
            yes: false,
        }
    }
}

/// Which keys a sync looks at and whether it may delete: from configuration and flags, or
/// from a saved plan.
pub use bridge_operations::Scope;

/// The configured scope.
pub fn configured_scope(ctx: &Context<'_>) -> Scope {
    let cfg = &ctx.config.sync;
    Scope {
        include_prefixes: cfg.include_prefixes.clone(),
        exclude_prefixes: cfg.exclude_prefixes.clone(),
        allow_deletions: cfg.allow_deletions,
        unknown: bridge_operations::UnknownPolicy::default(),
    }
}

pub async fn run(ctx: &Context<'_>, args: &SyncArgs, options: Options) -> CmdResult {
    let source_spec = ctx.source_spec(args.from.as_deref())?;
    let target_specs = ctx.target_specs(args.target.as_deref())?;
    let scope = Scope {
        unknown: args.unknown.into(),
        ..configured_scope(ctx)
    };
    if !options.dry_run && !options.yes && ctx.shell.interactive() {
        // A person is there: show the plan, then ask before the first write.
        let preview = Options {
            dry_run: true,
            ..options
        };
        let planned = execute(
            ctx,
            source_spec.clone(),
            target_specs.clone(),
            &scope,
            preview,
        )
        .await?;
        let code = report(ctx, &planned, preview)?;
        if !has_writes(&planned) {
            return Ok(code);
        }
        if !ctx
            .shell
            .confirm("Apply these changes?")
            .map_err(anyhow::Error::from)?
        {
            ctx.shell.status("Not applied", "nothing was written");
            return Ok(Code::Drift);
        }
    }
    let outcome = execute(ctx, source_spec, target_specs, &scope, options).await?;
    report(ctx, &outcome, options)
}

/// Whether a dry run found anything to write.
pub fn has_writes(outcome: &bridge_sync::SyncOutcome) -> bool {
    outcome
        .targets
        .iter()
        .any(|t| matches!(t.status, TargetStatus::Planned))
}

/// Runs a sync (or a dry run) through the operations layer and returns what happened,
/// without printing.
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
    let request = SyncRequest {
        source: source_spec,
        targets: target_specs,
        mode: if options.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        },
        scope: scope.clone(),
        force: options.force,
        allow_empty_source: options.allow_empty_source,
        origin: Origin::Cli,
        progress: observer,
    };
    let outcome = ctx.operations()?.sync(request).await;
    if let Some(p) = &progress {
        p.finish();
    }
    Ok(outcome?)
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
            // Not applied, whether a guard refused the plan or the platform's rules would:
            // the output names the guard or the rule.
            TargetStatus::Planned
            | TargetStatus::Refused(_)
            | TargetStatus::Rejected(_)
            | TargetStatus::Unverified { .. } => Code::Drift,
            TargetStatus::Failed(e) => code_of(e),
        };
        code = code.max(this);
    }
    Ok(code)
}
