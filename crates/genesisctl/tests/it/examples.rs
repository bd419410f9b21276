//! The example GitHub Actions workflows use only real commands and flags: every
//! `genesisctl …` line in them parses (run with `--help` appended, which clap answers only
//! after every flag before it was accepted).

use std::path::Path;

use crate::sandbox::Sandbox;

/// The `run:` commands of a workflow, folded blocks (`run: >-`) joined into one line.
fn run_commands(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = trimmed.strip_prefix("run:") {
            let rest = rest.trim();
            if rest == ">-" || rest == "|" || rest == ">" {
                let mut parts = Vec::new();
                i += 1;
                while i < lines.len() {
                    let next = lines[i];
                    let next_indent = next.len() - next.trim_start().len();
                    if next.trim().is_empty() || next_indent <= indent {
                        break;
                    }
                    parts.push(next.trim());
                    i += 1;
                }
                commands.push(parts.join(" "));
                continue;
            }
            commands.push(rest.to_owned());
        }
        i += 1;
    }
    commands
}

/// Shell words of a command, with `${{ … }}` expressions replaced by a placeholder, up to
/// the first redirection or `||`.
fn words(command: &str) -> Vec<String> {
    let mut text = command.to_owned();
    while let Some(start) = text.find("${{") {
        let end = text[start..]
            .find("}}")
            .map_or(text.len(), |e| start + e + 2);
        text.replace_range(start..end, "X");
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .take_while(|w| w != ">" && w != "||" && w != "|" && w != ">>")
        .collect()
}

/// Runs `genesisctl …` (`command`, found in `path`) with `--help` appended, which clap
/// answers only once every flag before it is accepted; `--` hands the rest to another
/// program (`genesisctl run -- cmd`), so it and what follows are left out.
fn assert_parses(sandbox: &Sandbox, path: &Path, command: &str) {
    let words = words(command);
    let mut args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    if let Some(end) = args.iter().position(|a| *a == "--") {
        args.truncate(end);
    }
    args.push("--help");
    let run = sandbox.run(&args);
    assert_eq!(
        run.code,
        0,
        "{}: `{command}` does not parse:\n{}",
        path.display(),
        run.stderr
    );
}

#[test]
fn every_genesisctl_command_in_the_example_workflows_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows");
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for command in run_commands(&text) {
            if words(&command).first().map(String::as_str) != Some("genesisctl") {
                continue;
            }
            assert_parses(&sandbox, &path, &command);
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} commands found");
}

#[test]
fn the_extractor_joins_folded_blocks_and_stops_at_redirections() {
    let text = "      - run: genesisctl env diff --from local:.env || true\n      - name: x\n        run: >-\n          genesisctl deploy publish\n          --platform \"${{ a }}\"\n      - name: y\n";
    let commands = run_commands(text);
    assert_eq!(commands.len(), 2);
    assert_eq!(
        words(&commands[0]),
        ["genesisctl", "env", "diff", "--from", "local:.env"]
    );
    assert_eq!(
        words(&commands[1]),
        ["genesisctl", "deploy", "publish", "--platform", "X"]
    );
}

/// The quick-start demo (`examples/demo.sh`) as the README tells it: the plan, the sync,
/// a verify that ends in drift by design (the leftover key is kept, `extra`), then the sync
/// with --allow-deletions and a verify in parity.
#[test]
fn the_demo_runs_as_the_readme_says() {
    let s = crate::sandbox::with_examples();
    const VERIFY: &[&str] = &[
        "env",
        "verify",
        "--platforms",
        "local:.env,production=local:.env.production",
    ];
    let steps: [(&[&str], i32); 5] = [
        (
            &[
                "env",
                "diff",
                "--from",
                "local:.env",
                "--target",
                "local:.env.production",
            ],
            1,
        ),
        (
            &[
                "env",
                "sync",
                "--from",
                "local:.env",
                "--target",
                "local:.env.production",
            ],
            0,
        ),
        (VERIFY, 1),
        (
            &[
                "env",
                "sync",
                "--from",
                "local:.env",
                "--target",
                "local:.env.production",
                "--allow-deletions",
            ],
            0,
        ),
        (VERIFY, 0),
    ];
    for (i, (args, code)) in steps.into_iter().enumerate() {
        let run = s.run(args);
        assert_eq!(run.code, code, "step {i}: {args:?}: {run:?}");
        if i == 2 {
            assert!(run.stdout.contains("extra"), "{}", run.stdout);
        }
    }
    let demo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.sh"),
    )
    .unwrap();
    assert!(
        demo.contains("--allow-deletions"),
        "the demo and this test disagree"
    );
}

