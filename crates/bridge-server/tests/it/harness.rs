//! A server over a real SQLite store and ledger in a temporary directory, with a fake sync
//! engine that counts how many applies overlap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bridge_webhooks::webhook::{VerifyOptions, WebhookSecrets, WebhookVerifier};
use bridge_genesis::bus::{Bus, Policy, PolicyMode, SqliteStore};
use bridge_server::auth::{TOKENS_FILE, create_token};
use bridge_server::service::{
    BoxFuture, ChangeSummary, EnvSync, EnvSyncHealth, PlannedChange, ProviderHealth, SyncMode,
    SyncResult,
};
use bridge_server::{
    ApiError, AppState, AutonomyOptions, LedgerAccess, Logger, Parts, Role, ServerOptions,
    TokenStore,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const NETLIFY_SECRET: &str = "netlify-jws-secret";
/// `whsec_` and base64 of "render-webhook-secret-bytes".
pub const RENDER_SECRET: &str = "whsec_cmVuZGVyLXdlYmhvb2stc2VjcmV0LWJ5dGVz";
pub const VAULT_KEY: &str = "RENDER_API_TOKEN";
pub const VAULT_VALUE: &str = "rnd_vault_value_7f3a";

pub struct FakeSync {
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub applies: AtomicUsize,
    pub apply_delay_ms: AtomicUsize,
    /// Keys each provider differs on; an apply sets it to 0.
    pub drift: Mutex<BTreeMap<String, usize>>,
    /// Providers applied to, in order.
    pub enforced: Mutex<Vec<String>>,
    pub schema_violations: Mutex<Vec<String>>,
    /// Parity checks run.
    pub parities: AtomicUsize,
}

impl Default for FakeSync {
    fn default() -> Self {
        Self {
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            applies: AtomicUsize::new(0),
            parities: AtomicUsize::new(0),
            apply_delay_ms: AtomicUsize::new(0),
            drift: Mutex::new([("render".into(), 1), ("netlify".into(), 1)].into()),
            enforced: Mutex::new(Vec::new()),
            schema_violations: Mutex::new(Vec::new()),
        }
    }
}

impl FakeSync {
    fn result(provider: &str, mode: SyncMode, drift: usize) -> SyncResult {
        let applied = mode == SyncMode::Enforce;
        let plan: Vec<PlannedChange> = (0..drift)
            .map(|i| PlannedChange {
                key: if i == 0 {
                    "API_KEY".into()
                } else {
                    format!("KEY_{i}")
                },
                op: "create".into(),
                secret: i == 0,
            })
            .collect();
        SyncResult {
            provider: provider.to_owned(),
            spec: provider.to_owned(),
            mode: mode.as_str().to_owned(),
            status: match (applied, drift) {
                (true, _) => "applied",
                (false, 0) => "in_sync",
                (false, _) => "planned",
            }
            .to_owned(),
            applied,
            changes: drift,
            errors: 0,
            summary: ChangeSummary {
                create: drift,
                noop: 3,
                ..ChangeSummary::default()
            },
            plan,
            detail: None,
            journal: applied.then_some(1),
        }
    }
}

impl EnvSync for FakeSync {
    fn health(&self) -> BoxFuture<'_, EnvSyncHealth> {
        Box::pin(async {
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
        })
    }

    fn providers(&self) -> Vec<String> {
        vec!["render".into(), "netlify".into()]
    }

    fn sync<'a>(
        &'a self,
        provider: &'a str,
        mode: SyncMode,
    ) -> BoxFuture<'a, Result<SyncResult, ApiError>> {
        Box::pin(async move {
            let drift = self
                .drift
                .lock()
                .unwrap()
                .get(provider)
                .copied()
                .unwrap_or(0);
            if mode == SyncMode::Enforce {
                self.drift.lock().unwrap().insert(provider.to_owned(), 0);
                self.enforced.lock().unwrap().push(provider.to_owned());
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                let delay = self.apply_delay_ms.load(Ordering::SeqCst) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.applies.fetch_add(1, Ordering::SeqCst);
                self.active.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(Self::result(provider, mode, drift))
        })
    }

    fn schema_check(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, ApiError>> {
        Box::pin(async {
            let violations = self.schema_violations.lock().unwrap().clone();
            Ok(Some(violations))
        })
    }

    fn parity(&self) -> BoxFuture<'_, Result<Value, ApiError>> {
        self.parities.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(json!({
                "verified_at": "2026-01-01T00:00:00Z",
                "has_drift": true,
                "platforms": ["local", "render"],
                "missing_in_local": [],
                "missing_in_render": ["API_KEY"],
                "conflicts": {},
                "summary": { "total_keys": 4, "local_count": 4, "render_count": 3, "drift_count": 1 }
            }))
        })
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub sync: Arc<FakeSync>,
    pub observer: String,
    pub operator: String,
    pub admiral: String,
    config: (ServerOptions, WebhookSecrets, AutonomyOptions),
}

