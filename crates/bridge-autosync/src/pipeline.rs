//! The pipeline: plan (poll, fetch, select), then for `run` integrate, validate, decide and
//! record. One source's failure is recorded in its report and does not stop the others.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bridge_core::SecretValue;
use serde_json::json;
use time::OffsetDateTime;

use crate::config::{AutosyncConfig, OnConflict, SourceConfig};
use crate::error::{AutosyncError, Result};
use crate::events::{AutosyncEvents, Emitter};
use crate::git::{self, Credentials, Git, LOG_FORMAT};
use crate::github::{GithubClient, NewPullRequest};
use crate::redact::{Redactor, split_credentials};
use crate::report::{
    ConflictRecord, MergeInfo, PickedCommit, PlanReport, PullRequestInfo, RunOutcome, RunReport,
    SourceOutcome, SourcePlan, SourceRun, SourceStatus, StatusReport, TargetInfo,
    pull_request_body,
};
use crate::risk::{self, RiskInputs};
use crate::select;
use crate::state::{LastRun, Processed, RunLock, STATE_VERSION, StateFile};
use crate::validate;
use crate::{DEFAULT_GITHUB_API_URL, Env};

/// What the run shares.
struct Ctx<'a> {
    config: &'a AutosyncConfig,
    env: &'a Env,
    git: Git,
    redactor: Redactor,
    /// Variables validation commands must not see.
    hidden_env: Vec<String>,
}

fn now() -> String {
    bridge_core::time::rfc3339(OffsetDateTime::now_utc())
}

impl<'a> Ctx<'a> {
    fn new(config: &'a AutosyncConfig, env: &'a Env) -> Self {
        let redactor = Redactor::new();
        let mut hidden_env = vec!["GITHUB_TOKEN".to_owned()];
        for source in &config.sources {
            if let (_, _, Some(password)) = split_credentials(&source.url) {
                redactor.register(&password);
            }
            if let Some(var) = &source.token_env {
                if let Some(token) = env.var(var) {
                    redactor.register(&token);
                }
                hidden_env.push(var.clone());
            }
        }
        if let Some(token) = env.var("GITHUB_TOKEN") {
            redactor.register(&token);
        }
        let git = Git::new(
            env.git_program.clone(),
            env.git_env.clone(),
            redactor.clone(),
        );
        Self {
            config,
            env,
            git,
            redactor,
            hidden_env,
        }
    }

    fn target(&self) -> &Path {
        &self.config.target.path
    }

    fn target_ref(&self) -> String {
        format!("refs/heads/{}", self.config.target.branch)
    }

    /// The target's branch head, after checking that the target is a repository.
    async fn target_head(&self) -> Result<String> {
        let dir = self.target();
        if !dir.is_dir() {
            return Err(AutosyncError::Config {
                path: self.config.path.clone(),
                message: format!("target.path {} is not a directory", dir.display()),
            });
        }
        let f = self
            .git
            .output(dir, &["rev-parse", "--git-dir"], None, None)
            .await?;
        if !f.success() {
            return Err(AutosyncError::Config {
                path: self.config.path.clone(),
                message: format!("target.path {} is not a git repository", dir.display()),
            });
        }
        if !self.git.commit_exists(dir, &self.target_ref()).await? {
            return Err(AutosyncError::Config {
                path: self.config.path.clone(),
                message: format!(
                    "target.branch `{}` does not exist in {}",
                    self.config.target.branch,
                    dir.display()
                ),
            });
        }
        self.git.rev_parse(dir, &self.target_ref()).await
    }

    /// The URL git is given (credentials removed) and the credentials sent as a header.
    fn remote_of(&self, source: &SourceConfig) -> Result<(String, Option<Credentials>)> {
        let (clean, user, password) = split_credentials(&source.url);
        let token =
            match &source.token_env {
                Some(var) => Some(self.env.var(var).ok_or_else(|| {
                    AutosyncError::MissingVariable {
                        variable: var.clone(),
                        purpose: format!(
                            "source `{}` names it in token_env; set it to a token that can read {}",
                            source.name,
                            source.display_url()
                        ),
                    }
                })?),
                None => password,
            };
        let creds = token.map(|t| Credentials {
            user: user.unwrap_or_else(|| "x-access-token".into()),
            token: SecretValue::new(t),
        });
        Ok((clean, creds))
    }

