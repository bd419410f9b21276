//! The command line, as clap sees it. Only shapes and help live here; `commands/` does the
//! work, after `main.rs` has merged flags with the environment and `bridge.toml`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Keep environment variables and secrets identical across Render, Netlify, \
GitHub Actions and .env files: show drift, fix it, prove it.";

const AFTER_HELP: &str = "\
Platforms are named by spec: local[:PATH] (a .env file, default ./.env), process (this \
process's environment), render, netlify[:context=production], github[:environment=prod]. \
Prefix LABEL= to name one in reports: prod=local:.env.production.

Exit codes: 0 ok or in parity; 1 drift found or plan not applied; 2 usage, config or input \
error; 3 platform or network failure.

Examples:
  genesisctl env diff --from local:.env --target local:.env.production
  genesisctl env sync --from local:.env --target local:.env.production --allow-deletions
  genesisctl env verify --platforms local:.env,local:.env.production --report parity.json";

#[derive(Debug, Parser)]
#[command(name = "genesisctl", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// State directory: fingerprint key, store, journals [env: BRIDGE_STATE_DIR] [default: .bridge]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Configuration file [env: BRIDGE_CONFIG] [default: ./bridge.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Event store URL: sqlite://PATH or postgres://… [env: BRIDGE_STORE]
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,

    /// Event bus URL: nats://…; the store itself by default [env: BRIDGE_BUS]
    #[arg(long, global = true, value_name = "URL")]
    pub bus: Option<String>,

    /// How long an apply waits for another's lock on the same place, then exit 3: 300, 90s,
    /// 5m, 1h [env: BRIDGE_LOCK_TIMEOUT] [default: 5m]
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_timeout: Option<String>,

    /// Output format: text for people, json for machines (nothing but JSON on stdout)
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Print less: no progress or status lines on stderr
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the state directory (0700) and the local fingerprint key
    #[command(
        after_help = "Example:\n  genesisctl init\n  genesisctl --state-dir /var/lib/bridge init"
    )]
    Init,

    /// Diff, sync, export, verify and check environment variables
    #[command(subcommand)]
    Env(EnvCommand),

    /// Show the configuration and where each value came from
    #[command(subcommand)]
    Config(ConfigCommand),

    /// The Genesis bus: publish, tail, stats, export
    #[command(subcommand)]
    Events(EventsCommand),

    /// The Truth ledger: verify it, show entries, prove inclusion, export
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// The state store: apply locks, backups, and moving a state directory to a shared store
    #[command(subcommand)]
    State(StateCommand),

    /// Check each remote platform: where its token comes from, and whether the API accepts it
    #[command(subcommand)]
    Platforms(PlatformsCommand),

    /// Serve local emulators of the Render, Netlify and GitHub APIs
    #[command(
        after_help = "Prints one `export NAME=VALUE` line per variable a client needs, then `ready`, \
then serves until interrupted.\n\nEach emulator holds one Render service (srv-emulator), one Netlify site \
(site-emulator, in account acct-emulator) and one GitHub repository (bridge/emulated), the ones \
exported. --render-services, --netlify-sites and --github-repositories add more at start, each with \
its own variables (a repository also its own environments and keys), to try two environments \
locally, e.g. with --target prod=render:service=srv-prod,stg=render:service=srv-stg. Any other id \
answers the platform's real 404, as a mistyped or deleted one does, so name every one you use. \
Stats, faults and the write log are one per emulator, shared by its instances.\n\nExample:\n  genesisctl emulate --port 7700 > emu.env &   # in the background: it serves until killed\n  until grep -qx ready emu.env; do sleep 0.1; done; eval \"$(grep '^export' emu.env)\"\n  genesisctl emulate --platforms github --latency 20ms --rate-limit 50/s --page-size 2\n  genesisctl emulate --platforms render,github --render-services srv-prod,srv-stg --github-repositories org/app,org/api"
    )]
    Emulate(EmulateArgs),

    /// Run the control plane: the HTTP API, live event stream, vault, metrics
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),

    /// Deploy events: publish one (from CI) to a Bridge server or the local store
    #[command(subcommand)]
    Deploy(DeployCommand),

    /// Create, list and revoke the API's bearer tokens
    #[command(
        subcommand,
        after_help = "Tokens are stored hashed where the store keeps its state: tokens.json in the state \
                      directory by default; with --store postgres://… the store's bridge_tokens table, \
                      shared by every runner and server of the store (tokens.json is then not used). \
                      Every server of the store accepts a new token, and refuses a revoked one, within \
                      about a second."
    )]
    Token(TokenCommand),

    /// Carry vetted commits from sibling repositories into this one
    #[command(subcommand)]
    Autosync(AutosyncCommand),

    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  genesisctl completions bash > /etc/bash_completion.d/genesisctl\n  genesisctl completions zsh > \"${fpath[1]}/_genesisctl\""
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Run a command with a source's variables in its environment
    #[command(
        after_help = "The command's exit code is passed through. Variables from the source override \
those already in the environment.\n\nExample:\n  genesisctl run --from local:.env.production -- ./server --port 8080"
    )]
    Run {
        /// Where the variables come from [default: sync.source]
        #[arg(long, value_name = "SRC")]
        from: Option<String>,

        /// Let .env files reference variables of the process environment
        #[arg(long)]
        interpolate_env: bool,

        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Show what a sync would change (same as `env sync --dry-run`); exits 1 when there is drift
    #[command(
        after_help = "Example:\n  genesisctl env diff --from local:.env --target local:.env.production\n  genesisctl env diff --target local:.env.staging --output json | jq '.targets[].summary'"
    )]
    Diff(SyncArgs),

    /// Make the targets hold what the source holds
    #[command(
        after_help = "Deletions happen only with --allow-deletions, and a sync that would delete more \
than sync.max_delete_share of a target's keys (25% by default) is refused unless --force. A source \
with no variables is refused unless --allow-empty-source. The full plan prints before the first \
write; on a terminal it is confirmed first (--yes skips the question), without one the sync proceeds.\n\nExamples:\n  genesisctl env sync --from local:.env --target local:.env.production\n  genesisctl env sync --target local:.env.ci --dry-run\n  eval \"$(genesisctl env sync --from local:.env --target process)\""
    )]
    Sync {
        #[command(flatten)]
        args: SyncArgs,

        /// Plan only: print the changes and write nothing (exit 1 when there are changes)
        #[arg(long)]
        dry_run: bool,

        /// Delete even when the deletion guard would refuse
        #[arg(long)]
        force: bool,

        /// Sync even when the source holds no variables
        #[arg(long)]
        allow_empty_source: bool,

        /// Write without asking (on a terminal the plan is shown and confirmed first)
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Save a plan to apply later with `env apply`; exits 0 once written
    #[command(
        after_help = "The plan file holds keys, operations and keyed fingerprints, never values. \
`env apply` re-reads the source and the targets and refuses the plan if either changed since.\n\nExit codes: 0 written; with --detailed-exitcode, 0 no changes and 1 changes; 2 and 3 as \
everywhere (input error, platform failure).\n\nExample:\n  genesisctl env plan --from local:.env --target render,github --out plan.json\n  genesisctl env apply plan.json"
    )]
    Plan {
        #[command(flatten)]
        args: SyncArgs,

        /// Where to write the plan
        #[arg(long, value_name = "FILE")]
        out: PathBuf,

        /// Exit 1 when the plan has changes, 0 when it has none (for scripts that branch)
        #[arg(long)]
        detailed_exitcode: bool,
    },

    /// Apply a plan saved by `env plan`, exactly, or refuse if anything changed since
    #[command(after_help = "Example:\n  genesisctl env apply plan.json")]
    Apply {
        /// The plan file
        plan: PathBuf,

        /// Delete even when the deletion guard would refuse
        #[arg(long)]
        force: bool,

        /// Write without asking (on a terminal the plan is shown and confirmed first)
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Finish the last apply that was interrupted, without repeating a write
    #[command(
        after_help = "It reads every target first and refuses, writing nothing, when one changed \
since the journal was written (exit 1): an older plan would overwrite newer values. An op whose \
effect is already there (it landed before the crash) is recorded, not repeated. It prints what \
is left to write before writing; on a terminal it asks first. While a journal is unfinished, \
syncs to its targets refuse; --discard ID gives it up instead (announced, and kept in the \
ledger).\n\nExamples:\n  genesisctl env resume\n  genesisctl env resume --discard 12"
    )]
    Resume {
        /// Write without asking (on a terminal the plan is shown and confirmed first)
        #[arg(long, short = 'y')]
        yes: bool,

        /// Give up this unfinished journal: its unwritten ops are never written
        #[arg(long, value_name = "JOURNAL", conflicts_with = "yes")]
        discard: Option<i64>,
    },

    /// Undo the last apply to a target (or the one given) from its journal
    #[command(
        after_help = "A rollback is itself an apply: journalled, under the target's apply lock, \
published and recorded in the ledger. So a second rollback undoes the first, returning to \
where you started; --to goes further back, explicitly. It lists what it writes and the journal \
it undoes; --dry-run stops there. It passes the deletion guard like a sync: undoing the first \
apply to a place deletes what it created, which needs --force. On a terminal it asks before \
writing; without one it needs --yes. A .env file gets its own lines back, byte for byte, \
wherever it still holds what the apply wrote; a line changed since gets its old value. Values \
the platform never returned and Bridge never wrote cannot be restored; they are listed.\n\nExample:\n  genesisctl env rollback --target render\n  genesisctl env rollback --target local:.env.production --to 12"
    )]
    Rollback {
        /// The target to restore
        #[arg(long, value_name = "DST")]
        target: String,

        /// The journal to undo [default: the newest that wrote to the target]
        #[arg(long, value_name = "JOURNAL")]
        to: Option<i64>,

        /// Show what the rollback would write, and write nothing
        #[arg(long)]
        dry_run: bool,

        /// Delete more than sync.max_delete_share of the target's keys if the rollback says so
        #[arg(long)]
        force: bool,

        /// Write without asking; needed when there is no terminal to ask on
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Write a snapshot of a source as {provider, source, synced_at, variables}
    #[command(
        after_help = "Secret values are written as \"<redacted:FINGERPRINT>\" unless --reveal.\n\nExample:\n  genesisctl env export --source local:.env --target github --out .env.sync.json"
    )]
    Export {
        /// The place to snapshot [default: sync.source]
        #[arg(long, value_name = "SRC")]
        source: Option<String>,

        /// The provider the snapshot is meant for (recorded as `provider`)
        #[arg(long, value_name = "LABEL")]
        target: Option<String>,

        /// Write to FILE (atomically, 0600) instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,

        /// Include secret values in clear
        #[arg(long)]
        reveal: bool,

        /// Let .env files reference variables of the process environment
        #[arg(long)]
        interpolate_env: bool,
    },

    /// Check that every place holds the same keys and values; exits 1 on drift or unproven parity
    #[command(
        after_help = "The first place is the reference: each key's value there is what the other places \
are judged against (a key the first place lacks is judged against the first place that has \
it). Each key is, at \
each place: equal, different, missing (in the source, absent here), extra (here, absent from \
the source), unknown (write-only, never written by Bridge), changed_outside (write-only, \
changed since Bridge wrote it) or protected (on sync.protect: never written, so not judged). \
Exit 0 only when nothing drifts and every key could be judged; \
--allow-unknown accepts unknown values.\n\nExample:\n  genesisctl env verify --platforms local:.env,local:.env.production --report parity.json --audit-md AUDIT.md"
    )]
    Verify {
        /// The places to compare [default: sync.source and sync.targets]
        #[arg(long, value_name = "SPEC,...")]
        platforms: Option<String>,

        /// Also write the parity report as JSON to FILE
        #[arg(long, value_name = "FILE.json")]
        report: Option<PathBuf>,

        /// Also write an audit summary as Markdown to FILE
        #[arg(long, value_name = "FILE.md")]
        audit_md: Option<PathBuf>,

        /// Exit 0 even when some write-only values cannot be compared (unknown)
        #[arg(long)]
        allow_unknown: bool,

        #[command(flatten)]
        scope: ScopeArgs,
    },

    /// Validate a source against the [schema] of bridge.toml; exits 1 on violations
    #[command(
        after_help = "Example bridge.toml:\n  [schema]\n  min_keys = 3\n  [schema.keys.DATABASE_URL]\n  required = true\n  format = \"url\"   # url, int, bool, port, email, regex (+ pattern), enum (+ values)\n\nExample:\n  genesisctl env check --from local:.env.production"
    )]
    Check {
        /// The place to check [default: sync.source]
        #[arg(long, value_name = "SRC")]
        from: Option<String>,

        /// Let .env files reference variables of the process environment
        #[arg(long)]
        interpolate_env: bool,
    },
}

