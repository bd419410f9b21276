use crate::sandbox::Sandbox;

#[test]
fn show_names_the_origin_of_every_value() {
    let mut s = Sandbox::new();
    s.file(
        "bridge.toml",
        "[sync]\nmode = \"enforce\"\ntargets = [\"local:p.env\"]\n",
    );
    s.env("ENVSYNC_SCHEDULE", "@daily");
    s.env("RENDER_API_TOKEN", "rnd_supersecret");
    let r = s.run(&["config", "show", "--allow-deletions"]);
    // --allow-deletions is not a `config show` flag: clap refuses it (usage error, exit 2).
    assert_eq!(r.code, 2);

    let r = s.run(&["--state-dir", "st", "config", "show", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let json = r.json();
    let setting = |name: &str| {
        json["settings"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no setting {name}"))
    };
    assert_eq!(setting("sync.mode")["value"], "enforce");
    assert!(
        setting("sync.mode")["origin"]
            .as_str()
            .unwrap_or("")
            .ends_with("bridge.toml")
    );
    assert_eq!(setting("sync.schedule")["origin"], "env ENVSYNC_SCHEDULE");
    assert_eq!(setting("state_dir")["origin"], "flag --state-dir");
    assert_eq!(setting("sync.allow_deletions")["origin"], "default");
    assert_eq!(setting("token RENDER_API_TOKEN")["value"], "<redacted>");
    assert!(!r.all().contains("supersecret"));

    let text = s.run(&["config", "show"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("sync.schedule"), "{}", text.stdout);
    assert!(text.stdout.contains("(env ENVSYNC_SCHEDULE)"));
}

/// `bridge.toml` mistakes are exit 2 with the key, line and column, never a silent default.
#[test]
fn bad_settings_in_the_file_are_exit_2_at_their_line_and_column() {
    for (file, expected) in [
        ("[sync\n", "bridge.toml:1:6: not valid TOML"),
        (
            "[sync]\nenabled = \"\"\n",
            "bridge.toml:2:11: sync.enabled: expected true or false",
        ),
        (
            "[sync]\nallow_deletions = \"\"\n",
            "bridge.toml:2:19: sync.allow_deletions: expected true or false",
        ),
        (
            "[sync]\nprotect = [\"bad key!\"]\n",
            "bridge.toml:2:11: sync.protect: `bad key!` is not a variable name",
        ),
        (
            "state_dir = \"\"\n",
            "bridge.toml:1:13: state_dir: expected a path",
        ),
        (
            "[sync]\nmdoe = \"enforce\"\n",
            "bridge.toml:2:1: unknown key `sync.mdoe`; did you mean `sync.mode`?",
        ),
        (
            "[sync]\ntargets = [\"rendr:svc\"]\n",
            "bridge.toml:2:11: sync.targets: unknown platform `rendr` in `rendr:svc`; did you mean `render`?",
        ),
    ] {
        let s = Sandbox::new();
        s.file("bridge.toml", file);
        let r = s.run(&["config", "show"]);
        assert_eq!(r.code, 2, "{file:?}: {r:?}");
        assert!(r.stderr.contains(expected), "{file:?}: {}", r.stderr);
    }

    // An unknown key far from every name lists all of them.
    let s = Sandbox::new();
    s.file("bridge.toml", "colour = \"blue\"\n");
    let r = s.run(&["config", "show"]);
    assert_eq!(r.code, 2, "{r:?}");
    for name in [
        "state_dir",
        "sync.protect",
        "github.api_url",
        "server.vault_keys",
        "[schema]",
    ] {
        assert!(r.stderr.contains(name), "{name} not listed: {}", r.stderr);
    }
}

/// Typos on the command line get the close name: clap's suggestions for commands and flags,
/// Bridge's for platform names.
#[test]
fn typos_on_the_command_line_suggest_the_close_name() {
    let s = Sandbox::new();
    let r = s.run(&["confg", "show"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("unrecognized subcommand 'confg'"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("similar subcommand exists: 'config'"),
        "{}",
        r.stderr
    );

    let r = s.run(&["env", "sync", "--dry-rn"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("similar argument exists: '--dry-run'"),
        "{}",
        r.stderr
    );

    s.file(".env", "A=1\n");
    let r = s.run(&[
        "env",
        "diff",
        "--from",
        "local:.env",
        "--target",
        "rendr:svc",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("unknown platform `rendr` in `rendr:svc`; did you mean `render`?"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("known platforms: local[:PATH], process"),
        "{}",
        r.stderr
    );
}

/// Randomly mangled files through the real binary: each one runs (exit 0) or is refused
/// with exit 2 at a line and column; none panics (exit 101) or fails otherwise.
#[test]
fn mangled_files_through_the_binary_are_exit_0_or_2_at_a_position() {
    const BASE: &str = "state_dir = \".bridge\"\n[sync]\nenabled = true\nmode = \"dry-run\"\n\
        targets = [\"local:prod.env\"]\nprotect = [\"DATABASE_URL\"]\nallow_deletions = false\n\
        [server]\nmax_body_bytes = 1024\n";
    const ALPHABET: &[u8] = b"[]\"'=.,#\n \\aZ_1-:{}";
    let cases = crate::sandbox::fuzz_cases(1_200) / 20;
    let mut mangler = crate::sandbox::Mangler::new(0x2545_F491_4F6C_DD1D);
    let s = Sandbox::new();
    let (mut ok, mut refused) = (0, 0);
    for case in 0..cases {
        let bytes = mangler.mangle(BASE, ALPHABET, 3);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        s.file("bridge.toml", &text);
        let r = s.run(&["config", "show"]);
        match r.code {
            0 => ok += 1,
            2 => {
                refused += 1;
                let placed = crate::sandbox::names_a_position(&r.stderr, "bridge.toml");
                assert!(
                    placed,
                    "case {case}: no line and column for {text:?}: {}",
                    r.stderr
                );
            }
            code => panic!("case {case}: exit {code} for {text:?}: {r:?}"),
        }
    }
    eprintln!("bridge.toml binary fuzz: {cases} cases, {ok} exit 0, {refused} exit 2");
}