    /// A network git command, retried with linear backoff on transient failures.
    async fn with_retries(
        &self,
        op: &str,
        args: &[&str],
        creds: Option<&Credentials>,
    ) -> Result<(crate::process::Finished, u32)> {
        let fetch = &self.config.fetch;
        let attempts = fetch.retries + 1;
        let mut attempt = 1;
        loop {
            let f = self
                .git
                .output(self.target(), args, creds, Some(fetch.timeout))
                .await?;
            if f.success() {
                return Ok((f, attempt));
            }
            let stderr = String::from_utf8_lossy(&f.stderr);
            // ls-remote --exit-code answers 2 when the branch does not exist: not transient.
            let permanent = f.code == Some(2) || !git::is_transient(&stderr);
            if permanent || attempt >= attempts {
                return Err(self.git.failure(op, &f, attempt));
            }
            tokio::time::sleep(fetch.backoff * attempt).await;
            attempt += 1;
        }
    }
}

/// What planning one source found, with what `run` needs beyond the report.
struct Planned {
    report: SourcePlan,
    head: String,
}

fn tracking_ref(source: &SourceConfig) -> String {
    format!("refs/autosync/sources/{}", source.name)
}

/// Why a source is planned: `plan` must leave the target as it is; `run` needs the
/// commits in the target to cherry-pick them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Plan,
    Run,
}

/// The object directory of a source on this machine, so `plan` can read its commits in
/// place (git alternates) instead of copying them into the target.
async fn local_objects(ctx: &Ctx<'_>, url: &str) -> Option<String> {
    let path = match url.strip_prefix("file://") {
        Some(p) => p,
        None if !url.contains("://") && Path::new(url).is_absolute() => url,
        None => return None,
    };
    let out = ctx
        .git
        .run(
            Path::new(path),
            &[
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "objects",
            ],
            "rev-parse (source objects)",
        )
        .await
        .ok()?;
    Some(out.trim().to_owned()).filter(|o| !o.is_empty())
}

async fn plan_source(
    ctx: &Ctx<'_>,
    source: &SourceConfig,
    state: &StateFile,
    purpose: Purpose,
) -> Result<Planned> {
    let config = ctx.config;
    let previous = state.sources.get(&source.name);
    let previous_head = previous.and_then(|s| s.synced_head.clone());
    let mut report = SourcePlan {
        name: source.name.clone(),
        url: ctx.redactor.redact(&source.display_url()),
        branch: source.branch.clone(),
        integration_branch: config.integration_branch(source),
        head: None,
        previous_head: previous_head.clone(),
        fetch_attempts: 0,
        selected: Vec::new(),
        skipped: Vec::new(),
        files_touched: 0,
        migrations_touched: false,
        breaking: false,
        expected: "nothing_to_do".into(),
        error: None,
    };
    let (url, creds) = ctx.remote_of(source)?;
    let wanted = format!("refs/heads/{}", source.branch);
    let (listed, attempts) = ctx
        .with_retries(
            &format!("ls-remote {}", source.name),
            &["ls-remote", "--exit-code", &url, &wanted],
            creds.as_ref(),
        )
        .await
        .map_err(|e| match e {
            AutosyncError::Git {
                op,
                stderr,
                attempts,
            } if stderr == "exit code 2" => AutosyncError::Git {
                op,
                stderr: format!("branch `{}` not found in {}", source.branch, report.url),
                attempts,
            },
            other => other,
        })?;
    report.fetch_attempts = attempts;
    let listed = String::from_utf8_lossy(&listed.stdout);
    let remote_head = listed
        .lines()
        .find_map(|l| {
            l.split_once('\t')
                .filter(|(_, r)| *r == wanted)
                .map(|(s, _)| s.to_owned())
        })
        .ok_or_else(|| AutosyncError::Git {
            op: format!("ls-remote {}", source.name),
            stderr: format!("branch `{}` not found in {}", source.branch, report.url),
            attempts,
        })?;
    report.head = Some(remote_head.clone());
    let tracking = tracking_ref(source);
    if previous_head.as_deref() == Some(remote_head.as_str()) {
        // Nothing moved since everything up to this head got an outcome.
        return Ok(Planned {
            report,
            head: remote_head,
        });
    }
    let have = ctx.git.commit_exists(ctx.target(), &tracking).await?
        && ctx.git.rev_parse(ctx.target(), &tracking).await? == remote_head;
    let in_place = match purpose {
        Purpose::Plan if !have => local_objects(ctx, &url).await,
        _ => None,
    };
    let (git, rev) = match in_place {
        Some(objects) => (
            ctx.git
                .with_env("GIT_ALTERNATE_OBJECT_DIRECTORIES", objects),
            remote_head.clone(),
        ),
        None => (ctx.git.clone(), tracking.clone()),
    };
    if rev == tracking && !have {
        let refspec = format!("+{wanted}:{tracking}");
        ctx.with_retries(
            &format!("fetch {}", source.name),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                &url,
                &refspec,
            ],
            creds.as_ref(),
        )
        .await?;
    }
    let head = git.rev_parse(ctx.target(), &rev).await?;
    report.head = Some(head.clone());

    let target_ref = ctx.target_ref();
    let mut args: Vec<&str> = vec![
        "-c",
        "log.showSignature=false",
        "log",
        "-z",
        "--reverse",
        "--topo-order",
        "--no-renames",
        "--no-color",
        LOG_FORMAT,
        "--name-only",
        &rev,
        "--not",
        &target_ref,
    ];
    let known_head = match &previous_head {
        Some(h) if git.commit_exists(ctx.target(), h).await? => Some(h.clone()),
        _ => None,
    };
    if let Some(h) = &known_head {
        args.push(h);
    }
    args.push("--");
    let f = git.output(ctx.target(), &args, None, None).await?;
    if !f.success() {
        return Err(git.failure(&format!("log {}", source.name), &f, 1));
    }
    let commits = git::parse_log(&f.stdout);

    let integration_ref = format!("refs/heads/{}", report.integration_branch);
    let mut carried_from = vec![target_ref.as_str()];
    if ctx
        .git
        .commit_exists(ctx.target(), &integration_ref)
        .await?
    {
        carried_from.push(&integration_ref);
    }
    let carried = ctx.git.carried_commits(ctx.target(), &carried_from).await?;
    let processed = previous.map(|s| &s.processed);
    let mut touched = BTreeSet::new();
    for commit in commits {
        if processed.is_some_and(|p| p.contains_key(&commit.sha)) {
            continue;
        }
        let planned = select::classify(commit, &config.filters, &carried);
        if planned.reason.is_none() {
            touched.extend(planned.files.iter().cloned());
            report.breaking |= planned.breaking;
            report.selected.push(planned);
        } else {
            report.skipped.push(planned);
        }
    }
    report.files_touched = touched.len();
    report.migrations_touched = touched.iter().any(|f| config.risk.migrations.is_match(f));
    report.expected = if report.selected.is_empty() {
        "nothing_to_do"
    } else {
        let w = config.risk.weights;
        let floor = (touched.len() as u64).saturating_mul(w.files)
            + u64::from(report.migrations_touched) * w.migrations
            + u64::from(report.breaking) * w.breaking;
        if floor > config.risk.threshold || (report.breaking && !config.risk.auto_merge_breaking) {
            "pull_request"
        } else {
            "merge_if_validation_passes"
        }
    }
    .into();
    Ok(Planned { report, head })
}

