//! How plans and parity look: the JSON shapes `--output json` prints and the text people read.
//! Every value passes through [`Redactor`], so a secret appears only as `<redacted:FP>`.

use std::fmt::Write as _;

use bridge_core::diff::{Change, PlanOp, SyncPlan};
use bridge_core::parity::{Cell, ParityMatrix, RowStatus};
use bridge_core::{FingerprintKey, SecretClassifier, SecretValue};
use bridge_sync::{SyncOutcome, TargetStatus};
use serde::Serialize;

use crate::shell::{BOLD, CYAN, DIM, GREEN, RED, YELLOW};

/// Shows values: secrets as their fingerprint, others as (escaped, shortened) text.
pub struct Redactor<'a> {
    pub classifier: &'a SecretClassifier,
    pub key: &'a FingerprintKey,
}

impl Redactor<'_> {
    pub fn is_secret(&self, name: &str) -> bool {
        self.classifier.is_secret(name)
    }

    /// The value for JSON and exports: in full unless secret.
    pub fn full(&self, name: &str, value: &SecretValue) -> String {
        if self.classifier.is_secret_entry(name, value) {
            self.key.fingerprint(value).redacted()
        } else {
            value.expose().to_string()
        }
    }

    /// The value for a terminal line: escaped control characters, at most 60 characters.
    pub fn short(&self, name: &str, value: &SecretValue) -> String {
        if self.classifier.is_secret_entry(name, value) {
            return self.key.fingerprint(value).redacted();
        }
        const MAX: usize = 60;
        let mut out = String::new();
        for (i, c) in value.expose().chars().enumerate() {
            if i == MAX {
                out.push('…');
                break;
            }
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        if value.is_empty() {
            out.push_str("\"\"");
        }
        out
    }
}

#[derive(Serialize)]
pub struct SyncReport {
    pub source: String,
    pub mode: &'static str,
    pub source_keys: usize,
    pub has_changes: bool,
    /// The journal of the apply, for `env resume` / `env rollback --to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<i64>,
    pub targets: Vec<TargetReport>,
}

#[derive(Serialize)]
pub struct TargetReport {
    pub label: String,
    pub target: String,
    /// in_sync | planned | applied | refused | failed
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<bridge_core::diff::PlanSummary>,
    pub changes: Vec<ChangeReport>,
    pub retained: Vec<String>,
    pub skipped: Vec<bridge_core::diff::SkippedKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes: Option<usize>,
}

#[derive(Serialize)]
pub struct ChangeReport {
    pub key: String,
    /// `create`, `update`, `delete`, `unknown` or `write_unknown`.
    pub op: &'static str,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<bridge_core::diff::UpdateReason>,
}

pub fn sync_report(outcome: &SyncOutcome, dry_run: bool, r: &Redactor<'_>) -> SyncReport {
    let targets = outcome
        .targets
        .iter()
        .map(|t| {
            let (status, error, writes) = match &t.status {
                TargetStatus::InSync => ("in_sync", None, None),
                TargetStatus::Planned => ("planned", None, None),
                TargetStatus::Applied { writes } => ("applied", None, Some(*writes)),
                TargetStatus::Unverified { writes, remaining } => (
                    "unverified",
                    Some(format!(
                        "written, but a fresh read still differs for: {}",
                        remaining.join(", ")
                    )),
                    Some(*writes),
                ),
                TargetStatus::Refused(e) => ("refused", Some(e.to_string()), None),
                TargetStatus::Rejected(v) => ("rejected", Some(violations_text(v)), None),
                TargetStatus::Failed(e) => ("failed", Some(e.to_string()), None),
            };
            let changes = t
                .plan
                .iter()
                .flat_map(|p| p.ops.iter())
                .filter(|op| op.change != Change::Noop)
                .map(|op| change_report(op, r))
                .collect();
            TargetReport {
                label: t.label.clone(),
                target: t.spec.to_string(),
                status,
                error,
                summary: t.plan.as_ref().map(SyncPlan::summary),
                changes,
                retained: t
                    .plan
                    .as_ref()
                    .map(|p| p.retained.clone())
                    .unwrap_or_default(),
                skipped: t
                    .plan
                    .as_ref()
                    .map(|p| p.skipped.clone())
                    .unwrap_or_default(),
                writes,
            }
        })
        .collect();
    SyncReport {
        source: outcome.source.to_string(),
        mode: if dry_run { "dry-run" } else { "apply" },
        source_keys: outcome.source_len,
        has_changes: outcome.has_pending_changes(),
        journal: outcome.journal.map(|j| j.0),
        targets,
    }
}

