//! Finishing and undoing applies from their journals.
//!
//! [`resume`] takes the newest journal that did not finish and applies, per target, the ops
//! not yet marked done — never one that was — against what the target holds now.
//! [`rollback`] takes the newest journal that wrote to a target (or a given one) and
//! restores every op that was done to its pre-image: a created key is deleted, an updated
//! or deleted key gets its old value back. A write-only value Bridge never wrote cannot be
//! restored; it is reported, not guessed. A rollback is itself an apply: it is journalled
//! (with its own pre-images) before its first write, so a crash mid-way can be resumed, and
//! the next rollback undoes it — rolling back twice returns to where you started, never
//! further back than the caller asks with `to`.

use bridge_core::FingerprintKey;
use bridge_core::diff::{Change, DeletionGuard, DeletionRefused, PlanOp, SyncPlan};
use bridge_platforms::{PlatformError, RemoteValue};

use crate::engine::{Sinks, apply_ops};
use crate::store::{
    Journal, JournalId, JournalOp, JournalState, JournalTarget, PreImage, StateStore, StoreError,
};
use crate::{Mode, SyncError, Target};

/// What a resume or rollback did.
#[derive(Debug)]
pub struct RecoveryOutcome {
    /// The journal resumed or undone.
    pub journal: JournalId,
    /// A rollback's own journal, when it wrote anything.
    pub written_as: Option<JournalId>,
    pub targets: Vec<RecoveryTarget>,
}

#[derive(Debug)]
pub struct RecoveryTarget {
    pub label: String,
    pub spec: String,
    /// Writes made now.
    pub writes: usize,
    /// Ops already done before (resume) — proof that nothing was repeated.
    pub already_done: usize,
    /// Keys whose earlier value cannot be restored (rollback of write-only values).
    pub unrestorable: Vec<String>,
    /// A rollback's ops: what it writes, or would write in a dry run.
    pub planned: Vec<PlanOp>,
    /// Why a rollback wrote nothing: the deletion guard refused it.
    pub refused: Option<DeletionRefused>,
    pub error: Option<PlatformError>,
}

impl RecoveryOutcome {
    pub fn is_ok(&self) -> bool {
        self.targets
            .iter()
            .all(|t| t.error.is_none() && t.refused.is_none())
    }
}

/// How a rollback runs.
#[derive(Debug, Clone, Copy)]
pub struct RollbackOptions {
    /// The journal to undo; `None`: the newest that wrote to the target.
    pub to: Option<JournalId>,
    /// A dry run plans the rollback and writes nothing.
    pub mode: Mode,
    /// `None` when `--force` lifts it: a rollback deletes keys like a sync, within the same
    /// bound.
    pub guard: Option<DeletionGuard>,
}

/// Finishes the newest unfinished journal, or says there is none (`Ok(None)`).
pub async fn resume(
    store: &StateStore,
    open: &dyn Fn(&JournalTarget) -> Result<Target, PlatformError>,
    key: &FingerprintKey,
) -> Result<Option<RecoveryOutcome>, SyncError> {
    let Some(journal) = store.latest_unfinished()? else {
        return Ok(None);
    };
    let mut targets = Vec::new();
    let mut all_ok = true;
    for jt in &journal.targets {
        let already_done = jt.ops.iter().filter(|o| o.done).count();
        let mut report = RecoveryTarget {
            label: jt.label.clone(),
            spec: jt.spec.clone(),
            writes: 0,
            already_done,
            unrestorable: Vec::new(),
            planned: Vec::new(),
            refused: None,
            error: None,
        };
        let pending: Vec<PlanOp> = jt
            .ops
            .iter()
            .filter(|o| !o.done && o.change.writes())
            .map(|o| PlanOp {
                key: o.key.clone(),
                change: o.change,
                before: None,
                after: o.after.clone(),
                reason: None,
            })
            .collect();
        if pending.is_empty() {
            store.finish_target(journal.id, &jt.identity, JournalState::Done, None)?;
            targets.push(report);
            continue;
        }
        let result = match open(jt) {
            Ok(target) => apply_pending(store, &journal, jt, &target, &pending, key).await?,
            Err(e) => Err(e),
        };
        match result {
            Ok(writes) => {
                report.writes = writes;
                store.finish_target(journal.id, &jt.identity, JournalState::Done, None)?;
            }
            Err(e) => {
                all_ok = false;
                store.finish_target(
                    journal.id,
                    &jt.identity,
                    JournalState::Failed,
                    Some(&e.to_string()),
                )?;
                report.error = Some(e);
            }
        }
        targets.push(report);
    }
    store.finish(
        journal.id,
        if all_ok {
            JournalState::Done
        } else {
            JournalState::Failed
        },
    )?;
    Ok(Some(RecoveryOutcome {
        journal: journal.id,
        written_as: None,
        targets,
    }))
}