fn failed_plan(
    ctx: &Ctx<'_>,
    source: &SourceConfig,
    e: &AutosyncError,
    state: &StateFile,
) -> SourcePlan {
    SourcePlan {
        name: source.name.clone(),
        url: ctx.redactor.redact(&source.display_url()),
        branch: source.branch.clone(),
        integration_branch: ctx.config.integration_branch(source),
        head: None,
        previous_head: state
            .sources
            .get(&source.name)
            .and_then(|s| s.synced_head.clone()),
        fetch_attempts: 0,
        selected: Vec::new(),
        skipped: Vec::new(),
        files_touched: 0,
        migrations_touched: false,
        breaking: false,
        expected: "nothing_to_do".into(),
        error: Some(ctx.redactor.redact(&e.to_string())),
    }
}

/// Shows what [`run`] would do. Changes nothing in the target but the fetch refs under
/// `refs/autosync/sources/` (no branch, no working-tree change, no state write).
pub async fn plan(config: &AutosyncConfig, env: &Env) -> Result<PlanReport> {
    let ctx = Ctx::new(config, env);
    let state = StateFile::load(&config.state_file)?;
    let head = ctx.target_head().await?;
    let mut sources = Vec::new();
    for source in &config.sources {
        match plan_source(&ctx, source, &state, Purpose::Plan).await {
            Ok(p) => sources.push(p.report),
            Err(e) if e.is_input_error() => return Err(e),
            Err(e) => sources.push(failed_plan(&ctx, source, &e, &state)),
        }
    }
    Ok(PlanReport {
        generated_at: now(),
        target: TargetInfo {
            path: config.target.path.display().to_string(),
            branch: config.target.branch.clone(),
            head: Some(head),
        },
        sources,
    })
}

