//! Parity across N places: does every place hold every key, with the same value?
//!
//! [`ParityMatrix::build`] lines up the keys of several labelled observations (a `.env` file,
//! Render, GitHub…) and judges each place's value for each key against the first place (the
//! source), in one vocabulary ([`Cell`]): `equal`, `different`, `missing` (in the source,
//! absent here), `extra` (here, absent from the source), `unknown` (write-only, never written
//! by Bridge), `changed_outside` (write-only, its stamp moved since Bridge's write),
//! `protected` (on the protect list: Bridge never writes it, so does not judge it). Values are
//! compared with the first readable value among the places; write-only ones through the
//! fingerprint of Bridge's last write, never assumed equal. [`ParityMatrix::report`] renders
//! the seed's report (`verified_at, has_drift, missing_in_<label>[], conflicts{KEY:{label:
//! value}}, summary{total_keys, <label>_count, drift_count}`) plus `extra_in_<label>[]`,
//! `changed_outside{KEY:{label:stamp}}`, `unknown{KEY:[labels]}`, `protected[]` and `proven`, with secret
//! values shown as `"<secret>"`. `has_drift` counts missing, extra, different and
//! changed-outside keys; `proven` is false while any key is unknown.

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

/// How one place's value for one key compares with the source (the first place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// Equal to the source's (or the source's own value).
    Equal,
    /// Present with another value.
    Different,
    /// In the source, absent here.
    Missing,
    /// Here, absent from the source.
    Extra,
    /// Write-only here and never written by Bridge: not comparable.
    Unknown,
    /// Write-only here, and the platform's stamp moved since Bridge wrote it.
    ChangedOutside,
    /// On the protect list: a platform manages it (Render's `DATABASE_URL`), Bridge never
    /// writes it, so whatever it holds here is neither drift nor unproven.
    Protected,
    /// Absent here and from the source: nothing to judge.
    Absent,
}