async fn apply_pending(
    store: &StateStore,
    journal: &Journal,
    jt: &JournalTarget,
    target: &Target,
    ops: &[PlanOp],
    key: &FingerprintKey,
) -> Result<Result<usize, PlatformError>, SyncError> {
    let current = match target.platform.read().await {
        Ok(current) => current,
        Err(e) => return Ok(Err(e)),
    };
    // A create whose key now exists (the write landed but the confirmation was lost) is
    // an update; a delete whose key is gone is already done.
    let ops: Vec<PlanOp> = ops
        .iter()
        .filter_map(|op| {
            let exists = current.contains_key(&op.key);
            match (op.change, exists) {
                (Change::Delete, false) => None,
                (Change::Create, true) => Some(PlanOp {
                    change: Change::Update,
                    ..op.clone()
                }),
                (Change::Update, false) => Some(PlanOp {
                    change: Change::Create,
                    ..op.clone()
                }),
                _ => Some(op.clone()),
            }
        })
        .collect();
    let skipped: Vec<&str> = jt
        .ops
        .iter()
        .filter(|o| !o.done && o.change == Change::Delete && !current.contains_key(&o.key))
        .map(|o| o.key.as_str())
        .collect();
    store.mark_done(journal.id, &jt.identity, &skipped)?;
    let sinks = Sinks {
        store: Some(store),
        journal: Some(journal.id),
        observer: None,
    };
    Ok(apply_ops(target, &jt.identity, &ops, &current, sinks, key).await?)
}

/// Restores `target` to the pre-image of journal `to` (default: the newest that wrote to it).
pub async fn rollback(
    store: &StateStore,
    target: &Target,
    to: Option<JournalId>,
    key: &FingerprintKey,
) -> Result<Option<RecoveryOutcome>, SyncError> {
    let options = RollbackOptions {
        to,
        mode: Mode::Apply,
        guard: None,
    };
    rollback_with(store, target, options, key).await
}