fn change_report(op: &PlanOp, r: &Redactor<'_>) -> ChangeReport {
    let show = |v: &Option<SecretValue>| v.as_ref().map(|v| r.full(&op.key, v));
    ChangeReport {
        key: op.key.clone(),
        op: op.op_name(),
        secret: r.is_secret(&op.key)
            || [&op.before, &op.after]
                .into_iter()
                .flatten()
                .any(|v| r.classifier.is_secret_entry(&op.key, v)),
        before: show(&op.before),
        after: if op.change == Change::Delete {
            None
        } else {
            show(&op.after)
        },
        reason: op.reason,
    }
}

/// The text of a sync or diff, one block per target.
pub fn sync_text(outcome: &SyncOutcome, r: &Redactor<'_>) -> String {
    plan_text(&outcome.source, outcome.targets.iter(), r, Stage::Outcome)
}

/// When a plan is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before its writes, which follow (or wait for a yes).
    BeforeApply,
    /// After a dry run, or once applied.
    Outcome,
}

/// Each target's changes and status line, from `source`.
pub fn plan_text<'a>(
    source: &bridge_platforms::PlatformSpec,
    targets: impl Iterator<Item = &'a bridge_sync::TargetOutcome>,
    r: &Redactor<'_>,
    stage: Stage,
) -> String {
    let mut out = String::new();
    for t in targets {
        let _ = writeln!(out, "{BOLD}{source}{BOLD:#} → {BOLD}{}{BOLD:#}", t.spec);
        if let Some(plan) = &t.plan {
            let width = plan
                .ops
                .iter()
                .filter(|o| o.change != Change::Noop)
                .map(|o| o.key.chars().count())
                .max()
                .unwrap_or(0);
            for op in plan.ops.iter().filter(|o| o.change != Change::Noop) {
                out.push_str(&op_line(op, width, r));
            }
            for skipped in &plan.skipped {
                let why = match skipped.reason {
                    bridge_core::diff::SkipReason::NotOwned => {
                        "not created by Bridge, so not deleted"
                    }
                    bridge_core::diff::SkipReason::Protected => "protected (sync.protect)",
                };
                let _ = writeln!(
                    out,
                    "  {DIM}= {}  {}: {why}{DIM:#}",
                    skipped.key, skipped.change
                );
            }
            if !plan.retained.is_empty() {
                let _ = writeln!(
                    out,
                    "  {DIM}kept (only in target; --allow-deletions deletes them): {}{DIM:#}",
                    plan.retained.join(", ")
                );
            }
        }
        let _ = writeln!(out, "  {}", status_line(t, stage));
    }
    out
}

/// One status line per target: what an apply did, after its plan was shown.
pub fn results_text(outcome: &SyncOutcome) -> String {
    let mut out = String::new();
    for t in &outcome.targets {
        let status = match &t.status {
            TargetStatus::Applied { writes } => {
                format!("{GREEN}applied{GREEN:#} ({})", writes_text(*writes))
            }
            _ => status_line(t, Stage::Outcome),
        };
        let _ = writeln!(
            out,
            "{BOLD}{}{BOLD:#} → {BOLD}{}{BOLD:#}: {status}",
            outcome.source, t.spec
        );
    }
    out
}

fn op_line(op: &PlanOp, width: usize, r: &Redactor<'_>) -> String {
    let key = &op.key;
    let show = |v: &Option<SecretValue>| v.as_ref().map(|v| r.short(key, v)).unwrap_or_default();
    match op.change {
        Change::Create => format!("  {GREEN}+ {key:<width$}{GREEN:#}  {}\n", show(&op.after)),
        Change::Update => {
            let before = match &op.before {
                Some(_) => show(&op.before),
                None => "(write-only)".into(),
            };
            let why = match op.reason {
                Some(bridge_core::diff::UpdateReason::ChangedOutOfBand) => {
                    "  (changed out of band)"
                }
                Some(bridge_core::diff::UpdateReason::Forced) => "  (cannot compare: writing)",
                _ => "",
            };
            format!(
                "  {YELLOW}~ {key:<width$}{YELLOW:#}  {before} → {}{why}\n",
                show(&op.after)
            )
        }
        Change::Delete => format!("  {RED}- {key:<width$}{RED:#}  {}\n", show(&op.before)),
        Change::Unknown => format!(
            "  {CYAN}? {key:<width$}{CYAN:#}  write-only, no fingerprint on record: cannot tell\n"
        ),
        Change::Noop => String::new(),
    }
}