/// What every sync-like command takes.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The canonical source [default: sync.source, else local:.env]
    #[arg(long, value_name = "SRC")]
    pub from: Option<String>,

    /// Targets, comma-separated [default: sync.targets]
    #[arg(long, value_name = "DST,...")]
    pub target: Option<String>,

    /// Delete target keys that the source lacks
    #[arg(long)]
    pub allow_deletions: bool,

    /// Write-only values Bridge cannot compare (never written by it, e.g. on a fresh CI
    /// runner): write them, as the source is canonical, or skip them and report them unknown
    #[arg(long, value_enum, value_name = "WHAT", default_value = "write")]
    pub unknown: UnknownArg,

    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownArg {
    /// Write them (`write_unknown` in a plan)
    Write,
    /// Leave them and report them `unknown`
    Skip,
}

impl From<UnknownArg> for bridge_operations::UnknownPolicy {
    fn from(arg: UnknownArg) -> Self {
        match arg {
            UnknownArg::Write => bridge_operations::UnknownPolicy::Write,
            UnknownArg::Skip => bridge_operations::UnknownPolicy::Report,
        }
    }
}

/// Which keys a command looks at.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only keys with these prefixes, comma-separated [env: ENVSYNC_INCLUDE_PREFIXES]
    #[arg(long, value_name = "P,...")]
    pub include_prefixes: Option<String>,

    /// Never keys with these prefixes (wins over include) [env: ENVSYNC_EXCLUDE_PREFIXES]
    #[arg(long, value_name = "P,...")]
    pub exclude_prefixes: Option<String>,

    /// Let .env files reference variables of the process environment
    #[arg(long)]
    pub interpolate_env: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish an event and print the envelope stored (with _genesis_seq and _genesis_timestamp)
    #[command(
        after_help = "Example:\n  genesisctl events publish deploy.render '{\"status\":\"live\"}'"
    )]
    Publish {
        /// The topic, e.g. deploy.render
        topic: String,
        /// A JSON object
        payload: String,
        /// The role to publish as (the permission gate checks it)
        #[arg(long = "as", default_value = "admiral", value_name = "ROLE")]
        role: String,
    },
    /// Print events, oldest first; --follow keeps printing new ones
    #[command(
        after_help = "Topic patterns: `envsync.*` matches one segment, `deploy.>` one or more.\n\nExample:\n  genesisctl events tail --topic 'envsync.*' --follow --output json"
    )]
    Tail {
        /// Only topics matching this pattern
        #[arg(long, value_name = "PATTERN")]
        topic: Option<String>,
        /// Start after this sequence number [default: the last --limit events]
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing events as they are published
        #[arg(long, short)]
        follow: bool,
    },
    /// Events per topic and the rate over the last hour
    #[command(after_help = "Example:\n  genesisctl events stats --output json")]
    Stats,
    /// Write every event (or those matching --topic) as JSON lines
    #[command(
        after_help = "Example:\n  genesisctl events export --topic 'deploy.>' --out deploys.jsonl"
    )]
    Export {
        #[arg(long, value_name = "PATTERN")]
        topic: Option<String>,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the apply locks held now, by any runner sharing the store
    #[command(
        after_help = "Each lock names its place, and who holds it: what, on which host, with which pid, since when.\n\nExample:\n  genesisctl state locks\n  genesisctl --store \"$BRIDGE_STORE\" state locks --output json"
    )]
    Locks,

    /// Break an apply lock (as `state locks` lists it), with a warning and an event
    #[command(after_help = STATE_UNLOCK_HELP)]
    Unlock {
        /// The lock's id (16 hex digits) or its place
        id: String,
        /// Do not ask (required without a terminal)
        #[arg(long)]
        yes: bool,
    },

    /// Write the state (records, journals, events, token hashes, delivery and schedule claims, the ledger) to a file, for a backup
    #[command(
        after_help = "Values stay sealed to the state key: the file opens only with the keys of the store it came from.\n\nExample:\n  genesisctl --store \"$BRIDGE_STORE\" state export --out bridge-state.json"
    )]
    Export {
        /// Write here (0600) instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },

    /// Load a `state export` file into an empty store
    #[command(
        after_help = "Refused when the store already holds journals, records, events or ledger entries, so two histories are never mixed. Events and the ledger are imported into a PostgreSQL store only; the imported ledger is verified.\n\nExample:\n  genesisctl --store postgres://bridge@db/bridge state import bridge-state.json"
    )]
    Import {
        /// The file `state export` wrote
        file: PathBuf,
    },

    /// Move a state directory's history (records, journals, events, tokens, claims, the ledger) to a PostgreSQL store
    #[command(after_help = STATE_MIGRATE_HELP)]
    Migrate {
        /// The state directory to move (its keys stay the keys of the store)
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL store, postgres://USER@HOST/DB
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

const STATE_UNLOCK_HELP: &str = "\
A lock is released by the system when its holder ends, kill -9 and a vanished machine \
included, so breaking one is for a holder that is hung. On PostgreSQL it ends the holder's \
lock session; the holder itself keeps running, so if it is still applying, its writes and \
the next runner's may interleave. On the embedded store a lock is a file lock of a live \
process on this machine, and breaking it is refused: stop that process instead.

Example:
  genesisctl state unlock 3f1a9c0d5e7b2a14 --yes";

const STATE_MIGRATE_HELP: &str = "\
Copies the sync state (write records, ownership, journals with their sealed pre-images) and \
the events, keeping every sequence number and time, into a store that holds none yet, with \
the API's token hashes (tokens.json), the claimed webhook deliveries and schedule slots, and \
the Truth ledger row for row (its entries and signed checkpoints as they are; only a ledger \
that verifies is carried); then reads everything back, compares, and verifies the copied \
ledger. Every runner of the new store then needs this directory's keys: set \
BRIDGE_FINGERPRINT_KEY, BRIDGE_STATE_KEY and BRIDGE_LEDGER_KEY from its fingerprint.key, \
state.key and ledger.key.

Example:
  genesisctl state migrate --from .bridge --to postgres://bridge@db.internal/bridge";

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every hash and check every signature; exits 1 naming the first bad entry,
    /// or when the ledger does not extend the checkpoint a witness holds
    #[command(
        after_help = "Signatures alone cannot show a cut tail: whoever deletes the last entries can delete \
the checkpoints above them too. With --witness, the ledger must also extend the signed \
checkpoint kept there (see `ledger checkpoint --publish`); a shorter or rewritten ledger is \
exit 1.

Examples:
  genesisctl ledger verify
  genesisctl ledger verify --public-key .bridge/ledger.pub --output json
  genesisctl ledger verify --witness /mnt/audit/bridge-checkpoint.json
  genesisctl ledger verify --witness github"
    )]
    Verify {
        /// The public key to check signatures with (hex or a file) [default: this state dir's]
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// Also prove the ledger extends the checkpoint this witness holds: a file, an
        /// https:// URL (GET), or `github` (the Actions variable BRIDGE_LEDGER_CHECKPOINT)
        #[arg(long, value_name = "SOURCE")]
        witness: Option<String>,
    },
    /// Print entries
    #[command(after_help = "Example:\n  genesisctl ledger show --from 100 --limit 20")]
    Show {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Print a proof (JSON): that an entry is in a signed tree, or with --from that a newer
    /// signed tree extends an older one
    #[command(
        after_help = "Examples:\n  genesisctl ledger proof 42 > proof.json\n  genesisctl ledger verify-proof proof.json --public-key \"$(genesisctl ledger public-key)\"\n  genesisctl ledger proof --from 1000 > consistency.json   # the latest checkpoint extends the one of 1000 entries"
    )]
    Proof {
        /// The entry to prove included
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        index: Option<u64>,
        /// Prove instead that the signed tree of --to entries extends the signed tree of this
        /// many (both sizes must have a checkpoint)
        #[arg(long, value_name = "SIZE")]
        from: Option<u64>,
        /// The newer tree's size [default: the latest checkpoint's]
        #[arg(long, value_name = "SIZE", requires = "from")]
        to: Option<u64>,
    },
    /// Check a proof (inclusion or consistency) offline, with only the ledger's public key
    #[command(
        after_help = "Example:\n  genesisctl ledger verify-proof proof.json --public-key 3b6a27bc…"
    )]
    VerifyProof {
        file: PathBuf,
        /// The ledger's public key (hex or a file)
        #[arg(long, value_name = "KEY")]
        public_key: String,
    },
    /// Write every entry as JSON lines (the exact bytes each leaf hash covers)
    #[command(after_help = "Example:\n  genesisctl ledger export --out ledger.jsonl")]
    Export {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign a checkpoint of the current tree now, and perhaps publish it to a witness
    #[command(
        after_help = "A witness keeps the latest signed checkpoint where whoever can rewrite the state \
cannot: another machine's file, an https:// endpoint taking a PUT, or `github` (the Actions \
variable BRIDGE_LEDGER_CHECKPOINT of GITHUB_REPOSITORY, with the github platform's token). A \
witness never moves backwards: publishing is refused (exit 1) when it holds a checkpoint this \
ledger does not extend. `ledger.witness` in bridge.toml makes `serve` publish each checkpoint.

Examples:
  genesisctl ledger checkpoint
  genesisctl ledger checkpoint --publish /mnt/audit/bridge-checkpoint.json
  genesisctl ledger checkpoint --publish github"
    )]
    Checkpoint {
        /// Publish the checkpoint to this witness: a file, an https:// URL (PUT), or `github`
        #[arg(long, value_name = "DEST")]
        publish: Option<String>,
    },
    /// Print the ledger's public key (hex), for offline verification
    #[command(after_help = "Example:\n  genesisctl ledger public-key > ledger.pub")]
    PublicKey,
}

