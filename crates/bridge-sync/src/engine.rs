//! [`run`]: one sync from a source to its targets, always in this order, so that no write
//! happens before its journal entry and an interrupted apply can be resumed or rolled back:
//! plan every target → journal the plan and the pre-images → apply op by op, each marked
//! done as the platform confirms it → record what was written → verify.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bridge_core::diff::{
    Change, DeletionGuard, DeletionRefused, DiffOptions, Observed, ObservedSet, PlanOp, SkipReason,
    SyncPlan, WriteOnlyState, diff,
};
use bridge_core::{EnvSet, Fingerprint, FingerprintKey, SecretValue};
use bridge_platforms::{
    ApplyProgress, Image, Platform, PlatformError, PlatformSpec, RemoteSet, RemoteValue,
    RuleViolation, WriteRequest,
};
use tokio::task::JoinSet;

use crate::store::{
    JournalId, JournalOp, JournalState, JournalTarget, Landed, PreImage, StateStore, StoreError,
    WriteRecord,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan only; write nothing.
    DryRun,
    /// Plan, then apply.
    Apply,
}

impl Mode {
    /// The words `ENVSYNC_MODE` and the API use: `dry-run` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Apply => "enforce",
        }
    }
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
    /// Judges write-only values and fingerprints what is written.
    pub fingerprints: FingerprintKey,
    /// Keys never written on any target.
    pub protect: Vec<String>,
}

/// What keeps an apply the only writer of its places (its locks), asked each time the
/// platform confirms an op: an apply whose fence no longer stands stops before its next write.
#[async_trait::async_trait]
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// `Err` says what was lost.
    async fn check(&self) -> Result<(), String>;
}

/// Told how far each target's apply has got (label, ops done, ops planned); the CLI draws a
/// progress line from it.
pub type ProgressObserver = Arc<dyn Fn(&str, usize, usize) + Send + Sync>;

pub struct SyncJob {
    pub source: Arc<dyn Platform>,
    pub targets: Vec<Target>,
    pub options: SyncOptions,
    pub observer: Option<ProgressObserver>,
    /// Where fingerprints, ownership and journals live. Without one (tests, a read-only
    /// checkout) nothing is journalled and write-only values stay unknown.
    pub store: Option<Arc<StateStore>>,
    /// The apply's locks; `None` where nothing else can write (tests).
    pub fence: Option<Arc<dyn Fence>>,
}

pub struct SyncOutcome {
    pub source: PlatformSpec,
    /// A keyed digest of the source's keys and values in scope: equal digests, equal sources.
    pub source_digest: Fingerprint,
    /// How many keys in scope the source held.
    pub source_len: usize,
    /// One per target, in the order given.
    pub targets: Vec<TargetOutcome>,
    /// The journal of this apply, if it wrote anything.
    pub journal: Option<JournalId>,
}

pub struct TargetOutcome {
    pub label: String,
    pub spec: PlatformSpec,
    pub identity: String,
    /// A keyed digest of what the target held when planned (values, or stamps of
    /// write-only values); a saved plan is applied only if it still matches.
    pub state_digest: Option<Fingerprint>,
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
    /// Written, and a fresh read agreed with the source.
    Applied {
        writes: usize,
    },
    /// Written, but a fresh read still differs: someone else is writing too, or the
    /// platform did not keep what it acknowledged.
    Unverified {
        writes: usize,
        remaining: Vec<String>,
    },
    /// The deletion guard stopped the plan before any write.
    Refused(DeletionRefused),
    /// The platform's own rules would refuse some writes; nothing was written.
    Rejected(Vec<RuleViolation>),
    Failed(PlatformError),
}

