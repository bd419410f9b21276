//! Deployment integration: verified webhooks from GitHub, Netlify and Render, deploy events
//! stated by CI (`POST /engines/autonomy/deployment/event`, `genesisctl deploy publish`),
//! and what they add up to (status, history).
//!
//! A webhook is verified by `bridge_webhooks::webhook` with the platform's own scheme, then
//! de-duplicated by claiming its delivery id in the store (`bridge_genesis::deliveries`:
//! one winner across every replica sharing the store; released if publishing fails,
//! claimable again after `CLAIM_LEASE` if its claimant died unpublished), then published on `deploy.<platform>` and
//! `deploy.platform.<start|success|failure>`. A refused delivery gets its 4xx (or 503 when no
//! secret is configured) and a `webhook.rejected` event saying why, never with the body.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bridge_genesis::bus::{HistoryQuery, Order, Role as BusRole, TopicPattern};
use bridge_genesis::deliveries::{
    CLAIM_LEASE, DeliveryClaim, DeliveryStore, MemoryDeliveries, RETENTION,
};
use bridge_webhooks::webhook::{Headers, Outcome, Rejection};
use bridge_webhooks::{DeployEvent, DeployEventRequest, Platform};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::Role;
use crate::error::{ApiError, ApiJson};
use crate::route::{Access, Answer, Param, ParamType, Route, schema_of};
use crate::routes::path_param;

/// The platforms' names ([`Platform::ALL`]), as the document lists them.
const PLATFORMS: &[&str] = &["github", "netlify", "render"];

pub(crate) fn routes() -> Vec<Route> {
    const PLATFORM: &[Param] = &[path_param(
        "platform",
        ParamType::Enum(PLATFORMS),
        "github, netlify or render (404 for any other)",
    )];
    vec![
        Route {
            method: "POST",
            path: "/webhooks/deployment/{platform}",
            operation_id: "deploymentWebhook",
            summary: "Receive a platform's deploy webhook",
            description: "Authenticated by the platform's signature, not a token: GitHub \
                          `X-Hub-Signature-256`, Netlify `X-Webhook-Signature` (HS256 JWS), \
                          Render Standard Webhooks (`webhook-id`, `webhook-timestamp`, \
                          `webhook-signature`). A delivery seen before is acknowledged and not \
                          processed again.",
            tag: "deploy",
            access: Access::Signature,
            params: PLATFORM,
            body: Some(schema_of::<Map<String, Value>>),
            answer: Answer::Json(schema_of::<WebhookReceipt>),
            success: 202,
            errors: &[200, 400, 401, 404, 413, 422, 503],
            streaming: false,
            handler: || post(webhook),
        },
        Route {
            method: "GET",
            path: "/webhooks/deployment/status",
            operation_id: "deploymentWebhookStatus",
            summary: "Which platforms' webhooks are configured, and what they delivered",
            description: "A platform without a secret refuses deliveries (503) until its \
                          variable is set.",
            tag: "deploy",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<WebhookStatus>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(webhook_status),
        },
        Route {
            method: "POST",
            path: "/engines/autonomy/deployment/event",
            operation_id: "deploymentEvent",
            summary: "Publish a deploy event stated by CI",
            description: "The seeds' shape: `platform, event_type, status, timestamp, \
                          metadata{commit_sha, branch, deploy_url, deploy_id, message}`; the \
                          timestamp defaults to now. `genesisctl deploy publish` calls this.",
            tag: "deploy",
            access: Access::Role(Role::Operator),
            params: &[],
            body: Some(schema_of::<DeployEventBody>),
            answer: Answer::Json(schema_of::<Published>),
            success: 201,
            errors: &[],
            streaming: false,
            handler: || post(publish_event),
        },
        Route {
            method: "GET",
            path: "/engines/autonomy/deployment/status",
            operation_id: "deploymentStatus",
            summary: "The latest deploy event of each platform",
            description: "",
            tag: "deploy",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<DeploymentStatus>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(deployment_status),
        },
        Route {
            method: "GET",
            path: "/engines/autonomy/deployment/history",
            operation_id: "deploymentHistory",
            summary: "Success rate, durations and frequency of deploys per platform",
            description: "Over the last 10,000 deploy events. A duration runs from a deploy's \
                          `start` to its `success` or `failure`, matched by `deploy_id`.",
            tag: "deploy",
            access: Access::Role(Role::Observer),
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<DeploymentHistory>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(deployment_history),
        },
    ]
}

