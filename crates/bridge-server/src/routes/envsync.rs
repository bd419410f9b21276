//! `/envsync/*` and `/parity`: the sync engine over HTTP.
//!
//! Work runs in its own task, so that a client that hangs up (or a request timeout) never
//! cancels an apply half-way. Applies to one provider take that provider's lock: two run one
//! after the other. Dry runs take no lock and never wait on an apply.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use crate::AppState;
use crate::api::{Access, Answer, Route, schema_of};
use crate::auth::Role;
use crate::error::ApiError;
use crate::routes::path_param;
use crate::service::{ApplyAllResult, EnvSyncHealth, SyncMode, SyncResult};

pub(crate) fn routes() -> Vec<Route> {
    const PROVIDER: &[crate::api::Param] = &[path_param(
        "provider",
        "a configured provider, as `GET /envsync/health` lists them (e.g. `render`)",
    )];
    vec![
        Route {
            method: "GET",
            path: "/envsync/health",
            operation_id: "envsyncHealth",
            summary: "Sync configuration and status",
            description: "Answers without a token (load balancers call it) and reveals nothing \
                          secret: whether each provider has credentials, never where they are.",
            tag: "envsync",
            access: Access::Public,
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<EnvSyncHealth>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(health),
        },
        Route {
            method: "POST",
            path: "/envsync/dry-run/{provider}",
            operation_id: "envsyncDryRun",
            summary: "Preview the changes a sync would make to one provider",
            description: "Reads the source and the provider and plans; writes nothing. Keys \
                          and operations only, never values.",
            tag: "envsync",
            access: Access::Role(Role::Operator),
            params: PROVIDER,
            body: None,
            answer: Answer::Json(schema_of::<SyncResult>),
            success: 200,
            errors: &[404, 502],
            streaming: false,
            handler: || post(dry_run),
        },
        Route {
            method: "POST",
            path: "/envsync/apply/{provider}",
            operation_id: "envsyncApply",
            summary: "Sync one provider",
            description: "Plans, journals, applies and verifies, as `genesisctl env sync` does. \
                          Two applies to one provider run one after the other.",
            tag: "envsync",
            access: Access::Role(Role::Operator),
            params: PROVIDER,
            body: None,
            answer: Answer::Json(schema_of::<SyncResult>),
            success: 200,
            errors: &[404, 502],
            streaming: false,
            handler: || post(apply),
        },
        Route {
            method: "POST",
            path: "/envsync/apply-all",
            operation_id: "envsyncApplyAll",
            summary: "Sync every configured provider",
            description: "Providers are worked concurrently, each under its own apply lock.",
            tag: "envsync",
            access: Access::Role(Role::Operator),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<ApplyAllResult>),
            success: 200,
            errors: &[502],
            streaming: false,
            handler: || post(apply_all),
        },
        Route {
            method: "GET",
            path: "/parity",
            operation_id: "parity",
            summary: "Parity report across the source and every provider",
            description: "The seed's shape: `verified_at, has_drift, missing_in_<platform>[], \
                          conflicts{KEY:{platform:value|\"<secret>\"}}, summary{total_keys, \
                          <platform>_count, drift_count}`. Secret values appear as `<secret>`.",
            tag: "envsync",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<serde_json::Map<String, serde_json::Value>>),
            success: 200,
            errors: &[502],
            streaming: false,
            handler: || get(parity),
        },
    ]
}

/// How long a health answer is reused: load balancers poll it, and the configuration it
/// shows changes only with a restart.
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(1);

async fn health(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let cached = state
        .inner
        .health_cache
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .filter(|(at, _)| at.elapsed() < HEALTH_TTL);
    let bytes = match cached {
        Some((_, bytes)) => bytes,
        None => {
            let health: EnvSyncHealth = state.inner.envsync.health().await;
            let Ok(bytes) = serde_json::to_vec(&health) else {
                return Json(health).into_response();
            };
            let bytes = axum::body::Bytes::from(bytes);
            if let Ok(mut c) = state.inner.health_cache.lock() {
                *c = Some((std::time::Instant::now(), bytes.clone()));
            }
            bytes
        }
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn known_provider(state: &AppState, provider: &str) -> Result<(), ApiError> {
    let providers = state.inner.envsync.providers();
    if providers.iter().any(|p| p == provider) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no provider `{provider}` is configured; configured: {}",
            if providers.is_empty() {
                "none (set sync.targets or ENVSYNC_TARGETS)".to_owned()
            } else {
                providers.join(", ")
            }
        )))
    }
}

/// Runs one sync in its own task (under the provider's lock when it writes) and records
/// its metrics.
async fn run_sync(
    state: AppState,
    provider: String,
    mode: SyncMode,
) -> Result<SyncResult, ApiError> {
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let lock = (mode == SyncMode::Enforce).then(|| task_state.apply_lock(&provider));
        let _held = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let result = task_state.inner.envsync.sync(&provider, mode).await;
        let metrics = &task_state.inner.metrics;
        match &result {
            Ok(r) => {
                metrics.record_sync(&provider, mode.as_str(), &r.status);
                metrics.set_drift(&provider, r.drift() as u64);
            }
            Err(e) => metrics.record_sync(&provider, mode.as_str(), e.code),
        }
        result
    });
    task.await
        .map_err(|e| ApiError::internal(format!("the sync task ended abnormally: {e}")))?
}

async fn dry_run(
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> Result<Json<SyncResult>, ApiError> {
    known_provider(&state, &provider)?;
    run_sync(state, provider, SyncMode::DryRun).await.map(Json)
}

async fn apply(
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> Result<Json<SyncResult>, ApiError> {
    known_provider(&state, &provider)?;
    run_sync(state, provider, SyncMode::Enforce).await.map(Json)
}

async fn apply_all(State(state): State<AppState>) -> Result<Json<ApplyAllResult>, ApiError> {
    let providers = state.inner.envsync.providers();
    let runs = providers
        .into_iter()
        .map(|p| run_sync(state.clone(), p, SyncMode::Enforce));
    let mut results = Vec::new();
    for outcome in futures_util::future::join_all(runs).await {
        results.push(outcome?);
    }
    let applied = results.iter().filter(|r| r.applied).count();
    let failed = results.iter().filter(|r| r.errors > 0).count();
    Ok(Json(ApplyAllResult {
        mode: SyncMode::Enforce.as_str().to_owned(),
        results,
        applied,
        failed,
    }))
}

async fn parity(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let task_state = state.clone();
    let report = tokio::spawn(async move { task_state.inner.envsync.parity().await })
        .await
        .map_err(|e| ApiError::internal(format!("the parity task ended abnormally: {e}")))??;
    if let Some(fields) = report.as_object() {
        for (name, value) in fields {
            if let (Some(platform), Some(missing)) =
                (name.strip_prefix("missing_in_"), value.as_array())
            {
                state
                    .inner
                    .metrics
                    .set_drift(platform, missing.len() as u64);
            }
        }
    }
    Ok(Json(report))
}