#[derive(Debug, Subcommand)]
pub enum PlatformsCommand {
    /// For each platform: which source supplied its token (never the token), and whether the API accepts it
    #[command(
        after_help = "Example:\n  genesisctl platforms doctor\n  genesisctl platforms doctor --platforms render --output json"
    )]
    Doctor {
        /// The platforms to check [default: render,netlify,github]
        #[arg(long, value_name = "SPEC,...")]
        platforms: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Which emulators to start
    #[arg(long, default_value = "render,netlify,github", value_name = "NAME,...")]
    pub platforms: String,

    /// First port (render; netlify and github take the next two); 0 picks free ports
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Delay before every answer, e.g. 20ms
    #[arg(long, default_value = "0ms", value_name = "DURATION")]
    pub latency: String,

    /// Share of requests answered with an injected 503, 0 to 1
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub error_rate: f64,

    /// Requests per second before answering 429 with Retry-After, e.g. 50/s
    #[arg(long, value_name = "N/s")]
    pub rate_limit: Option<String>,

    /// Page size of list endpoints (exercise pagination with 2)
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,

    /// Fail every write after the first N
    #[arg(long, value_name = "N")]
    pub fail_after_writes: Option<u64>,

    /// Render services to hold besides srv-emulator
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub render_services: Vec<String>,

    /// Netlify sites to hold besides site-emulator
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub netlify_sites: Vec<String>,

    /// GitHub repositories to hold besides bridge/emulated
    #[arg(long, value_delimiter = ',', value_name = "OWNER/REPO,...")]
    pub github_repositories: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting, its value and where it came from (secrets redacted)
    #[command(
        after_help = "Example:\n  genesisctl config show\n  ENVSYNC_MODE=enforce genesisctl config show --output json"
    )]
    Show,
}

