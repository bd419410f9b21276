//! A fake of GitHub's Actions secrets/variables API and Netlify's environment-variable API,
//! built only from the platforms' public documentation (the docs.github.com REST reference for
//! Actions secrets and variables, Netlify's open-api swagger and its Secrets Controller pages),
//! never from Bridge's adapters or its emulators. Those were written by the adapters' authors
//! and can share their misreadings; this one answers as the docs say, so a test against it
//! checks the binary against the platform, not against itself. Where the docs are silent it
//! picks the strictest plausible behaviour and says so beside the route.
//!
//! Only the routes these tests need are served; any other path is a 404, so a new call by
//! the binary shows up as a failure instead of a guessed answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch};
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const TOKEN: &str = "docs-fake-token";
const GH: &str = "/repos/acme/shop/actions";
const SITE: &str = "site-docs-1";
const NF: &str = "/api/v1/accounts/acme-team/env";
const KEY_ID: &str = "568250167242549743";
/// Any 32 bytes (here 0x2a each, base64) serve as the repository's X25519 public key: the
/// fake never decrypts.
const PUBLIC_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
/// What a change in GitHub's UI leaves: another sealed box (60 bytes of 0x09, base64).
const UI_SEALED: &str =
    "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ";
const CONTEXTS: &str = " all dev dev-server branch-deploy deploy-preview production branch ";
const SCOPES: [&str; 4] = ["builds", "functions", "runtime", "post-processing"];

type Shared = Arc<Mutex<Fake>>;
type S = State<Shared>;
type Key = Path<String>;
type Body = Json<Value>;
/// An error reply: a status and the platform's JSON error body.
type Fail = (StatusCode, Json<Value>);
type Res = Result<Response, Fail>;

#[derive(Default)]
struct Fake {
    base: String,
    log: Vec<String>,
    last_ms: i64,
    next_id: u64,
    secrets: BTreeMap<String, GhItem>,
    variables: BTreeMap<String, GhItem>,
    netlify: BTreeMap<String, NfVar>,
}

/// A GitHub secret (`value` is the sealed box as sent) or variable. Stamps are kept in
/// milliseconds and shown, as GitHub shows them, in whole seconds.
struct GhItem {
    value: String,
    created: i64,
    updated: i64,
}

impl GhItem {
    fn new(value: &str, now: i64) -> Self {
        let (value, created, updated) = (value.to_string(), now, now);
        Self {
            value,
            created,
            updated,
        }
    }
}

struct NfVar {
    scopes: Vec<String>,
    is_secret: bool,
    values: Vec<NfValue>,
    updated_ms: i64,
}

impl NfVar {
    fn new(scopes: Vec<String>, is_secret: bool, values: Vec<NfValue>, now: i64) -> Self {
        let updated_ms = now;
        Self {
            scopes,
            is_secret,
            values,
            updated_ms,
        }
    }
}

struct NfValue {
    id: String,
    context: String,
    parameter: Option<String>,
    value: String,
}

impl NfValue {
    fn new(id: String, context: &str, parameter: Option<&str>, value: &str) -> Self {
        let (context, value) = (context.to_string(), value.to_string());
        let parameter = parameter.map(String::from);
        Self {
            id,
            context,
            parameter,
            value,
        }
    }
}

impl Fake {
    /// A strictly increasing clock in milliseconds.
    fn tick(&mut self) -> i64 {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        self.last_ms = (now as i64).max(self.last_ms + 1);
        self.last_ms
    }

    fn uuid(&mut self) -> String {
        self.next_id += 1;
        format!("{:08x}-0000-4000-8000-{:012x}", self.next_id, self.next_id)
    }
}

fn stamp(ms: i64, whole_seconds: bool) -> String {
    let ms = if whole_seconds { ms / 1000 * 1000 } else { ms };
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    at.expect("valid time").format(&Rfc3339).expect("formats")
}

fn gh_err(status: StatusCode, message: &str) -> Fail {
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    (status, Json(body))
}

fn nf_err(status: StatusCode, message: &str) -> Fail {
    let body = json!({"code": status.as_u16(), "message": message});
    (status, Json(body))
}

