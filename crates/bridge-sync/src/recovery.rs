//! Finishing and undoing applies from their journals.
//!
//! [`resume`] takes the newest journal that did not finish and applies, per target, the ops
//! not yet marked done — never one that was — against what the target holds now.
//! [`rollback`] takes the newest journal that wrote to a target (or a given one) and
//! restores every op that was done to its pre-image: a created key is deleted, an updated
//! or deleted key gets its old value back. A `.env` file gets its old lines back, byte for
//! byte, from the image the journal keeps of it, wherever it still holds what the apply
//! wrote (what was changed since is restored by value). A write-only value Bridge never
//! wrote cannot be restored; it is reported, not guessed. A rollback is itself an apply: it
//! is journalled (with its own pre-images) before its first write, so a crash mid-way can be
//! resumed, and the next rollback undoes it — rolling back twice returns to where you
//! started, never further back than the caller asks with `to`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_core::FingerprintKey;
use bridge_core::diff::{Change, DeletionGuard, DeletionRefused, PlanOp, SyncPlan};
use bridge_platforms::{Image, PlatformError, RemoteSet, RemoteValue};

use crate::engine::{Sinks, apply_ops, image_of, untouched_digest};
use crate::store::{
    Journal, JournalId, JournalOp, JournalState, JournalTarget, Landed, PreImage, StateStore,
    StoreError,
};
use crate::{Fence, Mode, SyncError, Target};

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
    /// Write-only values a resume wrote again: their op was in flight at the crash and the
    /// platform's stamp moved, so the write may have landed (same value both times).
    pub resent: Vec<String>,
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
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The journal to undo; `None`: the newest that wrote to the target.
    pub to: Option<JournalId>,
    /// A dry run plans the rollback and writes nothing.
    pub mode: Mode,
    /// `None` when `--force` lifts it: a rollback deletes keys like a sync, within the same
    /// bound.
    pub guard: Option<DeletionGuard>,
    /// The rollback's lock on the target ([`Fence`]).
    pub fence: Option<Arc<dyn Fence>>,
}

/// Finishes the newest unfinished journal, or says there is none (`Ok(None)`).
///
/// Every target with ops left is read first, and the resume refuses, before any write, when
/// one changed since the journal was written in a way its own ops do not explain
/// ([`SyncError::StaleJournal`]). Then, per target: an op whose effect the read already
/// shows (its value is there, its key is gone) landed before the crash and is recorded, not
/// repeated; the rest are written. A write-only value cannot be read back, so one whose op
/// was in flight at the crash is written again if its stamp moved since the plan (it may
/// have landed): the one write a resume may repeat, always with the same value.
pub async fn resume(
    store: &StateStore,
    open: &(dyn Fn(&JournalTarget) -> Result<Target, PlatformError> + Sync),
    key: &FingerprintKey,
    fence: Option<&dyn Fence>,
) -> Result<Option<RecoveryOutcome>, SyncError> {
    let Some(journal) = store.latest_unfinished().await? else {
        return Ok(None);
    };
    // Read every target before writing to any: a stale one stops the whole resume.
    let mut reads = Vec::new();
    for jt in &journal.targets {
        // A target whose all-or-nothing apply failed wrote nothing and is not resumed.
        let pending = jt.state != JournalState::Discarded
            && jt.ops.iter().any(|o| !o.done && o.change.writes());
        let read = if pending {
            match open(jt) {
                Ok(target) => match target.platform.read().await {
                    Ok(current) => {
                        if let Some(why) = staleness(jt, &current, key) {
                            return Err(SyncError::StaleJournal {
                                journal: journal.id,
                                spec: jt.spec.clone(),
                                why,
                            });
                        }
                        Some(Ok((target, current)))
                    }
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(e)),
            }
        } else {
            None
        };
        reads.push(read);
    }
    let mut targets = Vec::new();
    let mut all_ok = true;
    for (jt, read) in journal.targets.iter().zip(reads) {
        let mut report = RecoveryTarget {
            label: jt.label.clone(),
            spec: jt.spec.clone(),
            writes: 0,
            already_done: jt.ops.iter().filter(|o| o.done).count(),
            unrestorable: Vec::new(),
            planned: Vec::new(),
            refused: None,
            resent: Vec::new(),
            error: None,
        };
        if jt.state == JournalState::Discarded {
            targets.push(report);
            continue;
        }
        let result = match read {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok((target, current))) => {
                finish_pending(
                    store,
                    &journal,
                    jt,
                    (&target, &current),
                    key,
                    fence,
                    &mut report,
                )
                .await?
            }
        };
        match result {
            Ok(writes) => {
                report.writes = writes;
                store
                    .finish_target(journal.id, &jt.identity, JournalState::Done, None)
                    .await?;
            }
            Err(e) => {
                all_ok = false;
                store
                    .finish_target(
                        journal.id,
                        &jt.identity,
                        JournalState::Failed,
                        Some(&e.to_string()),
                    )
                    .await?;
                report.error = Some(e);
            }
        }
        targets.push(report);
    }
    store
        .finish(
            journal.id,
            if all_ok {
                JournalState::Done
            } else {
                JournalState::Failed
            },
        )
        .await?;
    Ok(Some(RecoveryOutcome {
        journal: journal.id,
        written_as: None,
        targets,
    }))
}

