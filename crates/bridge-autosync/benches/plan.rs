//! `plan` over a source with 10,000 new commits, against a baseline measured in the same
//! run: a bare `git log --name-only` over the same range (the floor: git's own walk and
//! diff). The repository is written with `git fast-import`, so setup takes a second.
//!
//! Reproduce: `cargo bench -p bridge-autosync --bench plan` (`AUTOSYNC_BENCH_COMMITS=N`
//! changes the size).

// A benchmark binary: a panic is how it fails.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bridge_autosync::{AutosyncConfig, Env};

const ISOLATION: &[(&str, &str)] = &[
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(ISOLATION.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository whose `main` is one root commit followed by `n` commits, each touching one
/// or two files; types rotate through feat/fix/chore/docs, and every 50th touches `.env`.
fn fast_import(dir: &Path, n: usize) {
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    let mut stream = String::with_capacity(n * 200);
    let mut commit = |mark: usize, message: &str, files: &[(String, String)]| {
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{mark}\nauthor Bench <b@example.invalid> {t} +0000\n\
             committer Bench <b@example.invalid> {t} +0000\ndata {}\n{message}\n",
            message.len(),
            t = 1_700_000_000 + mark
        ));
        if mark > 1 {
            stream.push_str(&format!("from :{}\n", mark - 1));
        }
        for (path, content) in files {
            stream.push_str(&format!(
                "M 100644 inline {path}\ndata {}\n{content}\n",
                content.len()
            ));
        }
    };
    commit(1, "chore: root", &[("README.md".into(), "root\n".into())]);
    let kinds = ["feat", "fix", "chore", "docs", "perf", "refactor"];
    for i in 0..n {
        let kind = kinds[i % kinds.len()];
        let mut files = vec![(
            format!("src/m{}/f{}.txt", i % 97, i % 1009),
            format!("v{i}\n"),
        )];
        if i % 50 == 0 {
            files.push((".env".into(), format!("K={i}\n")));
        } else if i % 7 == 0 {
            files.push((format!("docs/p{}.md", i % 31), format!("d{i}\n")));
        }
        commit(
            i + 2,
            &format!("{kind}(m{}): change number {i}\n\nBody of {i}.", i % 13),
            &files,
        );
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .envs(ISOLATION.iter().copied())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let n: usize = std::env::var("AUTOSYNC_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let target = dir.path().join("target");
    std::fs::create_dir_all(&source).unwrap();
    let setup = Instant::now();
    fast_import(&source, n);
    // The target starts from the source's root commit, so all n commits are new.
    let root = git(&source, &["rev-list", "--max-parents=0", "main"])
        .trim()
        .to_owned();
    std::fs::create_dir_all(&target).unwrap();
    git(&target, &["init", "--quiet", "--initial-branch=main"]);
    git(
        &target,
        &["fetch", "--quiet", &source.to_string_lossy(), &root],
    );
    git(&target, &["update-ref", "refs/heads/main", &root]);
    eprintln!("setup: {n} commits in {:.2?}", setup.elapsed());

    let config_path = dir.path().join("autosync.toml");
    std::fs::write(
        &config_path,
        "[target]\npath = \"target\"\n[[source]]\nname = \"big\"\nurl = \"source\"\n",
    )
    .unwrap();
    let config = AutosyncConfig::load(&config_path).unwrap();
    let mut env = Env::from_pairs(Vec::<(String, String)>::new());
    for (k, v) in ISOLATION {
        env = env.with_git_env(k, v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // First plan: a local source is read in place (git alternates), nothing is copied.
    let started = Instant::now();
    let report = runtime
        .block_on(bridge_autosync::plan(&config, &env))
        .unwrap();
    let cold = started.elapsed();
    let s = &report.sources[0];
    assert_eq!(s.selected.len() + s.skipped.len(), n, "{:?}", s.error);

    let mut warm = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report = runtime
            .block_on(bridge_autosync::plan(&config, &env))
            .unwrap();
        warm.push(started.elapsed());
        assert_eq!(report.sources[0].selected.len(), s.selected.len());
    }
    let head = git(&source, &["rev-parse", "main"]).trim().to_owned();
    let mut baseline = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        git(
            &source,
            &[
                "log",
                "--name-only",
                "--no-renames",
                "--format=%H %s",
                &head,
                "--not",
                &root,
            ],
        );
        baseline.push(started.elapsed());
    }
    // What `run` pays once to copy the commits into the target (and `plan` for a source
    // that is not on this machine): git's own fetch, for scale.
    let started = Instant::now();
    git(
        &target,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            &source.to_string_lossy(),
            "+refs/heads/main:refs/bench/fetched",
        ],
    );
    let fetch = started.elapsed();
    let warm = median(warm);
    let baseline = median(baseline);
    println!(
        "autosync plan over {n} new commits ({} selected, {} skipped)",
        s.selected.len(),
        s.skipped.len()
    );
    println!("  plan, first run:                            {cold:>9.1?}");
    println!("  plan, again:                                {warm:>9.1?}  (median of 5)");
    println!("  baseline: git log --name-only, same range:  {baseline:>9.1?}  (median of 5)");
    println!("  for scale: git fetch of the same commits:   {fetch:>9.1?}  (run pays it once)");
    println!(
        "  plan / baseline: {:.2}x; budget 2 s: {}",
        warm.as_secs_f64() / baseline.as_secs_f64(),
        if cold < Duration::from_secs(2) && warm < Duration::from_secs(2) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("  reproduce: cargo bench -p bridge-autosync --bench plan");
}