const SERVE_HELP: &str = "\
Every path but the two health checks and the dashboard needs `Authorization: Bearer TOKEN` \
with a token from `genesisctl token create`: observer reads, operator also dry-runs, applies \
and publishes, admiral may do everything, the vault included. GET /openapi.json describes \
every route. SIGINT or SIGTERM stops accepting and gives requests in flight, then the \
reactions and the scheduler, server.shutdown_timeout_secs (BRIDGE_SHUTDOWN_TIMEOUT_SECS, 10 s) \
to finish; every acknowledged event is in the ledger before it exits, and work left over is \
picked up on the next start. Reading (GET /parity, the dashboard) never triggers a heal: only \
drift found by `env verify`, the scheduler or a post-deploy check does, in ENVSYNC_MODE=enforce.

--sandbox starts emulated Render, Netlify and GitHub APIs in the same process, seeded with \
variables and some drift, in a fresh state directory, and prints an admiral token: the whole \
product with one command and no credentials. It holds one Render service, Netlify site and \
GitHub repository; --render-services, --netlify-sites and --github-repositories (as for \
`emulate`) add more, empty, each a further target labelled after its id (srv-stg: srv_stg), to \
try two environments.

Examples:
  genesisctl serve --sandbox
  genesisctl serve --sandbox --render-services srv-stg --github-repositories org/app
  genesisctl token create --role operator
  genesisctl serve --listen 0.0.0.0:8080 --log-format json
  curl -H \"Authorization: Bearer $TOKEN\" -X POST http://127.0.0.1:8080/envsync/dry-run/render";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: BRIDGE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Start emulated platforms in-process, seeded with variables and drift; no credentials needed
    #[arg(long)]
    pub sandbox: bool,

    /// With --sandbox: Render services to hold and target besides the seeded one
    #[arg(
        long,
        requires = "sandbox",
        value_delimiter = ',',
        value_name = "ID,..."
    )]
    pub render_services: Vec<String>,

    /// With --sandbox: Netlify sites to hold and target besides the seeded one
    #[arg(
        long,
        requires = "sandbox",
        value_delimiter = ',',
        value_name = "ID,..."
    )]
    pub netlify_sites: Vec<String>,

    /// With --sandbox: GitHub repositories to hold and target besides the seeded one
    #[arg(
        long,
        requires = "sandbox",
        value_delimiter = ',',
        value_name = "OWNER/REPO,..."
    )]
    pub github_repositories: Vec<String>,

    /// Log lines as text for people or JSON lines for collectors
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// Least severe level logged: debug, info (one line per request), warn, error, off
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it alone on stdout (only its hash is stored)
    #[command(
        after_help = "The token is shown once. A running server accepts it within a second (every server of a --store postgres://… store).\n\nExample:\n  TOKEN=$(genesisctl token create --role operator)"
    )]
    Create {
        /// admiral (everything, the vault included), operator (dry-run, apply, publish) or observer (read-only)
        #[arg(long, value_name = "ROLE")]
        role: String,
    },

    /// List tokens by id and role (never the tokens themselves)
    #[command(after_help = "Example:\n  genesisctl token list --output json")]
    List,

    /// Revoke a token by its id (as `token list` shows it)
    #[command(after_help = "Example:\n  genesisctl token revoke tok_1a2b3c4d")]
    Revoke {
        /// The token's id, `tok_` and 8 hex digits
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Publish a deploy event on deploy.<platform> and deploy.platform.<event-type>
    #[command(after_help = DEPLOY_PUBLISH_HELP)]
    Publish(DeployPublishArgs),
}

