//! Parity across N places: does every place hold every key, with the same value?
//!
//! [`ParityMatrix::build`] lines up the keys of several labelled observations (a `.env` file,
//! Render, GitHub…) and judges each cell against the first place that holds a readable value
//! (the reference, usually the canonical source). Write-only cells are compared through the
//! fingerprint of Bridge's last write; when that is missing or the platform reports a change
//! since, the cell is *unknown*, never assumed equal. [`ParityMatrix::report`] renders the
//! seed's report: `verified_at, has_drift, missing_in_<label>[], conflicts{KEY:{label:value}},
//! summary{total_keys, <label>_count, drift_count}`, with secret values shown as `"<secret>"`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diff::{Observed, ObservedSet};
use crate::filter::KeyFilter;
use crate::secret::{Fingerprint, FingerprintKey, SecretClassifier};

/// One place and what it was observed to hold.
#[derive(Debug, Clone)]
pub struct ParityColumn {
    pub label: String,
    pub observed: ObservedSet,
}

/// How one place's value for one key compares with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// Equal to the reference (or the reference itself).
    Same,
    /// Present with another value.
    Differs,
    /// Absent.
    Missing,
    /// Present, write-only, and not comparable.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    InParity,
    Drift,
    /// No cell is missing or differs, but some cannot be judged.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct ParityRow {
    pub key: String,
    pub secret: bool,
    pub cells: Vec<Cell>,
    pub status: RowStatus,
    /// What each place shows for the report: the value, `"<secret>"`, or `None` when absent.
    shown: Vec<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct ParityMatrix {
    pub labels: Vec<String>,
    pub rows: Vec<ParityRow>,
    pub counts: Vec<usize>,
}

/// The placeholder a report shows for a secret value.
pub const SECRET_PLACEHOLDER: &str = "<secret>";

impl ParityMatrix {
    pub fn build(
        columns: &[ParityColumn],
        filter: &KeyFilter,
        classifier: &SecretClassifier,
        fingerprints: Option<&FingerprintKey>,
    ) -> Self {
        let mut keys: BTreeMap<&str, ()> = BTreeMap::new();
        for column in columns {
            for key in column.observed.keys().filter(|k| filter.allows(k)) {
                keys.insert(key, ());
            }
        }
        let counts = columns
            .iter()
            .map(|c| c.observed.keys().filter(|k| filter.allows(k)).count())
            .collect();
        let rows = keys
            .into_keys()
            .map(|key| Self::row(key, columns, classifier, fingerprints))
            .collect();
        Self {
            labels: columns.iter().map(|c| c.label.clone()).collect(),
            rows,
            counts,
        }
    }

    fn row(
        key: &str,
        columns: &[ParityColumn],
        classifier: &SecretClassifier,
        fingerprints: Option<&FingerprintKey>,
    ) -> ParityRow {
        let observed: Vec<Option<&Observed>> =
            columns.iter().map(|c| c.observed.get(key)).collect();
        // Secret if the name says so or any place's value carries a credential.
        let secret = classifier.is_secret(key)
            || observed.iter().flatten().any(|o| match o {
                Observed::Value(v) => classifier.is_secret_entry(key, v),
                Observed::WriteOnly(_) => true,
            });

        // Compare by fingerprint where a key is available (that is what makes write-only
        // values comparable); otherwise compare readable values directly.
        #[derive(PartialEq)]
        enum Token<'a> {
            Fp(Fingerprint),
            Plain(&'a str),
        }
        fn token<'a>(o: &'a Observed, fingerprints: Option<&FingerprintKey>) -> Option<Token<'a>> {
            match o {
                Observed::Value(v) => Some(match fingerprints {
                    Some(k) => Token::Fp(k.fingerprint(v)),
                    None => Token::Plain(v.expose()),
                }),
                Observed::WriteOnly(s) if !s.changed_since_record && fingerprints.is_some() => {
                    s.recorded.map(Token::Fp)
                }
                Observed::WriteOnly(_) => None,
            }
        }
        let tokens: Vec<Option<Token<'_>>> = observed
            .iter()
            .map(|o| o.and_then(|o| token(o, fingerprints)))
            .collect();
        let reference = tokens.iter().flatten().next();

        let cells: Vec<Cell> = observed
            .iter()
            .zip(&tokens)
            .map(|(o, t)| match (o, t) {
                (None, _) => Cell::Missing,
                (Some(_), None) => Cell::Unknown,
                (Some(_), Some(t)) if Some(t) == reference => Cell::Same,
                (Some(_), Some(_)) => Cell::Differs,
            })
            .collect();
        let status = if cells
            .iter()
            .any(|c| matches!(c, Cell::Missing | Cell::Differs))
        {
            RowStatus::Drift
        } else if cells.contains(&Cell::Unknown) {
            RowStatus::Unknown
        } else {
            RowStatus::InParity
        };
        let shown = observed
            .iter()
            .map(|o| {
                o.map(|o| match o {
                    Observed::Value(v) if !secret => v.expose().to_string(),
                    _ => SECRET_PLACEHOLDER.to_string(),
                })
            })
            .collect();
        ParityRow {
            key: key.to_string(),
            secret,
            cells,
            status,
            shown,
        }
    }

    pub fn drift_count(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.status == RowStatus::Drift)
            .count()
    }

    pub fn has_drift(&self) -> bool {
        self.drift_count() > 0
    }

    /// The seed's parity report. `verified_at` is passed in: this crate reads no clock.
    pub fn report(&self, verified_at: String) -> ParityReport {
        let mut missing = BTreeMap::new();
        for (i, label) in self.labels.iter().enumerate() {
            let keys: Vec<String> = self
                .rows
                .iter()
                .filter(|r| r.cells[i] == Cell::Missing)
                .map(|r| r.key.clone())
                .collect();
            missing.insert(format!("missing_in_{label}"), keys);
        }
        let mut conflicts = BTreeMap::new();
        let mut unknown = BTreeMap::new();
        for row in &self.rows {
            if row.cells.contains(&Cell::Differs) {
                let by_label = self
                    .labels
                    .iter()
                    .zip(&row.shown)
                    .filter_map(|(l, s)| Some((l.clone(), s.clone()?)))
                    .collect();
                conflicts.insert(row.key.clone(), by_label);
            }
            let unknown_in: Vec<String> = self
                .labels
                .iter()
                .zip(&row.cells)
                .filter(|(_, c)| **c == Cell::Unknown)
                .map(|(l, _)| l.clone())
                .collect();
            if !unknown_in.is_empty() {
                unknown.insert(row.key.clone(), unknown_in);
            }
        }
        let counts = self
            .labels
            .iter()
            .zip(&self.counts)
            .map(|(l, n)| (format!("{l}_count"), *n))
            .collect();
        ParityReport {
            verified_at,
            has_drift: self.has_drift(),
            platforms: self.labels.clone(),
            missing,
            conflicts,
            unknown,
            summary: ParitySummary {
                total_keys: self.rows.len(),
                counts,
                drift_count: self.drift_count(),
                unknown_count: self
                    .rows
                    .iter()
                    .filter(|r| r.status == RowStatus::Unknown)
                    .count(),
            },
        }
    }
}

