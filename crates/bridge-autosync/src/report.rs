//! What `plan`, `run` and `status` return: serialisable reports (the CLI prints them as
//! JSON with `--output json`) with a text rendering for people, and the pull-request body.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::risk::RiskReport;
use crate::select::PlannedCommit;
use crate::state::LastRun;
use crate::validate::{ValidationOutcome, ValidationStatus};

/// What `run` would do, per source.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// When the plan was made (RFC 3339).
    pub generated_at: String,
    /// The target repository and branch.
    pub target: TargetInfo,
    /// One entry per configured source, in order.
    pub sources: Vec<SourcePlan>,
}

/// The target as a report names it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetInfo {
    /// Its working directory.
    pub path: String,
    /// The branch merged into.
    pub branch: String,
    /// That branch's commit when the report was made.
    pub head: Option<String>,
}

/// What `run` would do with one source.
#[derive(Clone, Debug, Serialize)]
pub struct SourcePlan {
    /// The source's name.
    pub name: String,
    /// Its URL without credentials.
    pub url: String,
    /// The branch followed.
    pub branch: String,
    /// The integration branch in the target.
    pub integration_branch: String,
    /// The source branch's commit now.
    pub head: Option<String>,
    /// The head recorded by the last run (everything up to it has an outcome).
    pub previous_head: Option<String>,
    /// Attempts `ls-remote` needed.
    pub fetch_attempts: u32,
    /// Commits to carry, oldest first.
    pub selected: Vec<PlannedCommit>,
    /// Commits not carried, with the reason.
    pub skipped: Vec<PlannedCommit>,
    /// Distinct paths the selected commits touch.
    pub files_touched: usize,
    /// Whether any of them is a schema migration.
    pub migrations_touched: bool,
    /// Whether a selected commit is a breaking change.
    pub breaking: bool,
    /// `nothing_to_do`, `merge_if_validation_passes` or `pull_request`, from what is known
    /// before validation.
    pub expected: String,
    /// Why this source could not be planned (the others still were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A commit carried onto the integration branch.
#[derive(Clone, Debug, Serialize)]
pub struct PickedCommit {
    /// Its id in the source.
    pub sha: String,
    /// Its id in the target.
    pub target_sha: String,
    /// Its subject.
    pub subject: String,
}

/// A cherry-pick that conflicted and was aborted.
#[derive(Clone, Debug, Serialize)]
pub struct ConflictRecord {
    /// Its id in the source.
    pub sha: String,
    /// Its subject.
    pub subject: String,
    /// The conflicting paths.
    pub files: Vec<String>,
}

/// How one source's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOutcome {
    /// No new commit to carry.
    NothingToDo,
    /// Fast-forwarded into the target branch.
    Merged,
    /// A pull request was opened (or an open one updated).
    PullRequest,
    /// Review is needed but no `[github]` is configured: the integration branch waits.
    Review,
    /// Every selected commit conflicted (or was already applied); nothing to validate.
    Conflict,
    /// git, the network or GitHub failed.
    Failed,
}

impl SourceOutcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NothingToDo => "nothing_to_do",
            Self::Merged => "merged",
            Self::PullRequest => "pull_request",
            Self::Review => "review",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
        }
    }
}

/// How the whole run ended; the CLI maps it to an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Nothing new anywhere.
    NothingToDo,
    /// Everything new was merged (some commits may have been skipped by the filters).
    Merged,
    /// A human is needed: a pull request, a branch waiting for review, or a conflict.
    NeedsReview,
    /// A source failed (git, network, GitHub).
    Failed,
}

impl RunOutcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NothingToDo => "nothing_to_do",
            Self::Merged => "merged",
            Self::NeedsReview => "needs_review",
            Self::Failed => "failed",
        }
    }
}

/// The pull request a source's run opened or updated.
#[derive(Clone, Debug, Serialize)]
pub struct PullRequestInfo {
    /// Its number.
    pub number: u64,
    /// Its page.
    pub url: String,
    /// Whether this run opened it (false: it was open already).
    pub created: bool,
    /// The labels added.
    pub labels: Vec<String>,
}

/// A fast-forward of the target branch.
#[derive(Clone, Debug, Serialize)]
pub struct MergeInfo {
    /// The target branch before.
    pub from: String,
    /// And after.
    pub to: String,
    /// Pushed to `target.remote`.
    pub pushed: bool,
}

