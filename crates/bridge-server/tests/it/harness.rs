//! A server over a real SQLite store and ledger in a temporary directory, running the real
//! operations against places held in memory: the source `local:.env` (API_KEY, A, B, C) and
//! the providers `render` and `netlify`, each lacking API_KEY (one key of drift).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bridge_genesis::bus::{Bus, Policy, PolicyMode, SqliteStore};
use bridge_operations::Operations;
use bridge_operations::testing::{MemoryHost, MemoryPlatform, settings};
use bridge_server::answers::{EnvSyncHealth, ProviderHealth};
use bridge_server::auth::{TOKENS_FILE, create_token};
use bridge_server::{
    AppState, LedgerAccess, Logger, Metrics, Parts, Role, ServerOptions, TokenStore,
};
use bridge_webhooks::webhook::{VerifyOptions, WebhookSecrets, WebhookVerifier};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const NETLIFY_SECRET: &str = "netlify-jws-secret";
/// `whsec_` and base64 of "render-webhook-secret-bytes".
pub const RENDER_SECRET: &str = "whsec_cmVuZGVyLXdlYmhvb2stc2VjcmV0LWJ5dGVz";
pub const VAULT_KEY: &str = "RENDER_API_TOKEN";
pub const VAULT_VALUE: &str = "rnd_vault_value_7f3a";

const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn secrets() -> WebhookSecrets {
    WebhookSecrets::new()
        .with_github(GITHUB_SECRET)
        .with_netlify(NETLIFY_SECRET)
        .with_render(RENDER_SECRET)
        .unwrap()
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    /// The places the operations read and write.
    pub host: &'static MemoryHost,
    /// The operations the routes run (shared with background workers a test starts).
    pub ops: Arc<Operations<'static>>,
    pub observer: String,
    pub operator: String,
    pub admiral: String,
}

/// The providers' answer to `GET /envsync/health`.
fn health() -> EnvSyncHealth {
    EnvSyncHealth {
        status: "ok".into(),
        enabled: true,
        mode: "dry-run".into(),
        schedule: "@hourly".into(),
        source: "local:.env".into(),
        providers: ["render", "netlify"]
            .iter()
            .map(|p| ProviderHealth {
                name: (*p).into(),
                spec: (*p).into(),
                credentials: true,
            })
            .collect(),
        include_prefixes: vec![],
        exclude_prefixes: vec![],
        allow_deletions: false,
        version: "test".into(),
    }
}

/// The places of a new harness, on a host whose state is in `dir`.
fn host_in(dir: &std::path::Path, bus: Bus) -> &'static MemoryHost {
    let host: &'static MemoryHost = Box::leak(Box::new(MemoryHost::new(dir, bus)));
    let source = [("API_KEY", "k-1"), ("A", "1"), ("B", "2"), ("C", "3")];
    host.add(MemoryPlatform::new("local:.env", "local:/source", &source));
    host.add(MemoryPlatform::new(
        "render",
        "render:srv-test",
        &source[1..],
    ));
    host.add(MemoryPlatform::new(
        "netlify",
        "netlify:site-test",
        &source[1..],
    ));
    host
}

