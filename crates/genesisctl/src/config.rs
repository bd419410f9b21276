//! Configuration: defaults < `bridge.toml` < environment < flags, each value remembering
//! where it came from (for `genesisctl config show` and for error messages).
//!
//! Every setting is one row of [`SETTINGS`]: its dotted name in `bridge.toml`, the
//! environment variable that sets it (the seed's `ENVSYNC_*` names where they exist), its
//! kind and default. Parsing is strict: an unknown key in `bridge.toml`, an unknown `ENVSYNC_*`
//! variable or a bad value is an error that names it. [`Config`] is the typed result.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use bridge_core::schema::Schema;
use bridge_platforms::PlatformSpec;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Text,
    /// A path: text that must not be empty.
    Path,
    List,
    /// A list of variable names: each must be a valid `.env` key.
    Keys,
    /// A number in 0..=1.
    Share,
    Mode,
    Schedule,
    Spec,
    Specs,
    DiscoveryOrder,
    Listen,
    /// A span of time: `300`, `90s`, `5m`, `1h`, `250ms`.
    Duration,
    /// A whole number above 0.
    Count,
}

struct SettingDef {
    name: &'static str,
    env: Option<&'static str>,
    kind: Kind,
    default: &'static str,
    help: &'static str,
}

const fn def(
    name: &'static str,
    env: Option<&'static str>,
    kind: Kind,
    default: &'static str,
    help: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        env,
        kind,
        default,
        help,
    }
}

/// Every setting Bridge reads. `bridge.toml` may hold any of them (plus a `[schema]` table).
const SETTINGS: &[SettingDef] = &[
    def(
        "state_dir",
        Some("BRIDGE_STATE_DIR"),
        Kind::Path,
        ".bridge",
        "state directory (keys, store, journals)",
    ),
    def(
        "store",
        Some("BRIDGE_STORE"),
        Kind::Text,
        "",
        "event store URL (sqlite://PATH or postgres://…); empty = sqlite in the state dir",
    ),
    def(
        "lock_timeout",
        Some("BRIDGE_LOCK_TIMEOUT"),
        Kind::Duration,
        "5m",
        "how long an apply waits for another's lock on the same place before exit 3",
    ),
    def(
        "bus",
        Some("BRIDGE_BUS"),
        Kind::Text,
        "",
        "event bus URL (nats://…); empty = the store itself",
    ),
    def(
        "listen",
        Some("BRIDGE_LISTEN"),
        Kind::Listen,
        "127.0.0.1:8080",
        "address `genesisctl serve` listens on",
    ),
    def(
        "server.vault_keys",
        Some("BRIDGE_VAULT_KEYS"),
        Kind::Keys,
        "",
        "keys `GET /vault/secret` may hand out (admiral only); empty = none",
    ),
    def(
        "server.max_body_bytes",
        Some("BRIDGE_MAX_BODY_BYTES"),
        Kind::Count,
        "262144",
        "largest request body `genesisctl serve` accepts",
    ),
    def(
        "server.webhook_max_body_bytes",
        Some("BRIDGE_WEBHOOK_MAX_BODY_BYTES"),
        Kind::Count,
        "1048576",
        "largest deploy webhook body `genesisctl serve` accepts; a larger one is 413 and \
         a `webhook.rejected` event",
    ),
    def(
        "server.request_timeout_secs",
        Some("BRIDGE_REQUEST_TIMEOUT_SECS"),
        Kind::Count,
        "30",
        "seconds before `genesisctl serve` answers 503 (an apply still runs to its end)",
    ),
    def(
        "server.header_timeout_secs",
        Some("BRIDGE_HEADER_TIMEOUT_SECS"),
        Kind::Count,
        "10",
        "seconds a request's head may take to arrive (from the connection's start, or the \
         request's first byte); then the connection is closed",
    ),
    def(
        "server.idle_timeout_secs",
        Some("BRIDGE_IDLE_TIMEOUT_SECS"),
        Kind::Count,
        "60",
        "seconds a keep-alive connection may wait for its next request; a request in flight \
         (a live stream too) is never cut by it",
    ),
    def(
        "server.max_connections",
        Some("BRIDGE_MAX_CONNECTIONS"),
        Kind::Count,
        "4096",
        "connections `genesisctl serve` serves at once; one above it is answered 503 and \
         closed at once",
    ),
    def(
        "server.shutdown_timeout_secs",
        Some("BRIDGE_SHUTDOWN_TIMEOUT_SECS"),
        Kind::Count,
        "10",
        "seconds `genesisctl serve` gives requests in flight, then background work, to finish \
         on SIGTERM; what is left is picked up on the next start",
    ),
    def(
        "autonomy.drift_alert_threshold",
        Some("DRIFT_ALERT_THRESHOLD"),
        Kind::Count,
        "10",
        "more drifted keys than this on one provider: escalate instead of healing",
    ),
    def(
        "autonomy.drift_frequency_limit",
        Some("DRIFT_FREQUENCY_LIMIT"),
        Kind::Count,
        "3",
        "heals of one provider per hour before escalating instead",
    ),
    def(
        "sync.enabled",
        Some("ENVSYNC_ENABLED"),
        Kind::Bool,
        "true",
        "whether scheduled syncs run",
    ),
    def(
        "sync.mode",
        Some("ENVSYNC_MODE"),
        Kind::Mode,
        "dry-run",
        "scheduled sync mode: dry-run or enforce",
    ),
    def(
        "sync.schedule",
        Some("ENVSYNC_SCHEDULE"),
        Kind::Schedule,
        "@hourly",
        "@hourly, @daily or a cron expression",
    ),
    def(
        "sync.source",
        Some("ENVSYNC_SOURCE"),
        Kind::Spec,
        "local:.env",
        "the canonical source (default --from)",
    ),
    def(
        "sync.targets",
        Some("ENVSYNC_TARGETS"),
        Kind::Specs,
        "",
        "targets (default --target), comma-separated",
    ),
    def(
        "sync.include_prefixes",
        Some("ENVSYNC_INCLUDE_PREFIXES"),
        Kind::List,
        "",
        "only keys with these prefixes (empty = all)",
    ),
    def(
        "sync.exclude_prefixes",
        Some("ENVSYNC_EXCLUDE_PREFIXES"),
        Kind::List,
        "",
        "never keys with these prefixes (wins over include)",
    ),
    def(
        "sync.allow_deletions",
        Some("ENVSYNC_ALLOW_DELETIONS"),
        Kind::Bool,
        "false",
        "delete target keys the source lacks",
    ),
    def(
        "sync.max_delete_share",
        Some("ENVSYNC_MAX_DELETE_SHARE"),
        Kind::Share,
        "0.25",
        "largest share of a target's keys one sync may delete without --force",
    ),
    def(
        "sync.interpolate_env",
        Some("ENVSYNC_INTERPOLATE_ENV"),
        Kind::Bool,
        "false",
        "let .env files reference the process environment",
    ),
    def(
        "discovery.order",
        Some("ENVSYNC_DISCOVERY_ORDER"),
        Kind::DiscoveryOrder,
        "env,secret_files,vault,dashboard",
        "where platform tokens are looked for, in order",
    ),
    def(
        "discovery.secret_filenames",
        Some("ENVSYNC_SECRET_FILENAMES"),
        Kind::List,
        "",
        "token files looked for in /etc/secrets and ./secrets",
    ),
    def(
        "discovery.vault_token_keys",
        Some("ENVSYNC_VAULT_TOKEN_KEYS"),
        Kind::Keys,
        "",
        "keys asked of a Bridge server's vault",
    ),
    def(
        "discovery.dashboard_token_urls",
        Some("ENVSYNC_DASHBOARD_TOKEN_URLS"),
        Kind::List,
        "",
        "dashboard URLs that hand out tokens",
    ),
    def(
        "discovery.vault_url",
        Some("BRIDGE_VAULT_URL"),
        Kind::Text,
        "",
        "a Bridge server whose /vault/secret hands out tokens",
    ),
    def(
        "discovery.secret_dirs",
        Some("BRIDGE_SECRET_DIRS"),
        Kind::List,
        "/etc/secrets,./secrets",
        "directories searched for token files",
    ),
    def(
        "sync.ignore",
        Some("ENVSYNC_IGNORE"),
        Kind::Keys,
        "",
        "keys left out of every sync, diff and parity check",
    ),
    def(
        "sync.protect",
        Some("ENVSYNC_PROTECT"),
        Kind::Keys,
        "",
        "keys a sync never writes or deletes on any target",
    ),
    def(
        "secrets.words",
        Some("BRIDGE_SECRET_WORDS"),
        Kind::List,
        "",
        "extra name words that mark a key secret (TOKEN, PASSWORD… are built in)",
    ),
    def(
        "secrets.prefixes",
        Some("BRIDGE_SECRET_PREFIXES"),
        Kind::List,
        "",
        "key prefixes that mark a key secret",
    ),
    def(
        "secrets.public",
        Some("BRIDGE_PUBLIC_KEYS"),
        Kind::Keys,
        "",
        "keys never treated as secret",
    ),
    def(
        "ledger.witness",
        Some("BRIDGE_LEDGER_WITNESS"),
        Kind::Text,
        "",
        "where serve publishes each signed checkpoint: a file, an https:// URL (PUT), or github",
    ),
    def(
        "genesis.mode",
        Some("GENESIS_MODE"),
        Kind::Text,
        "enabled",
        "Genesis bus mode",
    ),
    def(
        "genesis.strict_policy",
        Some("GENESIS_STRICT_POLICY"),
        Kind::Bool,
        "false",
        "refuse events on unknown topics",
    ),
    def(
        "render.service_id",
        Some("RENDER_SERVICE_ID"),
        Kind::Text,
        "",
        "the Render service to sync",
    ),
    def(
        "render.api_url",
        Some("RENDER_API_URL"),
        Kind::Text,
        "https://api.render.com/v1",
        "Render API base URL",
    ),
    def(
        "netlify.site_id",
        Some("NETLIFY_SITE_ID"),
        Kind::Text,
        "",
        "the Netlify site to sync",
    ),
    def(
        "netlify.account_id",
        Some("NETLIFY_ACCOUNT_ID"),
        Kind::Text,
        "",
        "the Netlify account owning the site",
    ),
    def(
        "netlify.api_url",
        Some("NETLIFY_API_URL"),
        Kind::Text,
        "https://api.netlify.com/api/v1",
        "Netlify API base URL",
    ),
    def(
        "github.repository",
        Some("GITHUB_REPOSITORY"),
        Kind::Text,
        "",
        "owner/name of the GitHub repository",
    ),
    def(
        "github.api_url",
        Some("GITHUB_API_URL"),
        Kind::Text,
        "https://api.github.com",
        "GitHub API base URL",
    ),
];

