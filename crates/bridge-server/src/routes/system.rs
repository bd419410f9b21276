//! `/openapi.json`, `/metrics` and `/` (a small dashboard page).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::AppState;
use crate::auth::Role;
use crate::route::{Access, Answer, Route, schema_of};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route {
            method: "GET",
            path: "/",
            operation_id: "dashboard",
            summary: "The dashboard page",
            description: "A static page that asks for a token and then shows health, parity, \
                          recent events and the live stream through the API. It holds no data \
                          itself, so it needs no token.",
            tag: "system",
            access: Access::Public,
            params: &[],
            body: None,
            answer: Answer::Text("text/html"),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(dashboard),
        },
        Route {
            method: "GET",
            path: "/openapi.json",
            operation_id: "openapi",
            summary: "This API's OpenAPI 3.1 document",
            description: "Generated from the route table and the answer types.",
            tag: "system",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<serde_json::Map<String, serde_json::Value>>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(openapi),
        },
        Route {
            method: "GET",
            path: "/metrics",
            operation_id: "metrics",
            summary: "Prometheus metrics",
            description: "Requests by route and status, latency histograms, sync operations, \
                          drift per platform, bus sequence and consumer lag.",
            tag: "system",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Text("text/plain; version=0.0.4"),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(metrics),
        },
    ]
}

async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    let providers: Vec<String> = state
        .inner
        .ops
        .providers()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    Json(crate::openapi::document_for(
        state.inner.routes,
        &state.inner.options.version,
        &providers,
    ))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.inner.bus.health().await;
    let routes: Vec<(&str, &str)> = state
        .inner
        .routes
        .iter()
        .map(|r| (r.method, r.path))
        .collect();
    let text = state.inner.metrics.render(&routes, Some(&health));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