fn status(code: StatusCode) -> Res {
    Ok(code.into_response())
}

/// The decoded length of canonical padded base64 (the docs' `encrypted_value` pattern).
fn b64_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let ok = s.len().is_multiple_of(4) && pad <= 2 && body.bytes().all(alphabet);
    ok.then(|| s.len() / 4 * 3 - pad)
}

/// Logs every request and checks what each platform documents for every call.
async fn gate(State(s): S, req: Request, next: Next) -> Res {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    let (nf, query) = (target.starts_with("/api/"), req.uri().query().unwrap_or(""));
    let line = format!("{} {target}", req.method());
    s.lock().unwrap().log.push(line);
    let auth = req.headers().get(header::AUTHORIZATION);
    let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or_default();
    let bearer = auth == format!("Bearer {TOKEN}");
    if nf {
        // docs: `Authorization: Bearer <token>`; every error is `{code, message}`.
        if !bearer {
            return Err(nf_err(StatusCode::UNAUTHORIZED, "Access Denied"));
        }
        // docs: without `site_id` a call addresses account-level variables, which this
        // fake does not hold: strictest, refuse. docs: `context_name` and `scope` filter the
        // list, by rules the docs leave open: strictest, not guessed, refused.
        let site = format!("site_id={SITE}");
        let mut params = query.split('&').filter(|q| !q.is_empty());
        if !params.all(|q| q == site) || !query.contains(&site) {
            return Err(bad("the fake serves site_id alone"));
        }
    } else {
        // docs: a request without a User-Agent is refused; `Bearer` or the older `token`.
        if !req.headers().contains_key(header::USER_AGENT) {
            return Err(gh_err(StatusCode::FORBIDDEN, "User-Agent required"));
        }
        if !bearer && auth != format!("token {TOKEN}") {
            return Err(gh_err(StatusCode::UNAUTHORIZED, "Bad credentials"));
        }
    }
    Ok(next.run(req).await)
}

// ---------------------------------------------------------------- GitHub

fn not_found() -> Fail {
    gh_err(StatusCode::NOT_FOUND, "Not Found")
}

/// docs: names are `[A-Za-z0-9_]`, not starting with a digit or `GITHUB_`; case-insensitive,
/// stored uppercase.
fn gh_name(name: &str) -> Result<String, Fail> {
    let upper = name.to_ascii_uppercase();
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        && !upper.starts_with("GITHUB_");
    let invalid = || gh_err(StatusCode::UNPROCESSABLE_ENTITY, "Invalid name");
    ok.then_some(upper).ok_or_else(invalid)
}

#[derive(serde::Deserialize)]
struct Paging {
    per_page: Option<usize>,
    page: Option<usize>,
}

/// docs: `{total_count, <field>: [...]}` by `per_page` (capped at its max) and 1-based `page`;
/// a `link` header with next/last and prev/first, omitted when there is a single page.
fn paged(f: &Fake, field: &str, p: &Paging, (default, max): (usize, usize)) -> Response {
    let with_value = field == "variables";
    let map = if with_value { &f.variables } else { &f.secrets };
    let per = p.per_page.unwrap_or(default).clamp(1, max);
    let page = p.page.unwrap_or(1).max(1);
    let last = map.len().div_ceil(per).max(1);
    let shown = map.iter().skip((page - 1) * per).take(per);
    let shown: Vec<Value> = shown.map(|(n, i)| gh_json(n, i, with_value)).collect();
    let body = Json(json!({"total_count": map.len(), field: shown}));
    let base = &f.base;
    let link = |n, rel| format!("<{base}{GH}/{field}?per_page={per}&page={n}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < last {
        links.extend([link(page + 1, "next"), link(last, "last")]);
    }
    if page > 1 {
        links.extend([link(page - 1, "prev"), link(1, "first")]);
    }
    if links.is_empty() {
        return body.into_response();
    }
    ([(header::LINK, links.join(", "))], body).into_response()
}

fn gh_json(name: &str, item: &GhItem, with_value: bool) -> Value {
    let (created, updated) = (stamp(item.created, true), stamp(item.updated, true));
    let mut v = json!({"name": name, "created_at": created, "updated_at": updated});
    if with_value {
        v["value"] = json!(item.value);
    }
    v
}