impl SyncOutcome {
    /// Whether some target has changes that were not applied (dry run, refusal, failure).
    pub fn has_pending_changes(&self) -> bool {
        self.targets.iter().any(|t| {
            !matches!(
                t.status,
                TargetStatus::InSync | TargetStatus::Applied { .. }
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

/// Failures that stop the whole sync.
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
    #[error(
        "journal {journal} left unfinished writes on {spec}; nothing was written. Finish them \
         with `genesisctl env resume`, or give them up with `genesisctl env resume --discard \
         {journal}`, then sync again"
    )]
    Unfinished { journal: JournalId, spec: String },
    #[error(
        "journal {journal}: {spec} changed since the journal was written ({why}); resuming \
         would write an older plan over it, so nothing was written. Give it up with \
         `genesisctl env resume --discard {journal}`, then sync again"
    )]
    StaleJournal {
        journal: JournalId,
        spec: String,
        why: String,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Turns what a platform holds into what the diff compares, using our write records for
/// write-only values.
pub fn observe(remote: &RemoteSet, records: &BTreeMap<String, WriteRecord>) -> ObservedSet {
    remote
        .iter()
        .map(|(key, value)| {
            let observed = match value {
                RemoteValue::Readable(v) => Observed::Value(v.clone()),
                RemoteValue::WriteOnly { updated_at } => {
                    let record = records.get(key);
                    Observed::WriteOnly(WriteOnlyState {
                        recorded: record.map(|r| r.fingerprint),
                        // A stamp other than the one our write left means someone else wrote.
                        changed_since_record: match (
                            record.and_then(|r| r.updated_at.as_ref()),
                            updated_at,
                        ) {
                            (Some(ours), Some(now)) => ours != now,
                            _ => false,
                        },
                        updated_at: updated_at.clone(),
                    })
                }
            };
            (key.clone(), observed)
        })
        .collect()
}

/// Now, as RFC 3339 UTC to the second: how journals, records and reports stamp time.
pub fn now_rfc3339() -> String {
    bridge_core::time::rfc3339_seconds(time::OffsetDateTime::now_utc())
}

/// A keyed digest of a set: the fingerprint of its sorted `key, fingerprint-or-stamp` lines.
pub fn digest_remote(remote: &RemoteSet, key: &FingerprintKey) -> Fingerprint {
    let mut text = String::new();
    for (k, v) in remote {
        let item = match v {
            RemoteValue::Readable(v) => format!("v:{}", key.fingerprint(v).to_hex()),
            RemoteValue::WriteOnly { updated_at } => {
                format!("w:{}", updated_at.as_deref().unwrap_or("-"))
            }
        };
        text.push_str(k);
        text.push('\0');
        text.push_str(&item);
        text.push('\n');
    }
    key.fingerprint(&SecretValue::new(text))
}

pub fn digest_set(set: &EnvSet, key: &FingerprintKey) -> Fingerprint {
    digest_remote(&bridge_platforms::readable(set), key)
}

/// What phase one found for a target.
struct Planned {
    /// What is reported: the plan, and the status as planned (then as applied).
    outcome: TargetOutcome,
    target: Target,
    remote: Option<RemoteSet>,
}

/// Plans and, unless it is a dry run, applies: [`plan`] then [`PlannedSync::apply`].
pub async fn run(job: SyncJob) -> Result<SyncOutcome, SyncError> {
    plan(job).await?.apply().await
}

/// A sync planned for every target and not yet applied: what [`PlannedSync::outcome`]
/// shows (to print it, or to ask whether to go on) is exactly what
/// [`PlannedSync::apply`] writes.
pub struct PlannedSync {
    job: SyncJob,
    source_spec: PlatformSpec,
    source_digest: Fingerprint,
    source: Arc<EnvSet>,
    planned: Vec<Planned>,
}

impl PlannedSync {
    /// The source planned from.
    pub fn source(&self) -> &PlatformSpec {
        &self.source_spec
    }

    /// Every target's plan, with its status as planned (`Planned` where writes wait).
    pub fn targets(&self) -> impl Iterator<Item = &TargetOutcome> {
        self.planned.iter().map(|p| &p.outcome)
    }

    /// Whether applying would write anything.
    pub fn has_writes(&self) -> bool {
        self.planned
            .iter()
            .any(|p| matches!(p.outcome.status, TargetStatus::Planned))
    }

    /// The plan as the outcome, writing nothing.
    pub fn into_outcome(self) -> SyncOutcome {
        outcome(
            self.source_spec,
            self.source_digest,
            self.source.len(),
            self.planned,
            None,
        )
    }

    /// Journals the plan, then applies it (a dry run returns the plan).
    pub async fn apply(self) -> Result<SyncOutcome, SyncError> {
        let PlannedSync {
            job,
            source_spec,
            source_digest,
            source,
            mut planned,
        } = self;
        let to_apply: Vec<usize> = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.outcome.status, TargetStatus::Planned))
            .map(|(i, _)| i)
            .collect();
        if job.options.mode == Mode::DryRun || to_apply.is_empty() {
            return Ok(outcome(
                source_spec,
                source_digest,
                source.len(),
                planned,
                None,
            ));
        }

        // Phase two: journal every write and its pre-image before the first one.
        let journal = match &job.store {
            Some(store) => {
                let mut entries = Vec::new();
                for &i in &to_apply {
                    entries
                        .push(journal_entry(&planned[i], store, &job.options.fingerprints).await?);
                }
                Some(
                    store
                        .begin(&source_spec.to_string(), &now_rfc3339(), &entries)
                        .await?,
                )
            }
            None => None,
        };
        let all_ok = apply_planned(&job, &source, &mut planned, &to_apply, journal).await?;
        if let (Some(store), Some(id)) = (&job.store, journal) {
            store
                .finish(
                    id,
                    if all_ok {
                        JournalState::Done
                    } else {
                        JournalState::Failed
                    },
                )
                .await?;
        }
        Ok(outcome(
            source_spec,
            source_digest,
            source.len(),
            planned,
            journal,
        ))
    }
}

