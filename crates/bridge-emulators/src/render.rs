//! Render emulator: the env vars of its services under
//! `/v1/services/{serviceId}/env-vars`, with cursor pagination, plus the
//! deploy hook `/deploy/{serviceId}?key=…`. It holds `srv-emulator` and any
//! service created at start or with [`RenderHandle::add_service`]; another id
//! answers Render's 404, as a deleted or mistyped service does for real.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::{Reject, Reply, lock, parse_json, random_bytes};
use crate::layer::{Core, RouteKind, fault_controls, finish, route};
use crate::platform::Platform;

/// The service every emulator holds from the start.
pub(crate) const SERVICE_ID: &str = "srv-emulator";

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// One service's state.
#[derive(Debug, Default)]
struct ServiceState {
    vars: BTreeMap<String, String>,
    deploys: Vec<String>,
}

/// Each service behind its own lock, so a request holds the map's lock only
/// to find its service.
type Services = BTreeMap<String, Arc<Mutex<ServiceState>>>;

/// Test-side view of the Render emulator; also the axum state of its routes.
/// The var and deploy methods act on `srv-emulator`; [`RenderHandle::service`]
/// reaches the others.
#[derive(Clone, Debug)]
pub struct RenderHandle {
    core: Arc<Core>,
    services: Arc<Mutex<Services>>,
    /// Deploy ids count across services, so no two services share one.
    next_deploy: Arc<AtomicU64>,
}

/// Test-side view of one service of the Render emulator.
#[derive(Clone, Debug)]
pub struct RenderService {
    id: String,
    root_url: String,
    state: Arc<Mutex<ServiceState>>,
}

fault_controls!(RenderHandle);

impl RenderHandle {
    /// API base URL, e.g. `http://127.0.0.1:P/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.core.root_url)
    }

    /// Creates a service (no vars) if the emulator does not hold it yet, and
    /// returns it.
    pub fn add_service(&self, id: &str) -> RenderService {
        let state = Arc::clone(lock(&self.services).entry(id.to_owned()).or_default());
        self.view(id, state)
    }

    /// The service `id`, if the emulator holds it.
    pub fn service(&self, id: &str) -> Option<RenderService> {
        let state = lock(&self.services).get(id).cloned()?;
        Some(self.view(id, state))
    }

    /// Ids of the services the emulator holds, sorted.
    pub fn service_ids(&self) -> Vec<String> {
        lock(&self.services).keys().cloned().collect()
    }

    fn view(&self, id: &str, state: Arc<Mutex<ServiceState>>) -> RenderService {
        RenderService {
            id: id.to_owned(),
            root_url: self.core.root_url.clone(),
            state,
        }
    }

    /// `srv-emulator`, which exists from the start and is never removed.
    fn default_service(&self) -> RenderService {
        self.add_service(SERVICE_ID)
    }

    /// `srv-emulator`'s deploy-hook URL; see [`RenderService::deploy_hook_url`].
    pub fn deploy_hook_url(&self) -> String {
        self.default_service().deploy_hook_url()
    }

    /// Current env vars of `srv-emulator`.
    pub fn vars(&self) -> BTreeMap<String, String> {
        self.default_service().vars()
    }

    /// Sets a var of `srv-emulator` out of band (as if changed in the dashboard).
    pub fn set_var(&self, key: &str, value: &str) {
        self.default_service().set_var(key, value);
    }

    /// Removes a var of `srv-emulator` out of band.
    pub fn remove_var(&self, key: &str) {
        self.default_service().remove_var(key);
    }

    /// Ids (`dep-…`) of the deploys of `srv-emulator` triggered through the
    /// deploy hook, oldest first.
    pub fn deploys(&self) -> Vec<String> {
        self.default_service().deploys()
    }

    /// `Ratelimit-Reset` is relative seconds by default (what Render was
    /// observed to send); `true` switches to the documented epoch seconds.
    pub fn set_ratelimit_reset_epoch(&self, epoch: bool) {
        self.core.set_render_reset_epoch(epoch);
    }
}

impl RenderService {
    /// The service's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The service's deploy-hook URL. Any non-empty `key` is accepted; this
    /// one is just a convenient, stable value.
    pub fn deploy_hook_url(&self) -> String {
        format!(
            "{}/deploy/{}?key=emulator-deploy-key",
            self.root_url, self.id
        )
    }