/// Reads the state file.
pub fn status(config: &AutosyncConfig) -> Result<StatusReport> {
    let exists = config.state_file.exists();
    let state = StateFile::load(&config.state_file)?;
    let mut sources = Vec::new();
    let mut names: Vec<(String, bool)> = config
        .sources
        .iter()
        .map(|s| (s.name.clone(), true))
        .collect();
    for name in state.sources.keys() {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), false));
        }
    }
    for (name, configured) in names {
        let s = state.sources.get(&name).cloned().unwrap_or_default();
        let mut by_outcome = std::collections::BTreeMap::new();
        for p in s.processed.values() {
            *by_outcome.entry(p.outcome.clone()).or_insert(0) += 1;
        }
        let url = if s.url.is_empty() {
            config
                .sources
                .iter()
                .find(|c| c.name == name)
                .map(SourceConfig::display_url)
                .unwrap_or_default()
        } else {
            s.url.clone()
        };
        sources.push(SourceStatus {
            name,
            configured,
            url: Redactor::new().redact(&url),
            synced_head: s.synced_head.clone(),
            processed: s.processed.len(),
            by_outcome,
        });
    }
    Ok(StatusReport {
        state_file: config.state_file.display().to_string(),
        exists,
        sources,
        last_run: state.last_run,
    })
}

/// Runs the whole pipeline for every source, publishing events to `events`.
pub async fn run(
    config: &AutosyncConfig,
    env: &Env,
    events: &dyn AutosyncEvents,
) -> Result<RunReport> {
    let ctx = Ctx::new(config, env);
    let started_at = now();
    let run_id = format!(
        "as-{}",
        OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
    );
    let emitter = Emitter {
        sink: events,
        redactor: ctx.redactor.clone(),
        run_id: run_id.clone(),
    };
    if let Some(github) = &config.github
        && env.var("GITHUB_TOKEN").is_none()
    {
        // Checked first, so a run never stops between cherry-picks and a pull request.
        return Err(AutosyncError::MissingVariable {
            variable: "GITHUB_TOKEN".into(),
            purpose: format!(
                "[github] is configured; set it to a token that may open pull requests in {}",
                github.repository
            ),
        });
    }
    let _lock = RunLock::acquire(&config.state_file)?;
    let mut state = StateFile::load(&config.state_file)?;
    state.version = STATE_VERSION;
    let head_before = ctx.target_head().await?;
    let mut ctx = ctx;
    ensure_committer(&mut ctx).await?;

    emitter
        .emit(
            "autosync.plan",
            json!({
                "target": config.target.path.display().to_string(),
                "branch": config.target.branch,
                "sources": config.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            }),
        )
        .await;

    let mut runs = Vec::new();
    for source in &config.sources {
        let outcome = run_source(&ctx, source, &mut state, &emitter).await;
        let run = match outcome {
            Ok(run) => run,
            // The user's to fix, and the same for every source: stop here (exit 2).
            Err(
                e @ (AutosyncError::Config { .. }
                | AutosyncError::State { .. }
                | AutosyncError::MissingVariable { .. }),
            ) => {
                return Err(e);
            }
            Err(e) => {
                let message = ctx.redactor.redact(&e.to_string());
                emitter
                    .emit(
                        "autosync.error",
                        json!({"source": source.name, "error": message}),
                    )
                    .await;
                SourceRun {
                    plan: failed_plan(&ctx, source, &e, &state),
                    picked: Vec::new(),
                    conflicts: Vec::new(),
                    already_applied: Vec::new(),
                    stopped: false,
                    validation: Vec::new(),
                    risk: None,
                    outcome: SourceOutcome::Failed,
                    merge: None,
                    pull_request: None,
                    pushed_branch: false,
                    branch_commits: 0,
                }
            }
        };
        emitter
            .emit(
                "autosync.complete",
                json!({
                    "source": source.name,
                    "outcome": run.outcome.as_str(),
                    "picked": run.picked.len(),
                    "conflicts": run.conflicts.len(),
                    "skipped": run.plan.skipped.len(),
                }),
            )
            .await;
        if run.outcome != SourceOutcome::Failed {
            // This source's outcome is final: record it before working the next one.
            state.save(&config.state_file)?;
        }
        runs.push(run);
    }

    let outcome = overall(&runs);
    let finished_at = now();
    state.last_run = Some(LastRun {
        started_at: started_at.clone(),
        finished_at: finished_at.clone(),
        outcome: outcome.as_str().to_owned(),
        sources: runs
            .iter()
            .map(|r| (r.plan.name.clone(), r.outcome.as_str().to_owned()))
            .collect(),
    });
    state.save(&config.state_file)?;
    let head_after = ctx
        .git
        .rev_parse(ctx.target(), &ctx.target_ref())
        .await
        .ok();
    Ok(RunReport {
        run_id,
        started_at,
        finished_at,
        target: TargetInfo {
            path: config.target.path.display().to_string(),
            branch: config.target.branch.clone(),
            head: head_after.or(Some(head_before)),
        },
        sources: runs,
        outcome,
    })
}

