//! `autosync.toml`: parsed strictly (unknown keys are errors naming the key), then validated
//! once into [`AutosyncConfig`], whose paths are absolute and whose durations, globs and
//! policies are typed. Relative paths (the target, local source URLs, the state file) are
//! relative to the directory of the configuration file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{AutosyncError, Result};
use crate::glob::GlobSet;

/// Default Conventional Commit types carried.
pub const DEFAULT_TYPES: &[&str] = &["feat", "fix", "perf", "refactor"];
/// Default deny list: secrets, keys and infrastructure.
pub const DEFAULT_DENY: &[&str] = &[
    ".env*",
    "**/secrets/**",
    "*.pem",
    "*.key",
    "infra/**",
    "terraform/**",
    ".github/workflows/**",
];
/// Default globs of schema migrations, for the risk score.
pub const DEFAULT_MIGRATIONS: &[&str] = &[
    "**/migrations/**",
    "**/migrate/**",
    "**/schema.prisma",
    "**/*.sql",
];

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct AutosyncConfig {
    /// The configuration file (absolute).
    pub path: PathBuf,
    /// The JSON state file (absolute).
    pub state_file: PathBuf,
    /// The repository commits are carried into.
    pub target: TargetConfig,
    /// The sibling repositories, in the order they are worked.
    pub sources: Vec<SourceConfig>,
    /// Which commits are carried.
    pub filters: FilterConfig,
    /// Commands run in the integration worktree.
    pub validate: Vec<ValidateConfig>,
    /// The risk score and the merge threshold.
    pub risk: RiskConfig,
    /// Where pull requests are opened.
    pub github: Option<GithubConfig>,
    /// Retries of `ls-remote`/`fetch`.
    pub fetch: FetchConfig,
    /// What a cherry-pick conflict does.
    pub on_conflict: OnConflict,
}

/// `[target]`.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// The repository's working directory (absolute).
    pub path: PathBuf,
    /// The branch merged into.
    pub branch: String,
    /// A remote to push to (the integration branch before a pull request, the target
    /// branch after a merge); none means the target is local only.
    pub remote: Option<String>,
    /// Integration branches are `<prefix><source name>`.
    pub branch_prefix: String,
}

/// One `[[source]]`.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Short name, used in branch names, trailers and the state file.
    pub name: String,
    /// A URL, or a local path made absolute. May hold credentials; never print it, print
    /// [`SourceConfig::display_url`].
    pub url: String,
    /// The branch followed.
    pub branch: String,
    /// The environment variable holding a token for it.
    pub token_env: Option<String>,
}

impl SourceConfig {
    /// The URL without credentials (user-info removed).
    pub fn display_url(&self) -> String {
        crate::redact::split_credentials(&self.url).0
    }
}

/// `[filters]`.
#[derive(Clone, Debug)]
pub struct FilterConfig {
    /// Allowed Conventional Commit types, lower case.
    pub types: Vec<String>,
    /// Every touched path must match one of these.
    pub allow: GlobSet,
    /// No touched path may match any of these (deny wins over allow).
    pub deny: GlobSet,
}

/// What a validation command checks; decides how its output is read and weighed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidateKind {
    /// Type checking (`tsc --noEmit`, `cargo check`, `mypy`): errors are type errors.
    TypeCheck,
    /// Linting (`eslint`, `cargo clippy`).
    Lint,
    /// Building.
    Build,
    /// Tests (`cargo test`, `pytest`, `jest`): failures are test failures.
    Test,
    /// Schema migrations (`prisma migrate diff`, `alembic check`).
    Migrations,
    /// A runtime smoke check.
    Smoke,
    /// Anything else: only the exit code counts.
    Other,
}

impl ValidateKind {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TypeCheck => "type-check",
            Self::Lint => "lint",
            Self::Build => "build",
            Self::Test => "test",
            Self::Migrations => "migrations",
            Self::Smoke => "smoke",
            Self::Other => "other",
        }
    }
}

/// One `[[validate]]`.
#[derive(Clone, Debug)]
pub struct ValidateConfig {
    /// Name shown in reports.
    pub name: String,
    /// The command line, run with `sh -c` in the integration worktree.
    pub run: String,
    /// Killed (with its whole process group) after this long.
    pub timeout: Duration,
    /// What it checks.
    pub kind: ValidateKind,
}