const DEPLOY_PUBLISH_HELP: &str = "\
Sends the event to a Bridge server (POST /engines/autonomy/deployment/event, operator role), \
or with --local stores it straight into this state directory's bus and ledger.

Examples:
  genesisctl deploy publish --platform render --event-type start --status building \\
      --branch main --commit-sha \"$GITHUB_SHA\" --server https://bridge.internal --token \"$BRIDGE_TOKEN\"
  genesisctl deploy publish --platform netlify --event-type failure --status failed --local";

#[derive(Debug, Args)]
pub struct DeployPublishArgs {
    /// github, netlify or render
    #[arg(long, value_name = "PLATFORM")]
    pub platform: String,

    /// start, success, failure or progress
    #[arg(long, value_name = "TYPE")]
    pub event_type: String,

    /// The platform's own word for it: building, live, failed, …
    #[arg(long, value_name = "STATUS")]
    pub status: String,

    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,

    #[arg(long, value_name = "SHA")]
    pub commit_sha: Option<String>,

    #[arg(long, value_name = "URL")]
    pub deploy_url: Option<String>,

    #[arg(long, value_name = "ID")]
    pub deploy_id: Option<String>,

    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,

    /// When it happened (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub timestamp: Option<String>,

    /// The Bridge server [env: BRIDGE_SERVER_URL] [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", conflicts_with = "local")]
    pub server: Option<String>,

