use std::fs;
use std::os::unix::fs::PermissionsExt;

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

/// A state directory others can reach is made private, and says so; one another user owns
/// is refused (they could replace its keys and tokens); one that cannot be made is exit 2.
#[test]
fn a_state_directory_is_private_or_refused() {
    let s = Sandbox::bare();
    s.file(".env", "A=1\n").file("t.env", "A=1\n");
    fs::create_dir(s.path("open")).unwrap();
    fs::set_permissions(s.path("open"), fs::Permissions::from_mode(0o777)).unwrap();
    let r = s.run(&["--state-dir", "open", "init"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mode(&s.path("open")), 0o700);
    assert!(r.stderr.contains("open was 0777"), "{}", r.stderr);
    // A file made wide by another tool is narrowed too, once.
    fs::set_permissions(
        s.path("open/fingerprint.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let diff = ["env", "diff", "--target", "local:t.env"];
    let r = s.run(&[&["--state-dir", "open"][..], &diff].concat());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("fingerprint.key was 0644"),
        "{}",
        r.stderr
    );
    assert_eq!(mode(&s.path("open/fingerprint.key")), 0o600);
    let r = s.run(&[&["--state-dir", "open"][..], &diff].concat());
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);

    let r = s.run(&[&["--state-dir", "/proc/nope"][..], &diff].concat());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("/proc/nope cannot be used"),
        "{}",
        r.stderr
    );

    // Another user's directory: root can make one; anyone else finds one in `/`.
    let theirs = if my_uid() == 0 {
        fs::create_dir(s.path("theirs")).unwrap();
        std::os::unix::fs::chown(s.path("theirs"), Some(65534), None).unwrap();
        s.path("theirs").display().to_string()
    } else {
        "/".to_string()
    };
    let r = s.run(&[&["--state-dir", theirs.as_str()][..], &diff].concat());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("belongs to uid"), "{}", r.stderr);
}

/// Every file Bridge makes in its state directory, and a new `.env`, is 0600 whatever the
/// umask (databases and their `-wal`/`-shm` files included).
#[test]
fn files_are_private_under_a_zero_umask() {
    let s = Sandbox::bare();
    s.file(".env", "A=1\n");
    let script = format!(
        "umask 000; {bin} env sync --target local:new.env --yes && {bin} ledger verify && \
         {bin} token create --role observer",
        bin = env!("CARGO_BIN_EXE_genesisctl")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(s.path("."))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut seen = Vec::new();
    for entry in walk(&s.path(".bridge")) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), want, "{}", entry.display());
        seen.push(entry.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in [
        "state.db",
        "ledger.db",
        "ledger.pub",
        "events.db",
        "tokens.json",
    ] {
        assert!(seen.iter().any(|s| s == name), "{name} in {seen:?}");
    }
    assert_eq!(mode(&s.path("new.env")), 0o600);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            all.extend(walk(&entry.path()));
        } else {
            all.push(entry.path());
        }
    }
    all
}

fn my_uid() -> u32 {
    // The test crate has no syscall wrapper; the owner of a file just made is this user.
    let probe = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::MetadataExt::uid(&fs::metadata(probe.path()).unwrap())
}

#[test]
fn run_passes_variables_and_exit_code() {
    let s = Sandbox::new();
    s.file(".env", "GREETING=hello\nNAME=\"bridge user\"\n");
    let r = s.run(&["run", "--", "sh", "-c", "echo \"$GREETING, $NAME\"; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, "hello, bridge user\n");
    // As a shell: 127 for a command that is not there, 126 for one that cannot run.
    let r = s.run(&["run", "--", "no-such-command-here"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("no-such-command-here"), "{}", r.stderr);
    s.file("not-executable", "#!/bin/sh\n");
    let r = s.run(&["run", "--", "./not-executable"]);
    assert_eq!(r.code, 126, "{r:?}");
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

/// Messages read as sentences: "1 write", "Nothing to resume", "Locks none held".
#[test]
fn messages_read_as_sentences() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n").file("t.env", "");
    let r = s.run(&["env", "sync", "--target", "local:t.env", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("applied (1 write)"), "{}", r.stdout);
    let r = s.run(&["env", "resume"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("Nothing to resume: every journalled apply finished"),
        "{}",
        r.stderr
    );
    let r = s.run(&["state", "locks"]);
    assert!(r.stderr.contains("Locks none held"), "{}", r.stderr);
}

/// A key defined twice in a `.env` takes its last value, with a warning naming where (once,
/// however often the file is read in the run), as docs/dotenv.md says.
#[test]
fn a_duplicate_key_warns_once_where_it_is() {
    let s = Sandbox::new();
    s.file(".env", "A=1\nB=2\nA=3\n").file("t.env", "");
    let r = s.run(&["env", "sync", "--target", "local:t.env", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let warning =
        "warning: .env:3:1: duplicate key `A`: this definition overrides the one on line 1";
    assert_eq!(r.stderr.matches(warning).count(), 1, "{}", r.stderr);
    assert!(s.read("t.env").contains("A=3"));
}
