//! Netlify emulator: the "Envelope" env-var API of account `acct-emulator`
//! and its sites (site-level vars when `site_id` is given, account-level vars
//! otherwise), plus build hooks `/build_hooks/{id}`. The account holds
//! `site-emulator` and any site created at start or with
//! [`NetlifyHandle::add_site`]; another `site_id` answers Netlify's 404.
//!
//! Choices for the points the reference leaves open:
//! - Values of `is_secret` vars are hidden in every API response except for
//!   the local-development contexts `dev` and `dev-server`; by default the
//!   value object is kept with `"value": ""` so strict clients still
//!   deserialize it ([`SecretValueMode`] switches to omitting the field).
//! - Creating a key that already exists answers 409 (configurable) and
//!   creates nothing from that request.
//! - The CLI's secret rules are enforced server-side by default (a secret
//!   value may not use the `all` or `dev` context, and a secret may not have
//!   the `post-processing` scope; violations answer 422). Strict by default
//!   because a client that passes here then also passes if the real server
//!   is lenient, while the reverse is not true.
//! - Listing with `site_id` returns only site-level vars, without merging
//!   the account-level ones (the CLI fetches both and merges itself).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::common::{Reject, Reply, lock, now_millis, parse_json};
use crate::layer::{Core, RouteKind, fault_controls, finish, route};
use crate::platform::Platform;

/// The site every emulator holds from the start.
pub(crate) const SITE_ID: &str = "site-emulator";
/// The emulated team's account id, which is also its slug.
pub(crate) const ACCOUNT_ID: &str = "acct-emulator";

const CONTEXTS: [&str; 7] = [
    "all",
    "dev",
    "dev-server",
    "branch-deploy",
    "deploy-preview",
    "production",
    "branch",
];
const SCOPES: [&str; 4] = ["builds", "functions", "runtime", "post-processing"];
/// Contexts whose secret values the API still returns in clear.
const READABLE_SECRET_CONTEXTS: [&str; 2] = ["dev", "dev-server"];

/// How values of secret variables appear in API responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretValueMode {
    /// Keep the value object, with `"value": ""`.
    #[default]
    Empty,
    /// Keep the value object, without a `value` field.
    Omitted,
}

#[derive(Clone, Debug)]
struct Options {
    secret_value_mode: SecretValueMode,
    enforce_secret_rules: bool,
    duplicate_status: StatusCode,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            secret_value_mode: SecretValueMode::Empty,
            enforce_secret_rules: true,
            duplicate_status: StatusCode::CONFLICT,
        }
    }
}

#[derive(Clone, Debug)]
struct EnvValue {
    id: String,
    value: String,
    context: String,
    context_parameter: Option<String>,
}

#[derive(Clone, Debug)]
struct EnvVar {
    key: String,
    scopes: Vec<String>,
    values: Vec<EnvValue>,
    is_secret: bool,
    updated_at: String,
}

type Vars = BTreeMap<String, EnvVar>;

#[derive(Debug, Default)]
struct NetlifyState {
    /// Site-level vars, by site id.
    sites: BTreeMap<String, Vars>,
    account: Vars,
    builds: Vec<String>,
    next_id: u64,
    options: Options,
}

impl NetlifyState {
    /// Value ids are UUID-shaped (Netlify uses UUIDs) but come from a counter
    /// so runs are reproducible.
    fn new_value_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    /// The account's vars (`None`) or a held site's. Handlers checked the site
    /// exists (sites are never removed), so the 404 only keeps an impossible
    /// case from panicking.
    fn scope(&mut self, site: Option<&str>) -> Result<&mut Vars, Reject> {
        match site {
            None => Ok(&mut self.account),
            Some(id) => self.sites.get_mut(id).ok_or_else(not_found),
        }
    }
}

/// Test-side view of the Netlify emulator; also the axum state of its routes.
/// The var methods act on `site-emulator`; [`NetlifyHandle::site`] reaches the
/// others.
#[derive(Clone, Debug)]
pub struct NetlifyHandle {
    core: Arc<Core>,
    state: Arc<Mutex<NetlifyState>>,
}

/// Test-side view of one site of the Netlify emulator.
#[derive(Clone, Debug)]
pub struct NetlifySite {
    id: String,
    state: Arc<Mutex<NetlifyState>>,
}