/// The parity report as written to `--report FILE.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    pub verified_at: String,
    pub has_drift: bool,
    pub platforms: Vec<String>,
    #[serde(flatten)]
    pub missing: BTreeMap<String, Vec<String>>,
    pub conflicts: BTreeMap<String, BTreeMap<String, String>>,
    /// Keys whose write-only value could not be compared, with the places concerned.
    pub unknown: BTreeMap<String, Vec<String>>,
    pub summary: ParitySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParitySummary {
    pub total_keys: usize,
    #[serde(flatten)]
    pub counts: BTreeMap<String, usize>,
    pub drift_count: usize,
    pub unknown_count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{WriteOnlyState, observe_readable};
    use crate::envset::EnvSet;
    use crate::secret::SecretValue;

    fn column(label: &str, pairs: &[(&str, &str)]) -> ParityColumn {
        let set: EnvSet = pairs.iter().map(|(k, v)| (*k, *v)).collect();
        ParityColumn {
            label: label.into(),
            observed: observe_readable(&set),
        }
    }

    #[test]
    fn report_has_the_seed_shape() {
        let columns = [
            column("local", &[("A", "1"), ("B", "2"), ("API_TOKEN", "s1")]),
            column("render", &[("A", "1"), ("B", "3"), ("API_TOKEN", "s2")]),
            column("netlify", &[("A", "1"), ("C", "x")]),
        ];
        let m = ParityMatrix::build(
            &columns,
            &KeyFilter::default(),
            &SecretClassifier::default(),
            None,
        );
        let report = serde_json::to_value(m.report("2026-11-22T00:00:00Z".into())).unwrap();
        assert_eq!(report["has_drift"], true);
        assert_eq!(report["missing_in_local"], serde_json::json!(["C"]));
        assert_eq!(
            report["missing_in_netlify"],
            serde_json::json!(["API_TOKEN", "B"])
        );
        assert_eq!(report["missing_in_render"], serde_json::json!(["C"]));
        assert_eq!(report["conflicts"]["B"]["local"], "2");
        assert_eq!(report["conflicts"]["B"]["render"], "3");
        assert_eq!(report["conflicts"]["API_TOKEN"]["render"], "<secret>");
        assert!(report["conflicts"].get("A").is_none());
        assert_eq!(report["summary"]["total_keys"], 4);
        assert_eq!(report["summary"]["local_count"], 3);
        assert_eq!(report["summary"]["netlify_count"], 2);
        assert_eq!(report["summary"]["drift_count"], 3);
        let text = report.to_string();
        assert!(!text.contains("s1") && !text.contains("s2"), "{text}");
    }

    #[test]
    fn write_only_cells_compare_by_recorded_fingerprint() {
        let key = FingerprintKey::from_bytes([3; 32]);
        let mut github = ObservedSet::new();
        let recorded = Some(key.fingerprint(&SecretValue::new("v")));
        github.insert(
            "T".into(),
            Observed::WriteOnly(WriteOnlyState {
                recorded,
                changed_since_record: false,
            }),
        );
        github.insert(
            "U".into(),
            Observed::WriteOnly(WriteOnlyState {
                recorded: None,
                changed_since_record: false,
            }),
        );
        let columns = [
            column("local", &[("T", "v"), ("U", "w")]),
            ParityColumn {
                label: "github".into(),
                observed: github,
            },
        ];
        let m = ParityMatrix::build(
            &columns,
            &KeyFilter::default(),
            &SecretClassifier::default(),
            Some(&key),
        );
        assert_eq!(m.rows[0].cells, vec![Cell::Same, Cell::Same]);
        assert_eq!(m.rows[1].cells, vec![Cell::Same, Cell::Unknown]);
        assert_eq!(m.rows[1].status, RowStatus::Unknown);
        assert!(!m.has_drift());
        let report = m.report(String::new());
        assert_eq!(report.unknown["U"], vec!["github".to_string()]);
    }
}