    /// An operator token for the server [env: BRIDGE_TOKEN]
    #[arg(long, value_name = "TOKEN", conflicts_with = "local")]
    pub token: Option<String>,

    /// Store the event in the local state directory instead of sending it to a server
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Subcommand)]
pub enum AutosyncCommand {
    /// Show what `run` would carry from each source and why the rest is skipped; changes nothing
    #[command(after_help = PLAN_HELP)]
    Plan(AutosyncArgs),

    /// Carry the selected commits: cherry-pick, validate, then fast-forward or open a pull request
    #[command(after_help = RUN_HELP)]
    Run(AutosyncArgs),

    /// Show the state file: commits processed per source and the last run's outcome
    #[command(after_help = STATUS_HELP)]
    Status(AutosyncArgs),
}

const PLAN_HELP: &str = "The global --config FILE names the Auto-Sync configuration [default: autosync.toml].\n\n\
Exit codes: 0 planned; 2 configuration error; 3 a source could not be reached.\n\n\
Example:\n  genesisctl autosync plan --config autosync.toml\n  \
genesisctl autosync plan --output json | jq '.sources[].skipped[] | {sha, reason, path}'";

const RUN_HELP: &str = "The global --config FILE names the Auto-Sync configuration [default: autosync.toml].\n\n\
Exit codes: 0 merged or nothing new; 1 a pull request was opened, a branch waits for review, \
or a cherry-pick conflicted; 2 configuration error; 3 git, network or GitHub failure.\n\n\
Example:\n  SOURCE_PAT=... GITHUB_TOKEN=... genesisctl autosync run --config autosync.toml";

const STATUS_HELP: &str = "The global --config FILE names the Auto-Sync configuration [default: autosync.toml].\n\n\
Example:\n  genesisctl autosync status\n  genesisctl autosync status --output json | jq '.last_run'";

/// No options of its own yet: the configuration comes from the global `--config`.
#[derive(Debug, Args)]
pub struct AutosyncArgs {}
