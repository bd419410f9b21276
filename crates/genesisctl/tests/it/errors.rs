//! Every bad-input path: exit 2 and a message that names what to fix.

use crate::sandbox::Sandbox;

fn fails(s: &Sandbox, args: &[&str], needle: &str) {
    let r = s.run(args);
    assert_eq!(r.code, 2, "{args:?}: {r:?}");
    assert!(
        r.stderr.contains(needle),
        "{args:?}: expected {needle:?} in\n{}",
        r.stderr
    );
    assert!(
        r.stdout.is_empty(),
        "{args:?}: stdout should be empty, got {}",
        r.stdout
    );
}

#[test]
fn missing_source_file() {
    let s = Sandbox::new();
    fails(
        &s,
        &["env", "diff", "--target", "local:t.env"],
        ".env: no such file",
    );
    fails(
        &s,
        &["env", "export", "--source", "local:nope.env"],
        "nope.env: no such file",
    );
}

#[test]
fn malformed_lines_name_file_line_and_column() {
    let s = Sandbox::new();
    s.file(".env", "GOOD=1\n# comment\n1BAD=x\n");
    fails(
        &s,
        &["env", "diff", "--target", "local:t.env"],
        ".env:3:1: invalid key",
    );
    s.file(".env", "A=ok\nB=\"never closed\n");
    fails(&s, &["env", "export"], ".env:2:3: unterminated");
    s.file(".env", "PASSWORD=pa$zq9xw\n");
    let r = s.run(&["env", "export"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(".env:1:12"), "{}", r.stderr);
    assert!(r.stderr.contains("single quotes"), "{}", r.stderr);
    // Not even the part after `$`, which is as likely a piece of the secret as a name.
    assert!(
        !r.stderr.contains("zq9xw"),
        "the value must not be echoed: {}",
        r.stderr
    );
    // A stray line of a secret read as a key is pointed at, not repeated.
    s.file(
        ".env",
        "A=1
MIIEvQIBADANBgkqhkiG9w0BAQEFAASC
",
    );
    let r = s.run(&["env", "export"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(".env:2:33: expected `=` after the key"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("MIIEvQ"), "{}", r.stderr);
}

#[test]
fn bad_configuration_values() {
    let mut s = Sandbox::new();
    s.file(".env", "A=1\n");
    s.env("ENVSYNC_MODE", "sometimes");
    fails(
        &s,
        &["env", "diff", "--target", "local:t.env"],
        "ENVSYNC_MODE: expected dry-run or enforce",
    );

    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    s.file("bridge.toml", "[sync]\nallow_deletion = true\n");
    fails(
        &s,
        &["env", "diff", "--target", "local:t.env"],
        "unknown key `sync.allow_deletion`",
    );
    s.file("bridge.toml", "[sync]\nmax_delete_share = 1.5\n");
    fails(
        &s,
        &["env", "diff", "--target", "local:t.env"],
        "sync.max_delete_share: expected a number between 0 and 1",
    );
    fails(
        &s,
        &["--config", "absent.toml", "config", "show"],
        "absent.toml",
    );
}

/// A NUL byte in a source file is exit 2 at its file, line and column, before any place is
/// read or written.
#[test]
fn a_nul_byte_in_a_source_is_refused_where_it_is() {
    let s = Sandbox::new();
    s.file(".env", "A=1\nTOKEN=ab\0cd\n");
    s.file("t.env", "");
    fails(
        &s,
        &["env", "sync", "--target", "local:t.env", "--yes"],
        ".env:2:9: a NUL byte",
    );
    assert_eq!(s.read("t.env"), "", "nothing was written");
}

/// A store or bus that is malformed (exit 2) or unreachable (exit 3) stops an apply before
/// its first write: no place changes without a record of it.
#[test]
fn a_bad_or_unreachable_store_or_bus_stops_an_apply_before_it_writes() {
    for (variable, value, code) in [
        ("BRIDGE_STORE", "mysql://x", 2),
        ("BRIDGE_STORE", "bogus", 2),
        ("BRIDGE_BUS", "nats://", 2),
        ("BRIDGE_BUS", "redis://127.0.0.1:1", 2),
        ("BRIDGE_BUS", "nats://127.0.0.1:1", 3),
    ] {
        let mut s = Sandbox::new();
        s.file(".env", "A=1\n");
        s.file("t.env", "");
        s.env(variable, value);
        let run = s.run(&["env", "sync", "--target", "local:t.env", "--yes"]);
        assert_eq!(run.code, code, "{variable}={value}: {run:?}");
        assert_eq!(
            s.read("t.env"),
            "",
            "{variable}={value}: the target was written"
        );
    }
}

#[test]
fn unknown_platforms_and_options() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    fails(
        &s,
        &["env", "diff", "--target", "heroku"],
        "unknown platform `heroku`",
    );
    fails(
        &s,
        &["env", "diff", "--target", "netlify:colour=red"],
        "unknown option `colour`",
    );
    fails(
        &s,
        &["env", "diff", "--target", "local:a.env,local:a.env"],
        "two places are labelled",
    );
    // `environment=$ENV` with ENV unset: exit 2, never the repository's secrets instead.
    fails(
        &s,
        &["env", "diff", "--target", "github:environment="],
        "option `environment` of github is empty",
    );
    fails(
        &s,
        &["env", "diff", "--target", "render:service="],
        "option `service` of render is empty",
    );
    fails(&s, &["env", "diff"], "no target");
    fails(
        &s,
        &["env", "sync", "--target", "local:.env"],
        "both the source and a target",
    );
    fails(
        &s,
        &["env", "diff", "--target", "render"],
        "RENDER_API_TOKEN is not set",
    );
}

#[test]
fn usage_errors_exit_2() {
    let s = Sandbox::new();
    let r = s.run(&["env", "frobnicate"]);
    assert_eq!(r.code, 2);
    let r = s.run(&["env", "sync", "--output", "yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("yaml"));
}

/// A refused connection is retried for seconds: each retry says what failed and when the
/// next try is, rather than leave a terminal silent.
#[test]
fn a_retried_connection_says_what_and_when() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = s
        .command(&["env", "diff", "--target", "render:service=srv-1"])
        .env("RENDER_API_TOKEN", "rnd_test")
        .env("RENDER_API_URL", format!("http://127.0.0.1:{port}/v1"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = seen
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("a retry is reported within 5 s");
    let _ = child.kill();
    let _ = child.wait();
    let expected =
        format!("warning: GET 127.0.0.1:{port}/v1/services/srv-1/env-vars: could not connect");
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.contains("; try 2 of "), "{line}");
    assert!(line.ends_with(" s"), "{line}");
}

/// Under `--output json` a failure is a JSON object on stdout too, with the exit code.
#[test]
fn a_failure_under_json_output_is_json_on_stdout() {
    let s = Sandbox::new();
    let r = s.run(&[
        "--output",
        "json",
        "env",
        "diff",
        "--from",
        "local:missing.env",
        "--target",
        "local:t.env",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    let json = r.json();
    assert_eq!(json["exit_code"], 2, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("missing.env: no such file"),
        "{json}"
    );
    assert!(r.stderr.contains("error: "), "{}", r.stderr);
}

/// Mangled `.env` sources through the binary: each is read (exit 0 or 1: in sync or drift)
/// or refused with exit 2 at `.env:LINE:COLUMN`; never a panic, never another code.
/// `BRIDGE_FUZZ_CASES` sets the number of cases (default 80).
#[test]
fn mangled_env_files_are_read_or_refused_at_a_position() {
    const BASE: &str = "# app\nexport APP=web\nDB_URL=\"postgres://u:p@h/db\"\nEMPTY=\nQ='single # not a comment'\n\
        MULTI=\"line1\nline2\"\nREF=${APP}-x\nSPACED = value  # comment\n";
    const ALPHABET: &[u8] = b"\"'=#$\\{}\n\r \t\0aZ_1-.`";
    let cases = crate::sandbox::fuzz_cases(80);
    let mut mangler = crate::sandbox::Mangler::new(0x9E37_79B9_7F4A_7C15);
    let s = Sandbox::new();
    s.file("t.env", "APP=web\n");
    let (mut read, mut refused, mut unwritable) = (0, 0, 0);
    for case in 0..cases {
        let bytes = mangler.mangle(BASE, ALPHABET, 4);
        std::fs::write(s.path(".env"), &bytes).unwrap();
        let r = s.run(&["env", "diff", "--target", "local:t.env"]);
        match r.code {
            0 | 1 => read += 1,
            // A value read fine but that no `.env` form writes alike is refused by key.
            2 if r.stdout.contains("cannot be written to a .env file") => unwritable += 1,
            2 => {
                refused += 1;
                let placed = crate::sandbox::names_a_position(&r.stderr, ".env");
                assert!(
                    placed,
                    "case {case}: no line and column for {:?}: {}",
                    String::from_utf8_lossy(&bytes),
                    r.stderr
                );
            }
            code => panic!(
                "case {case}: exit {code} for {:?}: {r:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    eprintln!(
        ".env binary fuzz: {cases} cases, {read} read (exit 0/1), {refused} refused at a \
         position (exit 2), {unwritable} values refused as unwritable (exit 2)"
    );
}
