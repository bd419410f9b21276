//! `/envsync/*` and `/parity`: the sync engine over HTTP.
//!
//! Work runs in its own task, so that a client that hangs up (or a request timeout) never
//! cancels an apply half-way. Each route is a thin caller of the operations: an apply takes
//! the lock of the place it writes inside [`bridge_operations::Operations::sync`], so two
//! applies to one place never overlap, whoever started them. Dry runs take no lock and never
//! wait on an apply. `GET /parity` is a read: it publishes nothing, so no reaction follows it.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use crate::AppState;
use crate::answers::{ApplyAllResult, EnvSyncHealth, SyncResult};
use crate::auth::Principal;
use crate::auth::Role;
use crate::error::ApiError;
use crate::route::{Access, Answer, Route, schema_of};
use crate::routes::path_param;
use bridge_operations::{DriftNotice, Mode, Origin};

pub(crate) fn routes() -> Vec<Route> {
    const PROVIDER: &[crate::route::Param] = &[path_param(
        "provider",
        crate::route::ParamType::Provider,
        "a configured provider, as `GET /envsync/health` lists them (e.g. `render`); 404 for any other",
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
                          Two applies to one place (whoever starts them: the API, the CLI, a \
                          reaction, the scheduler) run one after the other; one that waits \
                          past the lock timeout answers 409.",
            tag: "envsync",
            access: Access::Role(Role::Operator),
            params: PROVIDER,
            body: None,
            answer: Answer::Json(schema_of::<SyncResult>),
            success: 200,
            errors: &[404, 409, 502],
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
            errors: &[409, 502],
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
                          <platform>_count, drift_count}`, plus `extra_in_<platform>[]` (keys \
                          absent from the source), `changed_outside{KEY:{platform:stamp}}`, \
                          `unknown{KEY:[platforms]}` and `proven` (false while any key is \
                          unknown). Secret values appear as `<secret>`. A read: it publishes \
                          nothing, so no reaction follows it.",
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
            let health: &EnvSyncHealth = &state.inner.health;
            let Ok(bytes) = serde_json::to_vec(health) else {
                return Json(health.clone()).into_response();
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

/// Runs one sync in its own task (a dropped connection never cancels it).
async fn run_sync(
    state: AppState,
    provider: String,
    mode: Mode,
    origin: Origin,
) -> Result<SyncResult, ApiError> {
    let task = tokio::spawn(async move {
        let ops = &state.inner.ops;
        let sync = ops.sync_provider(&provider, mode, origin).await?;
        Ok::<_, ApiError>(SyncResult::of(&sync, mode, &ops.host().classifier()))
    });
    task.await
        .map_err(|e| ApiError::internal(format!("the sync task ended abnormally: {e}")))?
}

fn origin(principal: &Principal) -> Origin {
    Origin::Api {
        role: principal.role.as_str(),
    }
}

/// `POST /envsync/{dry-run|apply}/{provider}`: 404 for a provider not configured.
async fn one_provider(
    state: AppState,
    provider: String,
    principal: &Principal,
    mode: Mode,
) -> Result<Json<SyncResult>, ApiError> {
    state.inner.ops.provider(&provider)?;
    run_sync(state, provider, mode, origin(principal))
        .await
        .map(Json)
}

async fn dry_run(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    principal: axum::Extension<Principal>,
) -> Result<Json<SyncResult>, ApiError> {
    one_provider(state, provider, &principal, Mode::DryRun).await
}

async fn apply(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    principal: axum::Extension<Principal>,
) -> Result<Json<SyncResult>, ApiError> {
    one_provider(state, provider, &principal, Mode::Apply).await
}

async fn apply_all(
    State(state): State<AppState>,
    principal: axum::Extension<Principal>,
) -> Result<Json<ApplyAllResult>, ApiError> {
    let runs = state.inner.ops.providers().iter().map(|p| {
        run_sync(
            state.clone(),
            p.name.clone(),
            Mode::Apply,
            origin(&principal),
        )
    });
    let mut results = Vec::new();
    for outcome in futures_util::future::join_all(runs).await {
        results.push(outcome?);
    }
    let applied = results.iter().filter(|r| r.applied).count();
    let failed = results.iter().filter(|r| r.errors > 0).count();
    Ok(Json(ApplyAllResult {
        mode: Mode::Apply.as_str().to_owned(),
        results,
        applied,
        failed,
    }))
}

/// A read: parity across the source and every provider, announcing nothing.
async fn parity(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let task_state = state.clone();
    let report = tokio::spawn(async move {
        task_state
            .inner
            .ops
            .parity(DriftNotice::Quiet, bridge_operations::now_rfc3339())
            .await
    })
    .await
    .map_err(|e| ApiError::internal(format!("the parity task ended abnormally: {e}")))??;
    // Every kind of drift counts: missing, extra, different, changed outside Bridge.
    for (platform, drifted) in &report.drift_by_place {
        state.inner.metrics.set_drift(platform, *drifted as u64);
    }
    let report = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(report))
}
