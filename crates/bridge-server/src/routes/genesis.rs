//! `/genesis/*`: the bus over HTTP — history, publishing, stats, introspection and the live
//! stream (whose handler is [`crate::stream`]).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use bridge_genesis::bus::{HistoryQuery, MAX_HISTORY_LIMIT, Order, PublishError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson};
use crate::route::{Access, Answer, In, Param, ParamType, Route, schema_of};
use crate::routes::query;
use crate::stream::parse_pattern;

pub(crate) fn routes() -> Vec<Route> {
    const HISTORY: &[Param] = &[
        query(
            "topic",
            ParamType::TopicPattern,
            false,
            "topic pattern: `envsync.*` (one segment), `deploy.>` (one or more), or a topic",
        ),
        query(
            "since",
            ParamType::SEQ,
            false,
            "only events after this _genesis_seq",
        ),
        query(
            "until",
            ParamType::SEQ,
            false,
            "only events up to this _genesis_seq",
        ),
        query(
            "from",
            ParamType::DateTime,
            false,
            "only events stamped at or after this RFC 3339 time",
        ),
        query(
            "to",
            ParamType::DateTime,
            false,
            "only events stamped before this RFC 3339 time",
        ),
        query(
            "limit",
            ParamType::Integer {
                min: 1,
                max: MAX_HISTORY_LIMIT as u64,
            },
            false,
            "at most this many (default 100, at most 10000)",
        ),
        query(
            "order",
            ParamType::Enum(&["asc", "desc"]),
            false,
            "`asc` (oldest first, default) or `desc` (newest first)",
        ),
    ];
    const STREAM: &[Param] = &[
        query(
            "topic",
            ParamType::TopicPattern,
            false,
            "topic pattern to follow (default `>`: everything)",
        ),
        query(
            "since",
            ParamType::SEQ,
            false,
            "start after this _genesis_seq (default: from now on)",
        ),
        Param {
            name: "Last-Event-ID",
            location: In::Header,
            required: false,
            kind: ParamType::SEQ,
            description: "resume after this _genesis_seq; wins over `since`",
        },
    ];
    vec![
        Route {
            method: "GET",
            path: "/genesis/introspection/health",
            operation_id: "genesisHealth",
            summary: "Is the bus up, and how far behind are its consumers",
            description: "Answers without a token (load balancers call it). Names the backend \
                          kind, never its address.",
            tag: "genesis",
            access: Access::Public,
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<IntrospectionHealth>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(health),
        },
        Route {
            method: "GET",
            path: "/genesis/events",
            operation_id: "genesisEvents",
            summary: "Event history",
            description: "Envelopes (payload fields plus `_genesis_topic`, `_genesis_seq`, \
                          `_genesis_timestamp`) matching every bound given.",
            tag: "genesis",
            access: Access::Role(Role::Observer),
            params: HISTORY,
            body: None,
            answer: Answer::Json(schema_of::<EventsPage>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(history),
        },
        Route {
            method: "POST",
            path: "/genesis/events",
            operation_id: "genesisPublish",
            summary: "Publish an event",
            description: "Runs the permission gate for the token's role (operators may publish \
                          `envsync.*`, `deploy.>` and `genesis.intent`; admirals anything); a \
                          refusal is recorded as `genesis.blocked` and answered 403. Answers the \
                          stored envelope once it is durable.",
            tag: "genesis",
            access: Access::Role(Role::Operator),
            params: &[],
            body: Some(schema_of::<PublishRequest>),
            answer: Answer::Json(schema_of::<Map<String, Value>>),
            success: 201,
            errors: &[],
            streaming: false,
            handler: || axum::routing::post(publish),
        },
        Route {
            method: "GET",
            path: "/genesis/stats",
            operation_id: "genesisStats",
            summary: "Event counts per topic and the rate over the last hour",
            description: "",
            tag: "genesis",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<StatsBody>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(stats),
        },
        Route {
            method: "GET",
            path: "/genesis/stream",
            operation_id: "genesisStream",
            summary: "Live events as server-sent events (the Cascade)",
            description: "Each event is an SSE message with `id` = `_genesis_seq`, `event` = the \
                          topic and `data` = the envelope. Reconnect with `Last-Event-ID` to \
                          resume without losing an event. `config_update` follows each \
                          `envsync.commit`.",
            tag: "genesis",
            access: Access::Role(Role::Observer),
            params: STREAM,
            body: None,
            answer: Answer::EventStream,
            success: 200,
            errors: &[],
            streaming: true,
            handler: || get(crate::stream::stream),
        },
    ]
}

/// `GET /genesis/introspection/health`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct IntrospectionHealth {
    /// `ok` or `degraded` (the store does not answer).
    pub status: String,
    /// `sqlite`, `postgres` or `nats`.
    pub backend: String,
    pub reachable: bool,
    pub last_seq: Option<u64>,
    pub consumers: Vec<ConsumerLag>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsumerLag {
    pub name: String,
    pub pattern: String,
    pub acked_seq: u64,
    /// Matching events not yet acknowledged.
    pub pending: u64,
}

/// `GET /genesis/events`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventsPage {
    pub events: Vec<Map<String, Value>>,
    pub count: usize,
    /// Pass as `since` to read the next page (ascending order only).
    pub next_since: Option<u64>,
}