// docs: GET …/actions/secrets/public-key → {key_id, key}, key a base64 32-byte X25519 key
async fn gh_public_key() -> Response {
    Json(json!({"key_id": KEY_ID, "key": PUBLIC_KEY})).into_response()
}

// docs: GET …/actions/secrets lists {name, created_at, updated_at} only; per_page 30, max 100
async fn gh_list_secrets(State(s): S, Query(p): Query<Paging>) -> Response {
    paged(&s.lock().unwrap(), "secrets", &p, (30, 100))
}

// docs: PUT …/actions/secrets/{name} {encrypted_value, key_id} → 201 `{}` created, 204 updated
async fn gh_put_secret(State(s): S, Path(name): Key, Json(b): Body) -> Res {
    let name = gh_name(&name)?;
    // docs: both fields are required and the value is base64 (a sealed box is ≥ 48 bytes);
    // silent on a key_id that is not the current key's: strictest, refuse it.
    let sealed = b["encrypted_value"].as_str();
    let sealed = sealed.filter(|v| b64_len(v).is_some_and(|n| n >= 48));
    let invalid = |what| gh_err(StatusCode::UNPROCESSABLE_ENTITY, what);
    let sealed = sealed.ok_or_else(|| invalid("Invalid encrypted_value"))?;
    if b["key_id"].as_str() != Some(KEY_ID) {
        return Err(invalid("Invalid key_id"));
    }
    let mut f = s.lock().unwrap();
    let now = f.tick();
    if let Some(old) = f.secrets.get_mut(&name) {
        (old.value, old.updated) = (sealed.into(), now);
        return status(StatusCode::NO_CONTENT);
    }
    f.secrets.insert(name, GhItem::new(sealed, now));
    Ok((StatusCode::CREATED, Json(json!({}))).into_response())
}

// docs: DELETE …/actions/secrets/{name} → 204
async fn gh_delete_secret(State(s): S, Path(name): Key) -> Res {
    gone(&mut s.lock().unwrap().secrets, &name)
}

fn gone(map: &mut BTreeMap<String, GhItem>, name: &str) -> Res {
    let gone = map.remove(&name.to_ascii_uppercase());
    gone.map(|_| StatusCode::NO_CONTENT.into_response())
        .ok_or_else(not_found)
}

// docs: GET …/actions/variables → {total_count, variables: [{name, value, created_at,
// updated_at}]}; per_page default 10, max 30
async fn gh_list_vars(State(s): S, Query(p): Query<Paging>) -> Response {
    paged(&s.lock().unwrap(), "variables", &p, (10, 30))
}

// docs: POST …/actions/variables {name, value} (both required) → 201; silent on an existing
// name (409 or 422): strictest, 409 and nothing changes
async fn gh_create_var(State(s): S, Json(b): Body) -> Res {
    let name = gh_name(b["name"].as_str().unwrap_or_default())?;
    let missing = || gh_err(StatusCode::UNPROCESSABLE_ENTITY, "value is required");
    let value = b["value"].as_str().ok_or_else(missing)?;
    let mut f = s.lock().unwrap();
    if f.variables.contains_key(&name) {
        return Err(gh_err(StatusCode::CONFLICT, "Already exists"));
    }
    let now = f.tick();
    f.variables.insert(name, GhItem::new(value, now));
    Ok((StatusCode::CREATED, Json(json!({}))).into_response())
}

// docs: PATCH …/actions/variables/{name} {name?, value?} → 204, `name` renames; silent on a
// rename onto an existing name: strictest, 409
async fn gh_update_var(State(s): S, Path(name): Key, Json(b): Body) -> Res {
    let name = name.to_ascii_uppercase();
    let new_name = b["name"].as_str().unwrap_or(&name);
    let new_name = gh_name(new_name)?;
    let mut f = s.lock().unwrap();
    let now = f.tick();
    if new_name != name && f.variables.contains_key(&new_name) {
        return Err(gh_err(StatusCode::CONFLICT, "Already exists"));
    }
    let mut item = f.variables.remove(&name).ok_or_else(not_found)?;
    if let Some(value) = b["value"].as_str() {
        item.value = value.into();
    }
    item.updated = now;
    f.variables.insert(new_name, item);
    status(StatusCode::NO_CONTENT)
}

