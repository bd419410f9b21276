//! Every command example in the README, `docs/` and `--help` is run, not only parsed: the
//! `genesisctl` and `curl` lines of each shell block and each `Example:` section, in document
//! order, in one world that has what the examples assume (the example `.env` files, emulated
//! Render, Netlify and GitHub, a running `serve`, a PostgreSQL store, a witness endpoint, two
//! git repositories for autosync). Each line runs with bash in that world; what one line exports
//! (`export`, `TOKEN=$(…)`, `eval "$(genesisctl … --target process)"`) the next line sees, as
//! in a reader's shell.
//!
//! A line must exit 0 unless [`EXPECT`] says otherwise, and every entry of [`EXPECT`] and
//! [`REWRITES`] must still match a documented line, so neither table outlives the docs. A
//! rewrite replaces what only the reader has (a system path, a host of their own, an id
//! from their history) with its equivalent here; each says why.
//!
//! Skipped when no PostgreSQL answers, unless BRIDGE_REQUIRE_SERVICES=1 (CI).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::sandbox::Sandbox;
use crate::shared_state::PgSchema;

/// What a documented line must do, when it is not "exit 0".
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exit with this code.
    Exit(i32),
    /// A server: still serving after a few seconds, having printed `Listening on`.
    Serves,
    /// A command that follows (a stream, an emulator): still running after a few seconds.
    Follows,
    /// Not run here; the reason names the test that runs it, or why it cannot run.
    Skip(&'static str),
}

/// Lines containing the needle, and what they must do; a needle with ` > ` is matched
/// against `SOURCE > LINE`. The first match wins.
const EXPECT: &[(&str, Expect)] = &[
    (
        "./examples/demo.sh",
        Expect::Skip("examples::the_demo_runs_as_the_readme_says runs it"),
    ),
    (
        "genesisctl emulate > emu.env &",
        Expect::Skip("examples::the_readme_emulator_quick_start_runs_as_written runs the block"),
    ),
    (
        "genesisctl emulate --port 7700 > emu.env &",
        Expect::Skip("examples::the_emulate_help_example_returns runs it"),
    ),
    ("-- serve --sandbox", Expect::Serves),
    (
        "cargo ",
        Expect::Skip("a build of this repository: CI runs it"),
    ),
    ("genesisctl serve", Expect::Serves),
    ("--follow", Expect::Follows),
    ("/genesis/stream", Expect::Follows),
    ("genesisctl emulate --platforms", Expect::Follows),
    // `env diff` exits 1 on drift, like diff(1): the example files differ by design.
    (
        "genesisctl env diff   --from local:.env --target local:.env.production",
        Expect::Exit(1),
    ),
    // LEGACY_QUEUE_URL is only in production, kept by the sync before: drift by design, as
    // in the demo.
    (
        "env verify --platforms local:.env,prod=local:.env.production",
        Expect::Exit(1),
    ),
    // Render is in sync here (the quick start's apply-all wrote it): no changes, exit 0.
    ("--detailed-exitcode", Expect::Exit(0)),
    // The last apply to Render created all its keys: undoing it would delete every one, and
    // the deletion guard refuses (exit 1, naming --force).
    ("env rollback --target render --dry-run", Expect::Exit(1)),
    // The plan was applied by the example before: a plan applies once.
    (
        "genesisctl env apply --help > genesisctl env apply plan.json",
        Expect::Exit(1),
    ),
    // Without a terminal, a rollback is refused unless --yes.
    ("env rollback --target render   #", Expect::Exit(2)),
    ("env rollback --target render\n", Expect::Exit(2)),
    // No lock of that id is held here: a clear error naming it.
    ("state unlock 3f1a9c0d5e7b2a14", Expect::Exit(2)),
    // No interrupted apply of that id here: a clear error naming it.
    ("env resume --discard 12", Expect::Exit(2)),
    // No journal of that id: a clear error naming it.
    ("--to 12", Expect::Exit(2)),
];