/// The `genesisctl …` lines of the shell blocks in the README and `docs/`: comments and
/// `$(…)`/`eval` wrappers cut away, one command per line.
fn documented_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(fence, "sh" | "bash" | "shell" | "console");
            continue;
        }
        if !in_shell {
            continue;
        }
        // A line ending in `\` goes on on the next.
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let joined = std::mem::take(&mut pending) + trimmed;
        let line = joined.trim_start_matches("$ ");
        let line = line.split(" #").next().unwrap_or("").trim();
        // `eval "$(genesisctl …)"` and `X=$(genesisctl …)`: the command inside.
        let line = match line.find("$(genesisctl") {
            Some(at) => line[at + 2..].trim_end_matches(")\"").trim_end_matches(')'),
            None => line,
        };
        if line.starts_with("genesisctl ") {
            out.push(line.to_owned());
        }
    }
    out
}

/// Every command the README and `docs/` show is a real command with real flags: each parses
/// (with `--help` appended, which clap answers only once every flag before it is accepted).
#[test]
fn every_genesisctl_command_in_the_readme_and_docs_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for command in documented_commands(&text) {
            assert_parses(&sandbox, path, &command);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} commands found");
}

#[test]
fn the_documented_command_extractor_reads_shell_blocks_only() {
    let text = "```sh\ngenesisctl env resume   # finish it\ngenesisctl env diff \\\n  --target render\neval \"$(genesisctl env sync --target process)\"\necho x\n```\n```toml\ngenesisctl = 1\n```\n";
    assert_eq!(
        documented_commands(text),
        [
            "genesisctl env resume",
            "genesisctl env diff  --target render",
            "genesisctl env sync --target process"
        ]
    );
}

/// The shell block after the heading `heading` in `file` (relative to the repository root).
fn shell_block(file: &str, heading: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let after = text
        .split_once(heading)
        .unwrap_or_else(|| panic!("{file} has no heading {heading:?}"))
        .1;
    let block = after.split_once("```sh\n").expect("a shell block").1;
    block
        .split_once("```")
        .expect("a closed block")
        .0
        .to_string()
}

/// Runs `script` with bash in `dir`, the binary first on PATH, and `set -e`: any failing
/// line fails the run. Background jobs (`emulate … &`) are killed at the end; a script that
/// has not finished in 60 s is killed and fails.
fn run_script(dir: &Path, script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_genesisctl"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let whole = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    std::process::Command::new("timeout")
        .args(["60", "bash", "-c", &whole])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .output()
        .unwrap()
}

/// The README's emulator quick start, run as written: emulate in the background, wait for
/// `ready`, sync the example to the three platforms, verify parity (exit 0).
#[test]
fn the_readme_emulator_quick_start_runs_as_written() {
    let s = crate::sandbox::with_examples();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(s.path("examples")).unwrap();
    std::fs::copy(root.join("examples/.env"), s.path("examples/.env")).unwrap();
    let block = shell_block(
        "README.md",
        "### Try it against emulated Render, Netlify and GitHub",
    );
    let out = run_script(&s.path("."), &block);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{block}\n{out:?}");
    assert!(
        stdout.contains("in parity") || stdout.contains("parity"),
        "{stdout}"
    );
}

/// `emulate --help`'s example returns (it once waited forever on the emulator's stdout).
#[test]
fn the_emulate_help_example_returns() {
    let s = crate::sandbox::Sandbox::new();
    let help = s.run(&["emulate", "--help"]).stdout;
    let example: Vec<&str> = help
        .split_once("Example:\n")
        .unwrap()
        .1
        .lines()
        .take(2)
        .map(str::trim)
        .collect();
    let script = format!(
        "{}\n{}\ntest -n \"$RENDER_API_URL\"\n",
        example[0], example[1]
    );
    let started = std::time::Instant::now();
    let out = run_script(&s.path("."), &script.replace("--port 7700", "--port 0"));
    assert!(out.status.success(), "{script}\n{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// The README's ledger block, after the demo's two syncs, run as written.
#[test]
fn the_readme_ledger_block_runs_as_written() {
    let s = crate::sandbox::Sandbox::new();
    s.file(".env", "API_TOKEN=tok-1\nLOG_LEVEL=info\n");
    assert_eq!(s.run(&["env", "sync", "--target", "local:a.env"]).code, 0);
    s.file(".env", "API_TOKEN=tok-2\nLOG_LEVEL=debug\n");
    assert_eq!(
        s.run(&["env", "sync", "--target", "local:a.env,local:b.env"])
            .code,
        0
    );
    let block = shell_block("README.md", "### Events and the tamper-evident ledger")
        .replace("--follow", "--limit 3");
    let out = run_script(&s.path("."), &block);
    assert!(out.status.success(), "{block}\n{out:?}");
}