/// Why `current` shows that someone wrote to the target since `jt` was journalled, if it
/// does: a key outside the journal changed, or a readable key holds neither the value before
/// nor the value after the journal's op. Write-only values cannot be judged here.
fn staleness(jt: &JournalTarget, current: &RemoteSet, key: &FingerprintKey) -> Option<String> {
    if let Some(expected) = &jt.untouched {
        let touched = |k: &str| jt.ops.iter().any(|o| o.key == k);
        if &untouched_digest(current, &touched, key) != expected {
            return Some("keys the journal does not write were changed, added or removed".into());
        }
    }
    for op in &jt.ops {
        let explained = match current.get(&op.key) {
            Some(RemoteValue::WriteOnly { .. }) => true,
            Some(RemoteValue::Readable(now)) => {
                op.after.as_ref() == Some(now)
                    || (!op.done && matches!(&op.before, PreImage::Value(v) if v == now))
            }
            None => op.change == Change::Delete || (!op.done && op.before == PreImage::Absent),
        };
        if !explained {
            return Some(format!(
                "{} holds what neither the journal nor its pre-image says",
                op.key
            ));
        }
    }
    None
}

/// Records the ops whose effect `current` (what the target holds now) already shows, fills
/// in the stamps of write-only values written before the crash, and writes the rest.
async fn finish_pending(
    store: &StateStore,
    journal: &Journal,
    jt: &JournalTarget,
    (target, current): (&Target, &RemoteSet),
    key: &FingerprintKey,
    fence: Option<&dyn Fence>,
    report: &mut RecoveryTarget,
) -> Result<Result<usize, PlatformError>, SyncError> {
    // Records of writes confirmed before the crash have no stamp yet: the platform told it
    // only after the writes. Take today's (a change made between the crash and now is
    // adopted as ours: the window a crash leaves for write-only values).
    let stamps: BTreeMap<String, String> = jt
        .ops
        .iter()
        .filter(|o| o.done && o.change != Change::Delete)
        .filter_map(|o| match current.get(&o.key) {
            Some(RemoteValue::WriteOnly {
                updated_at: Some(stamp),
            }) => Some((o.key.clone(), stamp.clone())),
            _ => None,
        })
        .collect();
    store.set_stamps(&jt.identity, &stamps, true).await?;

    let mut landed = Vec::new();
    let mut ops = Vec::new();
    for o in jt.ops.iter().filter(|o| !o.done && o.change.writes()) {
        let now = current.get(&o.key);
        match (o.change, &o.after, now) {
            (Change::Delete, _, None) => landed.push(Landed::Deleted { key: &o.key }),
            (Change::Delete, _, Some(_)) => ops.push(pending_op(o, Change::Delete)),
            (_, Some(after), Some(RemoteValue::Readable(v))) if v == after => {
                landed.push(Landed::Written {
                    key: &o.key,
                    fingerprint: key.fingerprint(after),
                    value: after,
                });
            }
            (_, _, Some(now)) => {
                if let RemoteValue::WriteOnly { updated_at } = now
                    && (o.before == PreImage::Absent || *updated_at != o.before_stamp)
                {
                    report.resent.push(o.key.clone());
                }
                ops.push(pending_op(o, Change::Update));
            }
            (_, _, None) => ops.push(pending_op(o, Change::Create)),
        }
    }
    store
        .mark_done(journal.id, &jt.identity, &landed, &crate::now_rfc3339())
        .await?;
    if ops.is_empty() {
        return Ok(Ok(0));
    }
    let sinks = Sinks {
        store: Some(store),
        journal: Some(journal.id),
        observer: None,
        fence,
    };
    // A file that still holds what the journal found gets the very bytes the apply meant to
    // write: its image read backwards, "undoing" the text before into the text after.
    let forward = jt.image.as_ref().map(|i| Image {
        before: i.after.clone(),
        after: i.before.clone(),
    });
    Ok(apply_ops(
        target,
        &jt.identity,
        &ops,
        current,
        forward.as_ref(),
        sinks,
        key,
    )
    .await?)
}

