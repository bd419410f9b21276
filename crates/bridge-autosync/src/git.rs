//! `git` driven as a command: every call gets `GIT_TERMINAL_PROMPT=0` (never wait for a
//! password), the C locale (stable messages), a deadline, and its error output redacted
//! before it can reach an error. A token travels as an `http.extraHeader` set
//! through `GIT_CONFIG_*` variables, never in argv or in a URL git could echo.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bridge_core::SecretValue;
use tokio::process::Command;

use crate::error::{AutosyncError, Result};
use crate::process::{self, Finished};
use crate::redact::Redactor;

/// Local git operations are quick; this only stops a wedged one.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(600);

/// Credentials for one source, sent as an HTTP header.
#[derive(Clone, Debug)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) token: SecretValue,
}

/// How `git` is started.
#[derive(Clone, Debug)]
pub(crate) struct Git {
    program: OsString,
    env: Vec<(OsString, OsString)>,
    redactor: Redactor,
}

impl Git {
    pub(crate) fn new(
        program: OsString,
        env: Vec<(OsString, OsString)>,
        redactor: Redactor,
    ) -> Self {
        Self {
            program,
            env,
            redactor,
        }
    }

    /// The same, with one more environment variable.
    pub(crate) fn with_env(&self, name: &str, value: impl Into<OsString>) -> Self {
        let mut git = self.clone();
        git.env.push((name.into(), value.into()));
        git
    }

    fn command(&self, dir: &Path, args: &[&str], auth: Option<&Credentials>) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("-C").arg(dir).args(args);
        c.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(auth) = auth {
            let basic = STANDARD.encode(format!("{}:{}", auth.user, auth.token.expose()));
            // Appended after any configuration the caller's environment already passes.
            let base: usize = self
                .env
                .iter()
                .find(|(k, _)| k == "GIT_CONFIG_COUNT")
                .and_then(|(_, v)| v.to_str()?.parse().ok())
                .or_else(|| std::env::var("GIT_CONFIG_COUNT").ok()?.parse().ok())
                .unwrap_or(0);
            c.env("GIT_CONFIG_COUNT", (base + 1).to_string())
                .env(format!("GIT_CONFIG_KEY_{base}"), "http.extraHeader")
                .env(
                    format!("GIT_CONFIG_VALUE_{base}"),
                    format!("Authorization: Basic {basic}"),
                );
        }
        c
    }

    /// Runs git and returns how it ended, whatever the exit code.
    pub(crate) async fn output(
        &self,
        dir: &Path,
        args: &[&str],
        auth: Option<&Credentials>,
        timeout: Option<Duration>,
    ) -> Result<Finished> {
        let op = args.first().copied().unwrap_or("git");
        process::run(
            self.command(dir, args, auth),
            timeout.unwrap_or(LOCAL_TIMEOUT),
        )
        .await
        .map_err(|e| AutosyncError::GitMissing {
            op: op.to_owned(),
            message: e.to_string(),
        })
    }

    /// Runs git and returns its stdout; a failure becomes [`AutosyncError::Git`] named by
    /// `op`, with the redacted error output.
    pub(crate) async fn run(&self, dir: &Path, args: &[&str], op: &str) -> Result<String> {
        let f = self.output(dir, args, None, None).await?;
        if f.success() {
            Ok(String::from_utf8_lossy(&f.stdout).into_owned())
        } else {
            Err(self.failure(op, &f, 1))
        }
    }

    /// The error for a failed run.
    pub(crate) fn failure(&self, op: &str, f: &Finished, attempts: u32) -> AutosyncError {
        let mut stderr = String::from_utf8_lossy(&f.stderr).trim().to_owned();
        if f.timed_out {
            stderr = format!("timed out after {:.1?}; {stderr}", f.elapsed);
        }
        if stderr.is_empty() {
            stderr = match f.code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_owned(),
            };
        }
        // Keep errors readable: the last lines say what failed.
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n");
        AutosyncError::Git {
            op: self.redactor.redact(op),
            stderr: self.redactor.redact(&tail),
            attempts,
        }
    }

    /// Whether `rev` names a commit here.
    pub(crate) async fn commit_exists(&self, dir: &Path, rev: &str) -> Result<bool> {
        let spec = format!("{rev}^{{commit}}");
        let f = self
            .output(
                dir,
                &["rev-parse", "--verify", "--quiet", &spec],
                None,
                None,
            )
            .await?;
        Ok(f.success())
    }

    /// The commit `rev` names.
    pub(crate) async fn rev_parse(&self, dir: &Path, rev: &str) -> Result<String> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .run(
                dir,
                &["rev-parse", "--verify", &spec],
                &format!("rev-parse {rev}"),
            )
            .await?;
        Ok(out.trim().to_owned())
    }

    /// Whether `ancestor` is reachable from `descendant`.
    pub(crate) async fn is_ancestor(
        &self,
        dir: &Path,
        ancestor: &str,
        descendant: &str,
    ) -> Result<bool> {
        let f = self
            .output(
                dir,
                &["merge-base", "--is-ancestor", ancestor, descendant],
                None,
                None,
            )
            .await?;
        match f.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failure("merge-base --is-ancestor", &f, 1)),
        }
    }

    /// Source commit ids named in `Auto-Sync-Commit:` trailers of commits reachable from
    /// `revs`, so a lost state file never carries a commit twice.
    pub(crate) async fn carried_commits(
        &self,
        dir: &Path,
        revs: &[&str],
    ) -> Result<HashSet<String>> {
        let mut args = vec![
            "log",
            "--no-color",
            "--grep=^Auto-Sync-Commit: ",
            "--format=%(trailers:key=Auto-Sync-Commit,valueonly)",
        ];
        args.extend_from_slice(revs);
        args.push("--");
        let out = self.run(dir, &args, "log (provenance trailers)").await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= 7 && l.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect())
    }

    /// The worktree (if any) that has `branch` checked out.
    pub(crate) async fn worktree_of(&self, dir: &Path, branch: &str) -> Result<Option<PathBuf>> {
        let out = self
            .run(dir, &["worktree", "list", "--porcelain"], "worktree list")
            .await?;
        let wanted = format!("branch refs/heads/{branch}");
        let mut current: Option<PathBuf> = None;
        for line in out.lines() {
            if let Some(path) = line.strip_prefix("worktree ") {
                current = Some(PathBuf::from(path));
            } else if line == wanted {
                return Ok(current);
            }
        }
        Ok(None)
    }
}