fault_controls!(NetlifyHandle);

impl NetlifyHandle {
    /// API base URL, e.g. `http://127.0.0.1:P/api/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.core.root_url)
    }

    /// URL of a build hook with the given id.
    pub fn build_hook_url(&self, id: &str) -> String {
        format!("{}/build_hooks/{id}", self.core.root_url)
    }

    /// Creates a site (no vars) in the account if the emulator does not hold
    /// it yet, and returns it.
    pub fn add_site(&self, id: &str) -> NetlifySite {
        lock(&self.state).sites.entry(id.to_owned()).or_default();
        self.view(id)
    }

    /// The site `id`, if the emulator holds it.
    pub fn site(&self, id: &str) -> Option<NetlifySite> {
        let held = lock(&self.state).sites.contains_key(id);
        held.then(|| self.view(id))
    }

    /// Ids of the sites the emulator holds, sorted.
    pub fn site_ids(&self) -> Vec<String> {
        lock(&self.state).sites.keys().cloned().collect()
    }

    fn view(&self, id: &str) -> NetlifySite {
        NetlifySite {
            id: id.to_owned(),
            state: Arc::clone(&self.state),
        }
    }

    /// Site-level vars of `site-emulator`; see [`NetlifySite::vars`].
    pub fn vars(&self, context: &str) -> BTreeMap<String, String> {
        self.view(SITE_ID).vars(context)
    }

    /// Sets a var of `site-emulator` out of band; see [`NetlifySite::set_var`].
    pub fn set_var(&self, key: &str, context: &str, value: &str, is_secret: bool) {
        self.view(SITE_ID).set_var(key, context, value, is_secret);
    }

    /// Removes a site-level var of `site-emulator` out of band.
    pub fn remove_var(&self, key: &str) {
        self.view(SITE_ID).remove_var(key);
    }

    /// Whether the site-level var of `site-emulator` is secret; `None` if it
    /// does not exist.
    pub fn is_secret(&self, key: &str) -> Option<bool> {
        self.view(SITE_ID).is_secret(key)
    }

    /// Ids of the build hooks triggered, oldest first.
    pub fn builds(&self) -> Vec<String> {
        lock(&self.state).builds.clone()
    }

    /// How hidden secret values are rendered (default: `"value": ""`).
    pub fn set_secret_value_mode(&self, mode: SecretValueMode) {
        lock(&self.state).options.secret_value_mode = mode;
    }

    /// Whether the CLI's secret rules are enforced server-side (default on).
    pub fn set_enforce_secret_rules(&self, enforce: bool) {
        lock(&self.state).options.enforce_secret_rules = enforce;
    }

    /// Status for creating a key that already exists (default 409).
    pub fn set_duplicate_create_status(&self, status: u16) {
        if let Ok(s) = StatusCode::from_u16(status) {
            lock(&self.state).options.duplicate_status = s;
        }
    }
}

impl NetlifySite {
    /// The site's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Site-level vars as they apply to `context`: the value set for exactly
    /// that context, else the `all` value; vars with neither are left out.
    /// Secret values are returned in clear (this bypasses the API).
    pub fn vars(&self, context: &str) -> BTreeMap<String, String> {
        let state = lock(&self.state);
        let Some(vars) = state.sites.get(&self.id) else {
            return BTreeMap::new();
        };
        vars.values()
            .filter_map(|var| {
                let exact = var.values.iter().find(|v| v.context == context);
                let all = var.values.iter().find(|v| v.context == "all");
                exact.or(all).map(|v| (var.key.clone(), v.value.clone()))
            })
            .collect()
    }

    /// Sets one context's value of a site-level var out of band, creating the
    /// var (with all scopes allowed for its kind) if needed.
    pub fn set_var(&self, key: &str, context: &str, value: &str, is_secret: bool) {
        let mut state = lock(&self.state);
        let id = state.new_value_id();
        let site = state.sites.entry(self.id.clone()).or_default();
        let var = site.entry(key.to_owned()).or_insert_with(|| EnvVar {
            key: key.to_owned(),
            scopes: default_scopes(is_secret),
            values: Vec::new(),
            is_secret,
            updated_at: String::new(),
        });
        var.is_secret = is_secret;
        var.updated_at = now_millis();
        match var.values.iter_mut().find(|v| v.context == context) {
            Some(v) => v.value = value.to_owned(),
            None => var.values.push(EnvValue {
                id,
                value: value.to_owned(),
                context: context.to_owned(),
                context_parameter: None,
            }),
        }
    }