/// `(documented, here, why)`: applied to every line, in order; `{NAME}` then stands for the
/// world's value of NAME.
const REWRITES: &[(&str, &str, &str)] = &[
    (
        "cargo run --release -p genesisctl -- ",
        "genesisctl ",
        "the binary under test, not a second build",
    ),
    (
        "export TOKEN=brg_…",
        "export TOKEN=$BRIDGE_TOKEN",
        "the token the running server accepts",
    ),
    (
        "http://127.0.0.1:8080",
        "{BRIDGE_SERVER_URL}",
        "the running server's port",
    ),
    (
        "https://bridge.internal",
        "{BRIDGE_SERVER_URL}",
        "the running server",
    ),
    (
        "0.0.0.0:8080",
        "{BRIDGE_LISTEN}",
        "a free port of this machine",
    ),
    ("curl ", "curl -fsS ", "an HTTP error fails the line"),
    (
        "/etc/bash_completion.d/genesisctl",
        "genesisctl.bash",
        "a system directory",
    ),
    (
        "\"${fpath[1]}/_genesisctl\"",
        "_genesisctl",
        "zsh's function path",
    ),
    ("/var/lib/bridge", "var-lib-bridge", "a system directory"),
    ("/mnt/audit/", "audit/", "another machine's disk"),
    (
        "https://audit.example.com/bridge",
        "{WITNESS_URL}",
        "a witness endpoint on this machine",
    ),
    (
        "BRIDGE_FINGERPRINT_KEY=…",
        "BRIDGE_FINGERPRINT_KEY=$(cat .bridge/fingerprint.key)",
        "the reader's keys: here, those of the world's state directory",
    ),
    (
        "BRIDGE_STATE_KEY=…",
        "BRIDGE_STATE_KEY=$(cat .bridge/state.key)",
        "the reader's keys: here, those of the world's state directory",
    ),
    (
        "BRIDGE_LEDGER_KEY=…",
        "BRIDGE_LEDGER_KEY=$(cat .bridge/ledger.key)",
        "the reader's keys: here, those of the world's state directory",
    ),
    (
        "--public-key 3b6a27bc…",
        "--public-key \"$(genesisctl ledger public-key)\"",
        "the reader's own public key",
    ),
    (
        "tok_1a2b3c4d",
        "\"$(genesisctl token create --role observer >/dev/null; genesisctl token list --output json | jq -r '.tokens[-1].id')\"",
        "a token of this history (a new one: not the reader's $TOKEN, which the next example uses)",
    ),
    (
        "ledger proof 42 ",
        "ledger proof 4 ",
        "an entry of this history",
    ),
    (
        "--from 1000 ",
        "--from \"$CHECKPOINTED\" ",
        "the size of a signed checkpoint of this history",
    ),
    (
        "--from 7 ",
        "--from \"$CHECKPOINTED\" ",
        "the size of a signed checkpoint of this history",
    ),
    (
        "SOURCE_PAT=... GITHUB_TOKEN=... ",
        "",
        "the source is a local repository: no token is read",
    ),
];

/// Run before each document's lines, as a reader who has used Bridge a while would have:
/// a signed checkpoint whose size the consistency examples name.
const PRELUDE: &str =
    "export CHECKPOINTED=$(genesisctl ledger checkpoint --output json | jq .size)";

/// One documented line and where it came from.
#[derive(Debug)]
struct Line {
    source: String,
    text: String,
}

/// The shell lines of the fenced shell blocks of a markdown text that run something:
/// `genesisctl`, `curl`, `export` and `NAME=$(…)` lines, joined across `\` continuations.
fn block_lines(text: &str) -> Vec<String> {
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
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        let joined = std::mem::take(&mut pending) + trimmed;
        if runs_something(&joined) {
            out.push(joined);
        }
    }
    out
}

fn runs_something(line: &str) -> bool {
    let line = line.trim_start_matches("$ ");
    line.contains("genesisctl ")
        || line.starts_with("curl ")
        || line.starts_with("export ")
        || line.starts_with("./")
        || line.starts_with("cargo ")
}

/// The example lines of one `--help` text: the indented lines after `Example:` or
/// `Examples:`, joined across `\` continuations.
fn help_examples(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in help.lines() {
        if line == "Example:" || line == "Examples:" {
            inside = true;
            continue;
        }
        if !line.starts_with(' ') {
            inside = false;
            continue;
        }
        if !inside {
            continue;
        }
        let trimmed = line.trim();
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        let joined = std::mem::take(&mut pending) + trimmed;
        if runs_something(&joined) {
            out.push(joined);
        }
    }
    out
}

