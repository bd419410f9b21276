//! Validation: the configured commands, run one after another with `sh -c` in the
//! integration worktree, each under its deadline, and their output read into counts where
//! the tool prints one.
//!
//! Recognised summaries: cargo test (`test result: … N failed`), pytest and jest
//! (`N failed`, `N error(s)`), tsc and mypy (`Found N error(s)`), eslint
//! (`N problems (E errors, …)`), rustc/clippy (`due to N previous error(s)`). Anything
//! else falls back to the exit code: a failing command with no count counts as one.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use tokio::process::Command;

use crate::config::{ValidateConfig, ValidateKind};
use crate::process;
use crate::redact::Redactor;

/// Lines of output kept in a report (the end is where tools summarise).
const TAIL_LINES: usize = 40;

/// How a validation command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    /// Exit code 0.
    Passed,
    /// A non-zero exit code or a signal.
    Failed,
    /// Killed at its deadline.
    TimedOut,
    /// Could not be started.
    Error,
}

/// The outcome of one validation command.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationOutcome {
    /// The configured name.
    pub name: String,
    /// The configured kind.
    pub kind: ValidateKind,
    /// The command line.
    pub command: String,
    /// How it ended.
    pub status: ValidationStatus,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Errors counted (type errors for `type-check`, lint/build errors otherwise).
    pub errors: u64,
    /// Failed tests counted.
    pub failures: u64,
    /// Whether the counts came from the tool's summary (false: from the exit code).
    pub parsed: bool,
    /// The last lines of stdout and stderr, redacted.
    pub output_tail: String,
}

impl ValidationOutcome {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.status == ValidationStatus::Passed
    }
}

/// Runs every command in `dir`, without the variables in `hidden_env` (the tokens: code
/// carried from another repository must not read them).
pub(crate) async fn run_all(
    commands: &[ValidateConfig],
    dir: &Path,
    hidden_env: &[String],
    redactor: &Redactor,
) -> Vec<ValidationOutcome> {
    let mut outcomes = Vec::with_capacity(commands.len());
    for v in commands {
        outcomes.push(run_one(v, dir, hidden_env, redactor).await);
    }
    outcomes
}

async fn run_one(
    v: &ValidateConfig,
    dir: &Path,
    hidden_env: &[String],
    redactor: &Redactor,
) -> ValidationOutcome {
    let mut command = Command::new("sh");
    command.arg("-c").arg(&v.run).current_dir(dir);
    for name in hidden_env {
        command.env_remove(name);
    }
    let mut outcome = ValidationOutcome {
        name: v.name.clone(),
        kind: v.kind,
        command: redactor.redact(&v.run),
        status: ValidationStatus::Error,
        exit_code: None,
        duration_ms: 0,
        errors: 0,
        failures: 0,
        parsed: false,
        output_tail: String::new(),
    };
    let finished = match process::run(command, v.timeout).await {
        Ok(f) => f,
        Err(e) => {
            outcome.errors = 1;
            outcome.output_tail = redactor.redact(&format!("could not start `sh -c`: {e}"));
            return outcome;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr)
    );
    outcome.exit_code = finished.code;
    outcome.duration_ms = u64::try_from(finished.elapsed.as_millis()).unwrap_or(u64::MAX);
    outcome.status = if finished.timed_out {
        ValidationStatus::TimedOut
    } else if finished.code == Some(0) {
        ValidationStatus::Passed
    } else {
        ValidationStatus::Failed
    };
    let counts = parse_counts(&text);
    outcome.parsed = counts.is_some();
    let counts = counts.unwrap_or_default();
    outcome.errors = counts.errors;
    outcome.failures = counts.failures;
    if !outcome.passed() && outcome.errors == 0 && outcome.failures == 0 {
        // Failed without a count we could read: one, charged to the kind's term.
        match v.kind {
            ValidateKind::Test => outcome.failures = 1,
            _ => outcome.errors = 1,
        }
    }
    let mut tail: Vec<&str> = text.lines().rev().take(TAIL_LINES).collect();
    tail.reverse();
    let mut tail = tail.join("\n");
    if finished.timed_out {
        tail.push_str(&format!(
            "\n[killed after {} with its process group]",
            human_duration(v.timeout)
        ));
    }
    outcome.output_tail = redactor.redact(&tail);
    outcome
}

fn human_duration(d: Duration) -> String {
    if d.as_secs() >= 60 && d.as_secs().is_multiple_of(60) {
        format!("{}m", d.as_secs() / 60)
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Counts read from a tool's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) errors: u64,
    pub(crate) failures: u64,
}

struct Patterns {
    cargo_test: Regex,
    failed: Regex,
    errored: Regex,
    found_errors: Regex,
    eslint: Regex,
    rustc: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re =
            |p: &str| Regex::new(p).unwrap_or_else(|e| unreachable!("constant pattern {p}: {e}"));
        Patterns {
            cargo_test: re(r"test result: \w+\. \d+ passed; (\d+) failed"),
            // pytest "=== 2 failed, 3 passed", jest "Tests: 1 failed, 4 passed".
            failed: re(r"(?:^|[\s,=:])(\d+) failed\b"),
            errored: re(r"(?:^|[\s,=])(\d+) errors? in\b|(?:^|[\s,])(\d+) errors?(?:,| =| in)"),
            found_errors: re(r"Found (\d+) errors?\b"),
            eslint: re(r"\d+ problems? \((\d+) errors?"),
            rustc: re(r"due to (\d+) previous errors?"),
        }
    })
}

