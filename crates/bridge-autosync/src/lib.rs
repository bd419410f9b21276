//! Auto-Sync: carry vetted commits from sibling repositories into a target repository.
//!
//! For each configured source, in order: find new commits (`ls-remote`, then `fetch` into
//! `refs/autosync/sources/<name>` of the target, both retried with growing backoff),
//! select Conventional Commits of allowed types that touch no denied path, cherry-pick
//! them onto `autosync/<name>` in a temporary worktree with provenance trailers, run the
//! validation commands there, score the risk, and either fast-forward the target branch
//! or open a pull request. The outcome of every commit is recorded in a JSON state file,
//! written atomically once that source's outcome is final.
//!
//! [`plan`] does everything up to selection and changes nothing (only the fetch ref);
//! [`run`] does it all; [`status`] reads the state file. Tokens are registered with a
//! [`Redactor`](redact::Redactor) and never appear in reports, events, errors or state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bridge_autosync::AutosyncError> {
//! use bridge_autosync::{AutosyncConfig, Env, NoEvents};
//! let config = AutosyncConfig::load("autosync.toml".as_ref())?;
//! let report = bridge_autosync::run(&config, &Env::from_process(), &NoEvents).await?;
//! print!("{}", report.render_text());
//! # Ok(()) }
//! ```

pub mod config;
pub mod conventional;
mod error;
mod events;
mod git;
mod github;
pub mod glob;
mod pipeline;
mod process;
pub mod redact;
mod report;
pub mod risk;
pub mod select;
pub mod state;
pub mod validate;

use std::ffi::OsString;
use std::sync::Arc;

pub use config::{AutosyncConfig, OnConflict, ValidateKind};
pub use error::{AutosyncError, Result};
pub use events::{AutosyncEvents, EventFuture, MemoryEvents, NoEvents};
pub use github::PullRequest;
pub use pipeline::{plan, run, status};
pub use report::{
    ConflictRecord, MergeInfo, PickedCommit, PlanReport, PullRequestInfo, RunOutcome, RunReport,
    SourceOutcome, SourcePlan, SourceRun, SourceStatus, StatusReport, TargetInfo,
};

/// The GitHub API used when `GITHUB_API_URL` is not set.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// What a run takes from its environment: variables (source tokens, `GITHUB_TOKEN`,
/// `GITHUB_API_URL`), the git program, and extra variables for git. Tests build one from
/// pairs instead of mutating the process environment.
#[derive(Clone)]
pub struct Env {
    lookup: Arc<Lookup>,
    git_program: OsString,
    git_env: Vec<(OsString, OsString)>,
}

impl std::fmt::Debug for Env {
    // Values may be tokens: show only the shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("git_program", &self.git_program)
            .field(
                "git_env",
                &self.git_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Env {
    /// Reads variables from the process environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables from `pairs` only.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_lookup(move |name| map.get(name).cloned())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Arc::new(lookup),
            git_program: "git".into(),
            git_env: Vec::new(),
        }
    }

    /// Sets an environment variable for every git command (e.g. `GIT_SSH_COMMAND`,
    /// `GIT_CONFIG_GLOBAL`); the rest of git's environment is inherited.
    pub fn with_git_env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.git_env.push((name.into(), value.into()));
        self
    }

    /// Runs this program instead of `git`.
    pub fn with_git_program(mut self, program: impl Into<OsString>) -> Self {
        self.git_program = program.into();
        self
    }

    /// A variable's value; empty counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }
}