/// Loads the source and plans every target side by side; writes nothing.
pub async fn plan(job: SyncJob) -> Result<PlannedSync, SyncError> {
    let source_spec = job.source.spec().clone();
    let source_identity = job.source.identity();
    if let Some(t) = job
        .targets
        .iter()
        .find(|t| t.platform.identity() == source_identity || same_file(&*t.platform, &*job.source))
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
    let source_digest = digest_set(&source, &job.options.fingerprints);
    let source = Arc::new(source);
    // An apply over a target with an unfinished journal would race that journal's resume,
    // which would later write its older plan over this one.
    // Planning only reads, so it starts at once; the check for unfinished journals runs
    // beside it, and a refusal drops the planning tasks (which aborts them) before any write.
    let mut tasks = JoinSet::new();
    for (index, target) in job.targets.iter().cloned().enumerate() {
        let source = Arc::clone(&source);
        let options = job.options.clone();
        let store = job.store.clone();
        tasks.spawn(async move {
            (
                index,
                plan_target(target, &source, &options, store.as_deref()).await,
            )
        });
    }
    if job.options.mode == Mode::Apply
        && let Some(store) = &job.store
    {
        let identities: Vec<String> = job.targets.iter().map(|t| t.platform.identity()).collect();
        let found =
            futures_util::future::join_all(identities.iter().map(|id| store.unfinished_on(id)))
                .await;
        for (t, found) in job.targets.iter().zip(found) {
            if let Some(journal) = found? {
                return Err(SyncError::Unfinished {
                    journal,
                    spec: t.platform.spec().to_string(),
                });
            }
        }
    }
    let mut planned: Vec<Option<Planned>> = job.targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, p)) => planned[index] = Some(p?),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(PlannedSync {
        job,
        source_spec,
        source_digest,
        source,
        planned: planned.into_iter().flatten().collect(),
    })
}