/// Every subcommand path (`["env", "sync"]`, …), from the binary's own `--help`.
fn subcommands(world: &World, prefix: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let help = world.help(&args);
    let mut out = Vec::new();
    let mut listing = false;
    for line in help.lines() {
        if line == "Commands:" {
            listing = true;
            continue;
        }
        if listing && !line.starts_with("  ") {
            listing = false;
        }
        if !listing {
            continue;
        }
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        // Entries are indented two spaces; wrapped descriptions further.
        if line.starts_with("   ") || name == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(name.to_owned());
        out.push(path.clone());
        out.extend(subcommands(world, &path));
    }
    out
}

/// A witness endpoint on this machine: keeps what is PUT, answers a GET with it.
async fn witness_endpoint() -> String {
    use axum::routing::get;
    let held: Arc<Mutex<Option<String>>> = Arc::default();
    let (put, read) = (held.clone(), held);
    let app = axum::Router::new().route(
        "/bridge",
        get(move || {
            let read = read.clone();
            async move {
                match read.lock().unwrap().clone() {
                    Some(body) => (axum::http::StatusCode::OK, body),
                    None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                }
            }
        })
        .put(move |body: String| {
            let put = put.clone();
            async move {
                *put.lock().unwrap() = Some(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bridge", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process started for the world, killed with it.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    sandbox: Sandbox,
    env: BTreeMap<String, String>,
    _running: Vec<Background>,
}

impl World {
    fn bin_dir() -> PathBuf {
        Path::new(env!("CARGO_BIN_EXE_genesisctl"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.sandbox.path("."))
            .env_clear()
            .envs(&self.env);
        command
    }

    fn help(&self, args: &[&str]) -> String {
        let out = self
            .command(env!("CARGO_BIN_EXE_genesisctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn git(&self, dir: &str, args: &[&str]) {
        let out = self
            .command("git")
            .current_dir(self.sandbox.path(dir))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    async fn new(witness: String) -> Self {
        let sandbox = Sandbox::new();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let example = std::fs::read_to_string(examples.join(".env")).unwrap();
        let production = std::fs::read_to_string(examples.join(".env.production")).unwrap();
        sandbox
            .file(".env", &example)
            .file("examples/.env", &example)
            .file(".env.production", &production)
            .file(".env.staging", &production)
            .file(".env.ci", &format!("{example}CI_ONLY=1\n"))
            .file(
                "bridge.toml",
                "[sync]\nsource = \"local:.env\"\ntargets = [\"render\", \"netlify\", \"github\"]\n\n[schema]\nmin_keys = 3\n",
            )
            .file("server", "#!/bin/sh\nexit 0\n")
            .file("audit/.keep", "");
        std::fs::set_permissions(
            sandbox.path("server"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();

        let mut env = BTreeMap::new();
        let path = format!(
            "{}:{}",
            Self::bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        for (k, v) in [
            ("PATH", path.as_str()),
            ("HOME", &sandbox.path(".").display().to_string()),
            ("GIT_AUTHOR_NAME", "Docs Test"),
            ("GIT_AUTHOR_EMAIL", "docs@example.com"),
            ("GIT_COMMITTER_NAME", "Docs Test"),
            ("GIT_COMMITTER_EMAIL", "docs@example.com"),
            // Help as a wide terminal shows it: no example wrapped mid-command.
            ("COLUMNS", "1000"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("WITNESS_URL", &witness),
            // The reader's token, as `export TOKEN=…` or `TOKEN=$(…)` would have set it.
            ("TOKEN", ""),
            ("BRIDGE_LISTEN", &format!("127.0.0.1:{}", free_port())),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
        let mut world = Self {
            sandbox,
            env,
            _running: Vec::new(),
        };

        // The emulated platforms, their variables exported to every line.
        let mut emulator = world
            .command(env!("CARGO_BIN_EXE_genesisctl"))
            .args(["emulate", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(emulator.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            let (k, v) = line
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
                .unwrap_or_else(|| panic!("emulate printed {line:?}"));
            world
                .env
                .insert(k.to_owned(), v.trim_matches('\'').to_owned());
        }
        world._running.push(Background(emulator));

        // A running server, and an admiral token for it.
        let token = world.help(&["token", "create", "--role", "admiral"]);
        for name in ["BRIDGE_TOKEN", "TOKEN"] {
            world.env.insert(name.into(), token.trim().to_owned());
        }
        let port = free_port();
        let mut server = world
            .command(env!("CARGO_BIN_EXE_genesisctl"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("Listening on "), "{first}");
        world.env.insert(
            "BRIDGE_SERVER_URL".into(),
            format!("http://127.0.0.1:{port}"),
        );
        world._running.push(Background(server));

        // Autosync: this project's repository and a sibling with one commit to carry.
        for repo in ["app", "web"] {
            world.sandbox.file(&format!("{repo}/README.md"), "start\n");
            world.git(repo, &["init", "-q", "-b", "main"]);
            world.git(repo, &["add", "."]);
            world.git(repo, &["commit", "-q", "-m", "chore: start"]);
        }
        world.sandbox.file("web/feature.txt", "a feature\n");
        world.git("web", &["add", "."]);
        world.git("web", &["commit", "-q", "-m", "feat: a feature"]);
        world.sandbox.file(
            "autosync.toml",
            "[target]\npath = \"app\"\nbranch = \"main\"\n\n[[source]]\nname = \"web\"\nurl = \"web\"\nbranch = \"main\"\n\n[filters]\ntypes = [\"feat\", \"fix\"]\n\n[[validate]]\nname = \"check\"\nrun = \"test -f feature.txt\"\nkind = \"test\"\n",
        );
        // A history: ledger entries before the first document, so that its checkpoint and
        // proof examples have entries to name.
        for n in 0..6 {
            let payload = format!("{{\"deploy_id\":\"dep-{n}\",\"status\":\"live\"}}");
            world.help(&["events", "publish", "deploy.render", &payload]);
        }
        world
    }

    /// Runs one line with bash in the world, after what earlier lines of the same document
    /// exported (kept in `.doc.env`).
    fn run_line(&self, line: &str, expect: Expect) -> Result<(), String> {
        let limit = match expect {
            Expect::Serves | Expect::Follows => "4",
            _ => "60",
        };
        let script = format!(
            "set -a\n[ -f .doc.env ] && . ./.doc.env\nset -o pipefail\n{line}\ncode=$?\nexport -p > .doc.env\nexit $code\n"
        );
        let out = self
            .command("timeout")
            .args([limit, "bash", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ok = match expect {
            Expect::Exit(want) => code == want,
            Expect::Serves => code == 124 && stdout.contains("Listening on"),
            Expect::Follows => code == 124,
            Expect::Skip(_) => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{line}\n  expected {expect:?}, got exit {code}\n  stdout: {}\n  stderr: {}",
                stdout.chars().take(600).collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(1200)
                    .collect::<String>()
            ))
        }
    }
}

/// Gives each distinct PostgreSQL URL a document names (`postgres://…@db.internal/…`) a fresh
/// schema of the test database, so that "migrate into an empty store" is what it says.
async fn with_stores(line: &str, stores: &mut BTreeMap<String, PgSchema>) -> Option<String> {
    let mut out = line.to_owned();
    let mut from = 0;
    while let Some(at) = out[from..].find("postgres://bridge@db") {
        let start = from + at;
        let end = out[start..]
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .map_or(out.len(), |e| start + e);
        let documented = out[start..end].to_owned();
        if !stores.contains_key(&documented) {
            stores.insert(documented.clone(), PgSchema::create().await?);
        }
        let here = stores[&documented].url();
        out.replace_range(start..end, &here);
        from = start + here.len();
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_command_example_runs() {
    if PgSchema::create().await.is_none() {
        return;
    }
    let witness = witness_endpoint().await;
    let world = World::new(witness).await;

    // The documents, in the order a reader meets them, then every command's --help.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut documents = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    documents.extend(docs);
    let mut sources: Vec<(String, Vec<String>)> = documents
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, block_lines(&text))
        })
        .collect();
    let mut help_lines = Vec::new();
    for command in std::iter::once(Vec::new()).chain(subcommands(&world, &[])) {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        for line in help_examples(&world.help(&args)) {
            help_lines.push(Line {
                source: std::iter::once("genesisctl")
                    .chain(command.iter().map(String::as_str))
                    .chain(["--help"])
                    .collect::<Vec<_>>()
                    .join(" "),
                text: line,
            });
        }
    }
    let help_count = help_lines.len();
    sources.push((
        "--help".into(),
        help_lines
            .into_iter()
            .map(|l| format!("{}\n{}", l.source, l.text))
            .collect(),
    ));

    let mut used_expect = BTreeSet::new();
    let mut used_rewrite = BTreeSet::new();
    let mut dropped = Vec::new();
    let (mut ran, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    for (document, lines) in &sources {
        // Each document is a reader's own session: its own shell, its own stores.
        let mut stores = BTreeMap::new();
        let _ = std::fs::remove_file(world.sandbox.path(".doc.env"));
        world
            .run_line(PRELUDE, Expect::Exit(0))
            .unwrap_or_else(|e| panic!("the prelude failed: {e}"));
        for entry in lines {
            // Help lines carry their command's name on a first line.
            let (source, documented) = match entry.split_once('\n') {
                Some((source, line)) if document == "--help" => (source.to_owned(), line),
                _ => (document.clone(), entry.as_str()),
            };
            let documented = documented.trim_start_matches("$ ");
            let line_only = format!("{documented}\n");
            let keyed = format!("{source} > {documented}\n");
            let expect = EXPECT
                .iter()
                .enumerate()
                .find(|(_, (needle, _))| {
                    if needle.contains(" > ") {
                        keyed.contains(needle)
                    } else {
                        line_only.contains(needle)
                    }
                })
                .map_or(Expect::Exit(0), |(i, (_, expect))| {
                    used_expect.insert(i);
                    *expect
                });
            if let Expect::Skip(why) = expect {
                skipped.push(format!("{source}: {documented} ({why})"));
                continue;
            }
            let mut line = documented.to_owned();
            for (i, (from, to, _)) in REWRITES.iter().enumerate() {
                if line.contains(from) {
                    line = line.replace(from, to);
                    used_rewrite.insert(i);
                }
            }
            for name in ["BRIDGE_SERVER_URL", "BRIDGE_LISTEN", "WITNESS_URL"] {
                line = line.replace(&format!("{{{name}}}"), &world.env[name]);
            }
            let Some(line) = with_stores(&line, &mut stores).await else {
                return;
            };
            ran += 1;
            if let Err(e) = world.run_line(&line, expect) {
                failures.push(format!("{source}: {e}"));
            }
        }
        dropped.extend(stores.into_values());
    }
    for schema in dropped {
        schema.drop_schema().await;
    }
    eprintln!(
        "documented examples: {ran} run ({help_count} from --help), {} skipped:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for (i, (needle, _)) in EXPECT.iter().enumerate() {
        assert!(
            used_expect.contains(&i),
            "no documented line contains {needle:?}"
        );
    }
    for (i, (from, _, _)) in REWRITES.iter().enumerate() {
        assert!(
            used_rewrite.contains(&i),
            "no documented line contains {from:?}"
        );
    }
    assert!(ran >= 100, "only {ran} examples ran");
}

#[test]
fn the_extractors_read_shell_blocks_and_help_examples() {
    let doc = "```sh\ngenesisctl env diff \\\n  --target render   # a comment\necho skipped\nexport A=1\n```\n```toml\ngenesisctl = 1\n```\n";
    assert_eq!(
        block_lines(doc),
        [
            "genesisctl env diff --target render   # a comment",
            "export A=1"
        ]
    );
    let help = "Usage: x\n\nExamples:\n  genesisctl a \\\n      --b c\n  genesisctl d\n\nOptions:\n  genesisctl no\n";
    assert_eq!(help_examples(help), ["genesisctl a --b c", "genesisctl d"]);
}