/// `ENVSYNC_*` variables that are not settings but are read elsewhere.
const OTHER_ENVSYNC_VARS: &[&str] = &[];

/// Platform tokens: read from the environment only (never from `bridge.toml`), shown redacted.
pub const TOKEN_VARS: &[&str] = &[
    "RENDER_API_TOKEN",
    "NETLIFY_API_TOKEN",
    "NETLIFY_AUTH_TOKEN",
    "GITHUB_TOKEN",
    "BRIDGE_VAULT_TOKEN",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    DryRun,
    Enforce,
}

/// The typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// `--store`: empty means SQLite in the state directory.
    pub store_url: String,
    /// `--bus`: empty means the store itself.
    pub bus_url: String,
    /// `GENESIS_STRICT_POLICY`: refuse events on unknown topics.
    pub strict_policy: bool,
    /// `ledger.witness`: where `serve` publishes each signed checkpoint; empty for nowhere.
    pub ledger_witness: String,
    /// `--lock-timeout`: how long an apply waits for a place's lock.
    pub lock_timeout: std::time::Duration,
    pub server: ServerConfig,
    pub autonomy: AutonomyConfig,
    pub schedule: ScheduleConfig,
    pub sync: SyncConfig,
    pub secrets: SecretsConfig,
    pub remote: RemoteConfig,
    pub schema: Schema,
    /// Every setting as shown by `config show`.
    pub shown: Vec<ShownSetting>,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub source: PlatformSpec,
    pub targets: Vec<PlatformSpec>,
    pub include_prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
    pub allow_deletions: bool,
    pub max_delete_share: f64,
    pub interpolate_env: bool,
    pub protect: Vec<String>,
    pub ignore: Vec<String>,
}

