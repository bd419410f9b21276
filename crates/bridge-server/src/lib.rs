//! Bridge's control plane: the HTTP API `genesisctl serve` runs.
//!
//! - [`api`]: the route table. Each route is declared once — method, path, role, handler,
//!   body and answer types — and both the router and the OpenAPI document are built from it,
//!   so the two cannot disagree.
//! - [`auth`]: roles (`observer` < `operator` < `admiral`) and hashed bearer tokens.
//! - [`routes`]: the handlers; `/envsync/*` and `/parity` call
//!   [`bridge_operations::Operations`] and map its domain results to answers ([`answers`]).
//! - [`stream`]: `GET /genesis/stream`, server-sent events resumable by `Last-Event-ID`.
//! - [`serve`]: graceful, bounded shutdown: stop accepting, answer what is in flight within
//!   the drain timeout, end live streams. The reactions, the scheduler and the ledger's feed
//!   run beside the server (`bridge-autonomy`), started and stopped by the binary.
//! - [`metrics`], [`log`]: Prometheus text at `/metrics`, one log line per request.
//!
//! Only this crate knows HTTP; no type below it is an HTTP type.

pub mod answers;
pub mod api;
pub mod auth;
mod cache;
mod conn;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod route;
pub mod routes;
pub mod stream;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_genesis::bus::Bus;
pub use bridge_genesis::ledger::LedgerAccess;
use bridge_operations::Operations;
pub use bridge_operations::log::{self as log, LogFormat, LogLevel, Logger};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::answers::EnvSyncHealth;
pub use crate::auth::{Principal, Role, TokenStore};
pub use crate::error::{ApiError, ErrorBody};
pub use crate::metrics::Metrics;

/// How the server behaves; the binary fills it from flags and configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bodies larger than this are refused with 413, on every route but the webhooks',
    /// including those that take no body (an apply), before they run.
    pub max_body_bytes: usize,
    /// The same for the deploy webhooks (`POST /webhooks/deployment/{platform}`), whose
    /// refusal is also published as `webhook.rejected`.
    pub webhook_max_body_bytes: usize,
    /// A request (other than the live stream) that takes longer is answered 503.
    pub request_timeout: Duration,
    /// Keys `GET /vault/secret` may hand out; any other key is refused.
    pub vault_keys: Vec<String>,
    /// A request's head must be complete within this, counted from the connection's start
    /// (its first request) or from the request's first byte; otherwise the connection is
    /// closed.
    pub header_timeout: Duration,
    /// A connection with no request in flight and no byte of a new one is closed after
    /// this. A request in flight, a live stream included, is never cut by it.
    pub idle_timeout: Duration,
    /// Connections served at once; one above it is answered 503 and closed at once.
    pub max_connections: usize,
    pub version: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            webhook_max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            vault_keys: Vec::new(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
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
    pub(crate) ops: Arc<Operations<'static>>,
    pub(crate) health: EnvSyncHealth,
    pub(crate) tokens: TokenStore,
    pub(crate) vault: VaultLookup,
    pub(crate) webhooks: bridge_webhooks::webhook::WebhookVerifier,
    pub(crate) deliveries: routes::deploy::Deliveries,
    pub(crate) metrics: Arc<Metrics>,
    /// The route table (what `/openapi.json` documents and `/metrics` labels).
    pub(crate) routes: &'static [route::Route],
    pub(crate) history_cache: cache::HistoryCache,
    /// The last `GET /envsync/health` answer and when it was made.
    pub(crate) health_cache: Mutex<Option<(std::time::Instant, axum::body::Bytes)>>,
    pub(crate) logger: Logger,
    /// Flips to true when the server starts shutting down; live streams end on it.
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

/// What [`AppState::new`] needs.
pub struct Parts {
    pub options: ServerOptions,
    pub bus: Bus,
    pub ledger: LedgerAccess,
    /// Every sync, verify and parity check the routes run.
    pub ops: Arc<Operations<'static>>,
    /// `GET /envsync/health`: the configuration, read once at start.
    pub health: EnvSyncHealth,
    /// The counters `/metrics` shows; also the operations' [`bridge_operations::SyncListener`].
    pub metrics: Arc<Metrics>,
    pub tokens: TokenStore,
    pub vault: VaultLookup,
    /// Verifies deploy webhooks; without secrets every delivery is refused (503).
    pub webhooks: bridge_webhooks::webhook::WebhookVerifier,
    pub logger: Logger,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let deliveries = routes::deploy::Deliveries::for_store(parts.bus.store().as_ref());
        Self {
            inner: Arc::new(Inner {
                metrics: parts.metrics,
                routes: api::routes(),
                history_cache: cache::HistoryCache::new(parts.bus.store().live()),
                health_cache: Mutex::new(None),
                options: parts.options,
                bus: parts.bus,
                ledger: parts.ledger,
                ops: parts.ops,
                health: parts.health,
                tokens: parts.tokens,
                vault: parts.vault,
                webhooks: parts.webhooks,
                deliveries,
                logger: parts.logger,
                shutdown,
                shutdown_tx,
            }),
        }
    }

    /// The token set the server accepts.
    pub fn tokens(&self) -> &TokenStore {
        &self.inner.tokens
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
}

/// The whole application: every route of [`api::routes`], JSON fallbacks, body limit.
pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, tells live
/// streams to end, and gives the requests in flight `drain` to finish. Work a request
/// started that writes runs in a task of its own and is journalled, so one still running
/// when `drain` is up is left to the journal (`genesisctl env resume`). Returns whether
/// every request finished in time.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<Drained> {
    // A redelivery after a restart is still recognised.
    routes::deploy::seed_deliveries(&state).await;
    let head = tokio::spawn(cache::track_head(state.clone()));
    let app = app(state.clone());
    let signal_state = state.clone();
    let (signalled_tx, mut signalled) = watch::channel(false);
    let options = &state.inner.options;
    let limits = conn::Limits {
        header_timeout: options.header_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: options.max_connections,
    };
    let server = conn::run(listener, app, limits, async move {
        shutdown.await;
        signal_state
            .logger()
            .info("shutdown", &[("phase", "draining requests")]);
        signal_state.begin_shutdown();
        let _ = signalled_tx.send(true);
    });
    tokio::pin!(server);
    let drained = tokio::select! {
        () = &mut server => Drained::All,
        () = async {
            let _ = signalled.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        } => Drained::TimedOut,
    };
    state.begin_shutdown();
    let _ = head.await;
    if drained == Drained::TimedOut {
        state.logger().warn(
            "shutdown: requests still in flight after the drain timeout were cut off",
            &[("drain_secs", &drain.as_secs().to_string())],
        );
    }
    // Let the log writer put out the last queued request lines.
    tokio::time::sleep(log::WRITE_EVERY * 3).await;
    state
        .logger()
        .info("shutdown", &[("phase", "requests done")]);
    Ok(drained)
}

/// Whether the requests in flight at shutdown finished within the drain timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    All,
    TimedOut,
}
