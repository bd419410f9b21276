//! [`Context`]: what every command needs — the shell, the merged configuration, the state
//! directory — and the conversions from configuration to domain types and open platforms.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use bridge_core::filter::KeyFilter;
use bridge_core::{FingerprintKey, SecretClassifier};
use bridge_operations::{BoxFuture, Host, Operations, OpsError, Scope, Settings};
use bridge_platforms::process::Output;
use bridge_platforms::spec::assign_labels;
use bridge_platforms::{OpenContext, PlatformKind, PlatformSpec, RemoteSettings};
use bridge_sync::Target;
use bridge_sync::store::StateStore;

use crate::cli::{GlobalArgs, ScopeArgs};
use crate::config::{Config, FlagValue, Sources};
use crate::discovery::{Discovery, discover};
use crate::exit::Failure;
use crate::shell::Shell;
use crate::state::{Created, StateDir};

pub struct Context<'a> {
    pub shell: &'a Shell,
    pub config: Config,
    pub state: StateDir,
    /// The bus, opened on first use and shared after: in `serve`, live subscribers only see
    /// events published through the same store handle.
    pub bus: tokio::sync::OnceCell<bridge_genesis::bus::Bus>,
    /// Tokens given directly (the sandbox's emulators); discovery runs for the others.
    pub given_tokens: Vec<(PlatformKind, String)>,
    /// The state store, opened on first use and shared after (one pool of connections for
    /// a PostgreSQL store).
    state_store: tokio::sync::OnceCell<StateStore>,
    locks: tokio::sync::OnceCell<Arc<dyn bridge_operations::LockService>>,
    /// Connections each PostgreSQL store may open: a command's queries are short and one at
    /// a time, so opening a second costs more than waiting; a server serves many at once.
    connections: usize,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl<'a> Context<'a> {
    pub fn load(shell: &'a Shell, global: &GlobalArgs, mut flags: Vec<FlagValue>) -> Result<Self> {
        let env_names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        let (config_file, config_explicit) = match (&global.config, env("BRIDGE_CONFIG")) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) if !path.is_empty() => (PathBuf::from(path), true),
            _ => (PathBuf::from("bridge.toml"), false),
        };
        for (value, setting, flag) in [
            (
                global.state_dir.as_ref().map(|d| d.display().to_string()),
                "state_dir",
                "--state-dir",
            ),
            (global.store.clone(), "store", "--store"),
            (global.bus.clone(), "bus", "--bus"),
            (
                global.lock_timeout.clone(),
                "lock_timeout",
                "--lock-timeout",
            ),
        ] {
            if let Some(value) = value {
                flags.push(FlagValue {
                    setting,
                    flag,
                    value,
                });
            }
        }
        let config = Config::load(Sources {
            config_file: Some(&config_file),
            config_explicit,
            env: &env,
            env_names,
            flags,
        })?;
        let state = StateDir::new(config.state_dir.clone())
            .with_env_keys(&env)?
            .reporting_to(shell);
        Ok(Self::new(shell, config, state, Vec::new()))
    }

    /// A context on configuration made already (the server's, the sandbox's).
    pub fn new(
        shell: &'a Shell,
        config: Config,
        state: StateDir,
        given_tokens: Vec<(PlatformKind, String)>,
    ) -> Self {
        Self {
            shell,
            config,
            state,
            bus: tokio::sync::OnceCell::new(),
            given_tokens,
            state_store: tokio::sync::OnceCell::new(),
            locks: tokio::sync::OnceCell::new(),
            connections: 1,
        }
    }

    /// The context of a server: more connections to a PostgreSQL store.
    pub fn serving(mut self) -> Self {
        self.connections = 8;
        self
    }

    pub fn classifier(&self) -> SecretClassifier {
        let s = &self.config.secrets;
        SecretClassifier::new(s.words.clone(), s.prefixes.clone(), s.public.clone())
    }

    pub fn filter(&self) -> KeyFilter {
        KeyFilter::new(
            self.config.sync.include_prefixes.clone(),
            self.config.sync.exclude_prefixes.clone(),
        )
        .ignoring(self.config.sync.ignore.clone())
    }

    /// The fingerprint key, created on first use. A state directory that cannot hold one is
    /// an error: a key for one run would judge every write-only value as changed.
    pub fn fingerprint_key(&self) -> Result<FingerprintKey> {
        let (key, created) = self.state.key().with_context(|| {
            format!(
                "the state directory {} cannot be used; choose a writable --state-dir, or give \
                 BRIDGE_FINGERPRINT_KEY",
                self.state.path().display()
            )
        })?;
        if created == Created::Now {
            self.shell.status(
                "Created",
                format!(
                    "fingerprint key in {} (run `genesisctl init` to choose where)",
                    self.state.path().display()
                ),
            );
        }
        Ok(key)
    }

    /// Settings and tokens for the remote platforms among `kinds`; the token discovery
    /// chain runs only for those.
    pub async fn open_context(&self, kinds: &[PlatformKind]) -> OpenContext {
        let r = &self.config.remote;
        let id = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let mut ctx = OpenContext {
            interpolate_env: self.config.sync.interpolate_env,
            // Only an applied sync to a `process` target writes here, and JSON mode refuses
            // such targets, so stdout carries either JSON or export lines, never both.
            process_output: Some(Output::new(self.shell.stdout())),
            render: RemoteSettings {
                api_url: r.render_api_url.clone(),
                target_id: id(&r.render_service_id),
                ..RemoteSettings::default()
            },
            netlify: RemoteSettings {
                api_url: r.netlify_api_url.clone(),
                target_id: id(&r.netlify_site_id),
                account_id: id(&r.netlify_account_id),
                ..RemoteSettings::default()
            },
            github: RemoteSettings {
                api_url: r.github_api_url.clone(),
                target_id: id(&r.github_repository),
                ..RemoteSettings::default()
            },
            classifier: Some(Arc::new(self.classifier())),
        };
        for kind in [
            PlatformKind::Render,
            PlatformKind::Netlify,
            PlatformKind::Github,
        ] {
            if !kinds.contains(&kind) {
                continue;
            }
            let given = self.given_tokens.iter().find(|(k, _)| *k == kind);
            let token = match given {
                Some((_, token)) => Some(bridge_core::SecretValue::new(token.clone())),
                None => self.discover(kind).await.found.map(|d| d.token),
            };
            match kind {
                PlatformKind::Render => ctx.render.token = token,
                PlatformKind::Netlify => ctx.netlify.token = token,
                PlatformKind::Github => ctx.github.token = token,
                _ => {}
            }
        }
        ctx
    }

    pub async fn discover(&self, kind: PlatformKind) -> Discovery {
        discover(kind, &self.config.remote, &env).await
    }

    /// What `--store` names.
    pub fn store_url(&self) -> Result<crate::store::StoreUrl> {
        crate::store::StoreUrl::parse(&self.config.store_url)
    }

    /// The state store of this command (or server), opened once; `create: false` opens
    /// none that does not exist yet.
    pub async fn open_state_store(&self, create: bool) -> Result<Option<StateStore>> {
        if let Some(store) = self.state_store.get() {
            return Ok(Some(store.clone()));
        }
        let url = self.store_url()?;
        let opened = crate::store::open_state(&url, &self.state, create, self.connections);
        let Some(store) = opened.await? else {
            return Ok(None);
        };
        Ok(Some(
            self.state_store
                .get_or_init(|| async { store })
                .await
                .clone(),
        ))
    }

    /// The Truth ledger of the store this command uses.
    pub fn ledger_access(&self) -> Result<bridge_genesis::ledger::LedgerAccess> {
        crate::store::ledger_access(&self.store_url()?, &self.state)
    }

    /// The bus of this command (or server), opened once.
    pub async fn open_bus(&self) -> Result<bridge_genesis::bus::Bus> {
        self.bus
            .get_or_try_init(|| {
                crate::genesis::connect_bus(&self.config, &self.state, self.connections.max(2))
            })
            .await
            .cloned()
    }

    /// Opens every spec, labelled for reports.
    pub async fn places(&self, specs: &[PlatformSpec]) -> Result<Vec<Target>, OpsError> {
        let labels = assign_labels(specs).map_err(|e| OpsError::Input(e.to_string()))?;
        let kinds: Vec<PlatformKind> = specs.iter().map(|s| s.kind).collect();
        let open = self.open_context(&kinds).await;
        specs
            .iter()
            .zip(labels)
            .map(|(spec, label)| {
                let platform = bridge_platforms::open(spec, &open)
                    .map_err(|e| OpsError::platform(e, format!("opening {spec}")))?;
                Ok(Target { label, platform })
            })
            .collect()
    }

    pub async fn place(&self, spec: &PlatformSpec) -> Result<Target, Failure> {
        let mut places = self.places(std::slice::from_ref(spec)).await?;
        places
            .pop()
            .ok_or_else(|| Failure::from(anyhow!("internal: no place opened for {spec}")))
    }

    /// The operations of this command (or server), on this context.
    pub fn operations(&self) -> Result<Operations<'_>, Failure> {
        let cfg = &self.config.sync;
        let settings = Settings {
            source: cfg.source.clone(),
            targets: cfg.targets.clone(),
            scope: Scope {
                include_prefixes: cfg.include_prefixes.clone(),
                exclude_prefixes: cfg.exclude_prefixes.clone(),
                allow_deletions: cfg.allow_deletions,
                unknown: bridge_operations::UnknownPolicy::default(),
            },
            ignore: cfg.ignore.clone(),
            protect: cfg.protect.clone(),
            max_delete_share: cfg.max_delete_share,
            schema: self.config.schema.clone(),
            lock_timeout: self.config.lock_timeout,
        };
        Ok(Operations::new(self, settings)?)
    }

    /// `--from`, else `sync.source`.
    pub fn source_spec(&self, flag: Option<&str>) -> Result<PlatformSpec> {
        match flag {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow!("--from: {e}"))
                .context("choosing the source"),
            None => Ok(self.config.sync.source.clone()),
        }
    }

    /// `--target`, else `sync.targets`; at least one.
    pub fn target_specs(&self, flag: Option<&str>) -> Result<Vec<PlatformSpec>> {
        let specs = match flag {
            Some(text) => PlatformSpec::parse_list(text).map_err(|e| anyhow!("--target: {e}"))?,
            None => self.config.sync.targets.clone(),
        };
        if specs.is_empty() {
            return Err(anyhow!(
                "no target: pass --target (e.g. --target local:.env.production) or set \
                 sync.targets in bridge.toml or ENVSYNC_TARGETS"
            ));
        }
        Ok(specs)
    }
}

