//! Bridge's control plane: the HTTP API `genesisctl serve` runs.
//!
//! - [`api`]: the route table. Each route is declared once — method, path, role, handler,
//!   body and answer types — and both the router and the OpenAPI document are built from it,
//!   so the two cannot disagree.
//! - [`auth`]: roles (`observer` < `operator` < `admiral`) and hashed bearer tokens.
//! - [`service::EnvSync`]: the sync engine behind `/envsync/*` and `/parity`, implemented by
//!   the binary, so this crate knows nothing of configuration files or platform adapters.
//! - [`stream`]: `GET /genesis/stream`, server-sent events resumable by `Last-Event-ID`.
//! - [`tasks`]: what runs beside the requests: the ledger's feed and the `config_update`
//!   cascade after each commit, and the [`scheduler`]'s scheduled sync.
//! - [`metrics`], [`log`]: Prometheus text at `/metrics`, one log line per request.
//!
//! Only this crate knows HTTP; no type below it is an HTTP type.

pub mod api;
pub mod auth;
pub mod autonomy;
mod cache;
pub mod error;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod scheduler;
pub mod service;
pub mod stream;
pub mod tasks;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_genesis::bus::Bus;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::auth::{Principal, Role, TokenStore};
pub use crate::autonomy::AutonomyOptions;
pub use crate::error::{ApiError, ErrorBody};
pub use crate::log::{LogFormat, LogLevel, Logger};
pub use crate::scheduler::{Schedule, ScheduledSync, SchedulerOptions};
pub use crate::service::{EnvSync, SyncMode};

/// How the server behaves; the binary fills it from flags and configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// A request (other than the live stream) that takes longer is answered 503.
    pub request_timeout: Duration,
    /// Keys `GET /vault/secret` may hand out; any other key is refused.
    pub vault_keys: Vec<String>,
    pub version: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(30),
            vault_keys: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Where the Truth ledger is and how to sign its checkpoints.
#[derive(Clone)]
pub struct LedgerAccess {
    pub path: PathBuf,
    pub origin: String,
    pub key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for LedgerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerAccess")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl LedgerAccess {
    pub fn open(
        &self,
    ) -> Result<bridge_genesis::ledger::Ledger, bridge_genesis::ledger::LedgerError> {
        bridge_genesis::ledger::Ledger::open(&self.path, &self.origin, Some(self.key.clone()))
    }
}

/// Where the vault finds values: the server's own environment by default.
pub type VaultLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: ServerOptions,
    pub(crate) bus: Bus,
    pub(crate) ledger: LedgerAccess,
    pub(crate) envsync: Arc<dyn EnvSync>,
    pub(crate) tokens: TokenStore,
    pub(crate) vault: VaultLookup,
    pub(crate) webhooks: bridge_webhooks::webhook::WebhookVerifier,
    pub(crate) autonomy: autonomy::AutonomyOptions,
    pub(crate) scheduler: Option<scheduler::ScheduledSync>,
    pub(crate) deliveries: routes::deploy::Deliveries,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) history_cache: cache::HistoryCache,
    /// The last `GET /envsync/health` answer and when it was made.
    pub(crate) health_cache: Mutex<Option<(std::time::Instant, axum::body::Bytes)>>,
    pub(crate) logger: Logger,
    /// One lock per provider: applies to one provider run one at a time.
    pub(crate) apply_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Flips to true when the server starts shutting down; live streams end on it.
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

/// What [`AppState::new`] needs.
pub struct Parts {
    pub options: ServerOptions,
    pub bus: Bus,
    pub ledger: LedgerAccess,
    pub envsync: Arc<dyn EnvSync>,
    pub tokens: TokenStore,
    pub vault: VaultLookup,
    /// Verifies deploy webhooks; without secrets every delivery is refused (503).
    pub webhooks: bridge_webhooks::webhook::WebhookVerifier,
    /// The reactions' mode, thresholds and deploy hooks.
    pub autonomy: autonomy::AutonomyOptions,
    /// The scheduled sync and the store its slots are claimed in; `None`: no scheduled sync.
    pub scheduler: Option<scheduler::ScheduledSync>,
    pub logger: Logger,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        let (shutdown_tx, shutdown) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                metrics: metrics::Metrics::new(api::routes().len()),
                history_cache: cache::HistoryCache::new(parts.bus.store().live()),
                health_cache: Mutex::new(None),
                options: parts.options,
                bus: parts.bus,
                ledger: parts.ledger,
                envsync: parts.envsync,
                tokens: parts.tokens,
                vault: parts.vault,
                webhooks: parts.webhooks,
                autonomy: parts.autonomy,
                scheduler: parts.scheduler,
                deliveries: routes::deploy::Deliveries::default(),
                logger: parts.logger,
                apply_locks: Mutex::new(HashMap::new()),
                shutdown,
                shutdown_tx,
            }),
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    pub fn logger(&self) -> &Logger {
        &self.inner.logger
    }

    /// Tells live streams and background tasks to finish.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.shutdown_tx.send(true);
    }

    pub(crate) fn apply_lock(&self, provider: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.inner.apply_locks.lock() {
            Ok(locks) => locks,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(provider.to_owned()).or_default().clone()
    }
}

/// The whole application: every route of [`api::routes`], JSON fallbacks, body limit.
pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// request in flight finish (live streams are told to end), runs the background tasks one
/// last time so that the ledger holds every acknowledged event, and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // A redelivery after a restart is still recognised.
    routes::deploy::seed_deliveries(&state).await;
    let background = tasks::spawn(state.clone());
    let app = app(state.clone());
    let signal_state = state.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            signal_state
                .logger()
                .info("shutdown", &[("phase", "draining requests")]);
            signal_state.begin_shutdown();
        })
        .await;
    state.begin_shutdown();
    background.finish().await;
    // Let the log writer put out the last queued request lines.
    tokio::time::sleep(log::WRITE_EVERY * 3).await;
    state.logger().info("shutdown", &[("phase", "done")]);
    result
}
