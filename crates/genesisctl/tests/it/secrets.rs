//! No secret value appears in any output of any command.

use crate::sandbox::Sandbox;

const SECRETS: &[&str] = &[
    "tok-9f8e7d6c",
    "hunter2-old",
    "hunter2-new",
    "pg-pass-4242",
    "whsec_abcdef",
];

fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.file(
        ".env",
        "API_TOKEN=tok-9f8e7d6c\nDB_PASSWORD=hunter2-new\nDATABASE_URL=postgres://app:pg-pass-4242@db/app\nWEBHOOK_SECRET=whsec_abcdef\nLOG_LEVEL=info\n",
    );
    s.file("t.env", "DB_PASSWORD=hunter2-old\nLOG_LEVEL=debug\n");
    s
}

#[test]
fn no_command_prints_a_secret() {
    let s = sandbox();
    let runs: &[&[&str]] = &[
        &["env", "diff", "--target", "local:t.env"],
        &["env", "diff", "--target", "local:t.env", "--output", "json"],
        &["env", "verify", "--platforms", "local:.env,local:t.env"],
        &[
            "env",
            "verify",
            "--platforms",
            "local:.env,local:t.env",
            "--output",
            "json",
        ],
        &["env", "export"],
        &["config", "show"],
        &["env", "sync", "--target", "local:t.env", "--output", "json"],
        &["env", "sync", "--target", "local:t.env"],
    ];
    for args in runs {
        let r = s.run(args);
        for secret in SECRETS {
            assert!(
                !r.all().contains(secret),
                "{args:?} printed {secret}:\n{}",
                r.all()
            );
        }
    }
    // The sync did write the values to the target, where they belong.
    assert!(s.read("t.env").contains("DB_PASSWORD=hunter2-new"));
}

#[test]
fn report_files_hold_no_secret() {
    let s = sandbox();
    let r = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,local:t.env",
        "--report",
        "r.json",
        "--audit-md",
        "a.md",
    ]);
    assert_eq!(r.code, 1);
    for file in ["r.json", "a.md"] {
        let text = s.read(file);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{file} holds {secret}");
        }
    }
}

/// Runners that start empty take their keys from the environment (directly or from a file)
/// and write none to disk; a store made under another fingerprint key says so (exit 2)
/// instead of judging every secret changed; a malformed key is a clear error.
#[test]
fn keys_come_from_the_environment_and_a_mismatched_key_is_refused() {
    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const S1: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    let mut s = crate::sandbox::Sandbox::bare();
    s.file(".env", "API_TOKEN=tok-1\nLOG_LEVEL=info\n");
    s.env("BRIDGE_FINGERPRINT_KEY", K1)
        .env("BRIDGE_STATE_KEY", S1);
    let sync = s.run(&["env", "sync", "--target", "local:out.env"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(s.path(".bridge/state.db").exists());
    for file in ["fingerprint.key", "state.key"] {
        assert!(
            !s.path(&format!(".bridge/{file}")).exists(),
            "{file} written to disk"
        );
    }
    // The redacted fingerprint is the key's: another runner with K1 prints the same.
    let diff = s.run(&[
        "env",
        "diff",
        "--target",
        "local:none.env",
        "--output",
        "json",
    ]);
    let shown = diff.json().to_string();

    // The same key from a file.
    let mut f = crate::sandbox::Sandbox::bare();
    f.file(".env", "API_TOKEN=tok-1\nLOG_LEVEL=info\n");
    f.file("keys/fp", &format!("{K1}\n"));
    let key_file = f.path("keys/fp").display().to_string();
    f.env("BRIDGE_FINGERPRINT_KEY_FILE", &key_file);
    let same = f.run(&[
        "env",
        "diff",
        "--target",
        "local:none.env",
        "--output",
        "json",
    ]);
    assert_eq!(same.json().to_string(), shown, "one key, one fingerprint");

    // Another key against these records: refused, naming the way out, exit 2.
    s.env("BRIDGE_FINGERPRINT_KEY", K2);
    let other = s.run(&["env", "sync", "--target", "local:out.env"]);
    assert_eq!(other.code, 2, "{other:?}");
    assert!(
        other.stderr.contains("another fingerprint key")
            && other.stderr.contains("BRIDGE_FINGERPRINT_KEY"),
        "{other:?}"
    );
    assert!(
        !other.all().contains(K1) && !other.all().contains(K2),
        "a key was printed"
    );

    // Malformed, and given twice.
    let mut bad = crate::sandbox::Sandbox::bare();
    bad.file(".env", "A=1\n");
    bad.env("BRIDGE_STATE_KEY", "not-hex");
    let r = bad.run(&["env", "sync", "--target", "local:out.env"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("BRIDGE_STATE_KEY is not a valid key"),
        "{r:?}"
    );
    bad.env("BRIDGE_STATE_KEY", S1)
        .env("BRIDGE_STATE_KEY_FILE", &key_file);
    let r = bad.run(&["env", "sync", "--target", "local:out.env"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("both BRIDGE_STATE_KEY and BRIDGE_STATE_KEY_FILE"),
        "{r:?}"
    );
}

/// No password in a URL setting is printed: not by `config show` (text or JSON), and not in
/// the error of a store or bus that cannot be reached.
#[test]
fn passwords_in_urls_never_show() {
    let mut s = Sandbox::new();
    s.env("BRIDGE_VAULT_URL", "https://u:pw-vault-1@vault.example/x")
        .env(
            "ENVSYNC_DASHBOARD_TOKEN_URLS",
            "https://u:pw-dash-2@d.example/t",
        )
        .env("BRIDGE_STORE", "postgres://u:pw-store-3@127.0.0.1:1/db");
    for run in [
        s.run(&["config", "show"]),
        s.run(&["config", "show", "--output", "json"]),
    ] {
        assert_eq!(run.code, 0, "{run:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        for pw in ["pw-vault-1", "pw-dash-2", "pw-store-3"] {
            assert!(!all.contains(pw), "{pw} shown: {all}");
        }
        assert!(
            all.contains("vault.example") && all.contains("d.example"),
            "{all}"
        );
    }
    let mut n = Sandbox::new();
    n.env("BRIDGE_BUS", "nats://u:pw-nats-4@127.0.0.1:1");
    let tail = n.run(&["events", "tail"]);
    assert_ne!(tail.code, 0, "{tail:?}");
    assert!(tail.stderr.contains("127.0.0.1:1"), "{tail:?}");
    assert!(!tail.stderr.contains("pw-nats-4"), "{tail:?}");
}
