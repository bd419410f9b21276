//! `genesisctl env diff` and `env sync`: plan, guard, apply, report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use bridge_operations::{ApplyGate, Origin, SyncRequest};
use bridge_platforms::PlatformKind;
use bridge_sync::{Mode, TargetStatus};

use crate::cli::SyncArgs;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure, code_of};
use crate::present::{Redactor, Stage, plan_text, results_text, sync_report, sync_text};

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
    apply(ctx, source_spec, target_specs, &scope, options).await
}

/// Plans, shows the plan before the first write (and on a terminal asks, unless `--yes`),
/// applies, and reports.
pub async fn apply(
    ctx: &Context<'_>,
    source_spec: bridge_platforms::PlatformSpec,
    target_specs: Vec<bridge_platforms::PlatformSpec>,
    scope: &Scope,
    options: Options,
) -> CmdResult {
    let gate = match options.dry_run {
        true => None,
        false => Some(Arc::new(PlanGate::new(ctx, options.yes)?)),
    };
    let as_gate = gate.clone().map(|g| g as Arc<dyn ApplyGate>);
    let outcome = execute(ctx, source_spec, target_specs, scope, options, as_gate).await?;
    let Some(gate) = gate else {
        return report(ctx, &outcome, options);
    };
    if gate.declined.load(Ordering::SeqCst) {
        ctx.shell.status("Not applied", "nothing was written");
        return Ok(Code::Drift);
    }
    if gate.shown.load(Ordering::SeqCst) && !ctx.shell.is_json() {
        // The changes were printed before the writes; now what became of them.
        let text = results_text(&outcome);
        if writes_to_process(&outcome) {
            ctx.shell.print_to_stderr(&text);
        } else {
            ctx.shell.print(&text).map_err(anyhow::Error::from)?;
        }
        return Ok(exit_code(&outcome));
    }
    report(ctx, &outcome, options)
}

/// Shows the plan once it is made and before any write; on a terminal, asks.
struct PlanGate {
    shell: crate::shell::Shell,
    key: bridge_core::FingerprintKey,
    classifier: bridge_core::SecretClassifier,
    ask: bool,
    shown: AtomicBool,
    declined: AtomicBool,
}

impl PlanGate {
    fn new(ctx: &Context<'_>, yes: bool) -> anyhow::Result<Self> {
        Ok(Self {
            shell: ctx.shell.clone(),
            key: ctx.fingerprint_key()?,
            classifier: ctx.classifier(),
            ask: !yes && ctx.shell.interactive(),
            shown: AtomicBool::new(false),
            declined: AtomicBool::new(false),
        })
    }
}

impl ApplyGate for PlanGate {
    fn approve(&self, plan: &bridge_operations::PlannedSync) -> bool {
        // JSON keeps stdout for the one report, which holds the plan.
        if self.shell.is_json() {
            return true;
        }
        let redactor = Redactor {
            classifier: &self.classifier,
            key: &self.key,
        };
        let text = plan_text(plan.source(), plan.targets(), &redactor, Stage::BeforeApply);
        let to_process = plan.targets().any(|t| t.spec.kind == PlatformKind::Process);
        if to_process {
            // stdout belongs to the export lines that the user evals.
            self.shell.print_to_stderr(&text);
        } else if self.shell.print(&text).is_err() {
            return false;
        }
        self.shown.store(true, Ordering::SeqCst);
        if !self.ask {
            return true;
        }
        // A person answering: this thread waits, and nothing else of this command runs.
        let yes = self.shell.confirm("Apply these changes?").unwrap_or(false);
        self.declined.store(!yes, Ordering::SeqCst);
        yes
    }
}

fn writes_to_process(outcome: &bridge_sync::SyncOutcome) -> bool {
    outcome
        .targets
        .iter()
        .any(|t| t.spec.kind == PlatformKind::Process)
}

/// Runs a sync (or a dry run) through the operations layer and returns what happened,
/// without printing.
pub async fn execute(
    ctx: &Context<'_>,
    source_spec: bridge_platforms::PlatformSpec,
    target_specs: Vec<bridge_platforms::PlatformSpec>,
    scope: &Scope,
    options: Options,
    gate: Option<Arc<dyn ApplyGate>>,
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
        gate,
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
    let key = ctx.fingerprint_key()?;
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

    Ok(exit_code(outcome))
}

/// The exit code of an outcome: the worst of its targets'.
pub fn exit_code(outcome: &bridge_sync::SyncOutcome) -> Code {
    let mut code = Code::Ok;
    for t in &outcome.targets {
        let this = match &t.status {
            TargetStatus::InSync | TargetStatus::Applied { .. } => Code::Ok,
            // Not applied, whether a guard refused the plan or the platform's rules would:
            // the output names the guard or the rule.
            // A value no form can write (a `.env` value its readers would read differently)
            // is the input's fault: exit 2.
            TargetStatus::Rejected(v) if v.iter().any(|v| v.unwritable) => Code::Input,
            TargetStatus::Planned
            | TargetStatus::Refused(_)
            | TargetStatus::Rejected(_)
            | TargetStatus::Unverified { .. } => Code::Drift,
            TargetStatus::Failed(e) => code_of(e),
        };
        code = code.max(this);
    }
    code
}