/// Phase three: applies side by side, each op marked done when confirmed; returns whether
/// every target was applied. Targets that share a lock scope (two contexts of one Netlify
/// site) write the same variables, so they go one after the other.
async fn apply_planned(
    job: &SyncJob,
    source: &Arc<EnvSet>,
    planned: &mut [Planned],
    to_apply: &[usize],
    journal: Option<JournalId>,
) -> Result<bool, SyncError> {
    let mut by_scope: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in to_apply {
        by_scope
            .entry(planned[i].target.platform.lock_scope())
            .or_default()
            .push(i);
    }
    let mut tasks = JoinSet::new();
    for indices in by_scope.into_values() {
        let work: Vec<_> = indices
            .into_iter()
            .map(|i| {
                let p = &planned[i];
                (
                    i,
                    p.target.clone(),
                    p.outcome.identity.clone(),
                    p.outcome.plan.clone().unwrap_or_default(),
                    p.remote.clone().unwrap_or_default(),
                )
            })
            .collect();
        let store = job.store.clone();
        let options = job.options.clone();
        let source = Arc::clone(source);
        let observer = job.observer.clone();
        let fence = job.fence.clone();
        tasks.spawn(async move {
            let mut statuses = Vec::with_capacity(work.len());
            for (i, target, identity, plan, remote) in work {
                let sinks = Sinks {
                    store: store.as_deref(),
                    journal,
                    observer: observer.clone(),
                    fence: fence.as_deref(),
                };
                let status =
                    apply_target(&target, &identity, &plan, &remote, sinks, &options, &source)
                        .await;
                statuses.push((i, status));
            }
            statuses
        });
    }
    let mut all_ok = true;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(statuses) => {
                for (i, status) in statuses {
                    let status = status?;
                    all_ok &= matches!(status, TargetStatus::Applied { .. });
                    planned[i].outcome.status = status;
                }
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(all_ok)
}

fn outcome(
    source: PlatformSpec,
    source_digest: Fingerprint,
    source_len: usize,
    planned: Vec<Planned>,
    journal: Option<JournalId>,
) -> SyncOutcome {
    SyncOutcome {
        source,
        source_digest,
        source_len,
        targets: planned.into_iter().map(|p| p.outcome).collect(),
        journal,
    }
}

async fn plan_target(
    target: Target,
    source: &EnvSet,
    options: &SyncOptions,
    store: Option<&StateStore>,
) -> Result<Planned, SyncError> {
    let identity = target.platform.identity();
    let planned = |remote: Option<RemoteSet>, plan, status| Planned {
        outcome: TargetOutcome {
            label: target.label.clone(),
            spec: target.platform.spec().clone(),
            identity: identity.clone(),
            state_digest: remote
                .as_ref()
                .map(|r| digest_remote(r, &options.fingerprints)),
            plan,
            status,
        },
        target: target.clone(),
        remote,
    };
    // The platform and the records side by side: on a shared store both are a round trip.
    let records = async {
        match store {
            Some(store) => store.records(&identity).await,
            None => Ok(BTreeMap::new()),
        }
    };
    let (remote, records) = tokio::join!(target.platform.read(), records);
    let remote = match remote {
        Ok(remote) => remote,
        Err(e) => return Ok(planned(None, None, TargetStatus::Failed(e))),
    };
    let records = records?;
    let mut plan = diff(
        source,
        &observe(&remote, &records),
        &options.diff,
        Some(&options.fingerprints),
    );
    hold_back(&mut plan, options, &records, &*target.platform);
    if !plan.has_writes() {
        return Ok(planned(Some(remote), Some(plan), TargetStatus::InSync));
    }
    let violations = target.platform.check_rules(&plan);
    if !violations.is_empty() {
        return Ok(planned(
            Some(remote),
            Some(plan),
            TargetStatus::Rejected(violations),
        ));
    }
    if let Some(guard) = &options.guard
        && let Err(refused) = guard.check(&plan)
    {
        return Ok(planned(
            Some(remote),
            Some(plan),
            TargetStatus::Refused(refused),
        ));
    }
    Ok(planned(Some(remote), Some(plan), TargetStatus::Planned))
}

/// Keeps protected keys, and on platforms keys Bridge did not create, out of the writes.
fn hold_back(
    plan: &mut SyncPlan,
    options: &SyncOptions,
    records: &BTreeMap<String, WriteRecord>,
    platform: &dyn Platform,
) {
    let owned_only = platform.capabilities().ownership_applies;
    plan.hold_back(|op| {
        if options.protect.iter().any(|p| p == &op.key) {
            Some(SkipReason::Protected)
        } else if owned_only && op.change == Change::Delete && !records.contains_key(&op.key) {
            Some(SkipReason::NotOwned)
        } else {
            None
        }
    });
}

/// A digest of what `remote` holds outside the keys `touched`: readable values by
/// fingerprint, write-only ones by presence only (their stamps move with writes to sibling
/// places, as a Netlify variable's do for every context). A resume compares it with the
/// journal's to tell whether someone wrote there since.
pub(crate) fn untouched_digest(
    remote: &RemoteSet,
    touched: &dyn Fn(&str) -> bool,
    key: &FingerprintKey,
) -> String {
    let mut text = String::new();
    for (k, v) in remote.iter().filter(|(k, _)| !touched(k)) {
        let item = match v {
            RemoteValue::Readable(v) => format!("v:{}", key.fingerprint(v).to_hex()),
            RemoteValue::WriteOnly { .. } => "w".to_string(),
        };
        text.push_str(k);
        text.push('\0');
        text.push_str(&item);
        text.push('\n');
    }
    key.fingerprint(&SecretValue::new(text)).to_hex()
}

async fn journal_entry(
    p: &Planned,
    store: &StateStore,
    key: &FingerprintKey,
) -> Result<JournalTarget, StoreError> {
    let remote = p.remote.as_ref();
    let mut ops = Vec::new();
    for op in p.outcome.plan.iter().flat_map(|plan| plan.writes()) {
        let before = match remote.and_then(|r| r.get(&op.key)) {
            None => PreImage::Absent,
            Some(RemoteValue::Readable(v)) => PreImage::Value(v.clone()),
            // Write-only: restorable only if the value there is the one we wrote.
            Some(RemoteValue::WriteOnly { .. }) => match store
                .recorded_value(&p.outcome.identity, &op.key)
                .await?
            {
                Some(v) if op.reason != Some(bridge_core::diff::UpdateReason::ChangedOutOfBand) => {
                    PreImage::Value(v)
                }
                _ => PreImage::Unknown,
            },
        };
        let before_stamp = match remote.and_then(|r| r.get(&op.key)) {
            Some(RemoteValue::WriteOnly { updated_at }) => updated_at.clone(),
            _ => None,
        };
        ops.push(JournalOp {
            key: op.key.clone(),
            change: op.change,
            after: op.after.clone(),
            before,
            before_stamp,
            done: false,
        });
    }
    let untouched = remote.map(|r| {
        untouched_digest(
            r,
            &|k: &str| ops.iter().any(|o: &JournalOp| o.key == k),
            key,
        )
    });
    let image = match remote {
        Some(current) => {
            let writes: Vec<PlanOp> = p
                .outcome
                .plan
                .iter()
                .flat_map(|plan| plan.writes())
                .cloned()
                .collect();
            image_of(&p.target, &writes, current, None).await
        }
        None => None,
    };
    Ok(JournalTarget {
        identity: p.outcome.identity.clone(),
        spec: p.target.platform.spec().to_string(),
        label: p.target.label.clone(),
        state: JournalState::Applying,
        error: None,
        untouched,
        image,
        ops,
    })
}

/// What a place that keeps bytes (a `.env` file) holds and will hold after `ops`, for the
/// journal. A place that cannot tell is still applied to: the apply reports the same
/// failure itself, and a rollback without an image restores the values.
pub(crate) async fn image_of(
    target: &Target,
    ops: &[PlanOp],
    current: &RemoteSet,
    restore: Option<&Image>,
) -> Option<Image> {
    let request = WriteRequest {
        ops,
        current,
        restore,
    };
    target.platform.image(request).await.ok().flatten()
}

/// Marks ops done in the journal as the platform confirms them, remembers which, and tells
/// the observer.
pub(crate) struct JournalProgress<'a> {
    pub(crate) sinks: Sinks<'a>,
    pub(crate) label: &'a str,
    pub(crate) total: usize,
    pub(crate) identity: &'a str,
    /// The ops being applied, by key: what each confirmed one wrote.
    pub(crate) ops: BTreeMap<&'a str, &'a bridge_core::diff::PlanOp>,
    pub(crate) fingerprints: &'a FingerprintKey,
    pub(crate) done: Mutex<Vec<String>>,
    pub(crate) error: Mutex<Option<StoreError>>,
}

