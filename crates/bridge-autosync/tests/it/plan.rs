//! `plan`: what would be carried and why not, without changing the target.

use crate::repo::{Workspace, commit, env, git, web_source};

const WEB_CONFIG: &str = r#"
[target]
path = "target"
branch = "main"

[[source]]
name = "web"
url = "web"
branch = "main"
"#;

#[tokio::test]
async fn plan_selects_conventional_commits_and_names_the_denied_path() {
    let ws = Workspace::new();
    let c = web_source(&ws);
    let config = ws.config(WEB_CONFIG);
    let before = ws.target_branches();
    let status_before = git(&ws.target(), &["status", "--porcelain"]);

    let report = bridge_autosync::plan(&config, &env(&[])).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let web = &json["sources"][0];
    let shas = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["sha"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        shas(&web["selected"]),
        [
            c.feat.clone(),
            c.breaking.clone(),
            c.conflicting.clone(),
            c.perf.clone()
        ]
    );
    assert_eq!(
        shas(&web["skipped"]),
        [c.chore.clone(), c.docs.clone(), c.env_fix.clone()]
    );
    let skipped = web["skipped"].as_array().unwrap();
    assert_eq!(skipped[0]["reason"], "type_not_allowed");
    assert_eq!(skipped[0]["type"], "chore");
    assert_eq!(skipped[2]["reason"], "denied_path");
    assert_eq!(skipped[2]["path"], ".env");
    assert_eq!(skipped[2]["pattern"], ".env*");
    let breaking = &web["selected"][1];
    assert_eq!(breaking["breaking"], true);
    assert_eq!(breaking["scope"], "api");
    assert_eq!(
        web["expected"], "pull_request",
        "a breaking change needs review"
    );
    assert_eq!(web["integration_branch"], "autosync/web");

    // Nothing changed: branches, working tree, no state file.
    assert_eq!(ws.target_branches(), before);
    assert_eq!(git(&ws.target(), &["status", "--porcelain"]), status_before);
    assert!(ws.state_text().is_none());
    // A local source is read in place: not even a fetch ref.
    assert_eq!(git(&ws.target(), &["for-each-ref", "refs/autosync"]), "");

    let text = report.render_text();
    assert!(
        text.contains("denied_path: touches `.env`, denied by `.env*`"),
        "{text}"
    );
    assert!(text.contains("[BREAKING]"), "{text}");
}

#[tokio::test]
async fn plan_of_unknown_branch_or_missing_target_names_them() {
    let ws = Workspace::new();
    ws.source("web");
    let config = ws.config(&WEB_CONFIG.replace(
        "branch = \"main\"\n\n[[source]]",
        "branch = \"trunk\"\n\n[[source]]",
    ));
    let e = bridge_autosync::plan(&config, &env(&[])).await.unwrap_err();
    assert!(e.to_string().contains("target.branch `trunk`"), "{e}");
    assert!(e.is_input_error());

    let config = ws.config(&WEB_CONFIG.replace(
        "url = \"web\"\nbranch = \"main\"",
        "url = \"web\"\nbranch = \"nope\"",
    ));
    let report = bridge_autosync::plan(&config, &env(&[])).await.unwrap();
    let error = report.sources[0].error.as_deref().unwrap();
    assert!(error.contains("branch `nope` not found"), "{error}");
    assert!(report.has_errors());
}

#[tokio::test]
async fn token_env_must_be_set() {
    let ws = Workspace::new();
    ws.source("web");
    let config = ws.config(&format!("{WEB_CONFIG}token_env = \"SOURCE_PAT\"\n"));
    let e = bridge_autosync::plan(&config, &env(&[])).await.unwrap_err();
    assert!(e.to_string().contains("SOURCE_PAT is not set"), "{e}");
}

#[tokio::test]
async fn allow_and_deny_lists_are_configurable() {
    let ws = Workspace::new();
    let web = ws.source("web");
    let docs = commit(&web, "feat: docs site", &[("docs/index.md", "x\n")]);
    let infra = commit(&web, "fix: tune the cluster", &[("deploy/k8s.yaml", "x\n")]);
    let app = commit(&web, "fix: app", &[("src/a.txt", "x\n")]);
    let config = ws.config(&format!(
        "{WEB_CONFIG}\n[filters]\nallow = [\"src/**\", \"docs/**\", \"deploy/**\"]\ndeny = [\"deploy/**\"]\n"
    ));
    let report = bridge_autosync::plan(&config, &env(&[])).await.unwrap();
    let s = &report.sources[0];
    let selected: Vec<&str> = s.selected.iter().map(|c| c.sha.as_str()).collect();
    assert_eq!(selected, [docs.as_str(), app.as_str()]);
    assert_eq!(s.skipped[0].sha, infra);
    assert_eq!(s.skipped[0].pattern.as_deref(), Some("deploy/**"));
}
