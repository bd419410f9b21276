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