    /// Removes a site-level var out of band.
    pub fn remove_var(&self, key: &str) {
        if let Some(vars) = lock(&self.state).sites.get_mut(&self.id) {
            vars.remove(key);
        }
    }

    /// Whether the site-level var is secret; `None` if it does not exist.
    pub fn is_secret(&self, key: &str) -> Option<bool> {
        lock(&self.state)
            .sites
            .get(&self.id)
            .and_then(|vars| vars.get(key))
            .map(|v| v.is_secret)
    }
}

/// The emulator, holding `site-emulator` and the `extra` sites.
pub(crate) fn router(core: Arc<Core>, extra: &[String]) -> (Router, NetlifyHandle) {
    let handle = NetlifyHandle {
        core: Arc::clone(&core),
        state: Arc::new(Mutex::new(NetlifyState::default())),
    };
    for id in std::iter::once(SITE_ID).chain(extra.iter().map(String::as_str)) {
        handle.add_site(id);
    }
    let mut r: Router<NetlifyHandle> = Router::new();
    r = route(
        r,
        &core,
        "/api/v1/accounts/{account_id}/env",
        RouteKind::Api,
        get(list_vars).post(create_vars),
    );
    r = route(
        r,
        &core,
        "/api/v1/accounts/{account_id}/env/{key}",
        RouteKind::Api,
        get(get_var)
            .put(update_var)
            .patch(set_value)
            .delete(delete_var),
    );
    r = route(
        r,
        &core,
        "/api/v1/accounts/{account_id}/env/{key}/value/{id}",
        RouteKind::Api,
        delete(delete_value),
    );
    r = route(
        r,
        &core,
        "/api/v1/sites/{site_id}/env",
        RouteKind::Api,
        get(list_site_vars),
    );
    r = route(
        r,
        &core,
        "/build_hooks/{id}",
        RouteKind::Hook,
        post(build_hook),
    );
    (finish(&core, r.with_state(handle.clone())), handle)
}

fn err(status: StatusCode, message: &str) -> Reject {
    Platform::Netlify.error(status, message).into()
}

fn not_found() -> Reject {
    err(StatusCode::NOT_FOUND, "Not Found")
}

fn bad_request(message: &str) -> Reject {
    err(StatusCode::BAD_REQUEST, message)
}

fn default_scopes(is_secret: bool) -> Vec<String> {
    SCOPES
        .iter()
        .filter(|s| !(is_secret && **s == "post-processing"))
        .map(|s| (*s).to_owned())
        .collect()
}

type Params = HashMap<String, String>;
type QueryResult = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Resolves the account path segment and the `site_id` query into the site
/// (`None` for account level), answering 404 for a site the account does not
/// hold before anything else is looked at.
fn resolve_scope(
    h: &NetlifyHandle,
    p: &Params,
    q: &HashMap<String, String>,
) -> Result<Option<String>, Reject> {
    if p.get("account_id").map(String::as_str) != Some(ACCOUNT_ID) {
        return Err(not_found());
    }
    match q.get("site_id").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(id) if lock(&h.state).sites.contains_key(id) => Ok(Some(id.to_owned())),
        Some(_) => Err(not_found()),
    }
}

fn query_map(query: QueryResult) -> Result<HashMap<String, String>, Reject> {
    query
        .map(|Query(q)| q)
        .map_err(|_| bad_request("invalid query string"))
}

