//! The route table: every path the server answers, declared once. [`router`] builds the axum
//! router from it and [`crate::openapi`] the OpenAPI document, so that a route cannot exist
//! without its documentation, its role or its metrics.
//!
//! Each route runs behind one middleware ([`guard`]): authenticate and authorise, bound the
//! time, count and time the answer, log one line.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::{Principal, bearer};
use crate::error::ApiError;
pub use crate::route::{
    Access, Answer, In, Param, ParamType, Route, SchemaFn, common_errors, error_schema, schema_of,
};
use crate::routes;

/// Every route, in a fixed order (metrics index into it).
pub fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut all = Vec::new();
        all.extend(routes::system::routes());
        all.extend(routes::envsync::routes());
        all.extend(routes::vault::routes());
        all.extend(routes::genesis::routes());
        all.extend(routes::ledger::routes());
        all.extend(routes::deploy::routes());
        all
    })
}

/// What [`guard`] knows about the route it stands in front of.
#[derive(Clone)]
struct RouteGuard {
    state: AppState,
    index: usize,
}

/// The router: every route of [`routes`] behind its [`guard`], JSON answers for unknown paths
/// and methods, and the body limit.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (index, route) in routes().iter().enumerate() {
        let guard = RouteGuard {
            state: state.clone(),
            index,
        };
        let handler = (route.handler)().layer(middleware::from_fn_with_state(guard, guard_fn));
        router = router.route(route.path, handler);
    }
    let limit = state.inner.options.max_body_bytes;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// The one error shape for answers the framework makes: an error answer that is not JSON
/// (an extractor's plain-text rejection, such as a path segment that is not UTF-8) gets
/// `{error, detail}` with the same status, its text as the detail.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let detail = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned()
    });
    let mut answer = ApiError::new(status, status_code_name(status), detail).into_response();
    // Keep what the framework said besides the body (`Allow`, `WWW-Authenticate`, …).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The `error` code of an answer by its status alone.
pub(crate) fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        431 => "headers_too_large",
        502 => "upstream",
        503 => "unavailable",
        504 => "timeout",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

// Answers no route's guard saw are counted here, as `route="unmatched"`. (A known path with
// a method it does not take is answered by that route's method router, behind its guard.)
async fn not_found(State(state): State<AppState>) -> ApiError {
    state.inner.metrics.record_unmatched(404);
    ApiError::not_found("no such path; GET /openapi.json lists every route")
}

async fn method_not_allowed(State(state): State<AppState>) -> ApiError {
    state.inner.metrics.record_unmatched(405);
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method; GET /openapi.json lists every route",
    )
}

async fn guard_fn(State(guard): State<RouteGuard>, req: Request, next: Next) -> Response {
    guard.run(req, next).await
}

impl RouteGuard {
    async fn run(&self, mut req: Request, next: Next) -> Response {
        let start = Instant::now();
        let route = &routes()[self.index];
        let inner = &self.state.inner;
        let mut token_id = None;
        let authorized = match authorize(&self.state, route.access, req.headers()) {
            Ok(principal) => {
                let limit = inner.options.max_body_bytes;
                match tokio::time::timeout(
                    inner.options.request_timeout,
                    bound_body(route, req, limit),
                )
                .await
                {
                    Ok(Ok(bounded)) => Ok((principal, bounded)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        format!(
                            "the body did not arrive within {:?}",
                            inner.options.request_timeout
                        ),
                    )),
                }
            }
            Err(e) => Err(e),
        };
        let response = match authorized {
            Err(e) => e.into_response(),
            Ok((principal, bounded)) => {
                req = bounded;
                if let Some(p) = principal {
                    token_id = Some(p.token_id.clone());
                    req.extensions_mut().insert(p);
                }
                if route.streaming {
                    next.run(req).await
                } else {
                    match tokio::time::timeout(inner.options.request_timeout, next.run(req)).await {
                        Ok(response) => response,
                        Err(_) => ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "timeout",
                            format!(
                                "no answer within {:?}; an apply still runs to its end — \
                                 GET /genesis/events shows its outcome",
                                inner.options.request_timeout
                            ),
                        )
                        .into_response(),
                    }
                }
            }
        };
        let elapsed = start.elapsed();
        let status = response.status().as_u16();
        inner.metrics.record_request(self.index, status, elapsed);
        let logger = &inner.logger;
        if logger.enabled(crate::LogLevel::Info) {
            let level = if status >= 500 {
                crate::LogLevel::Error
            } else {
                crate::LogLevel::Info
            };
            let ms = format!("{:.3}", elapsed.as_secs_f64() * 1e3);
            let status = status.to_string();
            logger.log_queued(
                level,
                "request",
                &[
                    ("method", route.method),
                    ("route", route.path),
                    ("status", &status),
                    ("ms", &ms),
                    ("token", token_id.as_deref().unwrap_or("-")),
                ],
            );
        }
        response
    }
}

/// A body over `limit` is refused (413) before the handler runs: at once when its
/// `Content-Length` says so, and, for a route that takes no body (an apply, which would
/// otherwise run and ignore it), also when reading it passes the limit. A route with a body
/// is held to the limit by its extractor; the webhooks check theirs in their handler.
async fn bound_body(route: &Route, req: Request, limit: usize) -> Result<Request, ApiError> {
    if route.access == Access::Signature {
        // The webhooks' own limit (`server.webhook_max_body_bytes`), checked in their
        // handler so that the refusal is published (`webhook.rejected`) like every other.
        return Ok(req);
    }
    let stated = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if stated.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    if route.body.is_some() || stated == Some(0) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => Ok(Request::from_parts(
            parts,
            axum::body::Body::from(collected.to_bytes()),
        )),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
}

/// The principal of a request to a route with `access`: 401 without a valid token, 403 for
/// a role below the route's.
fn authorize(
    state: &AppState,
    access: Access,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Access::Role(needed) = access else {
        return Ok(None);
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "send a token as `Authorization: Bearer …` (create one with `genesisctl token create --role observer`)",
        ));
    };
    let token = value.to_str().ok().and_then(bearer).ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
    })?;
    let principal = state.inner.tokens.authenticate(token).ok_or_else(|| {
        ApiError::unauthorized("the token is not valid (revoked, or never created here)")
    })?;
    if principal.role < needed {
        return Err(ApiError::forbidden(format!(
            "this needs the {needed} role; the token is {}",
            principal.role
        )));
    }
    Ok(Some(principal))
}
