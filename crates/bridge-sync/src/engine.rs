//! [`run`]: one sync from a source to its targets.

use std::sync::Arc;

use bridge_core::diff::{DeletionGuard, DeletionRefused, DiffOptions, SyncPlan, diff};
use bridge_core::{EnvSet, FingerprintKey};
use bridge_platforms::{Platform, PlatformError, PlatformSpec};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan only; write nothing.
    DryRun,
    /// Plan, then apply.
    Apply,
}

#[derive(Clone)]
pub struct Target {
    pub label: String,
    pub platform: Arc<dyn Platform>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .field("spec", &self.platform.spec().to_string())
            .finish()
    }
}

#[derive(Clone)]
pub struct SyncOptions {
    pub mode: Mode,
    pub diff: DiffOptions,
    /// `None` when `--force` lifts the deletion guard.
    pub guard: Option<DeletionGuard>,
    /// Proceed even when the source holds no key in scope.
    pub allow_empty_source: bool,
    /// Judges write-only values.
    pub fingerprints: Option<FingerprintKey>,
}

pub struct SyncJob {
    pub source: Arc<dyn Platform>,
    pub targets: Vec<Target>,
    pub options: SyncOptions,
}

pub struct SyncOutcome {
    pub source: PlatformSpec,
    /// How many keys in scope the source held.
    pub source_len: usize,
    /// One per target, in the order given.
    pub targets: Vec<TargetOutcome>,
}

pub struct TargetOutcome {
    pub label: String,
    pub spec: PlatformSpec,
    /// The plan, once the target could be read.
    pub plan: Option<SyncPlan>,
    pub status: TargetStatus,
}

#[derive(Debug)]
pub enum TargetStatus {
    /// Nothing to write.
    InSync,
    /// Changes found; a dry run writes nothing.
    Planned,
    Applied {
        writes: usize,
    },
    /// The deletion guard stopped the plan before any write.
    Refused(DeletionRefused),
    Failed(PlatformError),
}

impl SyncOutcome {
    /// Whether some target has changes that were not applied (dry run, refusal, failure).
    pub fn has_pending_changes(&self) -> bool {
        self.targets.iter().any(|t| {
            matches!(
                t.status,
                TargetStatus::Planned | TargetStatus::Refused(_) | TargetStatus::Failed(_)
            )
        })
    }

    pub fn failures(&self) -> impl Iterator<Item = (&TargetOutcome, &PlatformError)> {
        self.targets.iter().filter_map(|t| match &t.status {
            TargetStatus::Failed(e) => Some((t, e)),
            _ => None,
        })
    }
}

/// Failures that stop the whole sync before any target is touched.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the source {spec}: {source}")]
    Source {
        spec: PlatformSpec,
        #[source]
        source: PlatformError,
    },
    #[error(
        "the source {spec} holds no variables{scope}; refusing to sync from it (a sync from an \
         empty source would clear every target). Check the source, or pass --allow-empty-source"
    )]
    EmptySource { spec: PlatformSpec, scope: String },
    #[error("{spec} is both the source and a target")]
    SourceIsTarget { spec: PlatformSpec },
}

pub async fn run(job: SyncJob) -> Result<SyncOutcome, SyncError> {
    let source_spec = job.source.spec().clone();
    if let Some(t) = job
        .targets
        .iter()
        .find(|t| same_place(t.platform.spec(), &source_spec))
    {
        return Err(SyncError::SourceIsTarget {
            spec: t.platform.spec().clone(),
        });
    }
    let mut source: EnvSet = job
        .source
        .load()
        .await
        .map_err(|source| SyncError::Source {
            spec: source_spec.clone(),
            source,
        })?;
    source.retain(|k| job.options.diff.filter.allows(k));
    if source.is_empty() && !job.options.allow_empty_source {
        let scope = if job.options.diff.filter.is_everything() {
            String::new()
        } else {
            " that pass the include/exclude prefixes".into()
        };
        return Err(SyncError::EmptySource {
            spec: source_spec,
            scope,
        });
    }
    let source = Arc::new(source);

    // Targets are independent: work them side by side, and let one failing target not stop
    // the others.
    let mut tasks = JoinSet::new();
    for (index, target) in job.targets.iter().cloned().enumerate() {
        let source = Arc::clone(&source);
        let options = job.options.clone();
        tasks.spawn(async move { (index, sync_target(target, &source, &options).await) });
    }
    let mut outcomes: Vec<Option<TargetOutcome>> = job.targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, outcome)) => outcomes[index] = Some(outcome),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(SyncOutcome {
        source: source_spec,
        source_len: source.len(),
        targets: outcomes.into_iter().flatten().collect(),
    })
}

async fn sync_target(target: Target, source: &EnvSet, options: &SyncOptions) -> TargetOutcome {
    let spec = target.platform.spec().clone();
    let outcome = |plan, status| TargetOutcome {
        label: target.label.clone(),
        spec: spec.clone(),
        plan,
        status,
    };
    let observed = match target.platform.read().await {
        Ok(observed) => observed,
        Err(e) => return outcome(None, TargetStatus::Failed(e)),
    };
    let plan = diff(
        source,
        &observed,
        &options.diff,
        options.fingerprints.as_ref(),
    );
    if !plan.has_writes() {
        return outcome(Some(plan), TargetStatus::InSync);
    }
    if let Some(guard) = &options.guard
        && let Err(refused) = guard.check(&plan)
    {
        return outcome(Some(plan), TargetStatus::Refused(refused));
    }
    if options.mode == Mode::DryRun {
        return outcome(Some(plan), TargetStatus::Planned);
    }
    let status = match target.platform.apply(&plan).await {
        Ok(report) => TargetStatus::Applied {
            writes: report.writes,
        },
        Err(e) => TargetStatus::Failed(e),
    };
    outcome(Some(plan), status)
}

fn same_place(a: &PlatformSpec, b: &PlatformSpec) -> bool {
    if a.kind != b.kind || a.options != b.options {
        return false;
    }
    match (&a.path, &b.path) {
        (Some(pa), Some(pb)) => {
            pa == pb
                || matches!(
                    (std::fs::canonicalize(pa), std::fs::canonicalize(pb)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        (None, None) => true,
        _ => false,
    }
}