// docs: DELETE …/actions/variables/{name} → 204
async fn gh_delete_var(State(s): S, Path(name): Key) -> Res {
    gone(&mut s.lock().unwrap().variables, &name)
}

// ---------------------------------------------------------------- Netlify

fn bad(message: &str) -> Fail {
    nf_err(StatusCode::BAD_REQUEST, message)
}

fn missing() -> Fail {
    nf_err(StatusCode::NOT_FOUND, "Not Found")
}

/// docs: the EnvVar object; a secret's values can be read back only in dev contexts.
fn nf_json(key: &str, v: &NfVar) -> Value {
    let mut values = Vec::new();
    for x in &v.values {
        let mut o = json!({"id": x.id, "context": x.context});
        if let Some(p) = &x.parameter {
            o["context_parameter"] = json!(p);
        }
        if !v.is_secret || x.context.starts_with("dev") {
            o["value"] = json!(x.value);
        }
        values.push(o);
    }
    let by = json!({"id": "u1", "full_name": "Docs Fake", "email": "f@example.com"});
    json!({"key": key, "scopes": v.scopes, "values": values, "is_secret": v.is_secret,
           "updated_at": stamp(v.updated_ms, false), "updated_by": by})
}

/// docs (Secrets Controller): a secret value needs an explicit non-`all`, non-dev context;
/// whether the server enforces it is unstated: strictest, it does here.
fn nf_value(f: &mut Fake, raw: &Value, secret: bool) -> Result<NfValue, Fail> {
    let known = |c: &&str| CONTEXTS.contains(&format!(" {c} "));
    let context = raw["context"].as_str().filter(known);
    let context = context.ok_or_else(|| bad("invalid context"))?.to_string();
    let parameter = raw["context_parameter"].as_str().filter(|p| !p.is_empty());
    if (context == "branch") != parameter.is_some() {
        return Err(bad("context_parameter goes with context branch only"));
    }
    if secret && (context == "all" || context.starts_with("dev")) {
        return Err(bad("secret values need a non-development context"));
    }
    let value = raw["value"].as_str().ok_or_else(|| bad("value missing"))?;
    Ok(NfValue::new(f.uuid(), &context, parameter, value))
}

fn same_context(a: &NfValue, b: &NfValue) -> bool {
    a.context == b.context && a.parameter == b.parameter
}

/// A whole variable, `{key, scopes?, values, is_secret?}`, as created or replaced.
fn nf_var(f: &mut Fake, raw: &Value, now: i64) -> Result<NfVar, Fail> {
    let is_secret = raw["is_secret"].as_bool().unwrap_or(false);
    // docs silent on omitted scopes: taken as all of them.
    let all = json!(SCOPES);
    let scopes = raw.get("scopes").unwrap_or(&all).as_array();
    let scopes = scopes.cloned().unwrap_or_default();
    let known = |s: &Value| s.as_str().is_some_and(|s| SCOPES.contains(&s));
    if !scopes.iter().all(known) {
        return Err(bad("invalid scope"));
    }
    // docs (Secrets Controller): secrets are not allowed in the post-processing scope.
    if is_secret && scopes.contains(&json!("post-processing")) {
        return Err(bad("no secret values in the post-processing scope"));
    }
    let scopes = scopes.iter().filter_map(|s| s.as_str()).map(String::from);
    let mut values: Vec<NfValue> = Vec::new();
    for raw in raw["values"]
        .as_array()
        .ok_or_else(|| bad("values missing"))?
    {
        let v = nf_value(f, raw, is_secret)?;
        // docs silent on one context given twice: strictest, refuse.
        if values.iter().any(|o| same_context(o, &v)) {
            return Err(bad("a context appears twice"));
        }
        values.push(v);
    }
    Ok(NfVar::new(scopes.collect(), is_secret, values, now))
}

// docs: GET /accounts/{account_id}/env?site_id= → 200 [EnvVar], unpaginated
async fn nf_list(State(s): S) -> Response {
    let f = s.lock().unwrap();
    let list: Vec<Value> = f.netlify.iter().map(|(k, v)| nf_json(k, v)).collect();
    Json(list).into_response()
}

