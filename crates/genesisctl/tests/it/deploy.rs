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

/// A server on loopback that answers each of `answers` (status, body) to one request in turn,
/// and hands back the request lines it saw.
fn answering(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if data.len() >= end + 4 + length {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&data);
            seen.push(text.lines().next().unwrap_or_default().to_owned());
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
        seen
    });
    (url, handle)
}

fn publish_to(sandbox: &Sandbox, server: &str) -> crate::sandbox::Run {
    sandbox.run(&[
        "deploy",
        "publish",
        "--platform",
        "render",
        "--event-type",
        "start",
        "--status",
        "building",
        "--server",
        server,
        "--token",
        "brg_secret_token",
    ])
}

#[test]
fn a_refused_event_exits_2_and_a_failing_server_3_without_the_token() {
    let sandbox = Sandbox::new();
    let (url, server) = answering(vec![(403, r#"{"detail":"needs an operator token"}"#)]);
    let run = publish_to(&sandbox, &url);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("answered 403 Forbidden: needs an operator token"),
        "{}",
        run.stderr
    );
    // A 4xx is final: one request.
    assert_eq!(
        server.join().unwrap(),
        ["POST /engines/autonomy/deployment/event HTTP/1.1"]
    );

    // A 503 is repeated (the server did not act), then the 200 is taken.
    let (url, server) = answering(vec![
        (503, r#"{"detail":"starting"}"#),
        (
            200,
            r#"{"topics":["deploy.render","deploy.platform.start"]}"#,
        ),
    ]);
    let run = publish_to(&sandbox, &url);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(server.join().unwrap().len(), 2);

    // A 500 on a POST may have been acted on: not repeated, exit 3.
    let (url, server) = answering(vec![(500, r#"{"detail":"boom"}"#)]);
    let run = publish_to(&sandbox, &url);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("answered 500"), "{}", run.stderr);
    assert_eq!(server.join().unwrap().len(), 1);

    // Nobody listens: exit 3, naming the server but not the token.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let run = publish_to(&sandbox, &format!("http://{address}"));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("could not connect"), "{}", run.stderr);
    assert!(!run.stderr.contains("brg_secret_token"), "{}", run.stderr);
}