fn render_var(var: &EnvVar, mode: SecretValueMode) -> Value {
    let values: Vec<Value> = var
        .values
        .iter()
        .map(|v| {
            let mut obj = Map::new();
            obj.insert("id".into(), json!(v.id));
            let hidden = var.is_secret && !READABLE_SECRET_CONTEXTS.contains(&v.context.as_str());
            match (hidden, mode) {
                (false, _) => {
                    obj.insert("value".into(), json!(v.value));
                }
                (true, SecretValueMode::Empty) => {
                    obj.insert("value".into(), json!(""));
                }
                (true, SecretValueMode::Omitted) => {}
            }
            obj.insert("context".into(), json!(v.context));
            if let Some(param) = &v.context_parameter {
                obj.insert("context_parameter".into(), json!(param));
            }
            Value::Object(obj)
        })
        .collect();
    json!({
        "key": var.key,
        "scopes": var.scopes,
        "values": values,
        "is_secret": var.is_secret,
        "updated_at": var.updated_at,
        "updated_by": {
            "id": "emulator-user",
            "full_name": "Bridge Emulator",
            "email": "emulator@bridge.invalid",
            "avatar_url": "",
        },
    })
}

/// `context_name` keeps, per var, the values for that context or `all`;
/// `scope` keeps vars that include it. Both are optional.
fn render_list(
    vars: &BTreeMap<String, EnvVar>,
    q: &HashMap<String, String>,
    mode: SecretValueMode,
) -> Value {
    let context = q
        .get("context_name")
        .filter(|c| !c.is_empty() && *c != "all");
    // The site route spells the scope `post_processing`.
    let scope = q
        .get("scope")
        .filter(|s| !s.is_empty() && *s != "any")
        .map(|s| s.replace('_', "-"));
    let list: Vec<Value> = vars
        .values()
        .filter(|v| scope.as_ref().is_none_or(|s| v.scopes.contains(s)))
        .filter_map(|v| {
            let Some(ctx) = context else {
                return Some(render_var(v, mode));
            };
            let mut filtered = v.clone();
            filtered
                .values
                .retain(|val| val.context == *ctx || val.context == "all");
            (!filtered.values.is_empty()).then(|| render_var(&filtered, mode))
        })
        .collect();
    Value::Array(list)
}

async fn list_vars(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
) -> Reply {
    let q = query_map(query)?;
    let site = resolve_scope(&h, &p, &q)?;
    let mut state = lock(&h.state);
    let mode = state.options.secret_value_mode;
    Ok(Json(render_list(state.scope(site.as_deref())?, &q, mode)).into_response())
}

async fn list_site_vars(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
) -> Reply {
    let q = query_map(query)?;
    let state = lock(&h.state);
    let vars = p
        .get("site_id")
        .and_then(|id| state.sites.get(id))
        .ok_or_else(not_found)?;
    Ok(Json(render_list(vars, &q, state.options.secret_value_mode)).into_response())
}