// docs: POST /accounts/{account_id}/env?site_id= with an array of variables → 201 [EnvVar];
// silent on a key that exists: strictest, 409 and nothing is created
async fn nf_create(State(s): S, Json(b): Body) -> Res {
    let list = b.as_array().ok_or_else(|| bad("expected an array"))?;
    let mut f = s.lock().unwrap();
    let now = f.tick();
    let mut made: Vec<(String, NfVar)> = Vec::new();
    for raw in list {
        let key = raw["key"].as_str().filter(|k| !k.is_empty());
        let key = key.ok_or_else(|| bad("key is required"))?;
        if f.netlify.contains_key(key) || made.iter().any(|(k, _)| k == key) {
            let message = format!("environment variable {key} already exists");
            return Err(nf_err(StatusCode::CONFLICT, &message));
        }
        made.push((key.to_string(), nf_var(&mut f, raw, now)?));
    }
    let out: Vec<Value> = made.iter().map(|(k, v)| nf_json(k, v)).collect();
    f.netlify.extend(made);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

// docs: PUT /accounts/{account_id}/env/{key} replaces all values (every context not in the
// body is wiped) → 200 EnvVar. docs: the secret flag cannot be removed. docs: `key` renames;
// not needed here: strictest, a body naming another key is refused.
async fn nf_put(State(s): S, Path(key): Key, Json(b): Body) -> Res {
    if b["key"].as_str().is_some_and(|k| k != key) {
        return Err(bad("renaming is not served by this fake"));
    }
    let mut f = s.lock().unwrap();
    let was_secret = f.netlify.get(&key).ok_or_else(missing)?.is_secret;
    let now = f.tick();
    let var = nf_var(&mut f, &b, now)?;
    if was_secret && !var.is_secret {
        return Err(bad("is_secret cannot be removed"));
    }
    let out = nf_json(&key, &var);
    f.netlify.insert(key, var);
    Ok(Json(out).into_response())
}

// docs: PATCH /accounts/{account_id}/env/{key} {context, context_parameter?, value} sets that
// one context's value and leaves the others → 201 EnvVar; the one `updated_at` moves
async fn nf_patch(State(s): S, Path(key): Key, Json(b): Body) -> Res {
    let mut f = s.lock().unwrap();
    let secret = f.netlify.get(&key).ok_or_else(missing)?.is_secret;
    let new = nf_value(&mut f, &b, secret)?;
    let now = f.tick();
    let var = f.netlify.get_mut(&key).ok_or_else(missing)?;
    match var.values.iter_mut().find(|o| same_context(o, &new)) {
        Some(old) => old.value = new.value,
        None => var.values.push(new),
    }
    var.updated_ms = now;
    Ok((StatusCode::CREATED, Json(nf_json(&key, var))).into_response())
}

// docs: DELETE /accounts/{account_id}/env/{key}?site_id= → 204
async fn nf_delete(State(s): S, Path(key): Key) -> Res {
    let gone = s.lock().unwrap().netlify.remove(&key);
    gone.ok_or_else(missing).and(status(StatusCode::NO_CONTENT))
}

// docs: DELETE /accounts/{account_id}/env/{key}/value/{id}?site_id= → 204; the stamp moves
async fn nf_delete_value(State(s): S, Path((key, id)): Path<(String, String)>) -> Res {
    let mut f = s.lock().unwrap();
    let now = f.tick();
    let var = f.netlify.get_mut(&key).ok_or_else(missing)?;
    let before = var.values.len();
    var.values.retain(|v| v.id != id);
    if var.values.len() == before {
        return Err(missing());
    }
    var.updated_ms = now;
    status(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- what the tests hold

pub struct DocsFake {
    base: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocsFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DocsFake {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Shared::default();
        state.lock().unwrap().base = base.clone();
        let secret = axum::routing::put(gh_put_secret).delete(gh_delete_secret);
        let variables = get(gh_list_vars).post(gh_create_var);
        let variable = patch(gh_update_var).delete(gh_delete_var);
        let env_var = patch(nf_patch).put(nf_put).delete(nf_delete);
        let value = delete(nf_delete_value);
        let app = Router::new()
            .route(&format!("{GH}/secrets/public-key"), get(gh_public_key))
            .route(&format!("{GH}/secrets"), get(gh_list_secrets))
            .route(&format!("{GH}/secrets/{{name}}"), secret)
            .route(&format!("{GH}/variables"), variables)
            .route(&format!("{GH}/variables/{{name}}"), variable)
            .route(NF, get(nf_list).post(nf_create))
            .route(&format!("{NF}/{{key}}"), env_var)
            .route(&format!("{NF}/{{key}}/value/{{id}}"), value)
            .fallback(|| async { gh_err(StatusCode::NOT_FOUND, "Not Found") })
            .layer(middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let serve = async move { axum::serve(listener, app).await.expect("serves") };
        let task = tokio::spawn(serve);
        Self { base, state, task }
    }

    fn lock(&self) -> MutexGuard<'_, Fake> {
        self.state.lock().unwrap()
    }

    /// The settings the binary reads to find both platforms here.
    pub fn exports(&self) -> Vec<(&'static str, String)> {
        let netlify = format!("{}/api/v1", self.base);
        let fixed = [
            ("GITHUB_TOKEN", TOKEN),
            ("GITHUB_REPOSITORY", "acme/shop"),
            ("NETLIFY_API_TOKEN", TOKEN),
            ("NETLIFY_SITE_ID", SITE),
            ("NETLIFY_ACCOUNT_ID", "acme-team"),
        ];
        let github = ("GITHUB_API_URL", self.base.clone());
        let mut all = vec![github, ("NETLIFY_API_URL", netlify)];
        all.extend(fixed.map(|(k, v)| (k, v.to_string())));
        all
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    pub fn writes(&self) -> Vec<String> {
        let mut all = self.requests();
        all.retain(|r| !r.starts_with("GET "));
        all
    }

    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    pub fn variables(&self) -> BTreeMap<String, String> {
        let f = self.lock();
        let pairs = f.variables.iter();
        pairs.map(|(k, v)| (k.clone(), v.value.clone())).collect()
    }

    /// Each secret's name and `updated_at`, as the list shows them.
    pub fn secret_stamps(&self) -> BTreeMap<String, String> {
        let f = self.lock();
        let pairs = f.secrets.iter();
        pairs
            .map(|(k, v)| (k.clone(), stamp(v.updated, true)))
            .collect()
    }

    /// Someone changes a secret in GitHub's UI: a new sealed box and a later `updated_at`
    /// (in a later second: GitHub's stamps have one-second resolution). Returns the stamp.
    pub fn github_ui_change_secret(&self, name: &str) -> String {
        let mut f = self.lock();
        let now = f.tick();
        let item = f.secrets.get_mut(name).expect("secret exists");
        item.updated = now.max((item.updated / 1000 + 1) * 1000);
        item.value = UI_SEALED.into();
        stamp(item.updated, true)
    }

    /// Each key's value in exactly `context` (no fallback to `all`), secret or not.
    pub fn netlify_values(&self, context: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, var) in &self.lock().netlify {
            if let Some(v) = var.values.iter().find(|v| v.context == context) {
                out.insert(key.clone(), v.value.clone());
            }
        }
        out
    }

    pub fn netlify_secret_keys(&self) -> Vec<String> {
        let f = self.lock();
        let secret = f.netlify.iter().filter(|(_, v)| v.is_secret);
        secret.map(|(k, _)| k.clone()).collect()
    }

    /// Someone sets one context's value in Netlify's UI (a plain variable, made if absent);
    /// the variable's one `updated_at` moves.
    pub fn netlify_ui_set(&self, key: &str, context: &str, value: &str) {
        let mut f = self.lock();
        let (now, id) = (f.tick(), f.uuid());
        let scopes = SCOPES.map(String::from).into();
        let fresh = NfVar::new(scopes, false, Vec::new(), now);
        let var = f.netlify.entry(key.into()).or_insert(fresh);
        var.values.retain(|v| v.context != context);
        var.values.push(NfValue::new(id, context, None, value));
        var.updated_ms = now;
    }
}
