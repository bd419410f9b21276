use crate::sandbox::{Sandbox, mode};

#[test]
fn init_creates_private_state() {
    let s = Sandbox::bare();
    let r = s.run(&["init"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mode(&s.path(".bridge")), 0o700);
    assert_eq!(mode(&s.path(".bridge/fingerprint.key")), 0o600);
    assert!(r.stderr.contains("Created"), "{}", r.stderr);
    let again = s.run(&["init", "--output", "json"]);
    assert_eq!(again.json()["created_key"], false);
    let key = s.read(".bridge/fingerprint.key");
    assert_eq!(key.trim().len(), 64);

    let custom = s.run(&["--state-dir", "elsewhere/state", "init"]);
    assert_eq!(custom.code, 0);
    assert_eq!(mode(&s.path("elsewhere/state")), 0o700);
}

#[test]
fn run_passes_variables_and_exit_code() {
    let s = Sandbox::new();
    s.file(".env", "GREETING=hello\nNAME=\"bridge user\"\n");
    let r = s.run(&["run", "--", "sh", "-c", "echo \"$GREETING, $NAME\"; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, "hello, bridge user\n");
    let r = s.run(&["run", "--from", "local:missing.env", "--", "true"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("missing.env: no such file"),
        "{}",
        r.stderr
    );
}

#[test]
fn completions_are_generated() {
    let s = Sandbox::bare();
    for shell in ["bash", "zsh", "fish"] {
        let r = s.run(&["completions", shell]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("genesisctl"), "{shell}");
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let s = Sandbox::bare();
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["env", "diff"],
        &["env", "sync"],
        &["env", "export"],
        &["env", "verify"],
        &["env", "check"],
        &["config", "show"],
        &["completions"],
        &["run"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let r = s.run(&args);
        assert_eq!(r.code, 0, "{args:?}");
        assert!(
            r.stdout.contains("Example"),
            "no example in help of {args:?}"
        );
    }
}

#[test]
fn interpolation_from_the_host_is_opt_in() {
    let mut s = Sandbox::new();
    s.file(".env", "URL=https://${HOST_FROM_ENV}/x\n");
    s.env("HOST_FROM_ENV", "example.com");
    let r = s.run(&["env", "export"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(".env:1:13"), "{}", r.stderr);
    assert!(r.stderr.contains("--interpolate-env"), "{}", r.stderr);
    let r = s.run(&["env", "export", "--interpolate-env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["variables"]["URL"], "https://example.com/x");
}