fn overall(runs: &[SourceRun]) -> RunOutcome {
    let any = |o: SourceOutcome| runs.iter().any(|r| r.outcome == o);
    if any(SourceOutcome::Failed) {
        RunOutcome::Failed
    } else if any(SourceOutcome::PullRequest)
        || any(SourceOutcome::Review)
        || any(SourceOutcome::Conflict)
        || runs.iter().any(|r| !r.conflicts.is_empty())
    {
        RunOutcome::NeedsReview
    } else if any(SourceOutcome::Merged) {
        RunOutcome::Merged
    } else {
        RunOutcome::NothingToDo
    }
}

/// Cherry-picks need a committer; a CI machine often has none configured.
async fn ensure_committer(ctx: &mut Ctx<'_>) -> Result<()> {
    let f = ctx
        .git
        .output(ctx.target(), &["config", "--get", "user.email"], None, None)
        .await?;
    if !f.success() {
        let mut env = ctx.env.git_env.clone();
        env.push(("GIT_COMMITTER_NAME".into(), "Bridge Auto-Sync".into()));
        env.push((
            "GIT_COMMITTER_EMAIL".into(),
            "autosync@bridge.invalid".into(),
        ));
        ctx.git = Git::new(ctx.env.git_program.clone(), env, ctx.redactor.clone());
    }
    Ok(())
}

/// A temporary worktree on the integration branch, removed on drop of the guard.
struct Worktree {
    path: PathBuf,
    /// Built on an integration branch that already carries commits awaiting review.
    pending: bool,
    _dir: tempfile::TempDir,
}

impl Worktree {
    async fn create(ctx: &Ctx<'_>, branch: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bridge-autosync-")
            .tempdir()
            .map_err(|e| AutosyncError::io("creating a temporary worktree directory", &e))?;
        let path = dir.path().join("worktree");
        let path_str = path.to_string_lossy().into_owned();
        let branch_ref = format!("refs/heads/{branch}");
        let target_ref = ctx.target_ref();
        let exists = ctx.git.commit_exists(ctx.target(), &branch_ref).await?;
        let pending = exists
            && !ctx
                .git
                .is_ancestor(ctx.target(), &branch_ref, &target_ref)
                .await?;
        let args: Vec<&str> = if pending {
            // An earlier pull request is still open on it: add to it rather than lose it.
            vec!["worktree", "add", "--quiet", &path_str, branch]
        } else {
            vec![
                "worktree",
                "add",
                "--quiet",
                "-B",
                branch,
                &path_str,
                &target_ref,
            ]
        };
        ctx.git
            .run(ctx.target(), &args, &format!("worktree add {branch}"))
            .await?;
        Ok(Self {
            path,
            pending,
            _dir: dir,
        })
    }

    async fn remove(self, ctx: &Ctx<'_>) {
        let path = self.path.to_string_lossy().into_owned();
        // Best effort: the directory goes with the TempDir anyway, and prune forgets it.
        let _ = ctx
            .git
            .output(
                ctx.target(),
                &["worktree", "remove", "--force", &path],
                None,
                None,
            )
            .await;
        let _ = ctx
            .git
            .output(ctx.target(), &["worktree", "prune"], None, None)
            .await;
    }
}

enum Pick {
    Picked(String),
    Conflict(Vec<String>),
    Empty,
}

async fn cherry_pick(ctx: &Ctx<'_>, wt: &Path, source: &SourceConfig, sha: &str) -> Result<Pick> {
    let f = ctx
        .git
        .output(
            wt,
            &["cherry-pick", "--allow-empty-message", sha],
            None,
            None,
        )
        .await?;
    if !f.success() {
        let unmerged = ctx
            .git
            .run(
                wt,
                &["diff", "--name-only", "--diff-filter=U"],
                "diff (conflicts)",
            )
            .await?;
        let files: Vec<String> = unmerged.lines().map(str::to_owned).collect();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&f.stdout),
            String::from_utf8_lossy(&f.stderr)
        );
        if !files.is_empty() || text.contains("CONFLICT") {
            ctx.git
                .run(wt, &["cherry-pick", "--abort"], "cherry-pick --abort")
                .await?;
            return Ok(Pick::Conflict(files));
        }
        if text.contains("now empty") || text.contains("nothing to commit") {
            ctx.git
                .run(wt, &["cherry-pick", "--skip"], "cherry-pick --skip")
                .await?;
            return Ok(Pick::Empty);
        }
        let _ = ctx
            .git
            .output(wt, &["cherry-pick", "--abort"], None, None)
            .await;
        return Err(ctx
            .git
            .failure(&format!("cherry-pick {}", &sha[..sha.len().min(12)]), &f, 1));
    }
    let source_trailer = format!(
        "Auto-Sync-Source: {} {}",
        source.name,
        ctx.redactor.redact(&source.display_url())
    );
    let commit_trailer = format!("Auto-Sync-Commit: {sha}");
    ctx.git
        .run(
            wt,
            &[
                "commit",
                "--amend",
                "--no-edit",
                "--no-verify",
                "--allow-empty-message",
                "--trailer",
                &source_trailer,
                "--trailer",
                &commit_trailer,
            ],
            "commit --amend (provenance trailers)",
        )
        .await?;
    Ok(Pick::Picked(ctx.git.rev_parse(wt, "HEAD").await?))
}