/// The answer to a delivery.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WebhookReceipt {
    /// `accepted` (published), `acknowledged` (authentic, not a deploy event, such as a
    /// ping) or `duplicate` (seen before, not processed again).
    pub status: String,
    pub delivery_id: String,
    /// The topics it was published on.
    pub topics: Vec<String>,
    /// The `_genesis_seq` of each published event.
    pub seqs: Vec<u64>,
    /// For `acknowledged`: the platform's name of the event.
    pub event: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct WebhookStatus {
    pub platforms: Vec<PlatformWebhook>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PlatformWebhook {
    pub platform: String,
    /// Whether its secret is set; without it deliveries are refused (503).
    pub configured: bool,
    /// The variable that holds its secret.
    pub secret_env: String,
    pub endpoint: String,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub last_accepted_at: Option<String>,
    pub last_rejection: Option<String>,
}

/// `POST /engines/autonomy/deployment/event`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployEventBody {
    /// `github`, `netlify` or `render`.
    #[schemars(extend("enum" = ["github", "netlify", "render"]))]
    pub platform: String,
    /// `start`, `success`, `failure` or `progress`.
    #[schemars(extend("enum" = ["start", "success", "failure", "progress"]))]
    pub event_type: String,
    /// The platform's own word: `building`, `live`, `failed`, ...
    pub status: String,
    /// RFC 3339; now when left out.
    // Left out, not null, when the body is re-read as a deploy event: that reading takes
    // an absent field for the default and refuses null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<DeployMetadataBody>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeployMetadataBody {
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub deploy_url: Option<String>,
    pub deploy_id: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    pub topics: Vec<String>,
    pub seqs: Vec<u64>,
    /// The event as stored (normalised timestamp).
    pub event: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentStatus {
    /// The latest event per platform, by platform name.
    pub platforms: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentHistory {
    /// Deploy events looked at.
    pub events: usize,
    pub platforms: BTreeMap<String, PlatformHistory>,
}

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct PlatformHistory {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// `succeeded / (succeeded + failed)`; absent before the first outcome.
    pub success_rate: Option<f64>,
    /// Seconds from start to outcome, over deploys whose start was seen.
    pub mean_duration_secs: Option<f64>,
    pub max_duration_secs: Option<f64>,
    /// Outcomes per day between the first and the last event.
    pub per_day: Option<f64>,
    pub last_outcome_at: Option<String>,
}

/// Delivery ids claimed in the store (once across every replica sharing it), and counts
/// for the status route (this process's own).
pub(crate) struct Deliveries {
    claims: Arc<dyn DeliveryStore>,
    /// Whether `claims` is the store's table; otherwise this process's memory, seeded from
    /// the bus at start so a redelivery after a restart is still recognised.
    shared: bool,
    /// Who this process is, as written on its claims.
    owner: String,
    last_prune: Mutex<Option<Instant>>,
    counts: Mutex<BTreeMap<&'static str, PlatformCounts>>,
}

#[derive(Default, Clone)]
struct PlatformCounts {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    last_accepted_at: Option<String>,
    last_rejection: Option<String>,
}

/// How many delivery ids one process remembers when the store keeps none.
const REMEMBERED: usize = 50_000;

/// How often a server prunes claims older than [`RETENTION`].
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The answer when a claim cannot be made: the platform retries, and the retry is
/// de-duplicated once the store answers.
const CLAIM_FAILED: &str = "claiming the delivery";

impl Deliveries {
    /// The store's table when `store` keeps one, else this process's memory.
    pub(crate) fn for_store(store: &dyn bridge_genesis::bus::EventStore) -> Self {
        let (claims, shared) = match store.deliveries() {
            Some(claims) => (claims, true),
            None => (
                Arc::new(MemoryDeliveries::new(REMEMBERED)) as Arc<dyn DeliveryStore>,
                false,
            ),
        };
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            claims,
            shared,
            owner: format!("{host}:{}", std::process::id()),
            last_prune: Mutex::new(None),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn counts_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, PlatformCounts>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, platform: Platform, f: impl FnOnce(&mut PlatformCounts)) {
        f(self.counts_lock().entry(platform.as_str()).or_default());
    }

    fn counts(&self, platform: Platform) -> PlatformCounts {
        self.counts_lock()
            .get(platform.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// Claims `id`: `Ok(false)` when another receipt (here or on another replica) has it.
    async fn claim(&self, state: &AppState, id: &str) -> Result<bool, ApiError> {
        self.prune_when_due(state);
        self.claims
            .claim(id.to_owned(), self.owner.clone(), CLAIM_LEASE)
            .await
            .map_err(|e| ApiError::unavailable(format!("{CLAIM_FAILED}: {e}")))
    }

    /// After the events are in the log. A failure here leaves the claim unpublished: a
    /// retry after the lease would publish again, so it is logged.
    async fn published(&self, state: &AppState, id: &str) {
        if let Err(e) = self.claims.published(id.to_owned()).await {
            state.logger().warn(
                "a published delivery could not be marked so; a retry after the lease may publish it again",
                &[("delivery_id", id), ("error", &e.to_string())],
            );
        }
    }

    /// Publishing failed: give the claim up so that the platform's retry is processed.
    async fn release(&self, state: &AppState, id: &str) {
        if let Err(e) = self.claims.release(id.to_owned(), self.owner.clone()).await {
            state.logger().warn(
                "a delivery that could not be published could not be released; its retry is processed after the lease",
                &[("delivery_id", id), ("error", &e.to_string())],
            );
        }
    }

    /// At most once per [`PRUNE_EVERY`], in a task of its own.
    fn prune_when_due(&self, state: &AppState) {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let claims = self.claims.clone();
        let logger = state.logger().clone();
        tokio::spawn(async move {
            if let Err(e) = claims.prune(RETENTION).await {
                logger.warn(
                    "old delivery claims could not be pruned",
                    &[("error", &e.to_string())],
                );
            }
        });
    }
}

/// Remembers the delivery ids of the newest deploy events in the store, when the claims are
/// this process's own (the store's table needs no seeding).
pub(crate) async fn seed_deliveries(state: &AppState) {
    let deliveries = &state.inner.deliveries;
    if deliveries.shared {
        return;
    }
    let Ok(pattern) = TopicPattern::parse("deploy.>") else {
        return;
    };
    let query = HistoryQuery {
        pattern: Some(pattern),
        limit: 10_000,
        order: Order::Descending,
        ..HistoryQuery::default()
    };
    if let Ok(events) = state.inner.bus.history(query).await {
        let claims = events
            .iter()
            .rev()
            .filter_map(|e| match e.payload.get("delivery_id") {
                Some(Value::String(id)) => Some(DeliveryClaim {
                    id: id.clone(),
                    owner: deliveries.owner.clone(),
                    claimed_at: e.timestamp,
                    published: true,
                }),
                _ => None,
            })
            .collect();
        let _ = deliveries.claims.import(claims).await;
    }
}

/// `http::HeaderMap` as the verifier's header view.
struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The raw body of a delivery, at most `limit` bytes: a larger one is a rejection like
/// every other (answered and published as `webhook.rejected`), known at once from its
/// `Content-Length` or when reading passes the limit.
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, Result<Rejection, ApiError>> {
    let stated = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(size) = stated.filter(|n| *n > limit as u64) {
        return Err(Ok(Rejection::BodyTooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit,
        }));
    }
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Ok(Rejection::BodyOverLimit { limit }))
        }
        Err(e) => Err(Err(ApiError::bad_request(format!("reading the body: {e}")))),
    }
}