/// `[risk]`.
#[derive(Clone, Debug)]
pub struct RiskConfig {
    /// Risk at or below this (with zero errors) merges; above, a pull request.
    pub threshold: u64,
    /// Above this the label is `risk:high` (default twice the threshold).
    pub high_above: u64,
    /// Weights of the terms.
    pub weights: RiskWeights,
    /// Globs of schema migrations.
    pub migrations: GlobSet,
    /// Whether a breaking change may be merged without review (default: no).
    pub auto_merge_breaking: bool,
}

/// The weights of the risk formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskWeights {
    /// Per file changed (1).
    pub files: u64,
    /// Per type error (3).
    pub type_errors: u64,
    /// Per failed test (5).
    pub test_failures: u64,
    /// Once when a migration is touched (2).
    pub migrations: u64,
    /// Once when a carried commit is a breaking change (0).
    pub breaking: u64,
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            files: 1,
            type_errors: 3,
            test_failures: 5,
            migrations: 2,
            breaking: 0,
        }
    }
}

/// `[github]`.
#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repository: String,
    /// Open pull requests as drafts.
    pub draft: bool,
    /// Labels added besides `auto-sync` and `risk:*`.
    pub labels: Vec<String>,
}

/// `[fetch]`.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    /// Retries after a failed `ls-remote`/`fetch` (3: four attempts in all).
    pub retries: u32,
    /// The wait before retry n is n × this (1.5 s: 1.5 s, 3 s, 4.5 s).
    pub backoff: Duration,
    /// One attempt is killed after this long.
    pub timeout: Duration,
}

/// What a cherry-pick conflict does to its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Abort that commit, record it, and go on with the next.
    Skip,
    /// Abort that commit and stop the source there: the clean prefix goes to a pull
    /// request (never merged) and the conflicted commit stays pending for a human.
    Stop,
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_file: Option<String>,
    target: Option<RawTarget>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    filters: RawFilters,
    #[serde(default)]
    validate: Vec<RawValidate>,
    #[serde(default)]
    risk: RawRisk,
    github: Option<RawGithub>,
    #[serde(default)]
    fetch: RawFetch,
    on_conflict: Option<OnConflict>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    path: Option<String>,
    branch: Option<String>,
    remote: Option<String>,
    branch_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    url: String,
    branch: Option<String>,
    token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    types: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidate {
    name: String,
    run: String,
    timeout: Option<String>,
    kind: Option<ValidateKind>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    threshold: Option<u64>,
    high_above: Option<u64>,
    #[serde(default)]
    weights: RiskWeights,
    migrations: Option<Vec<String>>,
    auto_merge_breaking: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    repository: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    retries: Option<u32>,
    backoff: Option<String>,
    timeout: Option<String>,
}

impl AutosyncConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| AutosyncError::ReadConfig {
            path: path.to_owned(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file; pass --config FILE or create autosync.toml".into()
            } else {
                e.to_string()
            },
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its
    /// directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let fail = |message: String| AutosyncError::Config {
            path: path.clone(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(toml_message(&e)))?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();

        let raw_target = raw.target.unwrap_or_default();
        let branch = raw_target.branch.unwrap_or_else(|| "main".into());
        check_ref_part(&branch).map_err(|m| fail(format!("target.branch: {m}")))?;
        let branch_prefix = raw_target
            .branch_prefix
            .unwrap_or_else(|| "autosync/".into());
        if !branch_prefix.is_empty() {
            check_ref_part(branch_prefix.trim_end_matches('/'))
                .map_err(|m| fail(format!("target.branch_prefix: {m}")))?;
        }
        let target = TargetConfig {
            path: normalize(&dir.join(raw_target.path.as_deref().unwrap_or("."))),
            branch,
            remote: raw_target.remote.filter(|r| !r.trim().is_empty()),
            branch_prefix,
        };