    /// Current env vars of the service.
    pub fn vars(&self) -> BTreeMap<String, String> {
        lock(&self.state).vars.clone()
    }

    /// Sets a var out of band (as if changed in the dashboard).
    pub fn set_var(&self, key: &str, value: &str) {
        lock(&self.state)
            .vars
            .insert(key.to_owned(), value.to_owned());
    }

    /// Removes a var out of band.
    pub fn remove_var(&self, key: &str) {
        lock(&self.state).vars.remove(key);
    }

    /// Ids (`dep-…`) of the deploys triggered through the deploy hook, oldest
    /// first.
    pub fn deploys(&self) -> Vec<String> {
        lock(&self.state).deploys.clone()
    }
}

/// The emulator, holding `srv-emulator` and the `extra` services.
pub(crate) fn router(core: Arc<Core>, extra: &[String]) -> (Router, RenderHandle) {
    let handle = RenderHandle {
        core: Arc::clone(&core),
        services: Arc::new(Mutex::new(Services::new())),
        next_deploy: Arc::new(AtomicU64::new(0)),
    };
    for id in std::iter::once(SERVICE_ID).chain(extra.iter().map(String::as_str)) {
        handle.add_service(id);
    }
    let mut r: Router<RenderHandle> = Router::new();
    r = route(
        r,
        &core,
        "/v1/services/{serviceId}/env-vars",
        RouteKind::Api,
        get(list_vars).put(replace_vars),
    );
    r = route(
        r,
        &core,
        "/v1/services/{serviceId}/env-vars/{envVarKey}",
        RouteKind::Api,
        get(get_var).put(put_var).delete(delete_var),
    );
    r = route(
        r,
        &core,
        "/deploy/{serviceId}",
        RouteKind::Hook,
        get(deploy_hook).post(deploy_hook),
    );
    (finish(&core, r.with_state(handle.clone())), handle)
}

fn err(status: StatusCode, message: &str) -> Reject {
    Platform::Render.error(status, message).into()
}

fn param<'a>(p: &'a HashMap<String, String>, name: &str) -> &'a str {
    p.get(name).map(String::as_str).unwrap_or_default()
}

/// The service the path names, or Render's 404 for an id it does not hold.
fn service(
    h: &RenderHandle,
    p: &HashMap<String, String>,
) -> Result<Arc<Mutex<ServiceState>>, Reject> {
    let id = param(p, "serviceId");
    lock(&h.services)
        .get(id)
        .cloned()
        .ok_or_else(|| err(StatusCode::NOT_FOUND, &format!("not found: {id}")))
}

/// The cursor is the base64 of the item's key: opaque to clients, trivially
/// decodable here, and stable across writes (the next page starts after that
/// key even if earlier keys changed).
fn cursor_of(key: &str) -> String {
    STANDARD.encode(key.as_bytes())
}

fn wrap(key: &str, value: &str) -> Value {
    json!({ "envVar": { "key": key, "value": value }, "cursor": cursor_of(key) })
}

fn generated_value() -> String {
    // 32 random bytes give the 44-character base64 strings Render generates.
    STANDARD.encode(random_bytes::<32>())
}

fn bad_request(message: &str) -> Reject {
    err(StatusCode::BAD_REQUEST, message)
}

async fn list_vars(
    State(h): State<RenderHandle>,
    Path(p): Path<HashMap<String, String>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Reply {
    let svc = service(&h, &p)?;
    let Query(q) = query.map_err(|_| bad_request("invalid query string"))?;
    let limit = match q.get("limit") {
        None => h.core.page_size().unwrap_or(DEFAULT_LIMIT).max(1),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| bad_request("limit must be an integer between 1 and 100"))?,
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            STANDARD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad_request("invalid cursor"))?,
        ),
    };
    let state = lock(&svc);
    let lower = match &after {
        Some(k) => Bound::Excluded(k.as_str()),
        None => Bound::Unbounded,
    };
    let page: Vec<Value> = state
        .vars
        .range::<str, _>((lower, Bound::Unbounded))
        .take(limit)
        .map(|(k, v)| wrap(k, v))
        .collect();
    Ok(Json(page).into_response())
}