/// [`rollback`] with a dry run and the deletion guard.
pub async fn rollback_with(
    store: &StateStore,
    target: &Target,
    options: RollbackOptions,
    key: &FingerprintKey,
) -> Result<Option<RecoveryOutcome>, SyncError> {
    let identity = target.platform.identity();
    let journal = match options.to {
        Some(id) => Some(store.journal(id)?),
        None => store.latest_for_target(&identity)?,
    };
    let Some(journal) = journal else {
        return Ok(None);
    };
    let Some(jt) = journal.targets.iter().find(|t| t.identity == identity) else {
        return Ok(None);
    };
    let mut report = RecoveryTarget {
        label: target.label.clone(),
        spec: target.platform.spec().to_string(),
        writes: 0,
        already_done: jt.ops.iter().filter(|o| o.done).count(),
        unrestorable: Vec::new(),
        planned: Vec::new(),
        refused: None,
        error: None,
    };
    let current = match target.platform.read().await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e);
            return Ok(Some(RecoveryOutcome {
                journal: journal.id,
                written_as: None,
                targets: vec![report],
            }));
        }
    };
    let mut ops = Vec::new();
    // Undo in reverse order, each op only if it was done.
    for op in jt.ops.iter().rev().filter(|o| o.done) {
        let now = current.get(&op.key);
        let inverse = match (&op.before, now) {
            (PreImage::Absent, Some(_)) => Some((Change::Delete, None)),
            (PreImage::Absent, None) => None,
            (PreImage::Value(v), Some(RemoteValue::Readable(cur))) if cur == v => None,
            (PreImage::Value(v), Some(_)) => Some((Change::Update, Some(v.clone()))),
            (PreImage::Value(v), None) => Some((Change::Create, Some(v.clone()))),
            (PreImage::Unknown, _) => {
                report.unrestorable.push(op.key.clone());
                None
            }
        };
        if let Some((change, after)) = inverse {
            ops.push(PlanOp {
                key: op.key.clone(),
                change,
                before: None,
                after,
                reason: None,
            });
        }
    }
    ops.sort_by(|a, b| a.key.cmp(&b.key));
    report.planned = ops.clone();
    if let Some(guard) = options.guard {
        let plan = SyncPlan {
            ops: ops.clone(),
            target_len: current.len(),
            ..SyncPlan::default()
        };
        if let Err(refused) = guard.check(&plan) {
            report.refused = Some(refused);
        }
    }
    if options.mode == Mode::DryRun || report.refused.is_some() {
        return Ok(Some(RecoveryOutcome {
            journal: journal.id,
            written_as: None,
            targets: vec![report],
        }));
    }
    // Journal the rollback like any apply: its ops and what they overwrite, before the first
    // write.
    let written_as = if ops.is_empty() {
        None
    } else {
        let entry = JournalTarget {
            identity: identity.clone(),
            spec: jt.spec.clone(),
            label: jt.label.clone(),
            state: JournalState::Applying,
            error: None,
            ops: ops
                .iter()
                .map(|op| {
                    Ok(JournalOp {
                        key: op.key.clone(),
                        change: op.change,
                        after: op.after.clone(),
                        before: pre_image(store, &identity, &op.key, current.get(&op.key))?,
                        done: false,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        };
        let source = format!("rollback of journal {}", journal.id);
        Some(store.begin(&source, &crate::now_rfc3339(), &[entry])?)
    };
    let sinks = Sinks {
        store: Some(store),
        journal: written_as,
        ..Sinks::default()
    };
    let applied = apply_ops(target, &identity, &ops, &current, sinks, key).await?;
    let state = match applied {
        Ok(writes) => {
            report.writes = writes;
            store.finish_target(journal.id, &identity, JournalState::RolledBack, None)?;
            if journal.targets.len() == 1 {
                store.finish(journal.id, JournalState::RolledBack)?;
            }
            JournalState::Done
        }
        Err(e) => {
            report.error = Some(e);
            JournalState::Failed
        }
    };
    if let Some(id) = written_as {
        let error = report.error.as_ref().map(|e| e.to_string());
        store.finish_target(id, &identity, state, error.as_deref())?;
        store.finish(id, state)?;
    }
    Ok(Some(RecoveryOutcome {
        journal: journal.id,
        written_as,
        targets: vec![report],
    }))
}

/// What `key` holds on the target before a rollback overwrites it, for the rollback's own
/// journal: a readable value, nothing, or a write-only value restorable only if it is the one
/// Bridge last wrote.
fn pre_image(
    store: &StateStore,
    identity: &str,
    key: &str,
    now: Option<&RemoteValue>,
) -> Result<PreImage, StoreError> {
    Ok(match now {
        None => PreImage::Absent,
        Some(RemoteValue::Readable(v)) => PreImage::Value(v.clone()),
        Some(RemoteValue::WriteOnly { .. }) => match store.recorded_value(identity, key)? {
            Some(v) => PreImage::Value(v),
            None => PreImage::Unknown,
        },
    })
}