#[derive(Debug, Deserialize)]
struct ValueInput {
    value: String,
    context: String,
    context_parameter: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CreateInput {
    key: String,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    values: Vec<ValueInput>,
    #[serde(default)]
    is_secret: bool,
}

#[derive(Debug, Deserialize)]
struct UpdateInput {
    key: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    values: Vec<ValueInput>,
    is_secret: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PatchInput {
    context: String,
    context_parameter: Option<String>,
    value: String,
}

fn unprocessable(message: &str) -> Reject {
    err(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn check_value(
    context: &str,
    param: Option<&str>,
    is_secret: bool,
    opts: &Options,
) -> Result<(), Reject> {
    if !CONTEXTS.contains(&context) {
        return Err(unprocessable(&format!("invalid context: {context}")));
    }
    if context == "branch" && param.is_none_or(str::is_empty) {
        return Err(unprocessable(
            "context_parameter is required for the branch context",
        ));
    }
    if is_secret && opts.enforce_secret_rules && matches!(context, "all" | "dev") {
        return Err(unprocessable(&format!(
            "secret values cannot be set for the '{context}' context"
        )));
    }
    Ok(())
}

fn check_var(
    key: &str,
    scopes: &[String],
    values: &[ValueInput],
    is_secret: bool,
    opts: &Options,
) -> Result<(), Reject> {
    if key.is_empty() {
        return Err(unprocessable("key must not be empty"));
    }
    for s in scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(unprocessable(&format!("invalid scope: {s}")));
        }
        if is_secret && opts.enforce_secret_rules && s == "post-processing" {
            return Err(unprocessable(
                "secret variables cannot have the post-processing scope",
            ));
        }
    }
    let mut seen = Vec::new();
    for v in values {
        check_value(&v.context, v.context_parameter.as_deref(), is_secret, opts)?;
        let slot = (v.context.as_str(), v.context_parameter.as_deref());
        if seen.contains(&slot) {
            return Err(unprocessable(&format!(
                "duplicate value for context {}",
                v.context
            )));
        }
        seen.push(slot);
    }
    Ok(())
}

fn duplicate(opts: &Options, key: &str) -> Reject {
    err(
        opts.duplicate_status,
        &format!("Environment variable {key} already exists"),
    )
}

async fn create_vars(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
    body: Bytes,
) -> Reply {
    let q = query_map(query)?;
    let site = resolve_scope(&h, &p, &q)?;
    let inputs: Vec<CreateInput> = parse_json(&body).map_err(|e| bad_request(&e))?;
    let mut state = lock(&h.state);
    let opts = state.options.clone();
    // Validate everything first so a rejected request creates nothing.
    let mut keys: Vec<&str> = Vec::new();
    for input in &inputs {
        let scopes = input
            .scopes
            .clone()
            .unwrap_or_else(|| default_scopes(input.is_secret));
        check_var(&input.key, &scopes, &input.values, input.is_secret, &opts)?;
        if keys.contains(&input.key.as_str())
            || state.scope(site.as_deref())?.contains_key(&input.key)
        {
            return Err(duplicate(&opts, &input.key));
        }
        keys.push(&input.key);
    }
    let now = now_millis();
    let mut created = Vec::new();
    for input in inputs {
        let values = input
            .values
            .into_iter()
            .map(|v| EnvValue {
                id: state.new_value_id(),
                value: v.value,
                context: v.context,
                context_parameter: v.context_parameter,
            })
            .collect();
        let var = EnvVar {
            scopes: input
                .scopes
                .unwrap_or_else(|| default_scopes(input.is_secret)),
            key: input.key,
            values,
            is_secret: input.is_secret,
            updated_at: now.clone(),
        };
        created.push(render_var(&var, opts.secret_value_mode));
        state.scope(site.as_deref())?.insert(var.key.clone(), var);
    }
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Common prologue of the single-var routes: the scope and the var's key.
fn single(
    h: &NetlifyHandle,
    p: &Params,
    query: QueryResult,
) -> Result<(Option<String>, String), Reject> {
    let q = query_map(query)?;
    let site = resolve_scope(h, p, &q)?;
    Ok((site, p.get("key").cloned().unwrap_or_default()))
}

async fn get_var(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
) -> Reply {
    let (site, key) = single(&h, &p, query)?;
    let mut state = lock(&h.state);
    let mode = state.options.secret_value_mode;
    let var = state
        .scope(site.as_deref())?
        .get(&key)
        .ok_or_else(not_found)?;
    Ok(Json(render_var(var, mode)).into_response())
}

async fn update_var(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
    body: Bytes,
) -> Reply {
    let (site, key) = single(&h, &p, query)?;
    let input: UpdateInput = parse_json(&body).map_err(|e| bad_request(&e))?;
    let mut state = lock(&h.state);
    let opts = state.options.clone();
    let old = state
        .scope(site.as_deref())?
        .get(&key)
        .cloned()
        .ok_or_else(not_found)?;
    let new_key = input
        .key
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or(key.clone());
    let is_secret = input.is_secret.unwrap_or(old.is_secret);
    let scopes = input.scopes.clone().unwrap_or_else(|| {
        // Turning a var secret drops the scope secrets may not have.
        old.scopes
            .iter()
            .filter(|s| !(is_secret && *s == "post-processing"))
            .cloned()
            .collect()
    });
    check_var(&new_key, &scopes, &input.values, is_secret, &opts)?;
    if new_key != key && state.scope(site.as_deref())?.contains_key(&new_key) {
        return Err(duplicate(&opts, &new_key));
    }
    let mut values = Vec::new();
    for v in input.values {
        // Keep a value's id when its context survives the replacement.
        let id = old
            .values
            .iter()
            .find(|o| o.context == v.context && o.context_parameter == v.context_parameter)
            .map(|o| o.id.clone())
            .unwrap_or_else(|| state.new_value_id());
        values.push(EnvValue {
            id,
            value: v.value,
            context: v.context,
            context_parameter: v.context_parameter,
        });
    }
    let var = EnvVar {
        key: new_key.clone(),
        scopes,
        values,
        is_secret,
        updated_at: now_millis(),
    };
    let body = render_var(&var, opts.secret_value_mode);
    let map = state.scope(site.as_deref())?;
    map.remove(&key);
    map.insert(new_key, var);
    Ok(Json(body).into_response())
}

async fn set_value(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
    body: Bytes,
) -> Reply {
    let (site, key) = single(&h, &p, query)?;
    let input: PatchInput = parse_json(&body).map_err(|e| bad_request(&e))?;
    let mut state = lock(&h.state);
    let opts = state.options.clone();
    let new_id = state.new_value_id();
    let var = state
        .scope(site.as_deref())?
        .get_mut(&key)
        .ok_or_else(not_found)?;
    check_value(
        &input.context,
        input.context_parameter.as_deref(),
        var.is_secret,
        &opts,
    )?;
    match var
        .values
        .iter_mut()
        .find(|v| v.context == input.context && v.context_parameter == input.context_parameter)
    {
        Some(v) => v.value = input.value,
        None => var.values.push(EnvValue {
            id: new_id,
            value: input.value,
            context: input.context,
            context_parameter: input.context_parameter,
        }),
    }
    var.updated_at = now_millis();
    Ok((
        StatusCode::CREATED,
        Json(render_var(var, opts.secret_value_mode)),
    )
        .into_response())
}

async fn delete_var(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
) -> Reply {
    let (site, key) = single(&h, &p, query)?;
    match lock(&h.state).scope(site.as_deref())?.remove(&key) {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(not_found()),
    }
}

async fn delete_value(
    State(h): State<NetlifyHandle>,
    Path(p): Path<Params>,
    query: QueryResult,
) -> Reply {
    let (site, key) = single(&h, &p, query)?;
    let id = p.get("id").cloned().unwrap_or_default();
    let mut state = lock(&h.state);
    let var = state
        .scope(site.as_deref())?
        .get_mut(&key)
        .ok_or_else(not_found)?;
    let before = var.values.len();
    var.values.retain(|v| v.id != id);
    if var.values.len() == before {
        return Err(not_found());
    }
    var.updated_at = now_millis();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn build_hook(State(h): State<NetlifyHandle>, Path(p): Path<Params>) -> Response {
    let id = p.get("id").cloned().unwrap_or_default();
    lock(&h.state).builds.push(id);
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(is_secret: bool) -> EnvVar {
        EnvVar {
            key: "K".into(),
            scopes: default_scopes(is_secret),
            values: vec![
                EnvValue {
                    id: "1".into(),
                    value: "p".into(),
                    context: "production".into(),
                    context_parameter: None,
                },
                EnvValue {
                    id: "2".into(),
                    value: "d".into(),
                    context: "dev".into(),
                    context_parameter: None,
                },
            ],
            is_secret,
            updated_at: String::new(),
        }
    }

    #[test]
    fn secret_values_hidden_except_dev() {
        let v = render_var(&var(true), SecretValueMode::Empty);
        assert_eq!(v["values"][0]["value"], "");
        assert_eq!(v["values"][1]["value"], "d");
        let v = render_var(&var(true), SecretValueMode::Omitted);
        assert!(v["values"][0].get("value").is_none());
        let v = render_var(&var(false), SecretValueMode::Empty);
        assert_eq!(v["values"][0]["value"], "p");
    }

    #[test]
    fn secret_scopes_exclude_post_processing() {
        assert_eq!(default_scopes(false).len(), 4);
        assert!(!default_scopes(true).contains(&"post-processing".to_owned()));
    }

    #[test]
    fn context_rules() {
        let opts = Options::default();
        assert!(check_value("production", None, true, &opts).is_ok());
        assert!(check_value("all", None, true, &opts).is_err());
        assert!(check_value("all", None, false, &opts).is_ok());
        assert!(check_value("branch", None, false, &opts).is_err());
        assert!(check_value("branch", Some("main"), false, &opts).is_ok());
        assert!(check_value("nope", None, false, &opts).is_err());
        let lenient = Options {
            enforce_secret_rules: false,
            ..Options::default()
        };
        assert!(check_value("all", None, true, &lenient).is_ok());
    }
}