#[async_trait::async_trait]
impl ApplyProgress for JournalProgress<'_> {
    async fn applied(&self, keys: &[&str]) -> Result<(), bridge_platforms::Interrupted> {
        let landed: Vec<Landed<'_>> = keys
            .iter()
            .filter_map(|k| {
                let op = self.ops.get(k)?;
                Some(match (&op.change, &op.after) {
                    (Change::Delete, _) | (_, None) => Landed::Deleted { key: k },
                    (_, Some(value)) => Landed::Written {
                        key: k,
                        fingerprint: self.fingerprints.fingerprint(value),
                        value,
                    },
                })
            })
            .collect();
        if let (Some(store), Some(id)) = (self.sinks.store, self.sinks.journal)
            && let Err(e) = store
                .mark_done(id, self.identity, &landed, &now_rfc3339())
                .await
        {
            // Keep the first error for the caller to report, and stop the platform: what it
            // would write next could not be recorded either.
            let stop = bridge_platforms::Interrupted(e.to_string());
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
            return Err(stop);
        }
        // What landed is recorded; with its lock lost, nothing more may be written.
        if let Some(fence) = self.sinks.fence
            && let Err(lost) = fence.check().await
        {
            let stop = bridge_platforms::Interrupted(lost.clone());
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(StoreError::LockLost(lost));
            return Err(stop);
        }
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.extend(keys.iter().map(|k| k.to_string()));
        if let Some(observer) = &self.sinks.observer {
            observer(self.label, done.len(), self.total);
        }
        Ok(())
    }
}