/// Whether a failed fetch is worth retrying: authentication failures are not (the token
/// is wrong and asking again only risks a lock-out); anything else may be the network.
pub(crate) fn is_transient(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    ![
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "returned error: 401",
        "returned error: 403",
        "permission denied (publickey",
    ]
    .iter()
    .any(|needle| s.contains(needle))
}

/// One commit of a `git log` stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogCommit {
    pub(crate) sha: String,
    pub(crate) parents: usize,
    pub(crate) author: String,
    pub(crate) date: String,
    pub(crate) message: String,
    pub(crate) files: Vec<String>,
}

/// The `--format` that [`parse_log`] reads (with `-z --name-only`).
pub(crate) const LOG_FORMAT: &str = "--format=%x1e%H%x1f%P%x1f%an%x1f%aI%x1f%B%x1f";

/// Parses `git log -z --name-only` output in [`LOG_FORMAT`]: records start with U+001E,
/// header fields end with U+001F, then the touched paths follow, each ended by NUL.
pub(crate) fn parse_log(out: &[u8]) -> Vec<LogCommit> {
    let text = String::from_utf8_lossy(out);
    let mut commits = Vec::new();
    for record in text.split('\u{1e}') {
        if record.is_empty() {
            continue;
        }
        let Some(last_sep) = record.rfind('\u{1f}') else {
            continue;
        };
        let (header, files) = record.split_at(last_sep);
        let mut fields = header.splitn(5, '\u{1f}');
        let (Some(sha), Some(parents), Some(author), Some(date), Some(message)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let files = files[1..]
            .split('\0')
            .map(|f| f.trim_start_matches('\n'))
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        commits.push(LogCommit {
            sha: sha.trim().to_owned(),
            parents: parents.split_whitespace().count(),
            author: author.to_owned(),
            date: date.to_owned(),
            message: message.trim_end().to_owned(),
            files,
        });
    }
    commits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_stream() {
        let raw = b"\x1eaaa\x1f\x1fAnn\x1f2026-01-01T00:00:00Z\x1froot\n\x1f\0\x1ebbb\x1faaa\x1fBo\x1f2026-01-02T00:00:00Z\x1ffeat: x\n\nBREAKING CHANGE: y\n\x1f\0\na\0d/b\0\x1eccc\x1fbbb ddd\x1fCy\x1fdate\x1fMerge\n\x1f\0";
        let commits = parse_log(raw);
        assert_eq!(commits.len(), 3);
        assert_eq!(commits[0].sha, "aaa");
        assert_eq!(commits[0].parents, 0);
        assert!(commits[0].files.is_empty());
        assert_eq!(commits[1].files, ["a", "d/b"]);
        assert_eq!(commits[1].message, "feat: x\n\nBREAKING CHANGE: y");
        assert_eq!(commits[1].author, "Bo");
        assert_eq!(commits[2].parents, 2);
    }

    #[test]
    fn auth_failures_are_not_retried() {
        assert!(!is_transient(
            "fatal: Authentication failed for 'https://h/x'"
        ));
        assert!(is_transient(
            "fatal: unable to access: Could not resolve host: h"
        ));
        assert!(is_transient(
            "fatal: Could not read from remote repository."
        ));
    }
}