fn parse_platform(text: &str) -> Result<Platform, ApiError> {
    text.parse::<Platform>()
        .map_err(|e| ApiError::not_found(e.to_string()))
}

async fn webhook(
    State(state): State<AppState>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<WebhookReceipt>), ApiError> {
    let platform = parse_platform(&platform)?;
    let inner = &state.inner;
    let body = match read_body(&headers, body, inner.options.webhook_max_body_bytes).await {
        Ok(body) => body,
        Err(Ok(rejection)) => return Err(reject(&state, platform, &rejection).await),
        Err(Err(e)) => return Err(e),
    };
    let receipt = match inner.webhooks.receive(
        platform,
        &HeaderView(&headers),
        &body,
        OffsetDateTime::now_utc(),
    ) {
        Ok(receipt) => receipt,
        Err(rejection) => return Err(reject(&state, platform, &rejection).await),
    };
    let delivery_id = receipt.delivery_id.as_str().to_owned();
    if !inner.deliveries.claim(&state, &delivery_id).await? {
        inner.deliveries.count(platform, |c| c.duplicates += 1);
        return Ok((
            StatusCode::OK,
            Json(WebhookReceipt {
                status: "duplicate".into(),
                delivery_id,
                topics: vec![],
                seqs: vec![],
                event: None,
            }),
        ));
    }
    match receipt.outcome {
        Outcome::Acknowledged { event } => {
            inner.deliveries.published(&state, &delivery_id).await;
            Ok((
                StatusCode::OK,
                Json(WebhookReceipt {
                    status: "acknowledged".into(),
                    delivery_id,
                    topics: vec![],
                    seqs: vec![],
                    event: Some(event),
                }),
            ))
        }
        Outcome::Deploy(event) => {
            let mut extra = Map::new();
            extra.insert("delivery_id".into(), delivery_id.clone().into());
            if let Some(id) = &receipt.platform_delivery {
                extra.insert("platform_delivery".into(), id.clone().into());
            }
            match publish(&state, &event, extra).await {
                Ok((topics, seqs)) => {
                    inner.deliveries.published(&state, &delivery_id).await;
                    let at = event.timestamp.clone();
                    inner.deliveries.count(platform, |c| {
                        c.accepted += 1;
                        c.last_accepted_at = Some(at);
                    });
                    Ok((
                        StatusCode::ACCEPTED,
                        Json(WebhookReceipt {
                            status: "accepted".into(),
                            delivery_id,
                            topics,
                            seqs,
                            event: None,
                        }),
                    ))
                }
                Err(e) => {
                    // Not stored: the platform's retry must be processed.
                    inner.deliveries.release(&state, &delivery_id).await;
                    Err(e)
                }
            }
        }
    }
}