/// Applies `ops`, records what was written, and reports the outcome.
pub(crate) async fn apply_ops(
    target: &Target,
    identity: &str,
    ops: &[PlanOp],
    remote: &RemoteSet,
    restore: Option<&Image>,
    sinks: Sinks<'_>,
    key: &FingerprintKey,
) -> Result<Result<usize, PlatformError>, StoreError> {
    let store = sinks.store;
    // The lock may have been lost since it was taken (a prompt answered late, a session that
    // died while the plan was made): nothing is written without it.
    if let Some(fence) = sinks.fence
        && let Err(lost) = fence.check().await
    {
        return Err(StoreError::LockLost(lost));
    }
    let progress = JournalProgress {
        sinks,
        label: &target.label,
        total: ops.iter().filter(|op| op.change.writes()).count(),
        identity,
        ops: ops.iter().map(|op| (op.key.as_str(), op)).collect(),
        fingerprints: key,
        done: Mutex::new(Vec::new()),
        error: Mutex::new(None),
    };
    let result = target
        .platform
        .apply(
            WriteRequest {
                ops,
                current: remote,
                restore,
            },
            &progress,
        )
        .await;
    if let Some(e) = progress
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(e);
    }
    // Each confirmed op was recorded as it was marked done; the platform's stamps come
    // after the writes.
    if let (Some(store), Ok(report)) = (store, &result) {
        store.set_stamps(identity, &report.stamps, false).await?;
        let platform = &*target.platform;
        for (k, moved) in &report.shared_stamps {
            store
                .advance_shared_stamp(k, &moved.from, &moved.to, |other| {
                    platform.shares_stamps_with(other)
                })
                .await?;
        }
    }
    Ok(result.map(|r| r.writes))
}

