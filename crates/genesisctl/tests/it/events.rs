//! The Genesis bus through the CLI.

use crate::sandbox::Sandbox;

#[test]
fn publish_prints_the_envelope_and_sequences_have_no_gaps() {
    let s = Sandbox::new();
    for i in 1..=3 {
        let r = s.run(&[
            "events",
            "publish",
            "deploy.render",
            &format!("{{\"n\":{i}}}"),
        ]);
        assert_eq!(r.code, 0, "{r:?}");
        let envelope: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(envelope["_genesis_seq"], i);
        assert_eq!(envelope["_genesis_topic"], "deploy.render");
        assert_eq!(envelope["n"], i);
        assert!(
            envelope["_genesis_timestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }
    let tail = s.run(&["events", "tail", "--output", "json"]);
    assert_eq!(tail.code, 0, "{tail:?}");
    let seqs: Vec<u64> = tail
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_genesis_seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let since = s.run(&["events", "tail", "--since", "2", "--output", "json"]);
    assert_eq!(since.stdout.lines().count(), 1);
    let stats = s.run(&["events", "stats", "--output", "json"]);
    assert_eq!(stats.json()["by_topic"]["deploy.render"], 3);
    // deploy.* events are recorded in the ledger.
    let ledger = s.run(&["ledger", "show", "--output", "json"]);
    assert_eq!(ledger.json().as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_and_the_gate() {
    let mut s = Sandbox::new();
    let r = s.run(&["events", "publish", "deploy.render", "[1,2]"]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = s.run(&["events", "publish", "Bad Topic", "{}"]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = s.run(&[
        "events",
        "publish",
        "deploy.render",
        "{\"_genesis_seq\": 9}",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    // An observer may not publish; the refusal is itself an event, without the payload.
    let r = s.run(&[
        "events",
        "publish",
        "deploy.render",
        "{\"secret\":\"hunter2\"}",
        "--as",
        "observer",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    s.env("GENESIS_STRICT_POLICY", "true");
    let r = s.run(&["events", "publish", "made.up.topic", "{}"]);
    assert_eq!(r.code, 2, "{r:?}");
    let tail = s.run(&[
        "events",
        "tail",
        "--topic",
        "genesis.blocked",
        "--output",
        "json",
    ]);
    assert_eq!(tail.stdout.lines().count(), 2, "{}", tail.stdout);
    assert!(!tail.stdout.contains("hunter2"));
}

#[test]
fn an_applied_sync_publishes_commit_and_complete() {
    let s = Sandbox::new();
    s.file(".env", "API_TOKEN=tok-123\nLOG_LEVEL=info\n");
    assert_eq!(s.run(&["env", "sync", "--target", "local:a.env"]).code, 0);
    let tail = s.run(&["events", "tail", "--topic", "envsync.*", "--output", "json"]);
    let events: Vec<serde_json::Value> = tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let topics: Vec<&str> = events
        .iter()
        .map(|e| e["_genesis_topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["envsync.init", "envsync.commit", "envsync.complete"]
    );
    assert_eq!(events[1]["changes"][0]["key"], "API_TOKEN");
    assert!(!tail.stdout.contains("tok-123"));
    // A dry run publishes nothing.
    s.file(".env", "API_TOKEN=tok-456\n");
    assert_eq!(s.run(&["env", "diff", "--target", "local:a.env"]).code, 1);
    let stats = s.run(&["events", "stats", "--output", "json"]);
    assert_eq!(stats.json()["total"], 3);

    // A verify that finds drift says so on the bus, by key name only.
    assert_eq!(
        s.run(&["env", "verify", "--platforms", "local:.env,local:a.env"])
            .code,
        1
    );
    let drift = s.run(&[
        "events",
        "tail",
        "--topic",
        "envsync.drift",
        "--output",
        "json",
    ]);
    let event: serde_json::Value = serde_json::from_str(drift.stdout.trim()).unwrap();
    // LOG_LEVEL left the source: extra in a.env, not missing from the source.
    let a_env = event["platforms"][1].as_str().unwrap().to_owned();
    assert_eq!(
        event["extra"][format!("extra_in_{a_env}")],
        serde_json::json!(["LOG_LEVEL"]),
        "{event}"
    );
    assert_eq!(event["missing"]["missing_in_env"], serde_json::json!([]));
    assert_eq!(event["conflicts"], serde_json::json!(["API_TOKEN"]));
    assert_eq!(event["by_platform"][&a_env], 2, "{event}");
    assert_eq!(event["heal"], true);
    assert_eq!(event["origin"], "cli");
    assert!(!drift.stdout.contains("tok-"));
}

/// `--store postgres://…`: the same commands on a shared PostgreSQL log. Skipped when no
/// PostgreSQL answers, unless BRIDGE_REQUIRE_SERVICES=1 (CI), which makes that a failure.
#[test]
fn events_on_a_postgres_store() {
    let url = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if std::net::TcpStream::connect("127.0.0.1:5432").is_err() {
        assert!(
            std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL is required (BRIDGE_REQUIRE_SERVICES=1) but does not answer"
        );
        eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432");
        return;
    }
    let s = Sandbox::new();
    let seq = |r: &crate::sandbox::Run| -> u64 {
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap()["_genesis_seq"]
            .as_u64()
            .unwrap()
    };
    let first = seq(&s.run(&[
        "--store",
        &url,
        "events",
        "publish",
        "deploy.github",
        "{\"n\":1}",
    ]));
    let second = seq(&s.run(&[
        "--store",
        &url,
        "events",
        "publish",
        "deploy.github",
        "{\"n\":2}",
    ]));
    assert_eq!(second, first + 1, "gap-free across processes");
    let tail = s.run(&[
        "--store",
        &url,
        "events",
        "tail",
        "--since",
        &(first - 1).to_string(),
        "--output",
        "json",
    ]);
    assert_eq!(tail.code, 0, "{tail:?}");
    let ns: Vec<u64> = tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["_genesis_topic"] == "deploy.github")
        .filter_map(|e| e["n"].as_u64())
        .collect();
    assert!(ns.ends_with(&[1, 2]) || ns.starts_with(&[1, 2]), "{ns:?}");
}

/// `--bus nats://…`: the same commands on NATS JetStream. Skipped when no NATS answers,
/// unless BRIDGE_REQUIRE_SERVICES=1 (CI), which makes that a failure.
#[test]
fn events_on_a_nats_bus() {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_err() {
        assert!(
            std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "NATS is required (BRIDGE_REQUIRE_SERVICES=1) but does not answer"
        );
        eprintln!("skipped: no NATS at 127.0.0.1:4222");
        return;
    }
    let s = Sandbox::new();
    let bus = "nats://127.0.0.1:4222";
    let seq = |r: &crate::sandbox::Run| -> u64 {
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap()["_genesis_seq"]
            .as_u64()
            .unwrap()
    };
    let first = seq(&s.run(&[
        "--bus",
        bus,
        "events",
        "publish",
        "deploy.netlify",
        "{\"n\":1}",
    ]));
    let second = seq(&s.run(&[
        "--bus",
        bus,
        "events",
        "publish",
        "deploy.netlify",
        "{\"n\":2}",
    ]));
    assert_eq!(
        second,
        first + 1,
        "the stream sequence is the event sequence"
    );
    let stats = s.run(&["--bus", bus, "events", "stats", "--output", "json"]);
    assert_eq!(stats.code, 0, "{stats:?}");
    assert!(stats.json()["last_seq"].as_u64().unwrap() >= second);
}