impl Cell {
    /// Whether this cell is drift: the place does not hold what the source says.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            Cell::Different | Cell::Missing | Cell::Extra | Cell::ChangedOutside
        )
    }

    /// The word reports and events use.
    pub fn as_str(self) -> &'static str {
        match self {
            Cell::Equal => "equal",
            Cell::Different => "different",
            Cell::Missing => "missing",
            Cell::Extra => "extra",
            Cell::Unknown => "unknown",
            Cell::ChangedOutside => "changed_outside",
            Cell::Protected => "protected",
            Cell::Absent => "absent",
        }
    }
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
    /// The platform's stamp of each changed-outside cell.
    stamps: Vec<Option<String>>,
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
    /// Lines up `columns` (the first is the source). Keys on `protect` are judged at no
    /// place but the source: their cells elsewhere are [`Cell::Protected`].
    pub fn build(
        columns: &[ParityColumn],
        filter: &KeyFilter,
        classifier: &SecretClassifier,
        fingerprints: Option<&FingerprintKey>,
        protect: &[String],
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
            .map(|key| {
                let protected = protect.iter().any(|p| p == key);
                Self::row(key, columns, classifier, fingerprints, protected)
            })
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
        protected: bool,
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

        let in_source = observed.first().is_some_and(Option::is_some);
        let cells: Vec<Cell> = observed
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(i, (o, t))| match (o, t) {
                (None, _) if i > 0 && protected && in_source => Cell::Protected,
                (Some(_), _) if i > 0 && protected => Cell::Protected,
                (None, _) if in_source => Cell::Missing,
                (None, _) => Cell::Absent,
                // A key the source does not hold is extra wherever it is, whatever its value.
                (Some(_), _) if !in_source && i > 0 => Cell::Extra,
                (Some(Observed::WriteOnly(s)), None) if s.changed_since_record => {
                    Cell::ChangedOutside
                }
                (Some(_), None) => Cell::Unknown,
                (Some(_), Some(t)) if Some(t) == reference => Cell::Equal,
                (Some(_), Some(_)) => Cell::Different,
            })
            .collect();
        let stamps = observed
            .iter()
            .zip(&cells)
            .map(|(o, c)| match (o, c) {
                (Some(Observed::WriteOnly(s)), Cell::ChangedOutside) => {
                    Some(s.updated_at.clone().unwrap_or_default())
                }
                _ => None,
            })
            .collect();
        let status = if cells.iter().any(|c| c.is_drift()) {
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
            stamps,
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

    /// Whether every key could be judged: no value is unknown.
    pub fn proven(&self) -> bool {
        !self.rows.iter().any(|r| r.cells.contains(&Cell::Unknown))
    }

    /// How many keys drift at each place after the source: what a heal of that place would
    /// write, and what the drift gauge shows.
    pub fn drift_by_place(&self) -> BTreeMap<String, usize> {
        self.labels
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, label)| {
                let n = self.rows.iter().filter(|r| r.cells[i].is_drift()).count();
                (label.clone(), n)
            })
            .collect()
    }

    /// The keys whose cell at place `index` is `cell`.
    fn keys_at(&self, index: usize, cell: Cell) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.cells[index] == cell)
            .map(|r| r.key.clone())
            .collect()
    }

    /// The seed's parity report. `verified_at` is passed in: this crate reads no clock.
    pub fn report(&self, verified_at: String) -> ParityReport {
        let mut missing = BTreeMap::new();
        let mut extra = BTreeMap::new();
        for (i, label) in self.labels.iter().enumerate() {
            missing.insert(
                format!("missing_in_{label}"),
                self.keys_at(i, Cell::Missing),
            );
            extra.insert(format!("extra_in_{label}"), self.keys_at(i, Cell::Extra));
        }
        let protected = self
            .rows
            .iter()
            .filter(|r| r.cells.contains(&Cell::Protected))
            .map(|r| r.key.clone())
            .collect();
        let mut conflicts = BTreeMap::new();
        let mut unknown = BTreeMap::new();
        let mut changed_outside = BTreeMap::new();
        for row in &self.rows {
            let stamped: BTreeMap<String, String> = self
                .labels
                .iter()
                .zip(&row.stamps)
                .filter_map(|(l, s)| Some((l.clone(), s.clone()?)))
                .collect();
            if !stamped.is_empty() {
                changed_outside.insert(row.key.clone(), stamped);
            }
            if row.cells.contains(&Cell::Different) {
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
            proven: self.proven(),
            platforms: self.labels.clone(),
            missing,
            extra,
            conflicts,
            changed_outside,
            unknown,
            protected,
            drift_by_place: self.drift_by_place(),
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
    /// Any key missing, extra, different or changed outside Bridge.
    pub has_drift: bool,
    /// Every key was judged: none is unknown. Parity holds only when this is true too.
    pub proven: bool,
    pub platforms: Vec<String>,
    /// `missing_in_<label>`: in the source, absent there.
    #[serde(flatten)]
    pub missing: BTreeMap<String, Vec<String>>,
    /// `extra_in_<label>`: there, absent from the source.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Vec<String>>,
    pub conflicts: BTreeMap<String, BTreeMap<String, String>>,
    /// Write-only values whose platform stamp moved since Bridge wrote them: `{KEY: {label:
    /// stamp}}`.
    pub changed_outside: BTreeMap<String, BTreeMap<String, String>>,
    /// Keys whose write-only value could not be compared, with the places concerned.
    pub unknown: BTreeMap<String, Vec<String>>,
    /// Keys on the protect list: Bridge never writes them, so judges them nowhere.
    pub protected: Vec<String>,
    /// Keys drifted per place after the source (see [`ParityMatrix::drift_by_place`]); not
    /// part of the seed's report.
    #[serde(skip)]
    pub drift_by_place: BTreeMap<String, usize>,
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
            &[],
        );
        let report = serde_json::to_value(m.report("2026-11-22T00:00:00Z".into())).unwrap();
        assert_eq!(report["has_drift"], true);
        // C is only on netlify: extra there, not missing from the source nor render.
        assert_eq!(report["missing_in_local"], serde_json::json!([]));
        assert_eq!(report["extra_in_netlify"], serde_json::json!(["C"]));
        assert_eq!(
            report["missing_in_netlify"],
            serde_json::json!(["API_TOKEN", "B"])
        );
        assert_eq!(report["missing_in_render"], serde_json::json!([]));
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
                ..WriteOnlyState::default()
            }),
        );
        github.insert("U".into(), Observed::WriteOnly(WriteOnlyState::default()));
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
            &[],
        );
        assert_eq!(m.rows[0].cells, vec![Cell::Equal, Cell::Equal]);
        assert_eq!(m.rows[1].cells, vec![Cell::Equal, Cell::Unknown]);
        assert_eq!(m.rows[1].status, RowStatus::Unknown);
        assert!(!m.has_drift());
        // Not drift, but not parity either: unproven.
        assert!(!m.proven());
        let report = m.report(String::new());
        assert_eq!(report.unknown["U"], vec!["github".to_string()]);
        assert!(!report.proven);
    }

    /// A write-only value whose stamp moved since Bridge wrote it is drift, changed outside
    /// Bridge at its stamp; never unknown, never equal.
    #[test]
    fn a_write_only_value_changed_outside_bridge_is_drift_with_its_stamp() {
        let key = FingerprintKey::from_bytes([3; 32]);
        let mut github = ObservedSet::new();
        github.insert(
            "T".into(),
            Observed::WriteOnly(WriteOnlyState {
                recorded: Some(key.fingerprint(&SecretValue::new("v"))),
                changed_since_record: true,
                updated_at: Some("2026-12-01T10:00:00Z".into()),
            }),
        );
        let columns = [
            column("local", &[("T", "v")]),
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
            &[],
        );
        assert_eq!(m.rows[0].cells, vec![Cell::Equal, Cell::ChangedOutside]);
        assert!(m.has_drift());
        assert!(m.proven());
        let report = serde_json::to_value(m.report(String::new())).unwrap();
        assert_eq!(report["has_drift"], true);
        assert_eq!(
            report["changed_outside"]["T"]["github"],
            "2026-12-01T10:00:00Z"
        );
        assert_eq!(report["unknown"], serde_json::json!({}));
    }

    /// A key added by hand on one target is extra there only: the other targets, which do
    /// not hold it either, are not drifted by it.
    #[test]
    fn a_key_only_on_one_target_is_extra_there_and_nowhere_else() {
        let columns = [
            column("local", &[("A", "1")]),
            column("render", &[("A", "1"), ("HAND_MADE", "x")]),
            column("github", &[("A", "1")]),
        ];
        let m = ParityMatrix::build(
            &columns,
            &KeyFilter::default(),
            &SecretClassifier::default(),
            None,
            &[],
        );
        let row = m.rows.iter().find(|r| r.key == "HAND_MADE").unwrap();
        assert_eq!(row.cells, vec![Cell::Absent, Cell::Extra, Cell::Absent]);
        let report = serde_json::to_value(m.report(String::new())).unwrap();
        assert_eq!(report["extra_in_render"], serde_json::json!(["HAND_MADE"]));
        assert_eq!(report["extra_in_github"], serde_json::json!([]));
        assert_eq!(report["missing_in_local"], serde_json::json!([]));
        assert_eq!(report["missing_in_github"], serde_json::json!([]));
        assert_eq!(report["has_drift"], true);
        assert_eq!(report["proven"], true);
    }

    #[test]
    fn protected_keys_are_judged_nowhere_but_in_the_source() {
        let columns = [
            column("local", &[("A", "1"), ("DATABASE_URL", "postgres://local")]),
            column(
                "render",
                &[("A", "1"), ("DATABASE_URL", "postgres://render")],
            ),
            column("netlify", &[("A", "1"), ("MANAGED_ELSEWHERE", "x")]),
        ];
        let protect = ["DATABASE_URL".to_string(), "MANAGED_ELSEWHERE".to_string()];
        let m = ParityMatrix::build(
            &columns,
            &KeyFilter::default(),
            &SecretClassifier::default(),
            None,
            &protect,
        );
        let cells = |key: &str| m.rows.iter().find(|r| r.key == key).unwrap().cells.clone();
        // Different on render and absent on netlify: protected at both, not drift.
        assert_eq!(
            cells("DATABASE_URL"),
            [Cell::Equal, Cell::Protected, Cell::Protected]
        );
        assert_eq!(
            cells("MANAGED_ELSEWHERE"),
            [Cell::Absent, Cell::Absent, Cell::Protected]
        );
        assert!(!m.has_drift());
        assert!(m.proven());
        let report = serde_json::to_value(m.report("t".into())).unwrap();
        assert_eq!(
            report["protected"],
            serde_json::json!(["DATABASE_URL", "MANAGED_ELSEWHERE"])
        );
        assert_eq!(report["conflicts"], serde_json::json!({}));
        // Without the list the same places drift.
        let unprotected = ParityMatrix::build(
            &columns,
            &KeyFilter::default(),
            &SecretClassifier::default(),
            None,
            &[],
        );
        assert!(unprotected.has_drift());
    }
}