        if raw.source.is_empty() {
            return Err(fail(
                "no [[source]]: add at least one with name, url and branch".into(),
            ));
        }
        let mut sources: Vec<SourceConfig> = Vec::new();
        for (i, s) in raw.source.into_iter().enumerate() {
            let at = format!("source[{i}]");
            if s.name.is_empty()
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                || s.name.starts_with('.')
            {
                return Err(fail(format!(
                    "{at}.name `{}`: use letters, digits, `-`, `_` and `.` (it becomes a branch name)",
                    s.name
                )));
            }
            if sources.iter().any(|o| o.name == s.name) {
                return Err(fail(format!(
                    "{at}.name `{}` is used twice; names must be unique",
                    s.name
                )));
            }
            if s.url.trim().is_empty() {
                return Err(fail(format!("{at}.url is empty; give a URL or a path")));
            }
            let branch = s.branch.unwrap_or_else(|| "main".into());
            check_ref_part(&branch).map_err(|m| fail(format!("{at}.branch: {m}")))?;
            if let Some(var) = &s.token_env
                && (var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            {
                return Err(fail(format!(
                    "{at}.token_env must name an environment variable (e.g. SOURCE_PAT), not hold a token"
                )));
            }
            sources.push(SourceConfig {
                name: s.name,
                url: resolve_url(&dir, s.url.trim()),
                branch,
                token_env: s.token_env,
            });
        }

        let types = raw
            .filters
            .types
            .unwrap_or_else(|| DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect());
        if types.is_empty() {
            return Err(fail(
                "filters.types is empty, so nothing would ever be carried; list types such as \"feat\"".into(),
            ));
        }
        let filters = FilterConfig {
            types: types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            allow: GlobSet::new(&raw.filters.allow.unwrap_or_else(|| vec!["**".into()])),
            deny: GlobSet::new(
                &raw.filters
                    .deny
                    .unwrap_or_else(|| DEFAULT_DENY.iter().map(|t| (*t).to_owned()).collect()),
            ),
        };

        let mut validate = Vec::new();
        for (i, v) in raw.validate.into_iter().enumerate() {
            if v.run.trim().is_empty() {
                return Err(fail(format!("validate[{i}].run is empty; give a command")));
            }
            let timeout = match v.timeout.as_deref() {
                None => Duration::from_secs(600),
                Some(t) => {
                    parse_duration(t).map_err(|m| fail(format!("validate[{i}].timeout: {m}")))?
                }
            };
            validate.push(ValidateConfig {
                name: v.name,
                run: v.run,
                timeout,
                kind: v.kind.unwrap_or(ValidateKind::Other),
            });
        }

        let threshold = raw.risk.threshold.unwrap_or(5);
        let high_above = raw.risk.high_above.unwrap_or(threshold.saturating_mul(2));
        if high_above < threshold {
            return Err(fail(format!(
                "risk.high_above ({high_above}) is below risk.threshold ({threshold})"
            )));
        }
        let risk =
            RiskConfig {
                threshold,
                high_above,
                weights: raw.risk.weights,
                migrations: GlobSet::new(&raw.risk.migrations.unwrap_or_else(|| {
                    DEFAULT_MIGRATIONS.iter().map(|t| (*t).to_owned()).collect()
                })),
                auto_merge_breaking: raw.risk.auto_merge_breaking.unwrap_or(false),
            };

        let github = match raw.github {
            None => None,
            Some(g) => {
                let valid = g
                    .repository
                    .split_once('/')
                    .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
                if !valid {
                    return Err(fail(format!(
                        "github.repository `{}`: write it as owner/name",
                        g.repository
                    )));
                }
                Some(GithubConfig {
                    repository: g.repository,
                    draft: g.draft,
                    labels: g.labels,
                })
            }
        };

        let fetch = FetchConfig {
            retries: raw.fetch.retries.unwrap_or(3),
            backoff: match raw.fetch.backoff.as_deref() {
                None => Duration::from_millis(1500),
                Some(t) => parse_duration(t).map_err(|m| fail(format!("fetch.backoff: {m}")))?,
            },
            timeout: match raw.fetch.timeout.as_deref() {
                None => Duration::from_secs(300),
                Some(t) => parse_duration(t).map_err(|m| fail(format!("fetch.timeout: {m}")))?,
            },
        };

        Ok(Self {
            state_file: normalize(
                &dir.join(
                    raw.state_file
                        .as_deref()
                        .unwrap_or(".bridge/autosync-state.json"),
                ),
            ),
            path,
            target,
            sources,
            filters,
            validate,
            risk,
            github,
            fetch,
            on_conflict: raw.on_conflict.unwrap_or(OnConflict::Skip),
        })
    }

