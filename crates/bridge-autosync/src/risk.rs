//! The risk score and the merge decision, kept apart: the score (files changed, type
//! errors, test failures, a migration, a breaking change, each weighted) only labels the
//! change and is compared with the threshold; the gates (every validation passed, no
//! stop on conflict, no breaking change unless allowed) must hold as well for a merge.

use serde::Serialize;

use crate::config::{RiskConfig, ValidateKind};
use crate::validate::ValidationOutcome;

/// `risk:low|medium|high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskTier {
    /// At or below the threshold.
    Low,
    /// Above the threshold, at or below `high_above`.
    Medium,
    /// Above `high_above`.
    High,
}

impl RiskTier {
    /// `low`, `medium`, `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One term of the score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RiskTerm {
    /// `files changed`, `type errors`, …
    pub name: &'static str,
    /// The count (0/1 for the flags).
    pub count: u64,
    /// Its weight.
    pub weight: u64,
    /// count × weight.
    pub points: u64,
}

/// The score, its arithmetic, and the decision.
#[derive(Clone, Debug, Serialize)]
pub struct RiskReport {
    /// The terms, in formula order.
    pub terms: Vec<RiskTerm>,
    /// Their sum.
    pub score: u64,
    /// The configured threshold.
    pub threshold: u64,
    /// The label tier.
    pub tier: RiskTier,
    /// Files changed against the target branch.
    pub files_changed: Vec<String>,
    /// Touched paths that match the migration globs.
    pub migrations: Vec<String>,
    /// Whether every gate holds and the score is within the threshold.
    pub auto_merge: bool,
    /// Why not, when not (empty when `auto_merge`).
    pub blockers: Vec<String>,
}

impl RiskReport {
    /// `3 + 3×0 + 5×1 + 2 = 10` in words, for reports and PR bodies.
    pub fn arithmetic(&self) -> String {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| format!("{} × {} {}", t.weight, t.count, t.name))
            .collect();
        format!("{} = {}", parts.join(" + "), self.score)
    }
}

/// Inputs beyond the validations.
pub(crate) struct RiskInputs<'a> {
    pub(crate) files_changed: Vec<String>,
    pub(crate) breaking: bool,
    pub(crate) stopped_on_conflict: bool,
    pub(crate) validations: &'a [ValidationOutcome],
}

/// Scores and decides.
pub(crate) fn assess(config: &RiskConfig, inputs: RiskInputs<'_>) -> RiskReport {
    let sum_of = |kind: ValidateKind, f: fn(&ValidationOutcome) -> u64| -> u64 {
        inputs
            .validations
            .iter()
            .filter(|v| v.kind == kind)
            .map(f)
            .sum()
    };
    let type_errors = sum_of(ValidateKind::TypeCheck, |v| v.errors);
    let test_failures = sum_of(ValidateKind::Test, |v| v.failures);
    let migrations: Vec<String> = inputs
        .files_changed
        .iter()
        .filter(|f| config.migrations.is_match(f))
        .cloned()
        .collect();
    let w = config.weights;
    let term = |name, count: u64, weight: u64| RiskTerm {
        name,
        count,
        weight,
        points: count.saturating_mul(weight),
    };
    let mut terms = vec![
        term("files changed", inputs.files_changed.len() as u64, w.files),
        term("type errors", type_errors, w.type_errors),
        term("test failures", test_failures, w.test_failures),
        term(
            "migrations touched",
            u64::from(!migrations.is_empty()),
            w.migrations,
        ),
    ];
    if w.breaking > 0 {
        terms.push(term(
            "breaking change",
            u64::from(inputs.breaking),
            w.breaking,
        ));
    }
    let score = terms
        .iter()
        .map(|t| t.points)
        .fold(0u64, u64::saturating_add);
    let tier = if score <= config.threshold {
        RiskTier::Low
    } else if score <= config.high_above {
        RiskTier::Medium
    } else {
        RiskTier::High
    };
    let mut blockers = Vec::new();
    if score > config.threshold {
        blockers.push(format!(
            "risk {score} is above the threshold {}",
            config.threshold
        ));
    }
    if inputs.validations.is_empty() {
        blockers.push("no [[validate]] command is configured, so nothing was checked".into());
    }
    for v in inputs.validations.iter().filter(|v| !v.passed()) {
        blockers.push(format!(
            "validation `{}` {} ({} errors, {} failures)",
            v.name,
            match v.status {
                crate::validate::ValidationStatus::TimedOut => "timed out",
                crate::validate::ValidationStatus::Error => "could not run",
                _ => "failed",
            },
            v.errors,
            v.failures
        ));
    }
    if type_errors > 0 && !blockers.iter().any(|b| b.contains("errors")) {
        blockers.push(format!("{type_errors} type errors"));
    }
    if inputs.breaking && !config.auto_merge_breaking {
        blockers.push(
            "a carried commit is a breaking change (risk.auto_merge_breaking = false)".into(),
        );
    }
    if inputs.stopped_on_conflict {
        blockers.push("a cherry-pick conflicted and on_conflict = \"stop\"".into());
    }
    RiskReport {
        terms,
        score,
        threshold: config.threshold,
        tier,
        files_changed: inputs.files_changed,
        migrations,
        auto_merge: blockers.is_empty(),
        blockers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RiskWeights;
    use crate::glob::GlobSet;
    use crate::validate::ValidationStatus;

    fn config() -> RiskConfig {
        RiskConfig {
            threshold: 5,
            high_above: 10,
            weights: RiskWeights::default(),
            migrations: GlobSet::new(&["**/migrations/**"]),
            auto_merge_breaking: false,
        }
    }

    fn outcome(
        kind: ValidateKind,
        status: ValidationStatus,
        errors: u64,
        failures: u64,
    ) -> ValidationOutcome {
        ValidationOutcome {
            name: "v".into(),
            kind,
            command: "c".into(),
            status,
            exit_code: Some(0),
            duration_ms: 0,
            errors,
            failures,
            parsed: true,
            output_tail: String::new(),
        }
    }

    #[test]
    fn the_formula() {
        let validations = [
            outcome(ValidateKind::TypeCheck, ValidationStatus::Failed, 2, 0),
            outcome(ValidateKind::Test, ValidationStatus::Failed, 0, 1),
        ];
        let r = assess(
            &config(),
            RiskInputs {
                files_changed: vec!["a".into(), "db/migrations/1.sql".into()],
                breaking: false,
                stopped_on_conflict: false,
                validations: &validations,
            },
        );
        // 2 files + 3×2 + 5×1 + 2 = 15
        assert_eq!(r.score, 15);
        assert_eq!(r.tier, RiskTier::High);
        assert!(!r.auto_merge);
        assert!(r.arithmetic().ends_with("= 15"), "{}", r.arithmetic());
    }

    #[test]
    fn low_risk_clean_merges_but_breaking_does_not() {
        let validations = [outcome(ValidateKind::Test, ValidationStatus::Passed, 0, 0)];
        let inputs = |breaking| RiskInputs {
            files_changed: vec!["a".into(), "b".into()],
            breaking,
            stopped_on_conflict: false,
            validations: &validations,
        };
        let r = assess(&config(), inputs(false));
        assert_eq!((r.score, r.tier, r.auto_merge), (2, RiskTier::Low, true));
        let r = assess(&config(), inputs(true));
        assert!(!r.auto_merge);
        assert!(r.blockers[0].contains("breaking"));
    }
}