/// The server state over the files in `dir`.
fn state_in(
    dir: &std::path::Path,
    (options, secrets, autonomy): &(ServerOptions, WebhookSecrets, AutonomyOptions),
    sync: &Arc<FakeSync>,
) -> AppState {
    let store = SqliteStore::open(dir.join("events.db")).unwrap();
    let bus = Bus::new(Arc::new(store), Policy::new(PolicyMode::Permissive));
    AppState::new(Parts {
        options: options.clone(),
        bus,
        ledger: LedgerAccess {
            path: dir.join("ledger.db"),
            origin: "bridge.test/ledger".into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        },
        envsync: sync.clone(),
        tokens: TokenStore::open(dir.join(TOKENS_FILE)).unwrap(),
        vault: Arc::new(|key: &str| (key == VAULT_KEY).then(|| VAULT_VALUE.to_owned())),
        webhooks: WebhookVerifier::new(secrets.clone(), VerifyOptions::default()),
        autonomy: autonomy.clone(),
        scheduler: None,
        logger: Logger::off(),
    })
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
            AutonomyOptions::default(),
        )
        .await
    }

    /// A server whose reactions behave as `autonomy` says.
    pub async fn with_autonomy(autonomy: AutonomyOptions) -> Self {
        let secrets = WebhookSecrets::new()
            .with_github(GITHUB_SECRET)
            .with_netlify(NETLIFY_SECRET)
            .with_render(RENDER_SECRET)
            .unwrap();
        Self::build(ServerOptions::default(), secrets, autonomy).await
    }

    pub async fn with_options(options: ServerOptions) -> Self {
        let secrets = WebhookSecrets::new()
            .with_github(GITHUB_SECRET)
            .with_netlify(NETLIFY_SECRET)
            .with_render(RENDER_SECRET)
            .unwrap();
        Self::build(options, secrets, AutonomyOptions::default()).await
    }

    async fn build(
        options: ServerOptions,
        secrets: WebhookSecrets,
        autonomy: AutonomyOptions,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens_path = dir.path().join(TOKENS_FILE);
        let (observer, _) = create_token(&tokens_path, Role::Observer, "now").unwrap();
        let (operator, _) = create_token(&tokens_path, Role::Operator, "now").unwrap();
        let (admiral, _) = create_token(&tokens_path, Role::Admiral, "now").unwrap();
        let sync = Arc::new(FakeSync::default());
        let config = (options, secrets, autonomy);
        let state = state_in(dir.path(), &config, &sync);
        Self {
            dir,
            state,
            sync,
            observer,
            operator,
            admiral,
            config,
        }
    }

    /// A new server over the same files (store, ledger, tokens), as after a restart: the
    /// old state must be done serving.
    pub fn restart(&mut self) {
        self.state = state_in(self.dir.path(), &self.config, &self.sync);
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
        let access = LedgerAccess {
            path: self.dir.path().join("ledger.db"),
            origin: "bridge.test/ledger".into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        };
        bridge_genesis::feed::record_pending(
            self.state.bus(),
            bridge_genesis::feed::DEFAULT_LEDGER_TOPICS,
            || access.open(),
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
