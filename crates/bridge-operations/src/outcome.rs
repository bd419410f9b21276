//! What one target's sync came to, in the words every caller reports it with: the HTTP
//! answers, the reactions' outcomes, the events and the metrics.

use bridge_core::SecretClassifier;
use bridge_core::diff::Change;
use bridge_sync::{TargetOutcome, TargetStatus};

/// One target's result, as counts and words (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `in_sync`, `planned`, `applied`, `unverified`, `refused`, `rejected` or `failed`.
    pub status: &'static str,
    /// Whether changes were written.
    pub applied: bool,
    /// How many keys are (or were) written.
    pub changes: usize,
    /// How many problems stopped or spoiled the sync (0 when it went well).
    pub errors: usize,
    /// Why it was refused, rejected or failed, or what still differs.
    pub detail: Option<String>,
}

impl Summary {
    pub fn of(target: &TargetOutcome) -> Self {
        let planned = target.plan.as_ref().map_or(0, |p| {
            let s = p.summary();
            s.create + s.update + s.delete
        });
        let (status, applied, changes, errors, detail) = match &target.status {
            TargetStatus::InSync => ("in_sync", false, 0, 0, None),
            TargetStatus::Planned => ("planned", false, planned, 0, None),
            TargetStatus::Applied { writes } => ("applied", true, *writes, 0, None),
            TargetStatus::Unverified { writes, remaining } => (
                "unverified",
                true,
                *writes,
                remaining.len(),
                Some(format!(
                    "still differs after writing: {}",
                    remaining.join(", ")
                )),
            ),
            TargetStatus::Refused(e) => ("refused", false, planned, 1, Some(e.to_string())),
            TargetStatus::Rejected(v) => (
                "rejected",
                false,
                planned,
                v.len(),
                Some(
                    v.iter()
                        .map(|v| format!("{}: {}", v.key, v.rule))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
            TargetStatus::Failed(e) => ("failed", false, planned, 1, Some(e.to_string())),
        };
        Summary {
            status,
            applied,
            changes,
            errors,
            detail,
        }
    }

    /// Keys that differ after this run: the drift it found (dry run) or left (apply).
    pub fn drift(&self) -> usize {
        if self.applied { 0 } else { self.changes }
    }
}

/// One planned change: a key and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub key: String,
    /// `create`, `update`, `delete` or `unknown` (a write-only value that may differ).
    pub op: &'static str,
    /// Whether the value is a secret (its value is never shown anyway).
    pub secret: bool,
}

/// Counts of a plan's operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unknown: usize,
    pub noop: usize,
}

/// A configured provider's sync: its name, the target's outcome, and the journal.
pub struct ProviderSync {
    pub provider: String,
    pub target: TargetOutcome,
    /// The journal of the apply, when it wrote.
    pub journal: Option<i64>,
}

impl ProviderSync {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.target)
    }

    pub fn counts(&self) -> Counts {
        self.target.plan.as_ref().map_or_else(Counts::default, |p| {
            let s = p.summary();
            Counts {
                create: s.create,
                update: s.update,
                delete: s.delete,
                unknown: s.unknown,
                noop: s.noop,
            }
        })
    }

    /// The keys the plan would write (or wrote).
    pub fn changed_keys(&self) -> Vec<String> {
        self.target.plan.as_ref().map_or_else(Vec::new, |plan| {
            plan.ops
                .iter()
                .filter(|op| op.change != Change::Noop)
                .map(|op| op.key.clone())
                .collect()
        })
    }

    /// The plan's changes, without values.
    pub fn planned(&self, classifier: &SecretClassifier) -> Vec<PlannedChange> {
        let Some(plan) = &self.target.plan else {
            return Vec::new();
        };
        plan.ops
            .iter()
            .filter(|op| op.change != Change::Noop)
            .map(|op| PlannedChange {
                key: op.key.clone(),
                op: op.op_name(),
                secret: match &op.after {
                    Some(value) => classifier.is_secret_entry(&op.key, value),
                    None => classifier.is_secret(&op.key),
                },
            })
            .collect()
    }
}