/// The server state over the files in `dir` (the events on `bus`, or in `events.db`), and
/// its places.
fn state_in(
    dir: &std::path::Path,
    (options, secrets, lock_timeout): &(ServerOptions, WebhookSecrets, Duration),
    bus: Option<Bus>,
    tokens: TokenStore,
) -> (AppState, &'static MemoryHost, Arc<Operations<'static>>) {
    let bus = bus.unwrap_or_else(|| {
        let store = SqliteStore::open(dir.join("events.db")).unwrap();
        Bus::new(Arc::new(store), Policy::new(PolicyMode::Permissive))
    });
    let host = host_in(dir, bus.clone());
    let mut settings = settings("local:.env", &["render", "netlify"]);
    settings.lock_timeout = *lock_timeout;
    let metrics = Arc::new(Metrics::for_app());
    let ops = Arc::new(
        Operations::new(host, settings)
            .unwrap()
            .with_owner("test server")
            .with_listener(metrics.clone()),
    );
    let state = AppState::new(Parts {
        options: options.clone(),
        bus,
        ledger: LedgerAccess::sqlite(
            dir.join("ledger.db"),
            "bridge.test/ledger",
            ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        ),
        ops: ops.clone(),
        health: health(),
        metrics,
        tokens,
        vault: Arc::new(|key: &str| (key == VAULT_KEY).then(|| VAULT_VALUE.to_owned())),
        webhooks: WebhookVerifier::new(secrets.clone(), VerifyOptions::default()),
        logger: Logger::off(),
    });
    (state, host, ops)
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_options(ServerOptions {
            vault_keys: vec![VAULT_KEY.into()],
            ..ServerOptions::default()
        })
        .await
    }

    /// A server whose webhooks have no secret configured.
    pub async fn without_webhook_secrets() -> Self {
        Self::build(
            ServerOptions::default(),
            WebhookSecrets::new(),
            LOCK_TIMEOUT,
        )
        .await
    }

    /// A server whose applies wait at most `lock_timeout` for another apply.
    pub async fn with_lock_timeout(lock_timeout: Duration) -> Self {
        Self::build(ServerOptions::default(), secrets(), lock_timeout).await
    }

    /// The place `spec` (`local:.env`, `render`, `netlify`).
    pub fn place(&self, spec: &str) -> Arc<MemoryPlatform> {
        self.host.place(spec)
    }

    pub async fn with_options(options: ServerOptions) -> Self {
        Self::build(options, secrets(), LOCK_TIMEOUT).await
    }

    /// A server whose events (and delivery claims) live in `store`, as a replica of a
    /// shared store would.
    pub async fn on_store(store: Arc<dyn bridge_genesis::bus::EventStore>) -> Self {
        let bus = Bus::new(store, Policy::new(PolicyMode::Permissive));
        Self::build_on(ServerOptions::default(), secrets(), LOCK_TIMEOUT, Some(bus)).await
    }

    async fn build(
        options: ServerOptions,
        secrets: WebhookSecrets,
        lock_timeout: Duration,
    ) -> Self {
        Self::build_on(options, secrets, lock_timeout, None).await
    }

    /// A server whose token set is a shared store's (as PostgreSQL's): the token file read
    /// through its `TokenBackend` and polled by a task, not re-read inline.
    pub async fn with_polled_tokens() -> Self {
        Self::build_with(
            ServerOptions::default(),
            secrets(),
            LOCK_TIMEOUT,
            None,
            true,
        )
        .await
    }

    async fn build_on(
        options: ServerOptions,
        secrets: WebhookSecrets,
        lock_timeout: Duration,
        bus: Option<Bus>,
    ) -> Self {
        Self::build_with(options, secrets, lock_timeout, bus, false).await
    }

    async fn build_with(
        options: ServerOptions,
        secrets: WebhookSecrets,
        lock_timeout: Duration,
        bus: Option<Bus>,
        polled_tokens: bool,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens_path = dir.path().join(TOKENS_FILE);
        let (observer, _) = create_token(&tokens_path, Role::Observer, "now").unwrap();
        let (operator, _) = create_token(&tokens_path, Role::Operator, "now").unwrap();
        let (admiral, _) = create_token(&tokens_path, Role::Admiral, "now").unwrap();
        let config = (options, secrets, lock_timeout);
        let tokens = if polled_tokens {
            let backend = Arc::new(bridge_server::auth::FileTokens::new(&tokens_path));
            TokenStore::shared(backend, Logger::off()).await.unwrap()
        } else {
            TokenStore::open(&tokens_path).unwrap()
        };
        let (state, host, ops) = state_in(dir.path(), &config, bus, tokens);
        Self {
            dir,
            state,
            host,
            ops,
            observer,
            operator,
            admiral,
        }
    }

    /// The ledger of this server's state directory.
    pub fn ledger(&self) -> LedgerAccess {
        LedgerAccess::sqlite(
            self.dir.path().join("ledger.db"),
            "bridge.test/ledger",
            ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        )
    }

    /// The background workers `genesisctl serve` runs beside the server (cascade, ledger
    /// feed, reactions in dry-run mode), on this server's bus and operations.
    pub fn workers(&self) -> bridge_autonomy::Workers {
        bridge_autonomy::Workers::spawn(bridge_autonomy::WorkerParts {
            bus: self.state.bus().clone(),
            ops: self.ops.clone(),
            ledger: self.ledger(),
            options: bridge_autonomy::AutonomyOptions::default(),
            scheduler: None,
            logger: Logger::off(),
        })
    }

    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Observer => &self.observer,
            Role::Operator => &self.operator,
            Role::Admiral => &self.admiral,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        bridge_server::app(self.state.clone())
            .oneshot(request)
            .await
            .unwrap()
    }

    /// Sends and returns status and body as JSON (Null when the body is not JSON).
    pub async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.send(request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// Appends some events to the ledger so that its routes have something to show.
    pub async fn seed_ledger(&self) {
        for i in 0..3 {
            self.state
                .bus()
                .publish(
                    "envsync.commit",
                    json!({ "target": "render", "n": i }),
                    bridge_genesis::bus::Role::System,
                )
                .await
                .unwrap();
        }
        let access = LedgerAccess::sqlite(
            self.dir.path().join("ledger.db"),
            "bridge.test/ledger",
            ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        );
        bridge_genesis::feed::record_pending(
            self.state.bus(),
            bridge_genesis::feed::DEFAULT_LEDGER_TOPICS,
            move || access.open(),
        )
        .await
        .unwrap();
    }
}

/// A request with an optional bearer token and JSON body.
pub fn request(method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// A request for `route` that its handler accepts.
pub fn concrete(
    method: &str,
    path: &str,
    token: Option<&str>,
) -> axum::http::Request<axum::body::Body> {
    let uri = path
        .replace("{provider}", "render")
        .replace("{platform}", "github")
        .replace("{index}", "0");
    let uri = match uri.as_str() {
        "/vault/secret" => format!("/vault/secret?key={VAULT_KEY}"),
        "/ledger/consistency" => "/ledger/consistency?from=1&to=2".to_owned(),
        _ => uri,
    };
    let body = match (method, path) {
        ("POST", "/genesis/events") => {
            Some(json!({"topic": "deploy.render", "payload": {"ok": true}}))
        }
        ("POST", "/engines/autonomy/deployment/event") => Some(json!({
            "platform": "render", "event_type": "start", "status": "building",
            "metadata": {"deploy_id": "dep-1"}
        })),
        ("POST", "/webhooks/deployment/{platform}") => Some(json!({"zen": "ping"})),
        _ => None,
    };
    request(method, &uri, token, body)
}

/// An HTTP client (plain HTTP to loopback; the TLS provider is installed because reqwest
/// insists on one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