/// `POST /genesis/events`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A topic: dot-separated segments of `a-z`, `0-9` and `_`, at most 255 bytes (422
    /// otherwise).
    #[schemars(length(min = 1, max = 255), regex(pattern = TOPIC_PATTERN))]
    pub topic: String,
    /// Any JSON object whose keys do not start with `_genesis_` (the bus's own), at most
    /// 256 KiB as JSON (422 otherwise).
    #[schemars(extend("propertyNames" = { "not": { "pattern": "^_genesis_" } }))]
    pub payload: Map<String, Value>,
}

/// A topic, as `bridge_genesis::bus::Topic` checks it.
pub const TOPIC_PATTERN: &str = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$";

/// A topic pattern, as `bridge_genesis::bus::TopicPattern` checks it: literal segments, `*`
/// for one segment, `>` as the last for one or more; empty stands for no pattern.
pub const TOPIC_PATTERN_PATTERN: &str = r"^(((\*|[a-z0-9_]+)\.)*(\*|>|[a-z0-9_]+))?$";

/// `GET /genesis/stats`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct StatsBody {
    pub total: u64,
    pub by_topic: BTreeMap<String, u64>,
    pub last_hour: u64,
    pub per_minute: f64,
    pub last_seq: u64,
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    topic: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

async fn health(State(state): State<AppState>) -> Json<IntrospectionHealth> {
    let health = state.inner.bus.health().await;
    let backend = health
        .store
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    Json(IntrospectionHealth {
        status: if health.reachable { "ok" } else { "degraded" }.into(),
        backend,
        reachable: health.reachable,
        last_seq: health.last_seq,
        consumers: health
            .consumers
            .into_iter()
            .map(|c| ConsumerLag {
                name: c.name,
                pattern: c.pattern,
                acked_seq: c.acked_seq,
                pending: c.pending,
            })
            .collect(),
    })
}

fn parse_time(name: &str, text: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    text.map(|t| {
        OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| {
            ApiError::bad_request(format!(
                "`{name}` must be an RFC 3339 time such as 2026-01-31T12:00:00Z"
            ))
        })
    })
    .transpose()
}

async fn history(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let cache = &state.inner.history_cache;
    let key = uri.query().unwrap_or_default();
    // Read the head first: the page computed below holds at least every event up to it.
    let head = cache.current_head();
    if let Some(bytes) = head.and_then(|h| cache.get(key, h)) {
        return Ok(json_bytes(bytes));
    }
    // Parsed only on a miss: a hit's query was valid when its page was made.
    let Query(p) = Query::<HistoryParams>::try_from_uri(&uri)?;
    let page = read_history(&state, p).await?;
    let bytes =
        Bytes::from(serde_json::to_vec(&page).map_err(|e| ApiError::internal(e.to_string()))?);
    if let Some(head) = head {
        cache.put(key, head, bytes.clone());
    }
    Ok(json_bytes(bytes))
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn read_history(state: &AppState, p: HistoryParams) -> Result<EventsPage, ApiError> {
    let mut q = HistoryQuery::default();
    if let Some(topic) = p.topic.as_deref().filter(|t| !t.is_empty()) {
        q = q.pattern(parse_pattern(topic)?);
    }
    if let Some(since) = p.since {
        q = q.after_seq(since);
    }
    if let Some(until) = p.until {
        q = q.until_seq(until);
    }
    q = q.time_range(parse_time("from", p.from)?, parse_time("to", p.to)?);
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_HISTORY_LIMIT}"
        )));
    }
    q = q.limit(limit);
    let descending = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`order` must be asc or desc, not `{other}`"
            )));
        }
    };
    if descending {
        q.order = Order::Descending;
    }
    let events = state
        .inner
        .bus
        .history(q)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the event store: {e}")))?;
    let next_since = if descending || events.len() < limit {
        None
    } else {
        events.last().map(|e| e.seq)
    };
    let events: Vec<Map<String, Value>> = events
        .iter()
        .filter_map(|e| match e.envelope() {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect();
    Ok(EventsPage {
        count: events.len(),
        events,
        next_since,
    })
}

async fn publish(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiJson(body): ApiJson<PublishRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match state
        .inner
        .bus
        .publish(
            &body.topic,
            Value::Object(body.payload),
            who.role.bus_role(),
        )
        .await
    {
        Ok(event) => Ok((StatusCode::CREATED, Json(event.envelope()))),
        Err(e) if e.is_bad_input() => Err(ApiError::unprocessable(e.to_string())),
        Err(e @ (PublishError::Refused { .. } | PublishError::RefusedUnrecorded { .. })) => {
            Err(ApiError::forbidden(e.to_string()))
        }
        Err(e) => Err(ApiError::unavailable(format!("storing the event: {e}"))),
    }
}

async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, ApiError> {
    let s = state
        .inner
        .bus
        .stats()
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the event store: {e}")))?;
    Ok(Json(StatsBody {
        total: s.total,
        by_topic: s.by_topic,
        last_hour: s.last_hour,
        per_minute: s.per_minute,
        last_seq: s.last_seq,
    }))
}