fn status_line(t: &bridge_sync::TargetOutcome, stage: Stage) -> String {
    let counts = |plan: &SyncPlan| {
        let s = plan.summary();
        let mut parts = Vec::new();
        for (n, what) in [
            (s.create, "create"),
            (s.update, "update"),
            (s.delete, "delete"),
            (s.unknown, "unknown"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let changes = if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join(", ")
        };
        format!("{changes}; {} unchanged", s.noop)
    };
    match (&t.status, &t.plan) {
        (TargetStatus::InSync, Some(plan)) => format!("{GREEN}in sync{GREEN:#} ({})", counts(plan)),
        (TargetStatus::Planned, Some(plan)) if stage == Stage::BeforeApply => {
            format!("{YELLOW}to apply{YELLOW:#}: {}", counts(plan))
        }
        (TargetStatus::Planned, Some(plan)) => {
            format!(
                "{YELLOW}would change{YELLOW:#}: {} (dry run; nothing written)",
                counts(plan)
            )
        }
        (TargetStatus::Applied { writes }, Some(plan)) => {
            format!(
                "{GREEN}applied{GREEN:#}: {} ({})",
                counts(plan),
                writes_text(*writes)
            )
        }
        (TargetStatus::Unverified { writes, remaining }, _) => format!(
            "{YELLOW}unverified{YELLOW:#}: {writes} writes, but a fresh read still differs for {} \
             (another writer, or the platform did not keep them)",
            remaining.join(", ")
        ),
        (TargetStatus::Refused(e), _) => format!("{RED}refused{RED:#}: {e}"),
        (TargetStatus::Rejected(violations), _) => format!(
            "{RED}rejected{RED:#} before any write, the platform would refuse: {}",
            violations_text(violations)
        ),
        (TargetStatus::Failed(e), _) => format!("{RED}failed{RED:#}: {e}"),
        (_, None) => String::new(),
    }
}

/// The parity matrix as text: the rows that drift or cannot be judged, then a summary.
pub fn parity_text(m: &ParityMatrix) -> String {
    let mut out = String::new();
    let interesting: Vec<_> = m
        .rows
        .iter()
        .filter(|r| r.status != RowStatus::InParity)
        .collect();
    let key_width = interesting
        .iter()
        .map(|r| r.key.chars().count())
        .chain(["KEY".len()])
        .max()
        .unwrap_or(3);
    let widths: Vec<usize> = m.labels.iter().map(|l| l.chars().count().max(7)).collect();
    if !interesting.is_empty() {
        let _ = write!(out, "{BOLD}{:<key_width$}{BOLD:#}", "KEY");
        let last = m.labels.len().saturating_sub(1);
        for (i, (label, w)) in m.labels.iter().zip(&widths).enumerate() {
            let w = if i == last { 0 } else { *w };
            let _ = write!(out, "  {BOLD}{label:<w$}{BOLD:#}");
        }
        out.push('\n');
        for row in &interesting {
            let _ = write!(out, "{:<key_width$}", row.key);
            let last = row.cells.len().saturating_sub(1);
            for (i, (cell, w)) in row.cells.iter().zip(&widths).enumerate() {
                // No padding after the last column: lines end where their text does.
                let w = if i == last { 0 } else { *w };
                let style = match cell {
                    Cell::Equal | Cell::Absent | Cell::Protected => GREEN,
                    Cell::Different | Cell::ChangedOutside => YELLOW,
                    Cell::Missing | Cell::Extra => RED,
                    Cell::Unknown => CYAN,
                };
                let text = cell_word(*cell);
                let _ = write!(out, "  {style}{text:<w$}{style:#}");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    let drift = m.drift_count();
    let unknown = m
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Unknown)
        .count();
    let places: Vec<String> = m
        .labels
        .iter()
        .zip(&m.counts)
        .map(|(l, n)| format!("{l} {n}"))
        .collect();
    // Parity is claimed only when it is proven: an unknown value may differ.
    let verdict = if drift > 0 {
        format!("{RED}drift{RED:#}")
    } else if unknown > 0 {
        format!("{CYAN}parity unproven{CYAN:#}")
    } else {
        format!("{GREEN}in parity{GREEN:#}")
    };
    let _ = writeln!(
        out,
        "{verdict}: {} keys across {} places ({}); {drift} drifted, {unknown} unknown",
        m.rows.len(),
        m.labels.len(),
        places.join(", ")
    );
    if unknown > 0 {
        let keys: Vec<&str> = m
            .rows
            .iter()
            .filter(|r| r.status == RowStatus::Unknown)
            .map(|r| r.key.as_str())
            .collect();
        let _ = writeln!(
            out,
            "unknown: {} (write-only, never written by Bridge: `env sync` writes them, or pass \
             --allow-unknown to accept)",
            keys.join(", ")
        );
    }
    let protected: Vec<&str> = m
        .rows
        .iter()
        .filter(|r| r.cells.contains(&Cell::Protected))
        .map(|r| r.key.as_str())
        .collect();
    if !protected.is_empty() {
        let _ = writeln!(
            out,
            "{DIM}protected: {} (sync.protect: never written, not judged){DIM:#}",
            protected.join(", ")
        );
    }
    out
}

/// A cell as text and Markdown show it: the report's word, `-` where there is nothing.
fn cell_word(cell: Cell) -> &'static str {
    match cell {
        Cell::Absent => "-",
        other => other.as_str(),
    }
}

/// The audit summary written by `env verify --audit-md`.
pub fn audit_markdown(m: &ParityMatrix, report: &bridge_core::parity::ParityReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Environment parity audit\n");
    let _ = writeln!(md, "- Verified at: {}", report.verified_at);
    let _ = writeln!(md, "- Places: {}", m.labels.join(", "));
    let _ = writeln!(md, "- Keys: {}", report.summary.total_keys);
    let _ = writeln!(
        md,
        "- Result: {} ({} drifted, {} unknown)\n",
        if report.has_drift {
            "**drift**"
        } else if !report.proven {
            "**parity unproven**"
        } else {
            "in parity"
        },
        report.summary.drift_count,
        report.summary.unknown_count
    );
    let _ = writeln!(md, "| Place | Keys | Missing | Extra |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for (label, count) in m.labels.iter().zip(&m.counts) {
        let listed = |lists: &std::collections::BTreeMap<String, Vec<String>>, prefix: &str| {
            lists.get(&format!("{prefix}{label}")).map_or(0, Vec::len)
        };
        let missing = listed(&report.missing, "missing_in_");
        let extra = listed(&report.extra, "extra_in_");
        let _ = writeln!(md, "| {label} | {count} | {missing} | {extra} |");
    }
    let rows: Vec<_> = m
        .rows
        .iter()
        .filter(|r| r.status != RowStatus::InParity)
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(md, "\n## Keys out of parity\n");
        let _ = write!(md, "| Key |");
        for l in &m.labels {
            let _ = write!(md, " {l} |");
        }
        let _ = write!(md, "\n|---|");
        for _ in &m.labels {
            let _ = write!(md, "---|");
        }
        md.push('\n');
        for row in rows {
            let _ = write!(md, "| `{}` |", row.key);
            for cell in &row.cells {
                let _ = write!(md, " {} |", cell_word(*cell));
            }
            md.push('\n');
        }
    }
    let _ = writeln!(
        md,
        "\nValues are never written here; secret values are compared by keyed fingerprint."
    );
    md
}

/// `1 write`, `3 writes`.
pub fn writes_text(writes: usize) -> String {
    match writes {
        1 => "1 write".to_string(),
        n => format!("{n} writes"),
    }
}

/// Rule violations, one line per rule: a rule that many keys break (GitHub's 100 secrets)
/// is said once, with its keys.
pub fn violations_text(violations: &[bridge_platforms::RuleViolation]) -> String {
    let mut rules: Vec<(&str, Vec<&str>)> = Vec::new();
    for v in violations {
        match rules.iter_mut().find(|(rule, _)| *rule == v.rule) {
            Some((_, keys)) => keys.push(&v.key),
            None => rules.push((&v.rule, vec![&v.key])),
        }
    }
    rules
        .iter()
        .map(|(rule, keys)| format!("{}: {rule}", keys.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_platforms::RuleViolation;

    #[test]
    fn a_rule_many_keys_break_is_said_once() {
        let rule = "GitHub allows at most 100 secrets per repository; this plan would leave 102";
        let v = |key: &str, rule: &str| RuleViolation {
            key: key.into(),
            rule: rule.into(),
            unwritable: false,
        };
        let text = violations_text(&[v("K100", rule), v("K101", rule), v("BIG", "too large")]);
        assert_eq!(text, format!("K100, K101: {rule}; BIG: too large"));
        assert_eq!(writes_text(1), "1 write");
        assert_eq!(writes_text(0), "0 writes");
    }
}
