//! Tokens in a source URL, in `token_env`, in `GITHUB_TOKEN`, and printed by a validation
//! command appear nowhere: reports, text, events, the state file, the pull request, errors.

use std::os::unix::fs::PermissionsExt;

use bridge_autosync::MemoryEvents;
use bridge_emulators::EmulatorConfig;

use crate::repo::{Workspace, commit, env};

const URL_TOKEN: &str = "ghp_UrlToken0000000000000000000000001";
const PAT: &str = "github_pat_SourcePat_1111111111111111";
const DEAD_TOKEN: &str = "ghp_DeadHostToken22222222222222222222";

#[tokio::test]
async fn tokens_appear_nowhere() {
    let ws = Workspace::new();
    let web = ws.source("web");
    commit(&web, "feat!: new protocol", &[("src/p.txt", "p\n")]);
    ws.source("api");
    // ssh transport served locally; the token in the URL never reaches it.
    let ssh = ws.path("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\nfor last; do :; done\nexec sh -c \"$last\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();

    let text = format!(
        r#"
[target]
path = "target"

[[source]]
name = "web"
url = "ssh://x-access-token:{URL_TOKEN}@local{web}"
token_env = "SOURCE_PAT"

[[source]]
name = "dead"
url = "http://x-access-token:{DEAD_TOKEN}@127.0.0.1:9/dead.git"

[fetch]
retries = 1
backoff = "1ms"
timeout = "20s"

[[validate]]
name = "leaky"
run = "echo 'token {URL_TOKEN} and {PAT} and {DEAD_TOKEN} and ghp_emulator_token'; echo 'test result: ok. 1 passed; 0 failed;'"
kind = "test"

[github]
repository = "bridge/emulated"
"#,
        web = ws.path("web").display()
    );
    let config = ws.config(&text);
    let emu = bridge_emulators::start(EmulatorConfig {
        render: false,
        netlify: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let base = emu.github().unwrap().base_url();
    let env = env(&[
        ("SOURCE_PAT", PAT),
        ("GITHUB_API_URL", base.as_str()),
        ("GITHUB_TOKEN", bridge_emulators::GITHUB_TOKEN),
    ])
    .with_git_env("GIT_SSH_COMMAND", ssh.to_string_lossy().as_ref())
    .with_git_env("GIT_SSH_VARIANT", "simple");

    let plan = bridge_autosync::plan(&config, &env).await.unwrap();
    let events = MemoryEvents::new();
    let run = bridge_autosync::run(&config, &env, &events).await.unwrap();
    assert_eq!(
        run.sources[0].outcome,
        bridge_autosync::SourceOutcome::PullRequest,
        "{}",
        run.render_text()
    );
    assert!(run.sources[1].plan.error.is_some(), "the dead source fails");
    let status = bridge_autosync::status(&config).unwrap();
    let pulls = emu.github().unwrap().pulls();

    let mut everything = vec![
        serde_json::to_string(&plan).unwrap(),
        plan.render_text(),
        serde_json::to_string(&run).unwrap(),
        run.render_text(),
        serde_json::to_string(&status).unwrap(),
        status.render_text(),
        ws.state_text().unwrap(),
        format!("{:?}", events.events()),
        format!("{pulls:?}"),
        format!("{env:?}"),
    ];
    // A failing run's error, too.
    let broken = ws.config(
        &text
            .replace("127.0.0.1:9", "127.0.0.1:9/x")
            .replace("token_env = \"SOURCE_PAT\"", "token_env = \"MISSING_PAT\""),
    );
    everything.push(
        bridge_autosync::plan(&broken, &env)
            .await
            .unwrap_err()
            .to_string(),
    );
    for text in &everything {
        for token in [URL_TOKEN, PAT, DEAD_TOKEN, bridge_emulators::GITHUB_TOKEN] {
            assert!(!text.contains(token), "{token} leaked into:\n{text}");
        }
    }
    // The dead source's error is there, without its credentials.
    let dead = run.sources[1].plan.error.as_deref().unwrap();
    assert!(dead.contains("after 2 attempts"), "{dead}");
    assert!(
        run.sources[1].plan.url.starts_with("http://127.0.0.1:9/"),
        "{}",
        run.sources[1].plan.url
    );
    let tail = &run.sources[0].validation[0].output_tail;
    assert!(
        tail.starts_with("token *** and *** and *** and ***"),
        "{tail}"
    );
    emu.shutdown().await;
}