/// One source's run.
#[derive(Clone, Debug, Serialize)]
pub struct SourceRun {
    /// The plan it followed.
    #[serde(flatten)]
    pub plan: SourcePlan,
    /// Commits carried onto the integration branch.
    pub picked: Vec<PickedCommit>,
    /// Cherry-picks that conflicted (aborted).
    pub conflicts: Vec<ConflictRecord>,
    /// Commits whose changes the target already had (empty cherry-picks).
    pub already_applied: Vec<String>,
    /// Whether `on_conflict = "stop"` stopped this source.
    pub stopped: bool,
    /// Validation outcomes.
    pub validation: Vec<ValidationOutcome>,
    /// The risk score and decision.
    pub risk: Option<RiskReport>,
    /// How it ended.
    pub outcome: SourceOutcome,
    /// The fast-forward, when merged.
    pub merge: Option<MergeInfo>,
    /// The pull request, when one was opened or updated.
    pub pull_request: Option<PullRequestInfo>,
    /// Whether the integration branch was pushed to `target.remote`.
    pub pushed_branch: bool,
    /// Commits the integration branch holds beyond the target branch (this run's picks and
    /// any still awaiting review).
    pub branch_commits: usize,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// This run's id (also in every event).
    pub run_id: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// The target.
    pub target: TargetInfo,
    /// Per source.
    pub sources: Vec<SourceRun>,
    /// Overall.
    pub outcome: RunOutcome,
}

/// What the state file records.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The state file.
    pub state_file: String,
    /// Whether it exists yet.
    pub exists: bool,
    /// Per source (configured ones first, then any the file still holds).
    pub sources: Vec<SourceStatus>,
    /// The last run.
    pub last_run: Option<LastRun>,
}

/// One source in the state file.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// Its name.
    pub name: String,
    /// Whether the configuration still names it.
    pub configured: bool,
    /// Its URL (without credentials), as recorded.
    pub url: String,
    /// Everything up to this head has an outcome.
    pub synced_head: Option<String>,
    /// Commits with an outcome.
    pub processed: usize,
    /// How many per outcome.
    pub by_outcome: BTreeMap<String, usize>,
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn commit_line(out: &mut String, c: &PlannedCommit) {
    let bang = if c.breaking { " [BREAKING]" } else { "" };
    let _ = write!(out, "    {}  {}{bang}", short(&c.sha), c.subject);
    if let Some(detail) = &c.detail {
        let _ = write!(
            out,
            "\n        {}: {detail}",
            c.reason.map_or("", |r| r.as_str())
        );
    }
    out.push('\n');
}

fn source_plan_text(out: &mut String, p: &SourcePlan) {
    let _ = writeln!(out, "source {} ({} {})", p.name, p.url, p.branch);
    if let Some(error) = &p.error {
        let _ = writeln!(out, "  error: {error}");
        return;
    }
    let _ = writeln!(
        out,
        "  head {}{}",
        p.head.as_deref().map_or("-", short),
        p.previous_head
            .as_deref()
            .map(|h| format!(" (last run: {})", short(h)))
            .unwrap_or_default()
    );
    if p.fetch_attempts > 1 {
        let _ = writeln!(out, "  reached after {} attempts", p.fetch_attempts);
    }
    let _ = writeln!(out, "  selected {}:", p.selected.len());
    for c in &p.selected {
        commit_line(out, c);
    }
    let _ = writeln!(out, "  skipped {}:", p.skipped.len());
    for c in &p.skipped {
        commit_line(out, c);
    }
}

impl PlanReport {
    /// The plan for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {} ({} at {})",
            self.target.path,
            self.target.branch,
            self.target.head.as_deref().map_or("-", short)
        );
        for p in &self.sources {
            source_plan_text(&mut out, p);
            if p.error.is_none() {
                let _ = writeln!(
                    out,
                    "  would: {} (onto {}; {} files{}{})",
                    p.expected.replace('_', " "),
                    p.integration_branch,
                    p.files_touched,
                    if p.migrations_touched {
                        ", migrations"
                    } else {
                        ""
                    },
                    if p.breaking { ", breaking change" } else { "" },
                );
            }
        }
        out
    }

    /// Whether any source could not be planned.
    pub fn has_errors(&self) -> bool {
        self.sources.iter().any(|s| s.error.is_some())
    }
}

impl RunReport {
    /// The run for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            source_plan_text(&mut out, &s.plan);
            for p in &s.picked {
                let _ = writeln!(
                    out,
                    "  picked {} -> {}  {}",
                    short(&p.sha),
                    short(&p.target_sha),
                    p.subject
                );
            }
            for c in &s.conflicts {
                let _ = writeln!(
                    out,
                    "  conflict {}  {} ({}), aborted",
                    short(&c.sha),
                    c.subject,
                    c.files.join(", ")
                );
            }
            for sha in &s.already_applied {
                let _ = writeln!(out, "  already applied {}", short(sha));
            }
            if s.stopped {
                let _ = writeln!(out, "  stopped at the conflict (on_conflict = \"stop\")");
            }
            for v in &s.validation {
                let _ = writeln!(
                    out,
                    "  validate {} [{}]: {} ({} errors, {} failures, {} ms)",
                    v.name,
                    v.kind.as_str(),
                    status_word(v.status),
                    v.errors,
                    v.failures,
                    v.duration_ms
                );
            }
            if let Some(r) = &s.risk {
                let _ = writeln!(
                    out,
                    "  risk {} ({}), threshold {}: {}",
                    r.score,
                    r.tier.as_str(),
                    r.threshold,
                    r.arithmetic()
                );
                for b in &r.blockers {
                    let _ = writeln!(out, "    not merged: {b}");
                }
            }
            if let Some(m) = &s.merge {
                let _ = writeln!(
                    out,
                    "  merged: {} {} -> {}{}",
                    self.target.branch,
                    short(&m.from),
                    short(&m.to),
                    if m.pushed { " (pushed)" } else { "" }
                );
            }
            if let Some(pr) = &s.pull_request {
                let _ = writeln!(
                    out,
                    "  pull request #{} {} ({}) [{}]",
                    pr.number,
                    pr.url,
                    if pr.created { "opened" } else { "updated" },
                    pr.labels.join(", ")
                );
            }
            let _ = writeln!(out, "  outcome: {}", s.outcome.as_str().replace('_', " "));
        }
        let _ = writeln!(
            out,
            "run {}: {}",
            self.run_id,
            self.outcome.as_str().replace('_', " ")
        );
        out
    }
}