fn pending_op(o: &JournalOp, change: Change) -> PlanOp {
    PlanOp {
        key: o.key.clone(),
        change,
        before: None,
        after: o.after.clone(),
        reason: None,
    }
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
        fence: None,
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
        Some(id) => Some(store.journal(id).await?),
        None => store.latest_for_target(&identity).await?,
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
        resent: Vec::new(),
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
    // A file gets its own lines back from the image of the apply undone, where it still
    // holds what that apply wrote; without an image (another platform, an older journal),
    // the values.
    let restore = jt.image.as_ref();
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
            untouched: Some(untouched_digest(
                &current,
                &|k: &str| ops.iter().any(|o| o.key == k),
                key,
            )),
            image: image_of(target, &ops, &current, restore).await,
            ops: {
                let mut entries = Vec::with_capacity(ops.len());
                for op in &ops {
                    entries.push(JournalOp {
                        key: op.key.clone(),
                        change: op.change,
                        after: op.after.clone(),
                        before: pre_image(store, &identity, &op.key, current.get(&op.key)).await?,
                        before_stamp: match current.get(&op.key) {
                            Some(RemoteValue::WriteOnly { updated_at }) => updated_at.clone(),
                            _ => None,
                        },
                        done: false,
                    });
                }
                entries
            },
        };
        let source = format!("rollback of journal {}", journal.id);
        Some(
            store
                .begin(&source, &crate::now_rfc3339(), &[entry])
                .await?,
        )
    };
    let sinks = Sinks {
        store: Some(store),
        journal: written_as,
        fence: options.fence.as_deref(),
        ..Sinks::default()
    };
    let applied = apply_ops(target, &identity, &ops, &current, restore, sinks, key).await?;
    let state = match applied {
        Ok(writes) => {
            report.writes = writes;
            store
                .finish_target(journal.id, &identity, JournalState::RolledBack, None)
                .await?;
            if journal.targets.len() == 1 {
                store.finish(journal.id, JournalState::RolledBack).await?;
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
        store
            .finish_target(id, &identity, state, error.as_deref())
            .await?;
        store.finish(id, state).await?;
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
async fn pre_image(
    store: &StateStore,
    identity: &str,
    key: &str,
    now: Option<&RemoteValue>,
) -> Result<PreImage, StoreError> {
    Ok(match now {
        None => PreImage::Absent,
        Some(RemoteValue::Readable(v)) => PreImage::Value(v.clone()),
        Some(RemoteValue::WriteOnly { .. }) => match store.recorded_value(identity, key).await? {
            Some(v) => PreImage::Value(v),
            None => PreImage::Unknown,
        },
    })
}