#[derive(Debug, Deserialize)]
struct VarInput {
    key: String,
    value: Option<String>,
    #[serde(rename = "generateValue")]
    generate_value: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ValueInput {
    value: Option<String>,
    #[serde(rename = "generateValue")]
    generate_value: Option<bool>,
}

/// Resolves `{value}` / `{generateValue: true}` into the value to store.
fn resolve_value(value: Option<String>, generate: Option<bool>) -> Result<String, &'static str> {
    match (value, generate.unwrap_or(false)) {
        (Some(_), true) => Err("value and generateValue are mutually exclusive"),
        (None, true) => Ok(generated_value()),
        (None, false) => Err("value or generateValue is required"),
        // Render's rule as Bridge's planner models it: no empty values.
        (Some(v), false) if v.is_empty() => Err("value must not be empty"),
        (Some(v), false) => Ok(v),
    }
}

async fn replace_vars(
    State(h): State<RenderHandle>,
    Path(p): Path<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let svc = service(&h, &p)?;
    let items: Vec<VarInput> = parse_json(&body).map_err(|e| bad_request(&e))?;
    let mut next = BTreeMap::new();
    for item in items {
        if item.key.is_empty() {
            return Err(bad_request("key must not be empty"));
        }
        let value = resolve_value(item.value, item.generate_value).map_err(bad_request)?;
        if next.insert(item.key.clone(), value).is_some() {
            return Err(bad_request(&format!("duplicate key: {}", item.key)));
        }
    }
    let mut state = lock(&svc);
    state.vars = next;
    let all: Vec<Value> = state.vars.iter().map(|(k, v)| wrap(k, v)).collect();
    Ok(Json(all).into_response())
}

async fn get_var(State(h): State<RenderHandle>, Path(p): Path<HashMap<String, String>>) -> Reply {
    let svc = service(&h, &p)?;
    let key = param(&p, "envVarKey");
    match lock(&svc).vars.get(key) {
        Some(v) => Ok(Json(json!({ "key": key, "value": v })).into_response()),
        None => Err(err(StatusCode::NOT_FOUND, &format!("not found: {key}"))),
    }
}

async fn put_var(
    State(h): State<RenderHandle>,
    Path(p): Path<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let svc = service(&h, &p)?;
    let key = param(&p, "envVarKey");
    let input: ValueInput = parse_json(&body).map_err(|e| bad_request(&e))?;
    let value = resolve_value(input.value, input.generate_value).map_err(bad_request)?;
    lock(&svc).vars.insert(key.to_owned(), value.clone());
    Ok(Json(json!({ "key": key, "value": value })).into_response())
}

async fn delete_var(
    State(h): State<RenderHandle>,
    Path(p): Path<HashMap<String, String>>,
) -> Reply {
    let svc = service(&h, &p)?;
    let key = param(&p, "envVarKey");
    match lock(&svc).vars.remove(key) {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(err(StatusCode::NOT_FOUND, &format!("not found: {key}"))),
    }
}

async fn deploy_hook(
    State(h): State<RenderHandle>,
    Path(p): Path<HashMap<String, String>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Reply {
    let svc = service(&h, &p)?;
    // The URL is the credential; without a key there is nothing to check.
    let has_key = query
        .ok()
        .and_then(|Query(q)| q.get("key").cloned())
        .is_some_and(|k| !k.is_empty());
    if !has_key {
        return Err(err(StatusCode::UNAUTHORIZED, "missing deploy hook key"));
    }
    let n = h.next_deploy.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("dep-emulator{n:08}");
    lock(&svc).deploys.push(id.clone());
    Ok(Json(json!({ "deploy": { "id": id } })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_resolution_rules() {
        assert_eq!(resolve_value(Some("x".into()), None), Ok("x".to_owned()));
        assert!(resolve_value(Some(String::new()), None).is_err());
        assert!(resolve_value(Some("x".into()), Some(true)).is_err());
        assert!(resolve_value(None, None).is_err());
        assert!(resolve_value(None, Some(false)).is_err());
        let generated = resolve_value(None, Some(true)).unwrap();
        assert_eq!(generated.len(), 44);
    }

    #[test]
    fn cursor_round_trips() {
        let c = cursor_of("DATABASE_URL");
        let back = String::from_utf8(STANDARD.decode(&c).unwrap()).unwrap();
        assert_eq!(back, "DATABASE_URL");
    }
}