/// `genesisctl serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub vault_keys: Vec<String>,
    pub max_body_bytes: usize,
    pub webhook_max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub shutdown_timeout_secs: u64,
}

/// The reactions' thresholds (`DRIFT_ALERT_THRESHOLD`, `DRIFT_FREQUENCY_LIMIT`).
#[derive(Debug, Clone)]
pub struct AutonomyConfig {
    pub drift_alert_threshold: u64,
    pub drift_frequency_limit: u64,
}

/// The scheduled sync (`ENVSYNC_ENABLED`, `ENVSYNC_MODE`, `ENVSYNC_SCHEDULE`).
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub enabled: bool,
    pub mode: SyncMode,
    pub schedule: String,
}

/// Where remote platforms are, and where their tokens may be found.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    pub render_api_url: String,
    pub render_service_id: String,
    pub netlify_api_url: String,
    pub netlify_site_id: String,
    pub netlify_account_id: String,
    pub github_api_url: String,
    pub github_repository: String,
    pub discovery_order: Vec<String>,
    pub secret_filenames: Vec<String>,
    pub secret_dirs: Vec<String>,
    pub vault_url: String,
    pub vault_token_keys: Vec<String>,
    pub dashboard_token_urls: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SecretsConfig {
    pub words: Vec<String>,
    pub prefixes: Vec<String>,
    pub public: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShownSetting {
    pub name: String,
    pub value: serde_json::Value,
    pub origin: String,
    pub env: Option<&'static str>,
    pub help: &'static str,
}

/// A value given on the command line.
pub struct FlagValue {
    pub setting: &'static str,
    pub flag: &'static str,
    pub value: String,
}

/// Where each layer comes from; tests substitute the environment.
pub struct Sources<'a> {
    pub config_file: Option<&'a Path>,
    /// Whether `config_file` was named explicitly (then it must exist).
    pub config_explicit: bool,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub env_names: Vec<String>,
    pub flags: Vec<FlagValue>,
}

/// A raw value and its origin, before typing.
#[derive(Clone)]
enum Raw {
    Text(String),
    Toml(toml::Value),
}

impl Config {
    pub fn load(sources: Sources<'_>) -> Result<Config> {
        let mut raw: BTreeMap<&'static str, (Raw, Origin)> = BTreeMap::new();
        for d in SETTINGS {
            raw.insert(d.name, (Raw::Text(d.default.into()), Origin::Default));
        }

        // bridge.toml
        let mut schema = Schema::default();
        let mut file_used = None;
        // Where each setting read from the file stands in it (line, column), for errors.
        let mut positions: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        if let Some(path) = sources.config_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes).map_err(|e| {
                        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                        let (line, column) = line_col(&String::from_utf8_lossy(valid), valid.len());
                        anyhow!("{}:{line}:{column}: not valid UTF-8", path.display())
                    })?;
                    schema = read_file(path, &text, &mut raw, &mut positions)?;
                    file_used = Some(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !sources.config_explicit => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }

        // Environment.
        for name in &sources.env_names {
            if name.starts_with("ENVSYNC_")
                && !SETTINGS.iter().any(|d| d.env == Some(name.as_str()))
                && !OTHER_ENVSYNC_VARS.contains(&name.as_str())
            {
                let known: Vec<_> = SETTINGS
                    .iter()
                    .filter_map(|d| d.env)
                    .filter(|e| e.starts_with("ENVSYNC_"))
                    .collect();
                match bridge_core::suggest::closest(name, known.iter().copied()) {
                    Some(close) => {
                        bail!("unknown environment variable {name}; did you mean {close}?")
                    }
                    None => bail!(
                        "unknown environment variable {name}; Bridge reads {}",
                        known.join(", ")
                    ),
                }
            }
        }
        for d in SETTINGS {
            if let Some(var) = d.env
                && let Some(value) = (sources.env)(var)
            {
                raw.insert(d.name, (Raw::Text(value), Origin::Env(var)));
            }
        }

        // Flags.
        for flag in sources.flags {
            let d = SETTINGS
                .iter()
                .find(|d| d.name == flag.setting)
                .ok_or_else(|| anyhow!("internal: flag {} maps to no setting", flag.flag))?;
            raw.insert(d.name, (Raw::Text(flag.value), Origin::Flag(flag.flag)));
        }