/// The flags of [`ScopeArgs`] as configuration overrides.
pub fn scope_flags(scope: &ScopeArgs) -> Vec<FlagValue> {
    let mut flags = Vec::new();
    if let Some(p) = &scope.include_prefixes {
        flags.push(FlagValue {
            setting: "sync.include_prefixes",
            flag: "--include-prefixes",
            value: p.clone(),
        });
    }
    if let Some(p) = &scope.exclude_prefixes {
        flags.push(FlagValue {
            setting: "sync.exclude_prefixes",
            flag: "--exclude-prefixes",
            value: p.clone(),
        });
    }
    if scope.interpolate_env {
        flags.push(interpolate_flag());
    }
    flags
}

pub fn interpolate_flag() -> FlagValue {
    FlagValue {
        setting: "sync.interpolate_env",
        flag: "--interpolate-env",
        value: "true".into(),
    }
}

pub use bridge_sync::now_rfc3339;

fn state_error(e: anyhow::Error) -> OpsError {
    // A key that does not match the records is the caller's to fix (exit 2), not a fault.
    let mismatch = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<bridge_sync::store::StoreError>(),
            Some(
                bridge_sync::store::StoreError::FingerprintKeyMismatch { .. }
                    | bridge_sync::store::StoreError::StateKeyMismatch { .. }
                    | bridge_sync::store::StoreError::SchemaTooNew { .. }
            )
        )
    });
    if mismatch {
        OpsError::Input(format!("{e:#}"))
    } else {
        OpsError::State(format!("{e:#}"))
    }
}

