//! Polling a source over a flaky transport: `GIT_SSH_COMMAND` is a script that refuses the
//! first connections and then serves the repository locally, so the retries are exercised
//! through git's real network code path without any network.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::repo::{Workspace, commit, env};

/// A fake `ssh` that fails the first `failures` connections, counting them in a file.
fn flaky_ssh(dir: &Path, failures: u32) -> String {
    let script = dir.join("flaky-ssh");
    let counter = dir.join("ssh-attempts");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             n=$(cat '{counter}' 2>/dev/null || echo 0)\n\
             n=$((n + 1))\n\
             echo $n > '{counter}'\n\
             if [ $n -le {failures} ]; then\n\
               echo 'ssh: connect to host flaky port 22: Connection refused' >&2\n\
               exit 255\n\
             fi\n\
             for last; do :; done\n\
             exec sh -c \"$last\"\n",
            counter = counter.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

fn attempts(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("ssh-attempts"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn config(ws: &Workspace, backoff: &str) -> bridge_autosync::AutosyncConfig {
    let url = format!("ssh://flaky{}", ws.path("web").display());
    ws.config(&format!(
        r#"
[target]
path = "target"

[[source]]
name = "web"
url = "{url}"

[fetch]
retries = 3
backoff = "{backoff}"
"#
    ))
}

#[tokio::test]
async fn a_fetch_that_fails_twice_then_succeeds() {
    let ws = Workspace::new();
    let web = ws.source("web");
    let feat = commit(&web, "feat: over ssh", &[("src/ssh.txt", "x\n")]);
    let ssh = flaky_ssh(ws.dir.path(), 2);
    let env = env(&[])
        .with_git_env("GIT_SSH_COMMAND", &ssh)
        .with_git_env("GIT_SSH_VARIANT", "simple");
    let config = config(&ws, "20ms");
    let started = std::time::Instant::now();
    let report = bridge_autosync::plan(&config, &env).await.unwrap();
    let s = &report.sources[0];
    assert_eq!(s.error, None);
    assert_eq!(s.fetch_attempts, 3, "ls-remote needed three attempts");
    assert_eq!(s.selected[0].sha, feat);
    // ls-remote: 2 failures + 1 success; fetch: 1.
    assert_eq!(attempts(ws.dir.path()), 4);
    // Linear backoff: 20 ms + 40 ms at least.
    assert!(started.elapsed() >= std::time::Duration::from_millis(60));
}

#[tokio::test]
async fn a_fetch_that_keeps_failing_gives_up_after_the_retries() {
    let ws = Workspace::new();
    ws.source("web");
    let ssh = flaky_ssh(ws.dir.path(), 100);
    let env = env(&[])
        .with_git_env("GIT_SSH_COMMAND", &ssh)
        .with_git_env("GIT_SSH_VARIANT", "simple");
    let config = config(&ws, "1ms");
    let report = bridge_autosync::plan(&config, &env).await.unwrap();
    let error = report.sources[0].error.as_deref().unwrap();
    assert!(error.contains("after 4 attempts"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert_eq!(attempts(ws.dir.path()), 4);
}
