//! A server over a real SQLite store and ledger in a temporary directory, with a fake sync
//! engine that counts how many applies overlap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bridge_genesis::bus::{Bus, Policy, PolicyMode, SqliteStore};
use bridge_server::auth::{TOKENS_FILE, create_token};
use bridge_server::service::{
    BoxFuture, ChangeSummary, EnvSync, EnvSyncHealth, PlannedChange, ProviderHealth, SyncMode,
    SyncResult,
};
use bridge_server::{
    ApiError, AppState, LedgerAccess, Logger, Parts, Role, ServerOptions, TokenStore,
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const VAULT_KEY: &str = "RENDER_API_TOKEN";
pub const VAULT_VALUE: &str = "rnd_vault_value_7f3a";

#[derive(Default)]
pub struct FakeSync {
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    pub applies: AtomicUsize,
    pub apply_delay_ms: AtomicUsize,
}

impl FakeSync {
    fn result(provider: &str, mode: SyncMode) -> SyncResult {
        let applied = mode == SyncMode::Enforce;
        SyncResult {
            provider: provider.to_owned(),
            spec: provider.to_owned(),
            mode: mode.as_str().to_owned(),
            status: if applied { "applied" } else { "planned" }.to_owned(),
            applied,
            changes: 1,
            errors: 0,
            summary: ChangeSummary {
                create: 1,
                noop: 3,
                ..ChangeSummary::default()
            },
            plan: vec![PlannedChange {
                key: "API_KEY".into(),
                op: "create".into(),
                secret: true,
            }],
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
            if mode == SyncMode::Enforce {
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                let delay = self.apply_delay_ms.load(Ordering::SeqCst) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.applies.fetch_add(1, Ordering::SeqCst);
                self.active.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(Self::result(provider, mode))
        })
    }

    fn parity(&self) -> BoxFuture<'_, Result<Value, ApiError>> {
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
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_options(ServerOptions {
            vault_keys: vec![VAULT_KEY.into()],
            ..ServerOptions::default()
        })
        .await
    }

    pub async fn with_options(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("events.db")).unwrap();
        let bus = Bus::new(Arc::new(store), Policy::new(PolicyMode::Permissive));
        let tokens_path = dir.path().join(TOKENS_FILE);
        let (observer, _) = create_token(&tokens_path, Role::Observer, "now").unwrap();
        let (operator, _) = create_token(&tokens_path, Role::Operator, "now").unwrap();
        let (admiral, _) = create_token(&tokens_path, Role::Admiral, "now").unwrap();
        let sync = Arc::new(FakeSync::default());
        let state = AppState::new(Parts {
            options,
            bus,
            ledger: LedgerAccess {
                path: dir.path().join("ledger.db"),
                origin: "bridge.test/ledger".into(),
                key: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
            },
            envsync: sync.clone(),
            tokens: TokenStore::open(&tokens_path).unwrap(),
            vault: Arc::new(|key: &str| (key == VAULT_KEY).then(|| VAULT_VALUE.to_owned())),
            logger: Logger::off(),
        });
        Self {
            dir,
            state,
            sync,
            observer,
            operator,
            admiral,
        }
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
    let uri = path.replace("{provider}", "render").replace("{index}", "0");
    let uri = match uri.as_str() {
        "/vault/secret" => format!("/vault/secret?key={VAULT_KEY}"),
        "/ledger/consistency" => "/ledger/consistency?from=1&to=2".to_owned(),
        _ => uri,
    };
    let body = (method == "POST" && path == "/genesis/events")
        .then(|| json!({"topic": "deploy.render", "payload": {"ok": true}}));
    request(method, &uri, token, body)
}

/// An HTTP client (plain HTTP to loopback; the TLS provider is installed because reqwest
/// insists on one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
