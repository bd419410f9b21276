//! The diff: what must change in a target so that it holds what the source holds.
//!
//! [`diff`] compares a source [`EnvSet`] with what a target was [`Observed`] to hold and
//! produces a [`SyncPlan`]: one [`PlanOp`] per key in scope, sorted by key, each a create,
//! update, delete, noop or *unknown*. Unknown is for write-only values (GitHub Actions
//! secrets) whose current value cannot be read and for which no fingerprint of our last write
//! exists: it is never counted as equal or different. Deletions appear only when allowed;
//! otherwise the target's extra keys are listed as retained. [`DeletionGuard`] then refuses a
//! plan that deletes more than a configured share of the target's keys.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::envset::EnvSet;
use crate::filter::KeyFilter;
use crate::secret::{Fingerprint, FingerprintKey, SecretValue};

/// What a target holds for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The platform returns the value.
    Value(SecretValue),
    /// The platform says the key exists but never returns its value.
    WriteOnly(WriteOnlyState),
}

/// What is known about a write-only value: the fingerprint Bridge recorded when it last wrote
/// it, and whether the platform reports a change since that write (its `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOnlyState {
    pub recorded: Option<Fingerprint>,
    pub changed_since_record: bool,
    /// The platform's own stamp, RFC 3339, when it gives one.
    pub updated_at: Option<String>,
}

/// Everything a target was observed to hold.
pub type ObservedSet = BTreeMap<String, Observed>;

/// Turns a readable set (a `.env` file, the process) into an observation.
pub fn observe_readable(set: &EnvSet) -> ObservedSet {
    set.iter()
        .map(|(k, v)| (k.clone(), Observed::Value(v.clone())))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Update,
    Delete,
    Noop,
    /// A write-only value whose equality with the source cannot be established.
    Unknown,
}