        let mut typed: BTreeMap<&'static str, (Typed, Origin)> = BTreeMap::new();
        for d in SETTINGS {
            let (value, origin) = raw
                .remove(d.name)
                .ok_or_else(|| anyhow!("internal: no value for {}", d.name))?;
            let parsed = parse_value(d, &value).map_err(|problem| {
                let at = match &origin {
                    Origin::Env(var) => format!("environment variable {var}"),
                    Origin::Flag(flag) => format!("flag {flag}"),
                    Origin::File(path) => match positions.get(d.name) {
                        Some((line, column)) => {
                            format!("{}:{line}:{column}: {}", path.display(), d.name)
                        }
                        None => format!("{}: {}", path.display(), d.name),
                    },
                    Origin::Default => format!("default of {}", d.name),
                };
                anyhow!("{at}: {problem}")
            })?;
            typed.insert(d.name, (parsed, origin));
        }
        Self::from_typed(typed, file_used, schema, sources.env)
    }

    fn from_typed(
        mut typed: BTreeMap<&'static str, (Typed, Origin)>,
        file: Option<PathBuf>,
        schema: Schema,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let mut shown: Vec<ShownSetting> = SETTINGS
            .iter()
            .filter_map(|d| {
                let (value, origin) = typed.get(d.name)?;
                // A URL (the store, the bus, the vault, the dashboards) may carry a
                // password: every text is shown without one.
                let redact = |v: serde_json::Value| match v {
                    serde_json::Value::String(text) => {
                        serde_json::Value::String(crate::store::redact_url(&text))
                    }
                    other => other,
                };
                let value = match value.to_json() {
                    serde_json::Value::Array(items) => {
                        serde_json::Value::Array(items.into_iter().map(redact).collect())
                    }
                    json => redact(json),
                };
                Some(ShownSetting {
                    name: d.name.into(),
                    value,
                    origin: origin.to_string(),
                    env: d.env,
                    help: d.help,
                })
            })
            .collect();
        for var in TOKEN_VARS {
            let set = env(var).is_some_and(|v| !v.is_empty());
            shown.push(ShownSetting {
                name: format!("token {var}"),
                value: serde_json::Value::String(
                    if set { "<redacted>" } else { "(not set)" }.into(),
                ),
                origin: if set {
                    format!("env {var}")
                } else {
                    "—".into()
                },
                env: Some(var),
                help: "platform API token (environment only, never stored)",
            });
        }

        let mut take = |name: &'static str| {
            typed
                .remove(name)
                .ok_or_else(|| anyhow!("internal: setting {name} missing"))
        };
        let state_dir = PathBuf::from(take("state_dir")?.0.text()?);
        let store_url = take("store")?.0.text()?;
        let bus_url = take("bus")?.0.text()?;
        let lock_timeout = take("lock_timeout")?.0.duration()?;
        let strict_policy = take("genesis.strict_policy")?.0.bool()?;
        let ledger_witness = take("ledger.witness")?.0.text()?;
        let server = ServerConfig {
            listen: take("listen")?.0.text()?,
            vault_keys: take("server.vault_keys")?.0.list()?,
            max_body_bytes: usize::try_from(take("server.max_body_bytes")?.0.count()?)
                .unwrap_or(usize::MAX),
            webhook_max_body_bytes: usize::try_from(
                take("server.webhook_max_body_bytes")?.0.count()?,
            )
            .unwrap_or(usize::MAX),
            request_timeout_secs: take("server.request_timeout_secs")?.0.count()?,
            header_timeout_secs: take("server.header_timeout_secs")?.0.count()?,
            idle_timeout_secs: take("server.idle_timeout_secs")?.0.count()?,
            max_connections: usize::try_from(take("server.max_connections")?.0.count()?)
                .unwrap_or(usize::MAX),
            shutdown_timeout_secs: take("server.shutdown_timeout_secs")?.0.count()?,
        };
        let autonomy = AutonomyConfig {
            drift_alert_threshold: take("autonomy.drift_alert_threshold")?.0.count()?,
            drift_frequency_limit: take("autonomy.drift_frequency_limit")?.0.count()?,
        };
        let schedule = ScheduleConfig {
            enabled: take("sync.enabled")?.0.bool()?,
            mode: match take("sync.mode")?.0 {
                Typed::Mode(mode) => mode,
                _ => bail!("internal: sync.mode is not a mode"),
            },
            schedule: take("sync.schedule")?.0.text()?,
        };
        let source = match take("sync.source")?.0 {
            Typed::Spec(spec) => spec,
            _ => bail!("internal: sync.source is not a spec"),
        };
        let targets = match take("sync.targets")?.0 {
            Typed::Specs(specs) => specs,
            _ => bail!("internal: sync.targets is not a spec list"),
        };
        let sync = SyncConfig {
            source,
            targets,
            include_prefixes: take("sync.include_prefixes")?.0.list()?,
            exclude_prefixes: take("sync.exclude_prefixes")?.0.list()?,
            allow_deletions: take("sync.allow_deletions")?.0.bool()?,
            max_delete_share: take("sync.max_delete_share")?.0.share()?,
            interpolate_env: take("sync.interpolate_env")?.0.bool()?,
            protect: take("sync.protect")?.0.list()?,
            ignore: take("sync.ignore")?.0.list()?,
        };
        let remote = RemoteConfig {
            render_api_url: take("render.api_url")?.0.text()?,
            render_service_id: take("render.service_id")?.0.text()?,
            netlify_api_url: take("netlify.api_url")?.0.text()?,
            netlify_site_id: take("netlify.site_id")?.0.text()?,
            netlify_account_id: take("netlify.account_id")?.0.text()?,
            github_api_url: take("github.api_url")?.0.text()?,
            github_repository: take("github.repository")?.0.text()?,
            discovery_order: take("discovery.order")?.0.list()?,
            secret_filenames: take("discovery.secret_filenames")?.0.list()?,
            secret_dirs: take("discovery.secret_dirs")?.0.list()?,
            vault_url: take("discovery.vault_url")?.0.text()?,
            vault_token_keys: take("discovery.vault_token_keys")?.0.list()?,
            dashboard_token_urls: take("discovery.dashboard_token_urls")?.0.list()?,
        };
        let secrets = SecretsConfig {
            words: take("secrets.words")?.0.list()?,
            prefixes: take("secrets.prefixes")?.0.list()?,
            public: take("secrets.public")?.0.list()?,
        };
        Ok(Config {
            file,
            state_dir,
            store_url,
            bus_url,
            strict_policy,
            ledger_witness,
            lock_timeout,
            server,
            autonomy,
            schedule,
            sync,
            secrets,
            remote,
            schema,
            shown,
        })
    }
}

/// 1-based line and column (in chars) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let head = &text[..offset];
    let line = 1 + head.matches('\n').count();
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    (line, 1 + head[line_start..].chars().count())
}

/// `path:line:column: message` for an error of the TOML parser or deserializer.
fn toml_error(path: &Path, text: &str, error: &toml::de::Error, what: &str) -> anyhow::Error {
    // Without a span (the parser gives one for every syntax error) the end of the file is
    // where the parser gave up.
    let offset = error.span().map_or(text.len(), |span| span.start);
    let (line, column) = line_col(text, offset);
    let message = error
        .message()
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    anyhow!("{}:{line}:{column}: {what}: {message}", path.display())
}

/// The names `bridge.toml` may hold: every setting, its sections, and `schema`.
fn known_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = SETTINGS.iter().map(|d| d.name).collect();
    for d in SETTINGS {
        if let Some((section, _)) = d.name.split_once('.')
            && !names.contains(&section)
        {
            names.push(section);
        }
    }
    names.push("schema");
    names
}