/// Where an apply reports: the journal, and whoever watches progress.
#[derive(Clone, Default)]
pub(crate) struct Sinks<'a> {
    pub(crate) store: Option<&'a StateStore>,
    pub(crate) journal: Option<JournalId>,
    pub(crate) observer: Option<ProgressObserver>,
    pub(crate) fence: Option<&'a dyn Fence>,
}

async fn apply_target(
    target: &Target,
    identity: &str,
    plan: &SyncPlan,
    remote: &RemoteSet,
    sinks: Sinks<'_>,
    options: &SyncOptions,
    source: &EnvSet,
) -> Result<TargetStatus, SyncError> {
    let key = &options.fingerprints;
    let (store, journal) = (sinks.store, sinks.journal);
    let writes: Vec<_> = plan.writes().cloned().collect();
    let result = apply_ops(target, identity, &writes, remote, None, sinks, key).await?;
    let status = match result {
        Ok(writes) => verify_applied(target, identity, source, options, store, writes).await?,
        Err(e) => TargetStatus::Failed(e),
    };
    if let (Some(store), Some(id)) = (store, journal) {
        let (state, error) = match &status {
            TargetStatus::Applied { .. } | TargetStatus::Unverified { .. } => {
                (JournalState::Done, None)
            }
            // All or nothing, and it failed: nothing landed, nothing is left to resume.
            TargetStatus::Failed(e) if target.platform.capabilities().atomic_apply => {
                (JournalState::Discarded, Some(e.to_string()))
            }
            TargetStatus::Failed(e) => (JournalState::Failed, Some(e.to_string())),
            _ => (JournalState::Failed, None),
        };
        store
            .finish_target(id, identity, state, error.as_deref())
            .await?;
    }
    Ok(status)
}

/// Reads the target again and diffs: an apply is done only when nothing is left to write.
async fn verify_applied(
    target: &Target,
    identity: &str,
    source: &EnvSet,
    options: &SyncOptions,
    store: Option<&StateStore>,
    writes: usize,
) -> Result<TargetStatus, SyncError> {
    // A target that prints lines for the user's shell (`process`) leaves this process's
    // environment as it was, so there is nothing to read back.
    if target.platform.capabilities().applies_by_printing {
        return Ok(TargetStatus::Applied { writes });
    }
    let remote = match target.platform.read().await {
        Ok(remote) => remote,
        Err(e) => return Ok(TargetStatus::Failed(e)),
    };
    let records = match store {
        Some(store) => store.records(identity).await?,
        None => BTreeMap::new(),
    };
    let mut plan = diff(
        source,
        &observe(&remote, &records),
        &options.diff,
        Some(&options.fingerprints),
    );
    hold_back(&mut plan, options, &records, &*target.platform);
    // Unknown write-only values were left alone on purpose; they are not a failure.
    let remaining: Vec<String> = plan.writes().map(|op| op.key.clone()).collect();
    Ok(if remaining.is_empty() {
        TargetStatus::Applied { writes }
    } else {
        TargetStatus::Unverified { writes, remaining }
    })
}

/// Two platforms that are files at their spec paths, naming the same file.
fn same_file(a: &dyn Platform, b: &dyn Platform) -> bool {
    if !(a.capabilities().same_place_by_path && b.capabilities().same_place_by_path) {
        return false;
    }
    match (&a.spec().path, &b.spec().path) {
        (Some(pa), Some(pb)) => {
            pa == pb
                || matches!(
                    (std::fs::canonicalize(pa), std::fs::canonicalize(pb)),
                    (Ok(x), Ok(y)) if x == y
                )
        }
        _ => false,
    }
}