    /// The integration branch of `source`.
    pub fn integration_branch(&self, source: &SourceConfig) -> String {
        format!("{}{}", self.target.branch_prefix, source.name)
    }
}

/// toml's message already names the key and the line; keep it on one line.
fn toml_message(e: &toml::de::Error) -> String {
    let mut msg = e.message().trim().to_owned();
    if let Some(span) = e.span() {
        msg = format!("{msg} (at byte {})", span.start);
    }
    msg
}

/// A local path (not `scheme://`, not scp-like `host:path`) is made absolute against the
/// configuration's directory, so `../web` works from anywhere.
fn resolve_url(dir: &Path, url: &str) -> String {
    let scp_like = url
        .find(':')
        .is_some_and(|c| !url[..c].contains('/') && !url.starts_with('.') && c > 1);
    if url.contains("://") || scp_like {
        return url.to_owned();
    }
    normalize(&dir.join(url)).to_string_lossy().into_owned()
}

/// `a/./b/../c` → `a/c`, lexically (the configuration names paths as the user sees them).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Rejects what git refuses in a branch name, with the reason.
fn check_ref_part(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{name}` is not a valid git branch name"))
    } else {
        Ok(())
    }
}

/// `250ms`, `1.5s`, `10m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration; write e.g. `250ms`, `90s`, `10m` or `1h`")
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds > 7.0 * 86_400.0 {
        return Err(format!("`{text}` is out of range (at most a week)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[target]
path = "."
branch = "main"
[[source]]
name = "web"
url = "../web"
"#;

    #[test]
    fn defaults_and_relative_paths() {
        let c = AutosyncConfig::parse(MINIMAL, Path::new("/x/y/autosync.toml")).unwrap();
        assert_eq!(c.state_file, Path::new("/x/y/.bridge/autosync-state.json"));
        assert_eq!(c.sources[0].url, "/x/web");
        assert_eq!(c.sources[0].branch, "main");
        assert_eq!(c.filters.types, ["feat", "fix", "perf", "refactor"]);
        assert!(c.filters.deny.is_match("apps/.env.prod"));
        assert_eq!(c.fetch.backoff, Duration::from_millis(1500));
        assert_eq!(c.risk.threshold, 5);
        assert_eq!(c.on_conflict, OnConflict::Skip);
        assert_eq!(c.integration_branch(&c.sources[0]), "autosync/web");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = format!("{MINIMAL}\n[risk]\nthreshhold = 3\n");
        let e = AutosyncConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshhold"), "{e}");
        let e = AutosyncConfig::parse("bogus = 1\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let text =
            format!("{MINIMAL}\n[[validate]]\nname = \"t\"\nrun = \"x\"\ntimeout = \"ten\"\n");
        let e = AutosyncConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("validate[0].timeout"), "{e}");
        let text = format!("{MINIMAL}\n[github]\nrepository = \"nope\"\n");
        let e = AutosyncConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("github.repository"), "{e}");
        let text = MINIMAL.replace("\"web\"", "\"we b\"");
        let e = AutosyncConfig::parse(&text, Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("source[0].name"), "{e}");
        let e = AutosyncConfig::parse("[target]\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[source]]"), "{e}");
        let text = format!("on_conflict = \"explode\"\n{MINIMAL}");
        assert!(AutosyncConfig::parse(&text, Path::new("a.toml")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn urls_keep_schemes_and_scp_form() {
        let d = Path::new("/c");
        assert_eq!(resolve_url(d, "https://h/x.git"), "https://h/x.git");
        assert_eq!(
            resolve_url(d, "git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(resolve_url(d, "/abs/repo"), "/abs/repo");
        assert_eq!(resolve_url(d, "./repo"), "/c/repo");
    }
}