/// The counts in `output`, or `None` when it has no summary we know.
pub(crate) fn parse_counts(output: &str) -> Option<Counts> {
    let p = patterns();
    let num =
        |s: Option<regex::Match<'_>>| s.and_then(|m| m.as_str().parse::<u64>().ok()).unwrap_or(0);
    let mut counts = Counts::default();
    let mut seen = false;
    // cargo prints one "test result" line per test binary: add them up.
    let mut cargo = false;
    for c in p.cargo_test.captures_iter(output) {
        cargo = true;
        counts.failures += num(c.get(1));
    }
    if cargo {
        seen = true;
    } else {
        for line in output.lines() {
            if let Some(c) = p.failed.captures(line) {
                seen = true;
                counts.failures = counts.failures.max(num(c.get(1)));
            }
            if (line.contains("passed") || line.contains("failed"))
                && let Some(c) = p.errored.captures(line)
            {
                seen = true;
                counts.errors += num(c.get(1).or(c.get(2)));
            }
        }
    }
    for c in p.found_errors.captures_iter(output) {
        seen = true;
        counts.errors += num(c.get(1));
    }
    for c in p.eslint.captures_iter(output) {
        seen = true;
        counts.errors += num(c.get(1));
    }
    for c in p.rustc.captures_iter(output) {
        seen = true;
        counts.errors += num(c.get(1));
    }
    seen.then_some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_test_summaries_add_up() {
        let out = "running 3 tests\ntest result: FAILED. 1 passed; 2 failed; 0 ignored\n\
                   test result: ok. 5 passed; 0 failed; 0 ignored\n\
                   test result: FAILED. 0 passed; 1 failed; 0 ignored";
        assert_eq!(
            parse_counts(out),
            Some(Counts {
                errors: 0,
                failures: 3
            })
        );
        let ok = "test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured";
        assert_eq!(parse_counts(ok), Some(Counts::default()));
    }

    #[test]
    fn other_tools() {
        assert_eq!(
            parse_counts("===== 2 failed, 10 passed, 1 error in 0.52s =====").unwrap(),
            Counts {
                errors: 1,
                failures: 2
            }
        );
        assert_eq!(
            parse_counts("Tests:       1 failed, 4 passed, 5 total")
                .unwrap()
                .failures,
            1
        );
        assert_eq!(
            parse_counts("Found 4 errors in 2 files.").unwrap().errors,
            4
        );
        assert_eq!(parse_counts("Found 1 error.").unwrap().errors, 1);
        assert_eq!(
            parse_counts("✖ 7 problems (3 errors, 4 warnings)")
                .unwrap()
                .errors,
            3
        );
        assert_eq!(
            parse_counts("error: could not compile `x` due to 2 previous errors")
                .unwrap()
                .errors,
            2
        );
        assert_eq!(parse_counts("all good"), None);
    }

    #[tokio::test]
    async fn commands_run_with_deadline_and_hidden_tokens() {
        let dir = std::env::temp_dir();
        let redactor = Redactor::new();
        redactor.register("tok-secret-1");
        let cmds = vec![
            ValidateConfig {
                name: "pass".into(),
                run: "echo 'test result: ok. 3 passed; 0 failed;'".into(),
                timeout: Duration::from_secs(10),
                kind: ValidateKind::Test,
            },
            ValidateConfig {
                name: "fail".into(),
                run: "echo tok-secret-1; echo \"seen:${AUTOSYNC_TEST_HIDDEN:-none}\"; exit 2"
                    .into(),
                timeout: Duration::from_secs(10),
                kind: ValidateKind::Lint,
            },
            ValidateConfig {
                name: "slow".into(),
                run: "sleep 20".into(),
                timeout: Duration::from_millis(200),
                kind: ValidateKind::Smoke,
            },
        ];
        let out = run_all(&cmds, &dir, &["HOME".to_owned()], &redactor).await;
        assert!(out[0].passed() && out[0].parsed);
        assert_eq!(out[1].status, ValidationStatus::Failed);
        assert_eq!(out[1].errors, 1);
        assert!(
            !out[1].output_tail.contains("tok-secret-1"),
            "{}",
            out[1].output_tail
        );
        assert_eq!(out[2].status, ValidationStatus::TimedOut);
        assert!(out[2].output_tail.contains("killed after 200ms"));
    }
}