/// Reads `bridge.toml`'s settings into `raw` (and where each one stands into `positions`),
/// and returns its `[schema]`.
fn read_file(
    path: &Path,
    text: &str,
    raw: &mut BTreeMap<&'static str, (Raw, Origin)>,
    positions: &mut BTreeMap<&'static str, (usize, usize)>,
) -> Result<Schema> {
    // The spanned document says where each key and value is; the plain table is what the
    // values are read from.
    let document =
        toml::de::DeTable::parse(text).map_err(|e| toml_error(path, text, &e, "not valid TOML"))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| toml_error(path, text, &e, "not valid TOML"))?;
    // Dotted name -> byte offsets of its key and of its value.
    let mut spans: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (key, value) in document.get_ref() {
        let name = key.get_ref().to_string();
        if let toml::de::DeValue::Table(inner) = value.get_ref() {
            for (k, v) in inner {
                spans.insert(
                    format!("{name}.{}", k.get_ref()),
                    (k.span().start, v.span().start),
                );
            }
        }
        spans.insert(name, (key.span().start, value.span().start));
    }
    let at = |name: &str, value: bool| {
        let (key_at, value_at) = spans.get(name).copied().unwrap_or((0, 0));
        line_col(text, if value { value_at } else { key_at })
    };

    let mut schema = Schema::default();
    let mut flat: Vec<(String, toml::Value)> = Vec::new();
    for (key, value) in table {
        if key == "schema" {
            // Read from the text rather than the table, so that an error has its position.
            #[derive(serde::Deserialize)]
            struct SchemaOnly {
                #[serde(default)]
                schema: Schema,
            }
            schema = toml::from_str::<SchemaOnly>(text)
                .map_err(|e| {
                    if e.span().is_some() {
                        toml_error(path, text, &e, "[schema]")
                    } else {
                        let (line, column) = at("schema", false);
                        anyhow!(
                            "{}:{line}:{column}: [schema]: {}",
                            path.display(),
                            e.message().trim()
                        )
                    }
                })?
                .schema;
            continue;
        }
        match value {
            toml::Value::Table(inner)
                if SETTINGS
                    .iter()
                    .any(|d| d.name.starts_with(&format!("{key}."))) =>
            {
                for (k, v) in inner {
                    flat.push((format!("{key}.{k}"), v));
                }
            }
            other => flat.push((key, other)),
        }
    }
    for (name, value) in flat {
        let Some(d) = SETTINGS.iter().find(|d| d.name == name) else {
            let (line, column) = at(&name, false);
            let known = known_names();
            let hint = match bridge_core::suggest::closest(&name, known.iter().copied()) {
                Some(close) => format!("; did you mean `{close}`?"),
                None => format!(
                    "; the keys bridge.toml may hold are {} and the [schema] table",
                    SETTINGS
                        .iter()
                        .map(|d| format!("`{}`", d.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            bail!(
                "{}:{line}:{column}: unknown key `{name}`{hint}",
                path.display()
            );
        };
        positions.insert(d.name, at(&name, true));
        raw.insert(d.name, (Raw::Toml(value), Origin::File(path.to_path_buf())));
    }
    Ok(schema)
}

#[derive(Debug, Clone)]
enum Typed {
    Bool(bool),
    Text(String),
    List(Vec<String>),
    Share(f64),
    Mode(SyncMode),
    Spec(PlatformSpec),
    Specs(Vec<PlatformSpec>),
    Count(u64),
    Duration(std::time::Duration),
}

impl Typed {
    fn count(self) -> Result<u64> {
        match self {
            Typed::Count(n) => Ok(n),
            _ => bail!("internal: not a count"),
        }
    }

    fn duration(self) -> Result<std::time::Duration> {
        match self {
            Typed::Duration(d) => Ok(d),
            _ => bail!("internal: not a duration"),
        }
    }

    fn bool(self) -> Result<bool> {
        match self {
            Typed::Bool(b) => Ok(b),
            _ => bail!("internal: not a bool"),
        }
    }
    fn text(self) -> Result<String> {
        match self {
            Typed::Text(t) => Ok(t),
            _ => bail!("internal: not text"),
        }
    }
    fn list(self) -> Result<Vec<String>> {
        match self {
            Typed::List(l) => Ok(l),
            _ => bail!("internal: not a list"),
        }
    }
    fn share(self) -> Result<f64> {
        match self {
            Typed::Share(s) => Ok(s),
            _ => bail!("internal: not a share"),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Typed::Bool(b) => Value::Bool(*b),
            Typed::Text(t) => Value::String(t.clone()),
            Typed::List(l) => Value::from(l.clone()),
            Typed::Share(s) => Value::from(*s),
            Typed::Mode(SyncMode::DryRun) => Value::from("dry-run"),
            Typed::Mode(SyncMode::Enforce) => Value::from("enforce"),
            Typed::Spec(s) => Value::String(s.to_string()),
            Typed::Specs(s) => Value::from(s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            Typed::Count(n) => Value::from(*n),
            Typed::Duration(d) => Value::from(format!("{}s", d.as_secs_f64())),
        }
    }
}

/// Types one raw value; `Err` says what was expected (values are settings, never secrets).
fn parse_value(d: &SettingDef, raw: &Raw) -> Result<Typed, String> {
    let text = |expected: &str| -> Result<String, String> {
        match raw {
            Raw::Text(t) => Ok(t.trim().to_string()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.trim().to_string()),
            Raw::Toml(other) => Err(format!("expected {expected}, got a {}", other.type_str())),
        }
    };
    let list = || -> Result<Vec<String>, String> {
        let items = match raw {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(|s| s.trim().to_string()).ok_or_else(|| {
                        format!("expected a list of strings, found a {}", v.type_str())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => text("a list (array, or comma-separated string)")?
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        };
        Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
    };
    match d.kind {
        Kind::Bool => {
            // In bridge.toml a boolean is a TOML boolean: a string (`""`, `"false"`, a typo)
            // must never quietly turn a setting off.
            let value = match raw {
                Raw::Toml(toml::Value::Boolean(b)) => return Ok(Typed::Bool(*b)),
                Raw::Toml(toml::Value::String(_)) => {
                    return Err("expected true or false, got a string; write the boolean \
                                without quotes (`true` or `false`)"
                        .to_owned());
                }
                Raw::Toml(other) => {
                    return Err(format!(
                        "expected true or false, got a {}",
                        other.type_str()
                    ));
                }
                Raw::Text(t) => t.trim().to_ascii_lowercase(),
            };
            match value.as_str() {
                "true" | "1" | "yes" | "on" => Ok(Typed::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Typed::Bool(false)),
                "" => Err("expected true or false, got an empty value".to_owned()),
                _ => Err(format!("expected true or false, got `{value}`")),
            }
        }
        Kind::Text => Ok(Typed::Text(text("a string")?)),
        Kind::Path => {
            let t = text("a path")?;
            if t.is_empty() {
                Err("expected a path, got an empty string".to_owned())
            } else {
                Ok(Typed::Text(t))
            }
        }
        Kind::List => Ok(Typed::List(list()?)),
        Kind::Keys => {
            let keys = list()?;
            match keys.iter().find(|k| !bridge_core::dotenv::is_valid_key(k)) {
                Some(bad) => Err(format!(
                    "`{bad}` is not a variable name (a letter or `_`, then letters, digits, \
                     `_`, `.` or `-`)"
                )),
                None => Ok(Typed::List(keys)),
            }
        }
        Kind::Share => {
            let n = match raw {
                Raw::Toml(toml::Value::Float(f)) => *f,
                Raw::Toml(toml::Value::Integer(i)) => *i as f64,
                _ => {
                    let t = text("a number between 0 and 1")?;
                    t.parse::<f64>()
                        .map_err(|_| format!("expected a number between 0 and 1, got `{t}`"))?
                }
            };
            if (0.0..=1.0).contains(&n) {
                Ok(Typed::Share(n))
            } else {
                Err(format!("expected a number between 0 and 1, got {n}"))
            }
        }
        Kind::Mode => match text("dry-run or enforce")?.as_str() {
            "dry-run" | "dry_run" | "dryrun" => Ok(Typed::Mode(SyncMode::DryRun)),
            "enforce" => Ok(Typed::Mode(SyncMode::Enforce)),
            other => Err(format!("expected dry-run or enforce, got `{other}`")),
        },
        Kind::Schedule => {
            let t = text("@hourly, @daily or a cron expression")?;
            let fields = t.split_whitespace().count();
            let named = [
                "@hourly",
                "@daily",
                "@weekly",
                "@monthly",
                "@yearly",
                "@annually",
                "@midnight",
            ];
            if named.contains(&t.as_str()) || (5..=6).contains(&fields) {
                Ok(Typed::Text(t))
            } else {
                Err(format!(
                    "expected @hourly, @daily or a 5-field cron expression (\"0 * * * *\"), got `{t}`"
                ))
            }
        }
        Kind::Spec => {
            let t = text("a platform spec such as local:.env")?;
            t.parse::<PlatformSpec>()
                .map(Typed::Spec)
                .map_err(|e| e.to_string())
        }
        Kind::Specs => list()?
            .iter()
            .map(|s| s.parse::<PlatformSpec>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Typed::Specs),
        Kind::DiscoveryOrder => {
            let items = list()?;
            let known = ["env", "secret_files", "vault", "dashboard"];
            if let Some(bad) = items.iter().find(|i| !known.contains(&i.as_str())) {
                return Err(format!(
                    "unknown discovery source `{bad}`; expected some of {}",
                    known.join(", ")
                ));
            }
            Ok(Typed::List(items))
        }
        Kind::Count => {
            if let Raw::Toml(toml::Value::Integer(i)) = raw {
                return u64::try_from(*i)
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Typed::Count)
                    .ok_or_else(|| format!("expected a whole number above 0, got {i}"));
            }
            let t = text("a whole number")?;
            t.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Typed::Count)
                .ok_or_else(|| format!("expected a whole number above 0, got `{t}`"))
        }
        Kind::Duration => {
            if let Raw::Toml(toml::Value::Integer(i)) = raw {
                return u64::try_from(*i)
                    .map(|s| Typed::Duration(std::time::Duration::from_secs(s)))
                    .map_err(|_| format!("expected a duration, got {i}"));
            }
            let t = text("a duration such as 5m")?;
            parse_duration(&t).map(Typed::Duration).ok_or_else(|| {
                format!("expected a duration such as 300, 90s, 5m, 1h or 250ms, got `{t}`")
            })
        }
        Kind::Listen => {
            let t = text("host:port")?;
            t.parse::<std::net::SocketAddr>()
                .map(|_| Typed::Text(t.clone()))
                .map_err(|_| format!("expected host:port such as 127.0.0.1:8080, got `{t}`"))
        }
    }
}

/// `300` (seconds), `90s`, `5m`, `1h`, `250ms`.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "" | "s" => n.checked_mul(1_000)?,
        "ms" => n,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_units_people_write() {
        let d = |t| parse_duration(t);
        assert_eq!(d("300"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(d("90s"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(d("5m"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(d("1h"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(d("250ms"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(d(" 0s "), Some(std::time::Duration::ZERO));
        for bad in ["", "m", "5 minutes", "-1s", "1.5m", "99999999999999999999h"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: Vec<FlagValue>) -> Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bridge.toml");
        if let Some(text) = file {
            std::fs::write(&path, text)?;
        }
        let env_map: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env_map.get(name).cloned();
        Config::load(Sources {
            config_file: Some(&path),
            config_explicit: false,
            env: &lookup,
            env_names: env_map.keys().cloned().collect(),
            flags,
        })
    }

    fn shown<'a>(c: &'a Config, name: &str) -> &'a ShownSetting {
        c.shown
            .iter()
            .find(|s| s.name == name)
            .expect("setting shown")
    }

    #[test]
    fn precedence_is_flags_env_file_default() -> Result<()> {
        let file = "[sync]\nmode = \"enforce\"\nallow_deletions = true\nmax_delete_share = 0.5\n";
        let c = load(Some(file), &[], vec![])?;
        assert_eq!(shown(&c, "sync.mode").value, "enforce");
        assert!(c.sync.allow_deletions);
        assert!(shown(&c, "sync.mode").origin.ends_with("bridge.toml"));
        assert_eq!(shown(&c, "sync.schedule").origin, "default");

        let c = load(Some(file), &[("ENVSYNC_MODE", "dry-run")], vec![])?;
        assert_eq!(shown(&c, "sync.mode").value, "dry-run");
        assert_eq!(shown(&c, "sync.mode").origin, "env ENVSYNC_MODE");

        let flag = FlagValue {
            setting: "sync.allow_deletions",
            flag: "--allow-deletions",
            value: "false".into(),
        };
        let c = load(
            Some(file),
            &[("ENVSYNC_ALLOW_DELETIONS", "true")],
            vec![flag],
        )?;
        assert!(!c.sync.allow_deletions);
        assert_eq!(
            shown(&c, "sync.allow_deletions").origin,
            "flag --allow-deletions"
        );
        Ok(())
    }

    #[test]
    fn lists_and_specs_parse_from_env_and_file() -> Result<()> {
        let c = load(
            Some(
                "[sync]\ninclude_prefixes = [\"APP_\", \"DB_\"]\ntargets = [\"local:prod.env\"]\n",
            ),
            &[("ENVSYNC_EXCLUDE_PREFIXES", "APP_INTERNAL_, ,X_")],
            vec![],
        )?;
        assert_eq!(c.sync.include_prefixes, ["APP_", "DB_"]);
        assert_eq!(c.sync.exclude_prefixes, ["APP_INTERNAL_", "X_"]);
        assert_eq!(c.sync.targets[0].to_string(), "local:prod.env");
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_name_themselves() {
        let err = |file: Option<&str>, env: &[(&str, &str)]| {
            format!("{:#}", load(file, env, vec![]).expect_err("must fail"))
        };
        assert!(err(Some("[sync]\nmdoe = \"x\"\n"), &[]).contains("unknown key `sync.mdoe`"));
        assert!(err(Some("colour = 1\n"), &[]).contains("unknown key `colour`"));
        assert!(
            err(Some("[sync]\nmode = \"apply\"\n"), &[])
                .contains("sync.mode: expected dry-run or enforce")
        );
        assert!(
            err(None, &[("ENVSYNC_MODE", "apply")])
                .contains("ENVSYNC_MODE: expected dry-run or enforce")
        );
        assert!(err(None, &[("ENVSYNC_MAX_DELETE_SHARE", "2")]).contains("between 0 and 1"));
        assert!(err(None, &[("ENVSYNC_TARGETS", "heroku")]).contains("unknown platform `heroku`"));
        assert!(
            err(None, &[("ENVSYNC_TARGTES", "x")])
                .contains("unknown environment variable ENVSYNC_TARGTES")
        );
        assert!(
            err(None, &[("ENVSYNC_DISCOVERY_ORDER", "env,ldap")])
                .contains("unknown discovery source `ldap`")
        );
        assert!(err(Some("[sync\n"), &[]).contains("not valid TOML"));
        assert!(err(Some("[schema]\nmin_key = 1\n"), &[]).contains("[schema]"));
        assert!(
            err(Some("[sync]\nallow_deletions = \"perhaps\"\n"), &[])
                .contains("expected true or false")
        );
    }

    fn load_err(file: &str, env: &[(&str, &str)]) -> String {
        match load(Some(file), env, vec![]) {
            Ok(_) => panic!("{file:?} loaded"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn syntax_errors_name_their_line_and_column() {
        for (file, at) in [
            ("[sync\n", "bridge.toml:1:6: not valid TOML"),
            (
                "state_dir = \"x\"\n[sync]\nmode = \n",
                "bridge.toml:3:8: not valid TOML",
            ),
            ("[sync]\nmode = \"dry-run\nlisten = 1\n", "bridge.toml:2:"),
            ("[sync]\n[sync]\n", "bridge.toml:2:"),
            ("a = [1,\n", "bridge.toml:"),
            ("x = 1 2\n", "bridge.toml:1:"),
        ] {
            let err = load_err(file, &[]);
            assert!(err.contains(at), "{file:?}: {err}");
        }
    }

    #[test]
    fn a_boolean_given_as_a_string_is_refused() {
        for (file, at) in [
            ("[sync]\nenabled = \"\"\n", "bridge.toml:2:11: sync.enabled"),
            (
                "[sync]\nallow_deletions = \"\"\n",
                "bridge.toml:2:19: sync.allow_deletions",
            ),
            ("[sync]\nallow_deletions = \"false\"\n", "bridge.toml:2:19"),
            (
                "sync.interpolate_env = \"true\"\n",
                "bridge.toml:1:24: sync.interpolate_env",
            ),
            (
                "[genesis]\nstrict_policy = 0\n",
                "bridge.toml:2:17: genesis.strict_policy",
            ),
        ] {
            let err = load_err(file, &[]);
            assert!(err.contains(at), "{file:?}: {err}");
            assert!(err.contains("expected true or false"), "{err}");
        }
        let err = load_err("", &[("ENVSYNC_ENABLED", "")]);
        assert!(
            err.contains("ENVSYNC_ENABLED: expected true or false, got an empty value"),
            "{err}"
        );
    }

    #[test]
    fn protect_and_other_key_lists_take_only_variable_names() {
        let err = load_err("[sync]\nprotect = [\"OK\", \"bad key!\"]\n", &[]);
        assert!(
            err.contains("bridge.toml:2:11: sync.protect: `bad key!` is not a variable name"),
            "{err}"
        );
        for (file, at) in [
            ("[sync]\nignore = [\"1X\"]\n", "sync.ignore"),
            ("[secrets]\npublic = [\"A B\"]\n", "secrets.public"),
            ("[server]\nvault_keys = [\"$X\"]\n", "server.vault_keys"),
        ] {
            let err = load_err(file, &[]);
            assert!(
                err.contains(at) && err.contains("not a variable name"),
                "{err}"
            );
        }
        let err = load_err("", &[("ENVSYNC_PROTECT", "GOOD,no good")]);
        assert!(err.contains("ENVSYNC_PROTECT: `no good`"), "{err}");
        let c = load(
            Some("[sync]\nprotect = [\"DATABASE_URL\", \"a.b-c\"]\n"),
            &[],
            vec![],
        )
        .expect("valid names load");
        assert_eq!(c.sync.protect, ["DATABASE_URL", "a.b-c"]);
    }

    #[test]
    fn an_empty_state_dir_is_refused() {
        let err = load_err("state_dir = \"\"\n", &[]);
        assert!(
            err.contains("bridge.toml:1:13: state_dir: expected a path, got an empty string"),
            "{err}"
        );
        let err = load_err("", &[("BRIDGE_STATE_DIR", " ")]);
        assert!(err.contains("BRIDGE_STATE_DIR: expected a path"), "{err}");
    }

    #[test]
    fn unknown_keys_suggest_the_close_name_or_list_every_name() {
        let err = load_err("[sync]\nmdoe = \"x\"\n", &[]);
        assert!(
            err.contains("bridge.toml:2:1: unknown key `sync.mdoe`; did you mean `sync.mode`?"),
            "{err}"
        );
        let err = load_err("[snyc]\nmode = \"enforce\"\n", &[]);
        assert!(
            err.contains("bridge.toml:1:2: unknown key `snyc`; did you mean `sync`?"),
            "{err}"
        );
        let err = load_err("\nstate_dri = \"x\"\n", &[]);
        assert!(
            err.contains("bridge.toml:2:1: unknown key `state_dri`; did you mean `state_dir`?")
        );
        let err = load_err("colour = 1\n", &[]);
        assert!(
            err.contains("bridge.toml:1:1: unknown key `colour`"),
            "{err}"
        );
        for d in SETTINGS {
            assert!(
                err.contains(&format!("`{}`", d.name)),
                "{} not listed: {err}",
                d.name
            );
        }
        assert!(err.contains("[schema]"), "{err}");
        let err = load_err("", &[("ENVSYNC_TARGTES", "x")]);
        assert!(err.contains("did you mean ENVSYNC_TARGETS?"), "{err}");
    }

    #[test]
    fn value_errors_name_the_key_line_and_column() {
        let err = load_err("\n[sync]\n  mode = \"apply\"\n", &[]);
        assert!(
            err.contains("bridge.toml:3:10: sync.mode: expected dry-run or enforce"),
            "{err}"
        );
        let err = load_err("[sync]\ntargets = [\"rendr:svc\"]\n", &[]);
        assert!(err.contains("bridge.toml:2:11: sync.targets"), "{err}");
        assert!(err.contains("did you mean `render`?"), "{err}");
        let err = load_err("[schema]\nmin_key = 1\n", &[]);
        assert!(err.contains("bridge.toml:2:1: [schema]"), "{err}");
    }

    /// A tiny deterministic generator, so the fuzz test needs no dependency and a failure
    /// reproduces from its printed case number.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const FUZZ_BASE: &str = "state_dir = \".bridge\"\nlock_timeout = \"5m\"\nlisten = \"127.0.0.1:8080\"\n\n\
        [sync]\nenabled = true\nmode = \"dry-run\"\nschedule = \"@hourly\"\nsource = \"local:.env\"\n\
        targets = [\"local:prod.env\", \"render:service=srv\"]\nallow_deletions = false\n\
        max_delete_share = 0.25\nprotect = [\"DATABASE_URL\"]\ninclude_prefixes = [\"APP_\"]\n\n\
        [server]\nmax_body_bytes = 262144\nvault_keys = [\"RENDER_API_TOKEN\"]\n\n\
        [discovery]\norder = [\"env\", \"vault\"]\n\n[schema]\nmin_keys = 1\n\
        [schema.keys.PORT]\nformat = \"port\"\nrequired = true\n";

    /// `base` with a few random edits: characters deleted, inserted or replaced, lines
    /// dropped or doubled.
    fn mangle(rng: &mut Xorshift, base: &str) -> String {
        const ALPHABET: &[char] = &[
            '[', ']', '{', '}', '"', '\'', '=', '.', ',', '#', '\n', ' ', '\\', 'a', 'Z', '_', '1',
            '-', ':', 't', 'é', '\t', '\r',
        ];
        let mut chars: Vec<char> = base.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(chars.len() + 1);
            let c = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(5) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = c,
                2 | 3 => chars.insert(at, c),
                _ => {
                    let text: String = chars.iter().collect();
                    let mut lines: Vec<&str> = text.split('\n').collect();
                    let i = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        lines.remove(i);
                    } else {
                        let line = lines[i];
                        lines.insert(i, line);
                    }
                    chars = lines.join("\n").chars().collect();
                }
            }
        }
        chars.into_iter().collect()
    }

    /// Whether `message` holds `bridge.toml:LINE:COLUMN:`.
    fn has_position(message: &str) -> bool {
        message.match_indices("bridge.toml:").any(|(i, m)| {
            let mut parts = message[i + m.len()..].splitn(3, ':');
            let number = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            };
            number(parts.next()) && number(parts.next()) && parts.next().is_some()
        })
    }

    #[test]
    fn mangled_files_are_loaded_or_refused_at_a_line_and_column() {
        assert!(
            load(Some(FUZZ_BASE), &[], vec![]).is_ok(),
            "the base file loads"
        );
        let cases: usize = std::env::var("BRIDGE_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000);
        let (mut valid, mut refused, mut panics, mut unplaced) = (0, 0, 0, Vec::new());
        for case in 0..cases {
            let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (case as u64 + 1));
            let text = mangle(&mut rng, FUZZ_BASE);
            let outcome = std::panic::catch_unwind(|| load(Some(&text), &[], vec![]));
            match outcome {
                Err(_) => panics += 1,
                Ok(Ok(_)) => valid += 1,
                Ok(Err(e)) => {
                    refused += 1;
                    let message = format!("{e:#}");
                    if !has_position(&message) {
                        unplaced.push((case, text, message));
                    }
                }
            }
        }
        eprintln!(
            "bridge.toml fuzz: {cases} cases, {valid} valid, {refused} refused, {panics} panics, \
             {} refused without a line and column",
            unplaced.len()
        );
        assert_eq!(panics, 0);
        assert!(
            unplaced.is_empty(),
            "no line and column: {:?}",
            &unplaced[..unplaced.len().min(5)]
        );
    }

    #[test]
    fn tokens_are_shown_redacted() -> Result<()> {
        let c = load(None, &[("GITHUB_TOKEN", "ghp_supersecret")], vec![])?;
        let token = shown(&c, "token GITHUB_TOKEN");
        assert_eq!(token.value, "<redacted>");
        let all = serde_json::to_string(&c.shown)?;
        assert!(!all.contains("supersecret"));
        Ok(())
    }

    /// docs/configuration.md is where users look; it must list every setting.
    #[test]
    fn every_setting_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for d in SETTINGS {
            assert!(
                doc.contains(&format!("`{}`", d.name)),
                "{} undocumented",
                d.name
            );
            if let Some(env) = d.env {
                assert!(doc.contains(&format!("`{env}`")), "{env} undocumented");
            }
        }
    }

    #[test]
    fn schema_table_is_read() -> Result<()> {
        let c = load(
            Some(
                "[schema]\nmin_keys = 2\n[schema.keys.PORT]\nformat = \"port\"\nrequired = true\n",
            ),
            &[],
            vec![],
        )?;
        assert_eq!(c.schema.min_keys, Some(2));
        assert!(c.schema.keys["PORT"].required);
        Ok(())
    }
}
