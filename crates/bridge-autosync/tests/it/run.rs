//! `run`: cherry-picks with provenance, conflicts, validation, the risk decision (merge or
//! pull request against the GitHub emulator), the state file and idempotence.

use bridge_autosync::{MemoryEvents, RunOutcome, SourceOutcome};
use bridge_emulators::{EmulatorConfig, Emulators};

use crate::repo::{Workspace, commit, env, git, web_source};

async fn github() -> Emulators {
    bridge_emulators::start(EmulatorConfig {
        render: false,
        netlify: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

fn github_env(emu: &Emulators) -> bridge_autosync::Env {
    let url = emu.github().unwrap().base_url();
    env(&[
        ("GITHUB_API_URL", url.as_str()),
        ("GITHUB_TOKEN", bridge_emulators::GITHUB_TOKEN),
    ])
}

fn config_text(source: &str, extra: &str) -> String {
    format!(
        r#"
[target]
path = "target"
branch = "main"

[[source]]
name = "{source}"
url = "{source}"
branch = "main"

[[validate]]
name = "unit tests"
run = "echo 'running 4 tests'; echo 'test result: ok. 4 passed; 0 failed; 0 ignored'"
timeout = "30s"
kind = "test"

[github]
repository = "bridge/emulated"
{extra}"#
    )
}

#[tokio::test]
async fn mixed_source_opens_a_labelled_pull_request_and_skips_the_conflict() {
    let ws = Workspace::new();
    let c = web_source(&ws);
    let config = ws.config(&config_text("web", ""));
    let emu = github().await;
    let events = MemoryEvents::new();
    let main_before = git(&ws.target(), &["rev-parse", "main"]);

    let report = bridge_autosync::run(&config, &github_env(&emu), &events)
        .await
        .unwrap();
    let web = &report.sources[0];
    assert_eq!(
        web.outcome,
        SourceOutcome::PullRequest,
        "{}",
        report.render_text()
    );
    assert_eq!(report.outcome, RunOutcome::NeedsReview);
    let picked: Vec<&str> = web.picked.iter().map(|p| p.sha.as_str()).collect();
    assert_eq!(
        picked,
        [c.feat.as_str(), c.breaking.as_str(), c.perf.as_str()]
    );
    assert_eq!(web.conflicts.len(), 1);
    assert_eq!(web.conflicts[0].sha, c.conflicting);
    assert_eq!(web.conflicts[0].files, ["src/app.txt"]);
    assert!(!web.stopped);

    // The target branch did not move; the integration branch holds the picks, with trailers.
    assert_eq!(git(&ws.target(), &["rev-parse", "main"]), main_before);
    let log = git(
        &ws.target(),
        &["log", "--format=%B%x00", "main..autosync/web"],
    );
    assert_eq!(log.matches("Auto-Sync-Commit: ").count(), 3, "{log}");
    assert!(log.contains(&format!("Auto-Sync-Commit: {}", c.perf)));
    let url = ws.path("web").to_string_lossy().into_owned();
    assert!(
        log.contains(&format!("Auto-Sync-Source: web {url}")),
        "{log}"
    );
    assert_eq!(git(&ws.target(), &["status", "--porcelain"]), "");
    // No worktree is left behind.
    assert_eq!(git(&ws.target(), &["worktree", "list"]).lines().count(), 1);

    // The pull request, as the emulator received it.
    let pulls = emu.github().unwrap().pulls();
    assert_eq!(pulls.len(), 1);
    let pr = &pulls[0];
    assert_eq!(pr.head, "autosync/web");
    assert_eq!(pr.base, "main");
    assert_eq!(pr.labels, ["auto-sync", "risk:low"]);
    assert!(pr.title.contains("3 commits from web"), "{}", pr.title);
    assert!(
        pr.body.contains("remove the v1 endpoints **BREAKING**"),
        "{}",
        pr.body
    );
    assert!(pr.body.contains("= 3` (threshold 5)"), "{}", pr.body);
    assert!(
        pr.body.contains("a carried commit is a breaking change"),
        "{}",
        pr.body
    );
    assert!(
        pr.body.contains("reword line one — src/app.txt"),
        "{}",
        pr.body
    );
    assert!(
        pr.body.contains("| unit tests | test | passed | 0 | 0 |"),
        "{}",
        pr.body
    );
    assert_eq!(web.pull_request.as_ref().unwrap().number, 1);

    let topics = events.topics();
    for topic in [
        "autosync.plan",
        "autosync.fetch",
        "autosync.commit_selected",
        "autosync.commit_skipped",
        "autosync.cherry_pick",
        "autosync.conflict",
        "autosync.validate",
        "autosync.pull_request",
        "autosync.complete",
    ] {
        assert!(
            topics.iter().any(|t| t == topic),
            "{topic} missing from {topics:?}"
        );
    }
    // One level under `autosync.`, as the bus's strict policy (`autosync.*`) requires.
    for topic in &topics {
        let rest = topic.strip_prefix("autosync.").unwrap();
        assert!(!rest.contains('.') && !rest.is_empty(), "{topic}");
    }
    let skipped_env = events
        .events()
        .into_iter()
        .find(|(t, p)| t == "autosync.commit_skipped" && p["sha"] == c.env_fix.as_str())
        .unwrap();
    assert_eq!(skipped_env.1["reason"], "denied_path");
    assert_eq!(skipped_env.1["path"], ".env");

    // The state records every commit's outcome.
    let state: serde_json::Value = serde_json::from_str(&ws.state_text().unwrap()).unwrap();
    let processed = &state["sources"]["web"]["processed"];
    assert_eq!(processed.as_object().unwrap().len(), 7);
    assert_eq!(processed[&c.feat]["outcome"], "pull_request");
    assert_eq!(processed[&c.feat]["pull_request"], 1);
    assert_eq!(processed[&c.conflicting]["outcome"], "conflict");
    assert_eq!(processed[&c.env_fix]["outcome"], "skipped:denied_path");
    assert_eq!(state["last_run"]["outcome"], "needs_review");

    // A second run finds nothing new and opens nothing.
    let events = MemoryEvents::new();
    let again = bridge_autosync::run(&config, &github_env(&emu), &events)
        .await
        .unwrap();
    assert_eq!(
        again.outcome,
        RunOutcome::NothingToDo,
        "{}",
        again.render_text()
    );
    assert!(again.sources[0].plan.selected.is_empty());
    assert!(again.sources[0].plan.skipped.is_empty());
    assert!(!events.topics().iter().any(|t| t == "autosync.cherry_pick"));
    assert_eq!(emu.github().unwrap().pulls().len(), 1);

    let status = bridge_autosync::status(&config).unwrap();
    assert_eq!(status.sources[0].processed, 7);
    assert_eq!(status.sources[0].by_outcome["pull_request"], 3);
    assert!(
        status.render_text().contains("last run"),
        "{}",
        status.render_text()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn low_risk_clean_change_fast_forwards_the_checked_out_target() {
    let ws = Workspace::new();
    let api = ws.source("api");
    let feat = commit(&api, "feat: add health", &[("src/health.txt", "ok\n")]);
    commit(&api, "docs: note", &[("NOTES.md", "n\n")]);
    let fix = commit(&api, "fix: tidy", &[("src/health.txt", "ok!\n")]);
    let config = ws.config(&config_text("api", ""));
    let emu = github().await;
    let events = MemoryEvents::new();

    let report = bridge_autosync::run(&config, &github_env(&emu), &events)
        .await
        .unwrap();
    let s = &report.sources[0];
    assert_eq!(s.outcome, SourceOutcome::Merged, "{}", report.render_text());
    assert_eq!(report.outcome, RunOutcome::Merged);
    let risk = s.risk.as_ref().unwrap();
    assert_eq!(risk.score, 1, "{}", risk.arithmetic());
    assert!(risk.auto_merge);
    // main moved to the integration branch, and its working tree with it.
    assert_eq!(
        git(&ws.target(), &["rev-parse", "main"]),
        git(&ws.target(), &["rev-parse", "autosync/api"])
    );
    assert_eq!(
        std::fs::read_to_string(ws.target().join("src/health.txt")).unwrap(),
        "ok!\n"
    );
    assert_eq!(git(&ws.target(), &["status", "--porcelain"]), "");
    assert!(emu.github().unwrap().pulls().is_empty());
    assert!(events.topics().iter().any(|t| t == "autosync.merge"));
    let trailers = git(
        &ws.target(),
        &[
            "log",
            "-2",
            "--format=%(trailers:key=Auto-Sync-Commit,valueonly)",
        ],
    );
    assert!(
        trailers.contains(&feat) && trailers.contains(&fix),
        "{trailers}"
    );

    // Idempotent: nothing new, and nothing carried twice even without the state file.
    let again = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    assert_eq!(again.outcome, RunOutcome::NothingToDo);
    std::fs::remove_file(ws.path(".bridge/autosync-state.json")).unwrap();
    let plan = bridge_autosync::plan(&config, &github_env(&emu))
        .await
        .unwrap();
    assert!(
        plan.sources[0].selected.is_empty(),
        "{}",
        plan.render_text()
    );
    let reasons: Vec<_> = plan.sources[0]
        .skipped
        .iter()
        .filter_map(|c| c.reason)
        .map(|r| r.as_str())
        .collect();
    assert_eq!(
        reasons,
        ["already_carried", "type_not_allowed", "already_carried"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn failing_validation_scores_the_risk_and_labels_it_high() {
    let ws = Workspace::new();
    let api = ws.source("api");
    commit(
        &api,
        "feat(db): add orders",
        &[
            ("src/orders.txt", "o\n"),
            ("db/migrations/001_orders.sql", "create table orders();\n"),
        ],
    );
    let extra = r#"
[[validate]]
name = "types"
run = "echo 'src/a.ts(1,1): error TS2322'; echo 'Found 1 error.'; exit 2"
kind = "type-check"

[[validate]]
name = "cargo test"
run = "echo 'test result: FAILED. 3 passed; 2 failed; 0 ignored'; exit 101"
kind = "test"
"#;
    let text = config_text("api", "").replace("[github]", &format!("{extra}\n[github]"));
    let config = ws.config(&text);
    let emu = github().await;
    let report = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    let s = &report.sources[0];
    assert_eq!(
        s.outcome,
        SourceOutcome::PullRequest,
        "{}",
        report.render_text()
    );
    let risk = s.risk.as_ref().unwrap();
    // 2 files + 3×1 type error + 5×2 test failures + 2 (a migration) = 17
    assert_eq!(risk.score, 17, "{}", risk.arithmetic());
    assert_eq!(
        risk.arithmetic(),
        "1 × 2 files changed + 3 × 1 type errors + 5 × 2 test failures + 2 × 1 migrations touched = 17"
    );
    assert_eq!(s.validation[1].errors, 1);
    assert_eq!(s.validation[2].failures, 2);
    let pulls = emu.github().unwrap().pulls();
    assert_eq!(pulls[0].labels, ["auto-sync", "risk:high"]);
    assert!(
        pulls[0].body.contains("Found 1 error."),
        "{}",
        pulls[0].body
    );
    assert!(
        pulls[0]
            .body
            .contains("Migrations touched: db/migrations/001_orders.sql")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn stop_on_conflict_keeps_the_rest_pending() {
    let ws = Workspace::new();
    let c = web_source(&ws);
    let text = format!("on_conflict = \"stop\"\n{}", config_text("web", ""));
    let config = ws.config(&text);
    let emu = github().await;
    let report = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    let web = &report.sources[0];
    assert!(web.stopped);
    assert_eq!(web.picked.len(), 2, "{}", report.render_text());
    assert_eq!(web.outcome, SourceOutcome::PullRequest);
    let risk = web.risk.as_ref().unwrap();
    assert!(
        risk.blockers.iter().any(|b| b.contains("on_conflict")),
        "{:?}",
        risk.blockers
    );

    let state: serde_json::Value = serde_json::from_str(&ws.state_text().unwrap()).unwrap();
    let processed = &state["sources"]["web"]["processed"];
    assert!(processed.get(&c.conflicting).is_none());
    assert!(processed.get(&c.perf).is_none());
    assert!(state["sources"]["web"].get("synced_head").is_none());

    // Still pending: the next plan proposes them again.
    let plan = bridge_autosync::plan(&config, &github_env(&emu))
        .await
        .unwrap();
    let pending: Vec<&str> = plan.sources[0]
        .selected
        .iter()
        .map(|c| c.sha.as_str())
        .collect();
    assert_eq!(pending, [c.conflicting.as_str(), c.perf.as_str()]);
    emu.shutdown().await;
}

#[tokio::test]
async fn without_github_a_needed_review_leaves_the_branch() {
    let ws = Workspace::new();
    let web = ws.source("web");
    commit(&web, "feat!: new protocol", &[("src/p.txt", "p\n")]);
    let text = config_text("web", "").replace("[github]\nrepository = \"bridge/emulated\"\n", "");
    let config = ws.config(&text);
    let report = bridge_autosync::run(&config, &env(&[]), &MemoryEvents::new())
        .await
        .unwrap();
    assert_eq!(report.sources[0].outcome, SourceOutcome::Review);
    assert_eq!(report.outcome, RunOutcome::NeedsReview);
    git(&ws.target(), &["rev-parse", "--verify", "autosync/web"]);
}

#[tokio::test]
async fn a_pending_pull_request_branch_grows_instead_of_being_reset() {
    let ws = Workspace::new();
    let web = ws.source("web");
    commit(&web, "feat!: one", &[("src/one.txt", "1\n")]);
    let config = ws.config(&config_text("web", ""));
    let emu = github().await;
    bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    commit(&web, "fix: two", &[("src/two.txt", "2\n")]);
    let report = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    let s = &report.sources[0];
    assert_eq!(
        s.outcome,
        SourceOutcome::PullRequest,
        "{}",
        report.render_text()
    );
    // Same pull request, updated; the branch has both commits.
    assert!(!s.pull_request.as_ref().unwrap().created);
    assert_eq!(emu.github().unwrap().pulls().len(), 1);
    assert_eq!(
        git(&ws.target(), &["rev-list", "--count", "main..autosync/web"]),
        "2"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_run_that_failed_before_its_pull_request_is_finished_by_the_next() {
    let ws = Workspace::new();
    let web = ws.source("web");
    commit(&web, "feat!: one", &[("src/one.txt", "1\n")]);
    let text = format!("{}\n[fetch]\nbackoff = \"1ms\"\n", config_text("web", ""));
    let config = ws.config(&text);
    let emu = github().await;
    let gh = emu.github().unwrap();
    gh.set_error_rate(1.0);
    let report = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        RunOutcome::Failed,
        "{}",
        report.render_text()
    );
    let error = report.sources[0].plan.error.as_deref().unwrap();
    assert!(error.contains("HTTP 503"), "{error}");
    assert!(gh.pulls().is_empty());

    gh.set_error_rate(0.0);
    let report = bridge_autosync::run(&config, &github_env(&emu), &MemoryEvents::new())
        .await
        .unwrap();
    let s = &report.sources[0];
    assert_eq!(
        s.outcome,
        SourceOutcome::PullRequest,
        "{}",
        report.render_text()
    );
    let pulls = gh.pulls();
    assert_eq!(pulls.len(), 1);
    assert!(
        pulls[0].title.starts_with("Auto-Sync: 1 commit from web"),
        "{}",
        pulls[0].title
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_missing_github_token_stops_before_anything_changes() {
    let ws = Workspace::new();
    let web = ws.source("web");
    commit(&web, "feat: one", &[("src/one.txt", "1\n")]);
    let config = ws.config(&config_text("web", ""));
    let before = ws.target_branches();
    let e = bridge_autosync::run(&config, &env(&[]), &MemoryEvents::new())
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("GITHUB_TOKEN is not set"), "{e}");
    assert!(e.is_input_error());
    assert_eq!(ws.target_branches(), before);
    assert!(ws.state_text().is_none());
}