impl Host for Context<'_> {
    fn open<'a>(
        &'a self,
        specs: &'a [PlatformSpec],
    ) -> BoxFuture<'a, Result<Vec<Target>, OpsError>> {
        Box::pin(self.places(specs))
    }

    fn fingerprint_key(&self) -> Result<FingerprintKey, OpsError> {
        Context::fingerprint_key(self).map_err(|e| OpsError::Input(format!("{e:#}")))
    }

    fn existing_fingerprint_key(&self) -> Option<FingerprintKey> {
        self.state.load_key().ok().flatten()
    }

    fn state_store(&self, create: bool) -> BoxFuture<'_, Result<Option<StateStore>, OpsError>> {
        Box::pin(async move {
            // A malformed URL is the caller's to fix (exit 2); an unreachable store is not.
            self.store_url()
                .map_err(|e| OpsError::Input(format!("{e:#}")))?;
            self.open_state_store(create).await.map_err(state_error)
        })
    }

    fn bus(&self) -> BoxFuture<'_, Result<bridge_genesis::bus::Bus, OpsError>> {
        Box::pin(async move {
            crate::genesis::check_bus_urls(&self.config)
                .map_err(|e| OpsError::Input(format!("{e:#}")))?;
            self.open_bus().await.map_err(state_error)
        })
    }

    fn classifier(&self) -> SecretClassifier {
        Context::classifier(self)
    }

    fn locks(&self) -> BoxFuture<'_, Result<Arc<dyn bridge_operations::LockService>, OpsError>> {
        Box::pin(async move {
            let url = self
                .store_url()
                .map_err(|e| OpsError::Input(format!("{e:#}")))?;
            self.locks
                .get_or_try_init(|| crate::store::open_locks(&url, &self.state))
                .await
                .cloned()
                .map_err(state_error)
        })
    }

    fn warn(&self, message: &str) {
        self.shell.warn(message);
    }
}