fn record(
    state: &mut StateFile,
    source: &SourceConfig,
    sha: &str,
    outcome: &str,
    pr: Option<u64>,
    target_sha: Option<String>,
) {
    let entry = state.sources.entry(source.name.clone()).or_default();
    entry.url = source.display_url();
    entry.processed.insert(
        sha.to_owned(),
        Processed {
            outcome: outcome.to_owned(),
            at: now(),
            pull_request: pr,
            target_sha,
        },
    );
}

async fn run_source(
    ctx: &Ctx<'_>,
    source: &SourceConfig,
    state: &mut StateFile,
    emitter: &Emitter<'_>,
) -> Result<SourceRun> {
    let planned = plan_source(ctx, source, state, Purpose::Run).await?;
    let plan = planned.report;
    emitter
        .emit(
            "autosync.fetch",
            json!({
                "source": source.name,
                "url": plan.url,
                "head": plan.head,
                "attempts": plan.fetch_attempts,
                "new_commits": plan.selected.len() + plan.skipped.len(),
            }),
        )
        .await;
    for c in &plan.selected {
        emitter
            .emit(
                "autosync.commit_selected",
                json!({"source": source.name, "sha": c.sha, "subject": c.subject, "type": c.kind, "breaking": c.breaking}),
            )
            .await;
    }
    for c in &plan.skipped {
        emitter
            .emit(
                "autosync.commit_skipped",
                json!({
                    "source": source.name, "sha": c.sha, "subject": c.subject,
                    "reason": c.reason.map(|r| r.as_str()), "detail": c.detail, "path": c.path,
                }),
            )
            .await;
    }
    let mut run = SourceRun {
        plan,
        picked: Vec::new(),
        conflicts: Vec::new(),
        already_applied: Vec::new(),
        stopped: false,
        validation: Vec::new(),
        risk: None,
        outcome: SourceOutcome::NothingToDo,
        merge: None,
        pull_request: None,
        pushed_branch: false,
        branch_commits: 0,
    };
    for c in &run.plan.skipped {
        let reason = c.reason.map_or("skipped", |r| r.as_str());
        record(
            state,
            source,
            &c.sha,
            &format!("skipped:{reason}"),
            None,
            None,
        );
    }
    // Commits found on an unmerged integration branch but not in the state file mean an
    // earlier run failed between cherry-picking and its outcome: finish that work.
    let recovering = run
        .plan
        .skipped
        .iter()
        .any(|c| c.reason == Some(select::SkipReason::AlreadyCarried))
        && integration_pending(ctx, &run.plan.integration_branch).await?;
    if run.plan.selected.is_empty() && !recovering {
        let entry = state.sources.entry(source.name.clone()).or_default();
        entry.url = source.display_url();
        entry.synced_head = Some(planned.head);
        return Ok(run);
    }

    let branch = run.plan.integration_branch.clone();
    let wt = Worktree::create(ctx, &branch).await?;
    let result = integrate(ctx, source, state, emitter, &mut run, &wt.path, wt.pending).await;
    wt.remove(ctx).await;
    result?;
    if !run.stopped {
        let entry = state.sources.entry(source.name.clone()).or_default();
        entry.synced_head = Some(planned.head);
    }
    Ok(run)
}

/// Whether the integration branch exists and holds commits the target branch lacks.
async fn integration_pending(ctx: &Ctx<'_>, branch: &str) -> Result<bool> {
    let branch_ref = format!("refs/heads/{branch}");
    Ok(ctx.git.commit_exists(ctx.target(), &branch_ref).await?
        && !ctx
            .git
            .is_ancestor(ctx.target(), &branch_ref, &ctx.target_ref())
            .await?)
}

