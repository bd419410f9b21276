use crate::sandbox::{Sandbox, mode, with_examples};

#[test]
fn quick_start_diff_then_sync_then_nothing_left() {
    let s = with_examples();
    let diff = s.run(&[
        "env",
        "diff",
        "--from",
        "local:.env",
        "--target",
        "local:.env.production",
    ]);
    assert_eq!(diff.code, 1, "{diff:?}");
    insta::assert_snapshot!("quick_start_diff", diff.stdout);

    let before = s.read(".env.production");
    let sync = s.run(&[
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:.env.production",
    ]);
    assert_eq!(sync.code, 0, "{sync:?}");
    insta::assert_snapshot!("quick_start_sync", sync.stdout);
    let after = s.read(".env.production");
    // Comments and blank lines survive; only changed lines change.
    for line in before
        .lines()
        .filter(|l| l.starts_with('#') || l.is_empty())
    {
        assert!(after.contains(line), "lost {line:?}");
    }
    insta::assert_snapshot!("quick_start_production_after", after);

    let again = s.run(&[
        "env",
        "diff",
        "--from",
        "local:.env",
        "--target",
        "local:.env.production",
    ]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("in sync"), "{}", again.stdout);
}

#[test]
fn json_output_is_only_json_and_complete() {
    let s = with_examples();
    let r = s.run(&[
        "env",
        "diff",
        "--from",
        "local:.env",
        "--target",
        "local:.env.production",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 1);
    let json = r.json();
    assert_eq!(json["mode"], "dry-run");
    assert_eq!(json["has_changes"], true);
    let target = &json["targets"][0];
    assert_eq!(target["status"], "planned");
    assert_eq!(target["summary"]["create"], 2);
    assert_eq!(target["summary"]["update"], 2);
    assert_eq!(target["retained"], serde_json::json!(["LEGACY_QUEUE_URL"]));
    let ops: Vec<_> = target["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap_or(""),
                c["op"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("FEATURE_FLAGS", "create"),
            ("LOG_LEVEL", "update"),
            ("SENTRY_DSN", "create"),
            ("STRIPE_SECRET_KEY", "update")
        ]
    );
    insta::assert_json_snapshot!("diff_json", json);
}

#[test]
fn deletions_need_the_flag_and_pass_the_guard() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    s.file("t.env", "A=1\nB=2\nC=3\nD=4\n");
    // Without --allow-deletions the extra keys stay.
    let r = s.run(&[
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:t.env",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.read("t.env"), "A=1\nB=2\nC=3\nD=4\n");

    // Deleting 3 of 4 keys is over the 25% guard: refused, nothing written, exit 1.
    let r = s.run(&[
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:t.env",
        "--allow-deletions",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("refusing to delete 3 of 4 keys"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--force"));
    assert_eq!(s.read("t.env"), "A=1\nB=2\nC=3\nD=4\n");

    // A higher limit from the environment, or --force, lets it through.
    let r = s.run(&[
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:t.env",
        "--allow-deletions",
        "--force",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.read("t.env"), "A=1\n");
}

#[test]
fn guard_share_comes_from_config() {
    let mut s = Sandbox::new();
    s.file(".env", "A=1\n");
    s.file("t.env", "A=1\nB=2\n");
    s.env("ENVSYNC_MAX_DELETE_SHARE", "0.5");
    let r = s.run(&[
        "env",
        "sync",
        "--target",
        "local:t.env",
        "--allow-deletions",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.read("t.env"), "A=1\n");
}

#[test]
fn empty_source_is_refused() {
    let s = Sandbox::new();
    s.file(".env", "# nothing here\n");
    s.file("t.env", "A=1\n");
    let r = s.run(&[
        "env",
        "sync",
        "--target",
        "local:t.env",
        "--allow-deletions",
        "--force",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("holds no variables"), "{}", r.stderr);
    assert!(r.stderr.contains("--allow-empty-source"));
    assert_eq!(s.read("t.env"), "A=1\n");
}

#[test]
fn new_target_files_are_created_private() {
    let s = Sandbox::new();
    s.file(".env", "API_TOKEN=t0k3n\n");
    let r = s.run(&["env", "sync", "--target", "local:deploy/new.env"]);
    // Writing into a directory that does not exist fails as the file system fails: exit 3.
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("deploy/"), "{}", r.stdout);
    std::fs::create_dir(s.path("deploy")).expect("mkdir");
    let r = s.run(&["env", "sync", "--target", "local:deploy/new.env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mode(&s.path("deploy/new.env")), 0o600);
    assert_eq!(s.read("deploy/new.env"), "API_TOKEN=t0k3n\n");
}

#[test]
fn config_supplies_source_targets_and_prefixes() {
    let s = Sandbox::new();
    s.file(
        "bridge.toml",
        "[sync]\nsource = \"local:canon.env\"\ntargets = [\"local:a.env\", \"local:b.env\"]\ninclude_prefixes = [\"APP_\"]\n",
    );
    s.file("canon.env", "APP_X=1\nOTHER=2\n");
    let r = s.run(&["env", "sync", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["targets"].as_array().map(Vec::len), Some(2));
    assert_eq!(s.read("a.env"), "APP_X=1\n");
    assert_eq!(s.read("b.env"), "APP_X=1\n");
}

#[test]
fn process_target_prints_export_lines_that_a_shell_can_eval() {
    let s = Sandbox::new();
    s.file(".env", "GREETING=\"it's\"\nMULTI=\"a\\nb\"\nPLAIN=x y\n");
    let r = s.run(&["env", "sync", "--target", "process"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("export "), "{}", r.stdout);
    // The summary went to stderr so that stdout stays evaluable.
    assert!(r.stderr.contains("applied"), "{}", r.stderr);
    let script = format!(
        "{}\nprintf '%s|%s|%s' \"$GREETING\" \"$MULTI\" \"$PLAIN\"",
        r.stdout
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "it's|a\nb|x y");

    let r = s.run(&["env", "sync", "--target", "process", "--output", "json"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn several_targets_are_reported_separately() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    s.file("ok.env", "A=1\n");
    s.file("bad.env", "A=\"open\n");
    let r = s.run(&[
        "env",
        "sync",
        "--target",
        "local:ok.env,local:bad.env,local:new.env",
        "--output",
        "json",
    ]);
    // One target failed on bad input: exit 2, and the others still ran.
    assert_eq!(r.code, 2, "{r:?}");
    let json = r.json();
    let statuses: Vec<_> = json["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(statuses, ["in_sync", "failed", "applied"]);
    assert!(
        json["targets"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("bad.env:1:3")
    );
    assert_eq!(s.read("new.env"), "A=1\n");
}

#[test]
fn ignored_keys_are_out_of_every_sync_and_diff() {
    let mut s = Sandbox::new();
    s.file(".env", "A=1\nIGNORED=source-value\n");
    s.file("t.env", "A=1\nIGNORED=target-value\nOLD=x\n");
    s.env("ENVSYNC_IGNORE", "IGNORED");
    let diff = s.run(&["env", "diff", "--target", "local:t.env", "--output", "json"]);
    assert!(!diff.stdout.contains("IGNORED"), "{}", diff.stdout);
    let r = s.run(&[
        "env",
        "sync",
        "--target",
        "local:t.env",
        "--allow-deletions",
        "--force",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.read("t.env"), "A=1\nIGNORED=target-value\n");
}

/// Runs `args` on a pseudo-terminal (util-linux `script`), answering `answer` to its
/// question; returns the exit code and what the terminal showed.
fn on_a_terminal(s: &Sandbox, args: &[&str], answer: &str) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let command = std::iter::once(bin)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(s.path("."))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        // Let the question be asked before answering it.
        std::thread::sleep(std::time::Duration::from_millis(800));
        // A command that asks nothing may be gone already.
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// On a terminal, `env sync` shows the plan before any write and asks: `n` writes nothing
/// (exit 1), `y` applies; `--yes` does not ask. Without a terminal (every other test) it
/// proceeds as scripts expect.
#[test]
fn on_a_terminal_sync_shows_the_plan_and_asks_first() {
    let s = Sandbox::new();
    s.file(".env", "A=1\nB=2\n");
    let args = [
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:prod.env",
    ];
    let (code, screen) = on_a_terminal(&s, &args, "n");
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("+ A"), "the plan was not shown: {screen}");
    assert!(screen.contains("Apply these changes? [y/N]"), "{screen}");
    assert!(!s.path("prod.env").exists(), "written though refused");

    let (code, screen) = on_a_terminal(&s, &args, "y");
    assert_eq!(code, 0, "{screen}");
    assert!(s.read("prod.env").contains("B=2"), "{screen}");

    s.file(".env", "A=1\nB=3\n");
    let mut yes = args.to_vec();
    yes.push("--yes");
    let (code, screen) = on_a_terminal(&s, &yes, "");
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("[y/N]"), "--yes asked anyway: {screen}");
    assert!(s.read("prod.env").contains("B=3"));
}

/// A value no `.env` form carries alike for Bridge, python-dotenv and Node's dotenv (here a
/// `'`, a `"` and a line break together) is refused before anything is written: exit 2,
/// naming the key, never the value.
#[test]
fn a_value_no_dotenv_form_carries_alike_is_refused_by_key() {
    let s = Sandbox::new();
    s.file(
        ".env",
        "OK=1\nMIXED_TOKEN=\"it's \\\"quoted\\\"\\nsecond line\"\n",
    );
    s.file("out.env", "OK=0\n");
    let r = s.run(&["env", "sync", "--target", "local:out.env", "--yes"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.all().contains("MIXED_TOKEN"), "{r:?}");
    assert!(r.all().contains("python-dotenv"), "{r:?}");
    assert!(!r.all().contains("quoted"), "the value leaked: {r:?}");
    assert_eq!(s.read("out.env"), "OK=0\n", "nothing is written");
}

/// Values that Bridge used to write with escapes the other parsers read differently (`\$`,
/// `\\`, a lone carriage return) are written in forms they all read alike.
#[test]
fn values_with_dollars_backslashes_and_carriage_returns_are_written_plainly() {
    let s = Sandbox::new();
    s.file(
        ".env",
        "PRICE='\\$5'\nPATHS='C:\\\\dir'\nCR=\"a\\rb\"\nIT=\"it's $5\"\n",
    );
    let r = s.run(&["env", "sync", "--target", "local:out.env", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        s.read("out.env"),
        "CR=\"a\\rb\"\nIT=\"it's $5\"\nPATHS=C:\\\\dir\nPRICE='\\$5'\n"
    );
}
