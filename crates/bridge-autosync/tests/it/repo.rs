//! Real git repositories in a temporary directory, isolated from the machine's git
//! configuration, and the `autosync.toml` that points at them.

use std::path::{Path, PathBuf};
use std::process::Command;

use bridge_autosync::{AutosyncConfig, Env};

/// The variables every git call (ours and the library's) gets.
pub const GIT_ISOLATION: &[(&str, &str)] = &[
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(GIT_ISOLATION.iter().copied())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn configure(dir: &Path, name: &str) {
    git(dir, &["config", "user.name", name]);
    git(
        dir,
        &["config", "user.email", &format!("{name}@example.invalid")],
    );
    git(dir, &["config", "commit.gpgsign", "false"]);
}

/// Writes files (an empty content deletes), stages everything and commits.
pub fn commit(dir: &Path, message: &str, files: &[(&str, &str)]) -> String {
    for (name, content) in files {
        let path = dir.join(name);
        if content.is_empty() {
            let _ = std::fs::remove_file(&path);
        } else {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A workspace: the target repository (`target/`, on `main`) and sources cloned from it,
/// so they share its first commit, as sibling repositories forked from a template do.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let target = ws.target();
        std::fs::create_dir_all(&target).unwrap();
        git(&target, &["init", "--quiet", "--initial-branch=main"]);
        configure(&target, "target");
        commit(
            &target,
            "chore: initial",
            &[
                ("README.md", "# app\n"),
                ("src/app.txt", "line one\nline two\nline three\n"),
            ],
        );
        ws
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn target(&self) -> PathBuf {
        self.path("target")
    }

    /// Clones the target into `name/` (branch `main`).
    pub fn source(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        git(
            self.dir.path(),
            &["clone", "--quiet", &self.target().to_string_lossy(), name],
        );
        configure(&path, name);
        path
    }

    /// Writes `autosync.toml` beside the repositories and loads it.
    pub fn config(&self, text: &str) -> AutosyncConfig {
        let path = self.path("autosync.toml");
        std::fs::write(&path, text).unwrap();
        AutosyncConfig::load(&path).unwrap()
    }

    pub fn state_text(&self) -> Option<String> {
        std::fs::read_to_string(self.path(".bridge/autosync-state.json")).ok()
    }

    /// `refname sha` of every branch of the target, for "nothing changed" checks.
    pub fn target_branches(&self) -> String {
        git(
            &self.target(),
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
            ],
        )
    }
}

/// An `Env` with git isolated and the given variables.
pub fn env(vars: &[(&str, &str)]) -> Env {
    let mut env = Env::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for (k, v) in GIT_ISOLATION {
        env = env.with_git_env(k, v);
    }
    env
}

/// The "web" source: a mix of commit kinds, and a target change that makes one conflict.
pub struct WebCommits {
    pub feat: String,
    pub chore: String,
    pub docs: String,
    pub env_fix: String,
    pub breaking: String,
    pub conflicting: String,
    pub perf: String,
}

pub fn web_source(ws: &Workspace) -> WebCommits {
    let web = ws.source("web");
    let commits = WebCommits {
        feat: commit(
            &web,
            "feat(ui): add a button",
            &[("src/button.txt", "button\n")],
        ),
        chore: commit(
            &web,
            "chore: bump dependencies",
            &[("package.json", "{}\n")],
        ),
        docs: commit(
            &web,
            "docs: explain the button",
            &[("README.md", "# app\nbutton\n")],
        ),
        env_fix: commit(
            &web,
            "fix: read the port",
            &[("src/port.txt", "port\n"), (".env", "PORT=1\n")],
        ),
        breaking: commit(
            &web,
            "feat(api)!: remove the v1 endpoints\n\nBREAKING CHANGE: v1 is gone",
            &[("src/api.txt", "v2 only\n")],
        ),
        conflicting: commit(
            &web,
            "fix: reword line one",
            &[("src/app.txt", "LINE ONE (web)\nline two\nline three\n")],
        ),
        perf: commit(
            &web,
            "perf: cache the button",
            &[("src/cache.txt", "cache\n")],
        ),
    };
    // The target changed the same line meanwhile.
    commit(
        &ws.target(),
        "feat: local wording",
        &[("src/app.txt", "Line One (target)\nline two\nline three\n")],
    );
    commits
}