fn status_word(s: ValidationStatus) -> &'static str {
    match s {
        ValidationStatus::Passed => "passed",
        ValidationStatus::Failed => "failed",
        ValidationStatus::TimedOut => "timed out",
        ValidationStatus::Error => "could not run",
    }
}

impl StatusReport {
    /// The state for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "state file {}{}",
            self.state_file,
            if self.exists {
                ""
            } else {
                " (not written yet)"
            }
        );
        for s in &self.sources {
            let counts: Vec<String> = s
                .by_outcome
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            let _ = writeln!(
                out,
                "source {}{}: {} processed{}; synced to {}",
                s.name,
                if s.configured {
                    ""
                } else {
                    " (no longer configured)"
                },
                s.processed,
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", counts.join(", "))
                },
                s.synced_head.as_deref().map_or("-", short)
            );
        }
        match &self.last_run {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "last run {} .. {}: {}",
                    r.started_at, r.finished_at, r.outcome
                );
                for (name, outcome) in &r.sources {
                    let _ = writeln!(out, "  {name}: {outcome}");
                }
            }
            None => {
                let _ = writeln!(out, "no run yet");
            }
        }
        out
    }
}

/// The pull request's body: the plan, what was carried, validation and the risk
/// arithmetic. Redacted by the caller.
pub(crate) fn pull_request_body(run: &SourceRun, target_branch: &str) -> String {
    let p = &run.plan;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Auto-Sync carried {} commit(s) from **{}** (`{}` {}) onto `{}`, for `{target_branch}`.\n",
        run.branch_commits.max(run.picked.len()),
        p.name,
        p.url,
        p.branch,
        p.integration_branch
    );
    out.push_str("### Commits\n\n| source | target | type | subject |\n|---|---|---|---|\n");
    for c in &run.picked {
        let planned = p.selected.iter().find(|s| s.sha == c.sha);
        let kind = planned.and_then(|s| s.kind.clone()).unwrap_or_default();
        let bang = if planned.is_some_and(|s| s.breaking) {
            " **BREAKING**"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {kind} | {}{bang} |",
            short(&c.sha),
            short(&c.target_sha),
            c.subject.replace('|', "\\|")
        );
    }
    if !run.conflicts.is_empty() {
        out.push_str("\n### Conflicts (aborted, not carried)\n\n");
        for c in &run.conflicts {
            let _ = writeln!(
                out,
                "- `{}` {} — {}",
                short(&c.sha),
                c.subject,
                c.files.join(", ")
            );
        }
        if run.stopped {
            out.push_str("\nThe source stopped at the first conflict (`on_conflict = \"stop\"`); later commits wait for it.\n");
        }
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>Skipped ({})</summary>\n",
            p.skipped.len()
        );
        for c in &p.skipped {
            let _ = writeln!(
                out,
                "- `{}` {} — {}",
                short(&c.sha),
                c.subject,
                c.detail.as_deref().unwrap_or_default()
            );
        }
        out.push_str("\n</details>\n");
    }
    out.push_str("\n### Validation\n\n");
    if run.validation.is_empty() {
        out.push_str("No validation commands are configured.\n");
    } else {
        out.push_str(
            "| name | kind | result | errors | failures | time |\n|---|---|---|---|---|---|\n",
        );
        for v in &run.validation {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} ms |",
                v.name,
                v.kind.as_str(),
                status_word(v.status),
                v.errors,
                v.failures,
                v.duration_ms
            );
        }
        for v in run.validation.iter().filter(|v| !v.passed()) {
            let _ = writeln!(
                out,
                "\n<details><summary>{} output (last lines)</summary>\n\n```\n{}\n```\n</details>",
                v.name, v.output_tail
            );
        }
    }
    if let Some(r) = &run.risk {
        let _ = writeln!(
            out,
            "\n### Risk: {} ({})\n\n`{}` (threshold {})\n",
            r.score,
            r.tier.as_str(),
            r.arithmetic(),
            r.threshold
        );
        if !r.migrations.is_empty() {
            let _ = writeln!(out, "Migrations touched: {}\n", r.migrations.join(", "));
        }
        if !r.blockers.is_empty() {
            out.push_str("Not merged automatically because:\n");
            for b in &r.blockers {
                let _ = writeln!(out, "- {b}");
            }
        }
    }
    out
}
