//! `genesisctl autosync`: plan as JSON, a run that merges, a run that opens a pull request on
//! the GitHub emulator (exit 1) with its events in the ledger's bus, status, idempotence and
//! exit codes.

use std::path::Path;
use std::process::Command;

use bridge_emulators::EmulatorConfig;

use crate::sandbox::Sandbox;

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
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(dir: &Path, message: &str, file: &str, content: &str) -> String {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn identity(dir: &Path) {
    git(dir, &["config", "user.name", "Test"]);
    git(dir, &["config", "user.email", "test@example.invalid"]);
}

/// `target/` (on main) and `web/`, a clone of it, inside the sandbox.
fn repos(sandbox: &mut Sandbox) {
    for (k, v) in ISOLATION {
        sandbox.env(k, v);
    }
    let target = sandbox.path("target");
    std::fs::create_dir_all(&target).unwrap();
    git(&target, &["init", "--quiet", "--initial-branch=main"]);
    identity(&target);
    commit(&target, "chore: initial", "README.md", "# app\n");
    git(&sandbox.path(""), &["clone", "--quiet", "target", "web"]);
    identity(&sandbox.path("web"));
}

const CONFIG: &str = r#"
[target]
path = "target"

[[source]]
name = "web"
url = "web"

[[validate]]
name = "tests"
run = "echo 'test result: ok. 2 passed; 0 failed;'"
kind = "test"
"#;

#[test]
fn plan_prints_json_and_changes_nothing() {
    let mut sandbox = Sandbox::new();
    repos(&mut sandbox);
    let web = sandbox.path("web");
    let feat = commit(&web, "feat: button", "src/button.txt", "b\n");
    let chore = commit(&web, "chore: tidy", "tidy.txt", "t\n");
    let secret = commit(&web, "fix: key", "certs/prod.pem", "k\n");
    sandbox.file("autosync.toml", CONFIG);

    let run = sandbox.run(&[
        "autosync",
        "plan",
        "--config",
        "autosync.toml",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let source = &json["sources"][0];
    assert_eq!(source["selected"][0]["sha"], feat.as_str());
    assert_eq!(source["skipped"][0]["sha"], chore.as_str());
    assert_eq!(source["skipped"][0]["reason"], "type_not_allowed");
    assert_eq!(source["skipped"][1]["sha"], secret.as_str());
    assert_eq!(source["skipped"][1]["reason"], "denied_path");
    assert_eq!(source["skipped"][1]["path"], "certs/prod.pem");
    assert!(!sandbox.path(".bridge/autosync-state.json").exists());
    assert_eq!(
        git(&sandbox.path("target"), &["branch", "--list", "autosync/*"]),
        ""
    );

    let text = sandbox.run(&["autosync", "plan", "--config", "autosync.toml"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("selected 1:"), "{}", text.stdout);
}

#[test]
fn run_merges_low_risk_changes_then_has_nothing_to_do() {
    let mut sandbox = Sandbox::new();
    repos(&mut sandbox);
    commit(&sandbox.path("web"), "fix: typo", "src/a.txt", "a\n");
    sandbox.file("autosync.toml", CONFIG);

    let run = sandbox.run(&["autosync", "run", "--config", "autosync.toml"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("outcome: merged"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(sandbox.path("target/src/a.txt")).unwrap(),
        "a\n"
    );

    let again = sandbox.run(&[
        "autosync",
        "run",
        "--config",
        "autosync.toml",
        "--output",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["outcome"], "nothing_to_do");

    let status = sandbox.run(&[
        "autosync",
        "status",
        "--config",
        "autosync.toml",
        "--output",
        "json",
    ]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status = status.json();
    assert_eq!(status["sources"][0]["processed"], 1);
    assert_eq!(status["last_run"]["outcome"], "nothing_to_do");

    // The events went through the bus into the ledger's store.
    let events = sandbox.run(&[
        "events",
        "tail",
        "--topic",
        "autosync.*",
        "--output",
        "json",
    ]);
    assert_eq!(events.code, 0, "{}", events.stderr);
    assert!(
        events
            .stdout
            .contains("\"_genesis_topic\":\"autosync.merge\""),
        "{}",
        events.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_opens_a_pull_request_on_the_emulator_and_exits_1() {
    let emu = bridge_emulators::start(EmulatorConfig {
        render: false,
        netlify: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let mut sandbox = Sandbox::new();
    repos(&mut sandbox);
    let token = "ghp_SourceToken_abcdef0123456789";
    commit(
        &sandbox.path("web"),
        "feat!: new protocol",
        "src/p.txt",
        "p\n",
    );
    let config = format!(
        "{}\n[github]\nrepository = \"bridge/emulated\"\n",
        CONFIG.replace(
            "url = \"web\"\n",
            "url = \"web\"\ntoken_env = \"SOURCE_PAT\"\n"
        )
    );
    sandbox.file("autosync.toml", &config);
    let base = emu.github().unwrap().base_url();
    sandbox
        .env("SOURCE_PAT", token)
        .env("GITHUB_API_URL", &base)
        .env("GITHUB_TOKEN", bridge_emulators::GITHUB_TOKEN);

    let run = tokio::task::spawn_blocking(move || {
        let run = sandbox.run(&[
            "autosync",
            "run",
            "--config",
            "autosync.toml",
            "--output",
            "json",
        ]);
        (run, sandbox)
    })
    .await
    .unwrap();
    let (run, sandbox) = run;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let json = run.json();
    assert_eq!(json["outcome"], "needs_review");
    assert_eq!(json["sources"][0]["pull_request"]["number"], 1);
    let pulls = emu.github().unwrap().pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].labels, ["auto-sync", "risk:low"]);
    assert_eq!(pulls[0].head, "autosync/web");
    assert!(
        pulls[0].body.contains("breaking change"),
        "{}",
        pulls[0].body
    );
    for secret in [token, bridge_emulators::GITHUB_TOKEN] {
        assert!(!run.all().contains(secret), "{secret} leaked");
        assert!(!sandbox.read(".bridge/autosync-state.json").contains(secret));
        assert!(!pulls[0].body.contains(secret));
    }
    emu.shutdown().await;
}

#[test]
fn configuration_errors_exit_2_and_name_the_key() {
    let mut sandbox = Sandbox::new();
    repos(&mut sandbox);
    sandbox.file(
        "autosync.toml",
        &format!("{CONFIG}\n[risk]\nthreshhold = 3\n"),
    );
    let run = sandbox.run(&["autosync", "plan", "--config", "autosync.toml"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("threshhold"), "{}", run.stderr);

    let missing = sandbox.run(&["autosync", "status"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("autosync.toml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn each_subcommand_has_help_with_an_example() {
    let sandbox = Sandbox::bare();
    for command in ["plan", "run", "status"] {
        let r = sandbox.run(&["autosync", command, "--help"]);
        assert_eq!(r.code, 0, "{command}");
        assert!(
            r.stdout.contains("Example"),
            "no example in help of {command}"
        );
        assert!(r.stdout.contains("autosync.toml"), "{command}");
    }
}