/// Counts and records a refused delivery, and answers it.
async fn reject(state: &AppState, platform: Platform, rejection: &Rejection) -> ApiError {
    let detail = rejection.to_string();
    state.inner.deliveries.count(platform, |c| {
        c.rejected += 1;
        c.last_rejection = Some(rejection.code().to_owned());
    });
    let recorded = state
        .inner
        .bus
        .publish(
            "webhook.rejected",
            json!({
                "platform": platform.as_str(),
                "reason": rejection.code(),
                "status": rejection.status(),
                "detail": detail,
            }),
            BusRole::System,
        )
        .await;
    if let Err(e) = recorded {
        state.logger().warn(
            "a refused webhook could not be recorded",
            &[("platform", platform.as_str()), ("error", &e.to_string())],
        );
    }
    let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, rejection.code(), detail)
}

/// Publishes a deploy event on each of its topics.
async fn publish(
    state: &AppState,
    event: &DeployEvent,
    extra: Map<String, Value>,
) -> Result<(Vec<String>, Vec<u64>), ApiError> {
    let mut payload = event.to_payload();
    payload.extend(extra);
    let topics = event.topics();
    // Both topics in one append: one commit, consecutive sequences, never one without the
    // other.
    let batch = topics
        .iter()
        .map(|topic| (*topic, Value::Object(payload.clone())))
        .collect();
    let stored = state
        .inner
        .bus
        .publish_all(batch, BusRole::System)
        .await
        .map_err(|e| ApiError::unavailable(format!("storing the deploy event: {e}")))?;
    Ok((
        topics.iter().map(|t| (*t).to_owned()).collect(),
        stored.iter().map(|e| e.seq).collect(),
    ))
}

async fn webhook_status(State(state): State<AppState>) -> Json<WebhookStatus> {
    let secrets = state.inner.webhooks.secrets();
    let platforms = Platform::ALL
        .into_iter()
        .map(|p| {
            let c = state.inner.deliveries.counts(p);
            PlatformWebhook {
                platform: p.as_str().into(),
                configured: secrets.is_configured(p),
                secret_env: p.secret_env_var().into(),
                endpoint: format!("/webhooks/deployment/{p}"),
                accepted: c.accepted,
                duplicates: c.duplicates,
                rejected: c.rejected,
                last_accepted_at: c.last_accepted_at,
                last_rejection: c.last_rejection,
            }
        })
        .collect();
    Json(WebhookStatus { platforms })
}