/// Picks, validates, decides and records; `run.outcome` says how it ended.
async fn integrate(
    ctx: &Ctx<'_>,
    source: &SourceConfig,
    state: &mut StateFile,
    emitter: &Emitter<'_>,
    run: &mut SourceRun,
    wt: &Path,
    pending_review: bool,
) -> Result<()> {
    let config = ctx.config;
    let branch = run.plan.integration_branch.clone();
    let selected = run.plan.selected.clone();
    let mut resolved: Vec<(String, &'static str)> = Vec::new();
    for c in &selected {
        match cherry_pick(ctx, wt, source, &c.sha).await? {
            Pick::Picked(target_sha) => {
                emitter
                    .emit(
                        "autosync.cherry_pick",
                        json!({"source": source.name, "sha": c.sha, "target_sha": target_sha, "branch": branch}),
                    )
                    .await;
                run.picked.push(PickedCommit {
                    sha: c.sha.clone(),
                    target_sha,
                    subject: c.subject.clone(),
                });
            }
            Pick::Empty => {
                run.already_applied.push(c.sha.clone());
                resolved.push((c.sha.clone(), "empty"));
            }
            Pick::Conflict(files) => {
                emitter
                    .emit(
                        "autosync.conflict",
                        json!({
                            "source": source.name, "sha": c.sha, "subject": c.subject, "files": files,
                            "policy": match config.on_conflict { OnConflict::Skip => "skip", OnConflict::Stop => "stop" },
                        }),
                    )
                    .await;
                run.conflicts.push(ConflictRecord {
                    sha: c.sha.clone(),
                    subject: c.subject.clone(),
                    files,
                });
                if config.on_conflict == OnConflict::Stop {
                    // The conflicted commit and the ones after it stay pending.
                    run.stopped = true;
                    break;
                }
                resolved.push((c.sha.clone(), "conflict"));
            }
        }
    }
    for (sha, outcome) in &resolved {
        record(state, source, sha, outcome, None, None);
    }
    if run.picked.is_empty() && !(pending_review && run.conflicts.is_empty()) {
        run.outcome = if run.conflicts.is_empty() {
            SourceOutcome::NothingToDo
        } else {
            SourceOutcome::Conflict
        };
        return Ok(());
    }

    run.validation = validate::run_all(&config.validate, wt, &ctx.hidden_env, &ctx.redactor).await;
    for v in &run.validation {
        emitter
            .emit(
                "autosync.validate",
                json!({
                    "source": source.name, "name": v.name, "kind": v.kind.as_str(), "status": v.status,
                    "errors": v.errors, "failures": v.failures, "duration_ms": v.duration_ms,
                }),
            )
            .await;
    }
    let target_ref = ctx.target_ref();
    let ahead = format!("{target_ref}..HEAD");
    run.branch_commits = ctx
        .git
        .run(wt, &["rev-list", "--count", &ahead], "rev-list --count")
        .await?
        .trim()
        .parse()
        .unwrap_or(0);
    let range = format!("{target_ref}...HEAD");
    let changed = ctx
        .git
        .run(
            wt,
            &["diff", "--name-only", "--no-renames", &range, "--"],
            "diff (files changed)",
        )
        .await?;
    let files_changed: Vec<String> = changed
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let breaking = selected
        .iter()
        .any(|c| c.breaking && run.picked.iter().any(|p| p.sha == c.sha));
    let mut risk = risk::assess(
        &config.risk,
        RiskInputs {
            files_changed,
            breaking,
            stopped_on_conflict: run.stopped,
            validations: &run.validation,
        },
    );
    if pending_review {
        risk.blockers.push(format!(
            "{branch} already carries commits awaiting review in a pull request"
        ));
        risk.auto_merge = false;
    }
    let fast_forward = ctx.git.is_ancestor(wt, &target_ref, "HEAD").await?;
    if !fast_forward {
        risk.blockers.push(format!(
            "{} moved since {branch} was started; not a fast-forward",
            config.target.branch
        ));
        risk.auto_merge = false;
    }
    let auto_merge = risk.auto_merge;
    let risk_json =
        json!({"score": risk.score, "tier": risk.tier.as_str(), "arithmetic": risk.arithmetic()});
    run.risk = Some(risk);

    let (outcome, pr_number) = if auto_merge {
        let merge = fast_forward_target(ctx, &branch).await?;
        emitter
            .emit(
                "autosync.merge",
                json!({"source": source.name, "branch": branch, "into": config.target.branch, "from": merge.from, "to": merge.to, "risk": risk_json, "pushed": merge.pushed}),
            )
            .await;
        run.merge = Some(merge);
        run.outcome = SourceOutcome::Merged;
        ("merged", None)
    } else {
        if let Some(remote) = &config.target.remote {
            let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
            ctx.with_retries(
                &format!("push {remote} {branch}"),
                &["push", "--quiet", remote, &refspec],
                None,
            )
            .await?;
            run.pushed_branch = true;
        }
        match &config.github {
            Some(github) => {
                let pr = open_pull_request(ctx, github, run).await?;
                emitter
                    .emit(
                        "autosync.pull_request",
                        json!({"source": source.name, "number": pr.number, "url": pr.url, "labels": pr.labels, "created": pr.created, "risk": risk_json}),
                    )
                    .await;
                let number = pr.number;
                run.pull_request = Some(pr);
                run.outcome = SourceOutcome::PullRequest;
                ("pull_request", Some(number))
            }
            None => {
                run.outcome = SourceOutcome::Review;
                ("review", None)
            }
        }
    };
    for p in &run.picked {
        record(
            state,
            source,
            &p.sha,
            outcome,
            pr_number,
            Some(p.target_sha.clone()),
        );
    }
    Ok(())
}

async fn fast_forward_target(ctx: &Ctx<'_>, branch: &str) -> Result<MergeInfo> {
    let config = ctx.config;
    let target_ref = ctx.target_ref();
    let from = ctx.git.rev_parse(ctx.target(), &target_ref).await?;
    let to = ctx
        .git
        .rev_parse(ctx.target(), &format!("refs/heads/{branch}"))
        .await?;
    match ctx
        .git
        .worktree_of(ctx.target(), &config.target.branch)
        .await?
    {
        Some(checked_out) => {
            // Moving a checked-out branch must move its working tree too.
            ctx.git
                .run(
                    &checked_out,
                    &["merge", "--ff-only", "--quiet", &to],
                    &format!(
                        "merge --ff-only into {} (commit or stash local changes there)",
                        config.target.branch
                    ),
                )
                .await?;
        }
        None => {
            let message = format!(
                "autosync: fast-forward {} to {branch}",
                config.target.branch
            );
            ctx.git
                .run(
                    ctx.target(),
                    &["update-ref", "-m", &message, &target_ref, &to, &from],
                    &format!("update-ref {}", config.target.branch),
                )
                .await?;
        }
    }
    let mut pushed = false;
    if let Some(remote) = &config.target.remote {
        let refspec = format!("{target_ref}:{target_ref}");
        ctx.with_retries(
            &format!("push {remote} {}", config.target.branch),
            &["push", "--quiet", remote, &refspec],
            None,
        )
        .await?;
        pushed = true;
    }
    Ok(MergeInfo { from, to, pushed })
}

async fn open_pull_request(
    ctx: &Ctx<'_>,
    github: &crate::config::GithubConfig,
    run: &SourceRun,
) -> Result<PullRequestInfo> {
    let token = ctx.env.var("GITHUB_TOKEN").ok_or_else(|| AutosyncError::MissingVariable {
        variable: "GITHUB_TOKEN".into(),
        purpose: format!(
            "a pull request is needed for source `{}`; set it to a token that may open pull requests in {}",
            run.plan.name, github.repository
        ),
    })?;
    let api = ctx
        .env
        .var("GITHUB_API_URL")
        .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_owned());
    let client = GithubClient::new(
        &api,
        &SecretValue::new(token),
        &github.repository,
        ctx.redactor.clone(),
        ctx.config.fetch.backoff,
    )?;
    let risk = run.risk.as_ref();
    let tier = risk.map_or("high", |r| r.tier.as_str());
    let count = run.branch_commits.max(run.picked.len());
    let title = format!(
        "Auto-Sync: {count} commit{} from {}{}",
        if count == 1 { "" } else { "s" },
        run.plan.name,
        risk.map(|r| format!(" (risk {}, {tier})", r.score))
            .unwrap_or_default()
    );
    let body = ctx
        .redactor
        .redact(&pull_request_body(run, &ctx.config.target.branch));
    let (pr, created) = client
        .open(&NewPullRequest {
            title: &ctx.redactor.redact(&title),
            head: &run.plan.integration_branch,
            base: &ctx.config.target.branch,
            body: &body,
            draft: github.draft,
        })
        .await?;
    let mut labels = vec!["auto-sync".to_owned(), format!("risk:{tier}")];
    for l in &github.labels {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    client.add_labels(pr.number, &labels).await?;
    Ok(PullRequestInfo {
        number: pr.number,
        url: pr.html_url,
        created,
        labels,
    })
}