impl Change {
    /// Whether applying the op writes to the target.
    pub fn writes(self) -> bool {
        matches!(self, Change::Create | Change::Update | Change::Delete)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Delete => "delete",
            Change::Noop => "noop",
            Change::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an update is needed; lets reports say "changed out of band" rather than just "differs".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateReason {
    /// The readable value differs from the source.
    ValueDiffers,
    /// The source changed since our last write of a write-only value.
    SourceChanged,
    /// The platform reports a change we did not make.
    ChangedOutOfBand,
    /// An unknown write-only value is written because the caller asked for it.
    Forced,
}

impl PlanOp {
    /// The op as plans, reports and events name it: `create`, `update`, `delete`, `noop`,
    /// `unknown`, or `write_unknown` (a write-only value that cannot be compared, written
    /// because the source is canonical).
    pub fn op_name(&self) -> &'static str {
        match (self.change, self.reason) {
            (Change::Update, Some(UpdateReason::Forced)) => "write_unknown",
            (change, _) => change.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOp {
    pub key: String,
    pub change: Change,
    /// The target's current value, for updates and deletes of readable values.
    pub before: Option<SecretValue>,
    /// The value to write, for creates, updates and unknowns. No-ops carry no values: most
    /// keys of a large set are no-ops, and copying their values would dominate the diff.
    pub after: Option<SecretValue>,
    pub reason: Option<UpdateReason>,
}

/// How to diff.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub filter: KeyFilter,
    pub deletions: Deletions,
    pub unknown: UnknownPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deletions {
    /// Keys only in the target are retained and reported.
    #[default]
    Keep,
    /// Keys only in the target are deleted (subject to the [`DeletionGuard`]).
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownPolicy {
    /// Report unknown write-only values and leave them alone (`--unknown=skip`).
    Report,
    /// Write them, so that afterwards their fingerprint is on record: the source is
    /// canonical, and a rotated secret must reach a platform that cannot be read back.
    #[default]
    Write,
}

/// The changes that make one target match the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// One op per key in scope, sorted by key.
    pub ops: Vec<PlanOp>,
    /// Keys only in the target, kept because deletions are not allowed.
    pub retained: Vec<String>,
    /// Keys the plan would have written but must not: see [`SkipReason`].
    pub skipped: Vec<SkippedKey>,
    /// How many keys in scope the target held before the plan.
    pub target_len: usize,
}

/// A key left alone although the diff found a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedKey {
    pub key: String,
    pub change: Change,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Bridge did not create this key on the platform, so it does not delete it.
    NotOwned,
    /// The key is on the protect list.
    Protected,
}

impl SyncPlan {
    /// Moves the writes that `hold` refuses out of the plan and into `skipped`.
    pub fn hold_back(&mut self, mut hold: impl FnMut(&PlanOp) -> Option<SkipReason>) {
        let mut kept = Vec::with_capacity(self.ops.len());
        for op in std::mem::take(&mut self.ops) {
            match op.change.writes().then(|| hold(&op)).flatten() {
                Some(reason) => self.skipped.push(SkippedKey {
                    key: op.key,
                    change: op.change,
                    reason,
                }),
                None => kept.push(op),
            }
        }
        self.ops = kept;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub noop: usize,
    pub unknown: usize,
    pub retained: usize,
    pub skipped: usize,
}

impl PlanSummary {
    pub fn writes(&self) -> usize {
        self.create + self.update + self.delete
    }
}

impl SyncPlan {
    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary {
            retained: self.retained.len(),
            skipped: self.skipped.len(),
            ..PlanSummary::default()
        };
        for op in &self.ops {
            match op.change {
                Change::Create => s.create += 1,
                Change::Update => s.update += 1,
                Change::Delete => s.delete += 1,
                Change::Noop => s.noop += 1,
                Change::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// The ops that write, in key order.
    pub fn writes(&self) -> impl Iterator<Item = &PlanOp> {
        self.ops.iter().filter(|op| op.change.writes())
    }

    pub fn has_writes(&self) -> bool {
        self.writes().next().is_some()
    }
}

/// Compares `source` with `target` and says what to change. `fingerprints` judges write-only
/// values; without it every write-only value is unknown.
pub fn diff(
    source: &EnvSet,
    target: &ObservedSet,
    options: &DiffOptions,
    fingerprints: Option<&FingerprintKey>,
) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let mut src = source
        .iter()
        .filter(|(k, _)| options.filter.allows(k))
        .peekable();
    let mut dst = target
        .iter()
        .filter(|(k, _)| options.filter.allows(k))
        .peekable();

    // Both sides are sorted by key: one merge pass, no hashing.
    loop {
        let order = match (src.peek(), dst.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((s, _)), Some((d, _))) => s.as_str().cmp(d.as_str()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let Some((key, value)) = src.next() else {
                    break;
                };
                plan.ops.push(PlanOp {
                    key: key.clone(),
                    change: Change::Create,
                    before: None,
                    after: Some(value.clone()),
                    reason: None,
                });
            }
            std::cmp::Ordering::Greater => {
                let Some((key, observed)) = dst.next() else {
                    break;
                };
                plan.target_len += 1;
                match options.deletions {
                    Deletions::Allow => plan.ops.push(PlanOp {
                        key: key.clone(),
                        change: Change::Delete,
                        before: readable(observed),
                        after: None,
                        reason: None,
                    }),
                    Deletions::Keep => plan.retained.push(key.clone()),
                }
            }
            std::cmp::Ordering::Equal => {
                let (Some((key, value)), Some((_, observed))) = (src.next(), dst.next()) else {
                    break;
                };
                plan.target_len += 1;
                plan.ops
                    .push(compare(key, value, observed, options.unknown, fingerprints));
            }
        }
    }
    plan
}

fn readable(observed: &Observed) -> Option<SecretValue> {
    match observed {
        Observed::Value(v) => Some(v.clone()),
        Observed::WriteOnly(_) => None,
    }
}

fn compare(
    key: &str,
    value: &SecretValue,
    observed: &Observed,
    unknown: UnknownPolicy,
    fingerprints: Option<&FingerprintKey>,
) -> PlanOp {
    let (change, reason) = match observed {
        Observed::Value(current) if current == value => (Change::Noop, None),
        Observed::Value(_) => (Change::Update, Some(UpdateReason::ValueDiffers)),
        Observed::WriteOnly(state) => {
            let recorded = state.recorded.zip(fingerprints);
            match recorded {
                Some(_) if state.changed_since_record => {
                    (Change::Update, Some(UpdateReason::ChangedOutOfBand))
                }
                Some((fp, key)) if key.fingerprint(value) == fp => (Change::Noop, None),
                Some(_) => (Change::Update, Some(UpdateReason::SourceChanged)),
                None => match unknown {
                    UnknownPolicy::Report => (Change::Unknown, None),
                    UnknownPolicy::Write => (Change::Update, Some(UpdateReason::Forced)),
                },
            }
        }
    };
    let (before, after) = match change {
        Change::Noop => (None, None),
        _ => (readable(observed), Some(value.clone())),
    };
    PlanOp {
        key: key.to_string(),
        change,
        before,
        after,
        reason,
    }
}

/// Refuses plans that delete more than `max_share` of a target's keys in scope.
///
/// Mass deletion is the failure users of sync tools fear most (a source that failed to load,
/// a filter typo); a plan over the limit must be confirmed with `--force`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeletionGuard {
    pub max_share: f64,
}

impl DeletionGuard {
    pub const DEFAULT_MAX_SHARE: f64 = 0.25;

    pub fn check(&self, plan: &SyncPlan) -> Result<(), DeletionRefused> {
        let deletes = plan.summary().delete;
        if deletes == 0 || plan.target_len == 0 {
            return Ok(());
        }
        let share = deletes as f64 / plan.target_len as f64;
        if share > self.max_share {
            return Err(DeletionRefused {
                deletes,
                target_len: plan.target_len,
                max_share: self.max_share,
            });
        }
        Ok(())
    }
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self {
            max_share: Self::DEFAULT_MAX_SHARE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "refusing to delete {deletes} of {target_len} keys ({:.0}% > the {:.0}% limit); \
     check the source, then pass --force to delete anyway or raise sync.max_delete_share",
    *deletes as f64 * 100.0 / *target_len as f64,
    max_share * 100.0
)]
pub struct DeletionRefused {
    pub deletes: usize,
    pub target_len: usize,
    pub max_share: f64,
}

/// Applies a plan's writes to a readable set: what the target holds after the sync.
pub fn apply_to(set: &mut EnvSet, plan: &SyncPlan) {
    for op in plan.writes() {
        match (&op.change, &op.after) {
            (Change::Delete, _) => {
                set.remove(&op.key);
            }
            (_, Some(value)) => {
                set.insert(op.key.clone(), value.clone());
            }
            (_, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(pairs: &[(&str, &str)]) -> EnvSet {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn changes(plan: &SyncPlan) -> Vec<(String, Change)> {
        plan.ops.iter().map(|o| (o.key.clone(), o.change)).collect()
    }

    #[test]
    fn classifies_every_key_in_order() {
        let src = set(&[("A", "1"), ("B", "2"), ("D", "4")]);
        let dst = observe_readable(&set(&[("B", "2"), ("C", "3"), ("D", "x")]));
        let plan = diff(&src, &dst, &DiffOptions::default(), None);
        assert_eq!(
            changes(&plan),
            vec![
                ("A".into(), Change::Create),
                ("B".into(), Change::Noop),
                ("D".into(), Change::Update),
            ]
        );
        assert_eq!(plan.retained, vec!["C".to_string()]);
        assert_eq!(plan.target_len, 3);

        let allow = DiffOptions {
            deletions: Deletions::Allow,
            ..DiffOptions::default()
        };
        let plan = diff(&src, &dst, &allow, None);
        assert!(plan.retained.is_empty());
        assert_eq!(plan.summary().delete, 1);
        assert_eq!(plan.summary().writes(), 3);
    }

    #[test]
    fn filter_hides_keys_from_both_sides() {
        let src = set(&[("APP_A", "1"), ("OTHER", "2")]);
        let dst = observe_readable(&set(&[("APP_B", "1"), ("UNRELATED", "9")]));
        let options = DiffOptions {
            filter: KeyFilter::new(vec!["APP_".into()], vec![]),
            deletions: Deletions::Allow,
            ..DiffOptions::default()
        };
        let plan = diff(&src, &dst, &options, None);
        assert_eq!(
            changes(&plan),
            vec![
                ("APP_A".into(), Change::Create),
                ("APP_B".into(), Change::Delete)
            ]
        );
        assert_eq!(plan.target_len, 1);
    }

    #[test]
    fn write_only_values_are_judged_by_fingerprint() {
        let key = FingerprintKey::from_bytes([7; 32]);
        let src = set(&[("S1", "same"), ("S2", "new"), ("S3", "x"), ("S4", "y")]);
        let fp = |v: &str| Some(key.fingerprint(&SecretValue::new(v)));
        let mut dst = ObservedSet::new();
        let wo = |recorded, changed| {
            Observed::WriteOnly(WriteOnlyState {
                recorded,
                changed_since_record: changed,
                updated_at: None,
            })
        };
        dst.insert("S1".into(), wo(fp("same"), false));
        dst.insert("S2".into(), wo(fp("old"), false));
        dst.insert("S3".into(), wo(fp("x"), true));
        dst.insert("S4".into(), wo(None, false));
        let skip = DiffOptions {
            unknown: UnknownPolicy::Report,
            ..DiffOptions::default()
        };
        let plan = diff(&src, &dst, &skip, Some(&key));
        let reasons: Vec<_> = plan.ops.iter().map(|o| (o.change, o.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (Change::Noop, None),
                (Change::Update, Some(UpdateReason::SourceChanged)),
                (Change::Update, Some(UpdateReason::ChangedOutOfBand)),
                (Change::Unknown, None),
            ]
        );
        // Without the key nothing can be judged.
        let blind = diff(&src, &dst, &skip, None);
        assert!(blind.ops.iter().all(|o| o.change == Change::Unknown));
        // By default an unknown value is written (the source is canonical), named so.
        let plan = diff(&src, &dst, &DiffOptions::default(), Some(&key));
        assert_eq!(plan.ops[3].reason, Some(UpdateReason::Forced));
        assert_eq!(plan.ops[3].op_name(), "write_unknown");
    }

    #[test]
    fn deletion_guard_limits_share() {
        let src = set(&[("A", "1")]);
        let dst = observe_readable(&set(&[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]));
        let options = DiffOptions {
            deletions: Deletions::Allow,
            ..DiffOptions::default()
        };
        let plan = diff(&src, &dst, &options, None);
        let err = DeletionGuard::default().check(&plan).unwrap_err();
        assert_eq!((err.deletes, err.target_len), (3, 4));
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(DeletionGuard { max_share: 0.75 }.check(&plan).is_ok());
        let none = diff(&src, &dst, &DiffOptions::default(), None);
        assert!(DeletionGuard { max_share: 0.0 }.check(&none).is_ok());
    }

    fn arb_set() -> impl Strategy<Value = EnvSet> {
        proptest::collection::btree_map("[A-E]{1,2}", "[a-c]{0,2}", 0..12)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn applying_the_plan_yields_the_source(src in arb_set(), dst in arb_set()) {
            let options = DiffOptions { deletions: Deletions::Allow, ..DiffOptions::default() };
            let plan = diff(&src, &observe_readable(&dst), &options, None);
            let mut after = dst.clone();
            apply_to(&mut after, &plan);
            prop_assert_eq!(&after, &src);
            // And the plan against the result has no writes: a repeated sync is a no-op.
            let again = diff(&src, &observe_readable(&after), &options, None);
            prop_assert!(!again.has_writes());
        }

        #[test]
        fn without_deletions_target_keys_survive(src in arb_set(), dst in arb_set()) {
            let plan = diff(&src, &observe_readable(&dst), &DiffOptions::default(), None);
            let mut after = dst.clone();
            apply_to(&mut after, &plan);
            for key in dst.keys() {
                prop_assert!(after.contains_key(key));
            }
            for (k, v) in &src {
                prop_assert_eq!(after.get(k), Some(v));
            }
            let keys: Vec<_> = plan.ops.iter().map(|o| o.key.clone()).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            prop_assert_eq!(keys, sorted);
        }
    }
}