async fn publish_event(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DeployEventBody>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let request: DeployEventRequest = serde_json::to_value(&body)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::unprocessable(format!("the deploy event: {e}")))?;
    let event = request
        .into_event(OffsetDateTime::now_utc())
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let (topics, seqs) = publish(&state, &event, Map::new()).await?;
    Ok((
        StatusCode::CREATED,
        Json(Published {
            topics,
            seqs,
            event: event.to_payload(),
        }),
    ))
}

async fn deploy_events(
    state: &AppState,
    pattern: &str,
    limit: usize,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let pattern = TopicPattern::parse(pattern)
        .map_err(|e| ApiError::internal(format!("pattern {pattern}: {e}")))?;
    let query = HistoryQuery {
        pattern: Some(pattern),
        limit,
        order: Order::Descending,
        ..HistoryQuery::default()
    };
    let events = state
        .inner
        .bus
        .history(query)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the event store: {e}")))?;
    Ok(events
        .iter()
        .filter_map(|e| match e.envelope() {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect())
}

async fn deployment_status(
    State(state): State<AppState>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let mut platforms = BTreeMap::new();
    for p in Platform::ALL {
        if let Some(latest) = deploy_events(&state, p.topic(), 1)
            .await?
            .into_iter()
            .next()
        {
            platforms.insert(p.as_str().to_owned(), latest);
        }
    }
    Ok(Json(DeploymentStatus { platforms }))
}

async fn deployment_history(
    State(state): State<AppState>,
) -> Result<Json<DeploymentHistory>, ApiError> {
    let mut platforms = BTreeMap::new();
    let mut total = 0;
    for p in Platform::ALL {
        let mut events = deploy_events(&state, p.topic(), 10_000).await?;
        events.reverse();
        total += events.len();
        platforms.insert(p.as_str().to_owned(), summarise(&events));
    }
    Ok(Json(DeploymentHistory {
        events: total,
        platforms,
    }))
}

/// Success rate, durations and frequency of one platform's events, oldest first.
fn summarise(events: &[Map<String, Value>]) -> PlatformHistory {
    let time_of = |e: &Map<String, Value>| {
        e.get("timestamp").and_then(Value::as_str).and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    let mut h = PlatformHistory::default();
    let mut starts: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    let mut durations = Vec::new();
    let (mut first, mut last) = (None, None);
    for e in events {
        let kind = e.get("event_type").and_then(Value::as_str).unwrap_or("");
        let deploy_id = e
            .get("metadata")
            .and_then(|m| m.get("deploy_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let at = time_of(e);
        match kind {
            "start" => {
                h.started += 1;
                if let (Some(id), Some(at)) = (deploy_id, at) {
                    starts.insert(id, at);
                }
            }
            "success" | "failure" => {
                if kind == "success" {
                    h.succeeded += 1;
                } else {
                    h.failed += 1;
                }
                if let (Some(id), Some(end)) = (deploy_id, at)
                    && let Some(start) = starts.remove(&id)
                {
                    durations.push((end - start).as_seconds_f64().max(0.0));
                }
                if let Some(at) = at {
                    first.get_or_insert(at);
                    last = Some(at);
                    h.last_outcome_at = e
                        .get("timestamp")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
            }
            _ => {}
        }
    }
    let outcomes = h.succeeded + h.failed;
    if outcomes > 0 {
        h.success_rate = Some(h.succeeded as f64 / outcomes as f64);
    }
    if !durations.is_empty() {
        h.mean_duration_secs = Some(durations.iter().sum::<f64>() / durations.len() as f64);
        h.max_duration_secs = durations.iter().copied().reduce(f64::max);
    }
    if let (Some(first), Some(last)) = (first, last) {
        let days = ((last - first).as_seconds_f64() / 86_400.0).max(1.0);
        h.per_day = Some(outcomes as f64 / days);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_names_are_the_parsed_ones() {
        let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, PLATFORMS);
        let kinds: Vec<&str> = bridge_webhooks::DeployEventType::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(kinds, ["start", "success", "failure", "progress"]);
    }
}
