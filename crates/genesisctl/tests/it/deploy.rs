//! `genesisctl deploy publish`, into the local store and to a running server.

use crate::sandbox::Sandbox;

#[test]
fn a_local_deploy_event_lands_on_both_topics_and_in_the_ledger() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&[
        "deploy",
        "publish",
        "--platform",
        "render",
        "--event-type",
        "failure",
        "--status",
        "failed",
        "--branch",
        "main",
        "--commit-sha",
        "abc123",
        "--deploy-id",
        "dep-7",
        "--local",
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let answer = run.json();
    assert_eq!(
        answer["topics"],
        serde_json::json!(["deploy.render", "deploy.platform.failure"])
    );
    assert_eq!(answer["event"]["metadata"]["commit_sha"], "abc123");
    let tail = sandbox.run(&["events", "tail", "--topic", "deploy.>", "--output", "json"]);
    assert_eq!(tail.code, 0, "{}", tail.stderr);
    assert_eq!(tail.stdout.lines().count(), 2, "{}", tail.stdout);
    let verify = sandbox.run(&["ledger", "verify", "--output", "json"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert_eq!(verify.json()["entries"], 2);
}

#[test]
fn bad_deploy_events_are_usage_errors() {
    let sandbox = Sandbox::new();
    for args in [
        &[
            "--platform",
            "vercel",
            "--event-type",
            "start",
            "--status",
            "x",
            "--local",
        ][..],
        &[
            "--platform",
            "render",
            "--event-type",
            "explode",
            "--status",
            "x",
            "--local",
        ][..],
        &[
            "--platform",
            "render",
            "--event-type",
            "start",
            "--status",
            "x",
            "--timestamp",
            "noon",
            "--local",
        ][..],
    ] {
        let mut all = vec!["deploy", "publish"];
        all.extend_from_slice(args);
        let run = sandbox.run(&all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    let run = sandbox.run(&[
        "deploy",
        "publish",
        "--platform",
        "render",
        "--event-type",
        "start",
        "--status",
        "x",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("BRIDGE_TOKEN"), "{}", run.stderr);
}
