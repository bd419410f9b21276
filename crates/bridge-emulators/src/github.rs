//! GitHub emulator: Actions secrets (sealed with libsodium boxes and unsealed
//! here with the emulator's own X25519 keys) and Actions variables of its
//! repositories, at repository level and per environment, plus the pull
//! request endpoints a bot uses. It holds `bridge/emulated` and any repository
//! created at start or with [`GithubHandle::add_repository`]; another one
//! answers GitHub's 404, as a repository the token cannot see does.
//!
//! Choices for the points the reference leaves open:
//! - Names follow the documented rules (`[A-Za-z0-9_]`, no leading digit, no
//!   `GITHUB_` prefix) and are stored upper-cased, as GitHub does, so lookups
//!   are case-insensitive.
//! - Secret values are limited to 48 KiB (422 above that); the 100-secret
//!   cap is not enforced so benchmarks can use large sets.
//! - Creating a variable that exists answers 409.
//! - Owner and repository names match case-insensitively, as on GitHub.
//! - Environments spring into existence on first use, including reads: an
//!   unknown environment lists as empty instead of 404, and has its own key
//!   pair (so a repository key id is rejected for an environment secret).
//! - `User-Agent` is not required.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_box::SecretKey;
use crypto_box::aead::OsRng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::{Reject, Reply, lock, now_seconds, parse_json};
use crate::layer::{Core, RouteKind, fault_controls, finish, route};
use crate::platform::{GITHUB_DOCS, Platform};
use crate::write_log::BodyKey;

/// The owner of the repository every emulator holds from the start.
pub(crate) const OWNER: &str = "bridge";
/// That repository's name.
pub(crate) const REPO: &str = "emulated";

const SECRETS_PER_PAGE: (usize, usize) = (30, 100);
const VARIABLES_PER_PAGE: (usize, usize) = (10, 30);
const MAX_SECRET_BYTES: usize = 48 * 1024;
/// Real key ids are long decimal strings; ours count up from this one.
const FIRST_KEY_ID: u64 = 568_250_167_242_549_743;

#[derive(Clone, Debug)]
struct Secret {
    plaintext: Vec<u8>,
    created_at: String,
    updated_at: String,
}

#[derive(Clone, Debug)]
struct Variable {
    value: String,
    created_at: String,
    updated_at: String,
}

struct Scope {
    key_id: String,
    key: SecretKey,
    secrets: BTreeMap<String, Secret>,
    variables: BTreeMap<String, Variable>,
}

impl std::fmt::Debug for Scope {
    // The secret key must not end up in test logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("key_id", &self.key_id)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("variables", &self.variables)
            .finish()
    }
}

#[derive(Debug)]
struct Repository {
    /// `owner` and `repo` as first given, for the URLs in answers.
    owner: String,
    name: String,
    repo: Scope,
    envs: BTreeMap<String, Scope>,
    /// Pull requests (and so issue numbers), in the order they were opened.
    pulls: Vec<PullRequest>,
}

impl Repository {
    /// The scope of the repository (`None`) or of an environment, creating the
    /// environment on first use with the next key id.
    fn scope(&mut self, env: Option<&str>, next_key: &mut u64) -> &mut Scope {
        match env {
            None => &mut self.repo,
            Some(name) => self.envs.entry(name.to_owned()).or_insert_with(|| {
                *next_key += 1;
                new_scope(*next_key - 1)
            }),
        }
    }
}

#[derive(Debug)]
struct GithubState {
    /// By lower-cased `owner/repo`.
    repos: BTreeMap<String, Repository>,
    /// Key ids count across repositories, so no two scopes share one.
    next_key: u64,
}

/// The map key of `owner/repo`: GitHub matches both case-insensitively.
fn repo_key(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}").to_ascii_lowercase()
}

impl GithubState {
    fn new() -> Self {
        Self {
            repos: BTreeMap::new(),
            next_key: FIRST_KEY_ID,
        }
    }

    /// Adds `owner/repo` unless held; returns its map key.
    fn add(&mut self, owner: &str, name: &str) -> String {
        let key = repo_key(owner, name);
        if !self.repos.contains_key(&key) {
            let repo = new_scope(self.next_key);
            self.next_key += 1;
            self.repos.insert(
                key.clone(),
                Repository {
                    owner: owner.to_owned(),
                    name: name.to_owned(),
                    repo,
                    envs: BTreeMap::new(),
                    pulls: Vec::new(),
                },
            );
        }
        key
    }

    /// The scope of a held repository (`None` if not held) or one of its
    /// environments, creating the environment on first use.
    fn scope(&mut self, repo: &str, env: Option<&str>) -> Option<&mut Scope> {
        let next_key = &mut self.next_key;
        self.repos.get_mut(repo).map(|r| r.scope(env, next_key))
    }

    /// [`Self::scope`] for handlers, whose repository was checked to exist
    /// (repositories are never removed): the 404 only keeps an impossible case
    /// from panicking.
    fn found(&mut self, repo: &str, env: Option<&str>) -> Result<&mut Scope, Reject> {
        self.scope(repo, env).ok_or_else(not_found)
    }
}

fn new_scope(key_id: u64) -> Scope {
    Scope {
        key_id: key_id.to_string(),
        key: SecretKey::generate(&mut OsRng),
        secrets: BTreeMap::new(),
        variables: BTreeMap::new(),
    }
}

/// Test-side view of the GitHub emulator; also the axum state of its routes.
/// The secret, variable and pull request methods act on `bridge/emulated`;
/// [`GithubHandle::repository`] reaches the others.
#[derive(Clone, Debug)]
pub struct GithubHandle {
    core: Arc<Core>,
    state: Arc<Mutex<GithubState>>,
}

/// Test-side view of one repository of the GitHub emulator.
#[derive(Clone, Debug)]
pub struct GithubRepository {
    key: String,
    full_name: String,
    state: Arc<Mutex<GithubState>>,
}

fault_controls!(GithubHandle);

impl GithubHandle {
    /// API base URL, e.g. `http://127.0.0.1:P` (GitHub has no path prefix).
    pub fn base_url(&self) -> String {
        self.core.root_url.clone()
    }

    /// Creates a repository (no secrets, variables or environments, a key
    /// pair of its own) if the emulator does not hold it yet, and returns it.
    /// `None` if `full_name` is not `owner/repo`.
    pub fn add_repository(&self, full_name: &str) -> Option<GithubRepository> {
        let (owner, name) = full_name.split_once('/')?;
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        let key = lock(&self.state).add(owner, name);
        self.repository(&key)
    }

    /// The repository `owner/repo` (case-insensitive), if the emulator holds it.
    pub fn repository(&self, full_name: &str) -> Option<GithubRepository> {
        let key = full_name.to_ascii_lowercase();
        let state = lock(&self.state);
        let repo = state.repos.get(&key)?;
        Some(GithubRepository {
            full_name: format!("{}/{}", repo.owner, repo.name),
            key,
            state: Arc::clone(&self.state),
        })
    }

    /// `owner/repo` of every repository the emulator holds, sorted.
    pub fn repositories(&self) -> Vec<String> {
        lock(&self.state)
            .repos
            .values()
            .map(|r| format!("{}/{}", r.owner, r.name))
            .collect()
    }

    /// `bridge/emulated`, which exists from the start and is never removed.
    fn default_repo(&self) -> GithubRepository {
        GithubRepository {
            key: repo_key(OWNER, REPO),
            full_name: format!("{OWNER}/{REPO}"),
            state: Arc::clone(&self.state),
        }
    }

    /// Decrypted plaintext of every secret of `bridge/emulated` (`None`) or one
    /// of its environments; see [`GithubRepository::secrets`].
    pub fn secrets(&self, environment: Option<&str>) -> BTreeMap<String, String> {
        self.default_repo().secrets(environment)
    }

    /// Every variable of `bridge/emulated` or one of its environments.
    pub fn variables(&self, environment: Option<&str>) -> BTreeMap<String, String> {
        self.default_repo().variables(environment)
    }

    /// Sets a secret of `bridge/emulated` out of band; see
    /// [`GithubRepository::set_secret`].
    pub fn set_secret(&self, environment: Option<&str>, name: &str, plaintext: &str) {
        self.default_repo().set_secret(environment, name, plaintext);
    }

    /// Sets a variable of `bridge/emulated` out of band.
    pub fn set_variable(&self, environment: Option<&str>, name: &str, value: &str) {
        self.default_repo().set_variable(environment, name, value);
    }

    /// Removes a secret of `bridge/emulated` out of band.
    pub fn remove_secret(&self, environment: Option<&str>, name: &str) {
        self.default_repo().remove_secret(environment, name);
    }

    /// Removes a variable of `bridge/emulated` out of band.
    pub fn remove_variable(&self, environment: Option<&str>, name: &str) {
        self.default_repo().remove_variable(environment, name);
    }

    /// `updated_at` of a secret of `bridge/emulated`, `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn secret_updated_at(&self, environment: Option<&str>, name: &str) -> Option<String> {
        self.default_repo().secret_updated_at(environment, name)
    }

    /// `(key_id, base64 public key)` of `bridge/emulated` or one of its
    /// environments, as the public-key endpoint returns them.
    pub fn public_key(&self, environment: Option<&str>) -> (String, String) {
        self.default_repo().public_key(environment)
    }

    /// Every pull request opened on `bridge/emulated` so far, oldest first,
    /// with its labels.
    pub fn pulls(&self) -> Vec<PullRequest> {
        self.default_repo().pulls()
    }
}

impl GithubRepository {
    /// `owner/repo`, as first given.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Runs `f` on a scope of this repository; repositories are never removed,
    /// so the default is never used, it only avoids a panic path.
    fn with_scope<T: Default>(&self, env: Option<&str>, f: impl FnOnce(&mut Scope) -> T) -> T {
        let mut state = lock(&self.state);
        state.scope(&self.key, env).map(f).unwrap_or_default()
    }

    /// Decrypted plaintext of every secret of the repository (`None`) or an
    /// environment. Non-UTF-8 plaintext is shown lossily.
    pub fn secrets(&self, environment: Option<&str>) -> BTreeMap<String, String> {
        self.with_scope(environment, |scope| {
            scope
                .secrets
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        String::from_utf8_lossy(&s.plaintext).into_owned(),
                    )
                })
                .collect()
        })
    }

    /// Every variable of the repository or an environment.
    pub fn variables(&self, environment: Option<&str>) -> BTreeMap<String, String> {
        self.with_scope(environment, |scope| {
            scope
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect()
        })
    }

    /// Sets a secret out of band (as if changed in the UI): the name is
    /// upper-cased and `updated_at` is stamped with the current second.
    pub fn set_secret(&self, environment: Option<&str>, name: &str, plaintext: &str) {
        self.with_scope(environment, |scope| {
            upsert_secret(
                scope,
                &name.to_ascii_uppercase(),
                plaintext.as_bytes().to_vec(),
            );
        });
    }

    /// Sets a variable out of band.
    pub fn set_variable(&self, environment: Option<&str>, name: &str, value: &str) {
        let now = now_seconds();
        self.with_scope(environment, |scope| {
            scope
                .variables
                .entry(name.to_ascii_uppercase())
                .and_modify(|v| {
                    v.value = value.to_owned();
                    v.updated_at = now.clone();
                })
                .or_insert_with(|| Variable {
                    value: value.to_owned(),
                    created_at: now.clone(),
                    updated_at: now.clone(),
                });
        });
    }

    /// Removes a secret out of band.
    pub fn remove_secret(&self, environment: Option<&str>, name: &str) {
        self.with_scope(environment, |scope| {
            scope.secrets.remove(&name.to_ascii_uppercase());
        });
    }

    /// Removes a variable out of band.
    pub fn remove_variable(&self, environment: Option<&str>, name: &str) {
        self.with_scope(environment, |scope| {
            scope.variables.remove(&name.to_ascii_uppercase());
        });
    }

    /// `updated_at` of a secret, `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn secret_updated_at(&self, environment: Option<&str>, name: &str) -> Option<String> {
        self.with_scope(environment, |scope| {
            scope
                .secrets
                .get(&name.to_ascii_uppercase())
                .map(|s| s.updated_at.clone())
        })
    }

    /// `(key_id, base64 public key)` of the repository or an environment, as
    /// the public-key endpoint returns them.
    pub fn public_key(&self, environment: Option<&str>) -> (String, String) {
        self.with_scope(environment, |scope| public_key_of(scope))
    }

    /// Every pull request opened so far, oldest first, with its labels.
    pub fn pulls(&self) -> Vec<PullRequest> {
        lock(&self.state)
            .repos
            .get(&self.key)
            .map(|r| r.pulls.clone())
            .unwrap_or_default()
    }
}

fn public_key_of(scope: &Scope) -> (String, String) {
    (
        scope.key_id.clone(),
        STANDARD.encode(scope.key.public_key().as_bytes()),
    )
}

/// A pull request the emulator holds. The emulator has no git: `head` and `base` are
/// taken as given (no check that the branches exist or differ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number (shared with issues, from 1).
    pub number: u64,
    /// Title.
    pub title: String,
    /// The head branch as sent (`branch` or `owner:branch`).
    pub head: String,
    /// The base branch.
    pub base: String,
    /// Body (empty when none was sent).
    pub body: String,
    /// Opened as a draft.
    pub draft: bool,
    /// `open` (the emulator never closes one).
    pub state: String,
    /// Label names, in the order they were added.
    pub labels: Vec<String>,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub created_at: String,
}

/// Returns whether the secret was created (as opposed to updated).
fn upsert_secret(scope: &mut Scope, name: &str, plaintext: Vec<u8>) -> bool {
    let now = now_seconds();
    match scope.secrets.get_mut(name) {
        Some(s) => {
            s.plaintext = plaintext;
            s.updated_at = now;
            false
        }
        None => {
            scope.secrets.insert(
                name.to_owned(),
                Secret {
                    plaintext,
                    created_at: now.clone(),
                    updated_at: now,
                },
            );
            true
        }
    }
}

/// The emulator, holding `bridge/emulated` and the `extra` repositories
/// (`owner/repo`; `start` checked their shape).
pub(crate) fn router(core: Arc<Core>, extra: &[String]) -> (Router, GithubHandle) {
    let handle = GithubHandle {
        core: Arc::clone(&core),
        state: Arc::new(Mutex::new(GithubState::new())),
    };
    for full_name in
        std::iter::once(crate::GITHUB_REPOSITORY).chain(extra.iter().map(String::as_str))
    {
        handle.add_repository(full_name);
    }
    let mut r: Router<GithubHandle> = Router::new();
    // Both levels share handlers: they differ only in the optional
    // `environment_name` path parameter.
    for (public_key, secrets, secret, variables, variable) in [
        (
            "/repos/{owner}/{repo}/actions/secrets/public-key",
            "/repos/{owner}/{repo}/actions/secrets",
            "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
            "/repos/{owner}/{repo}/actions/variables",
            "/repos/{owner}/{repo}/actions/variables/{name}",
        ),
        (
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key",
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets",
            "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}",
            "/repos/{owner}/{repo}/environments/{environment_name}/variables",
            "/repos/{owner}/{repo}/environments/{environment_name}/variables/{name}",
        ),
    ] {
        r = route(
            r,
            &core,
            public_key,
            RouteKind::Api,
            get(public_key_handler),
        );
        r = route(r, &core, secrets, RouteKind::Api, get(list_secrets));
        r = route(
            r,
            &core,
            secret,
            RouteKind::Api,
            get(get_secret).put(put_secret).delete(delete_secret),
        );
        r = route(
            r,
            &core,
            variables,
            RouteKind::Api,
            get(list_variables).post(create_variable),
        );
        r = route(
            r,
            &core,
            variable,
            RouteKind::Api,
            get(get_variable)
                .patch(update_variable)
                .delete(delete_variable),
        );
    }
    r = route(
        r,
        &core,
        "/repos/{owner}/{repo}/pulls",
        RouteKind::Api,
        get(list_pulls).post(create_pull),
    );
    r = route(
        r,
        &core,
        "/repos/{owner}/{repo}/issues/{issue_number}/labels",
        RouteKind::Api,
        post(add_labels),
    );
    (finish(&core, r.with_state(handle.clone())), handle)
}

type Params = HashMap<String, String>;
type QueryResult = Result<Query<HashMap<String, String>>, QueryRejection>;

fn err(status: StatusCode, message: &str) -> Reject {
    Platform::Github.error(status, message).into()
}

fn not_found() -> Reject {
    err(StatusCode::NOT_FOUND, "Not Found")
}

fn bad_json(e: &str) -> Reject {
    err(
        StatusCode::BAD_REQUEST,
        &format!("Problems parsing JSON: {e}"),
    )
}

fn already_exists() -> Reject {
    err(
        StatusCode::CONFLICT,
        "Already exists - Variable already exists",
    )
}

/// GitHub's 422 `ValidationError` body.
fn validation(resource: &str, field: &str, code: &str, message: &str) -> Reject {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{
            "resource": resource,
            "field": field,
            "code": code,
            "message": message,
        }],
        "documentation_url": GITHUB_DOCS,
        "status": "422",
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body))
        .into_response()
        .into()
}

/// Checks that the emulator holds owner/repo (case-insensitively, like
/// GitHub) and returns its map key and the environment name, already
/// URL-decoded by the router.
fn target(h: &GithubHandle, p: &Params) -> Result<(String, Option<String>), Reject> {
    let (Some(owner), Some(repo)) = (p.get("owner"), p.get("repo")) else {
        return Err(not_found());
    };
    let key = repo_key(owner, repo);
    if !lock(&h.state).repos.contains_key(&key) {
        return Err(not_found());
    }
    match p.get("environment_name") {
        Some(e) if e.is_empty() => Err(not_found()),
        other => Ok((key, other.cloned())),
    }
}

/// The stored (upper-case) form of the name in path parameter `param`;
/// lookups need no validation, a wrong name simply is not found.
fn path_name(p: &Params, param: &str) -> String {
    p.get(param)
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default()
}

/// Validates a secret or variable name and returns its stored (upper-case)
/// form.
fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("name may only contain alphanumeric characters or underscores".into());
    }
    if name.as_bytes()[0].is_ascii_digit() {
        return Err("name must not start with a number".into());
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("GITHUB_") {
        return Err("name must not start with the GITHUB_ prefix".into());
    }
    Ok(upper)
}

/// `page`/`per_page` of a list request.
struct Paging {
    page: usize,
    per_page: usize,
}

impl Paging {
    /// Out-of-range values fall back the way GitHub does: a missing or zero
    /// `per_page` takes the default, a larger one is capped at the maximum.
    fn from_query(q: &HashMap<String, String>, default: usize, max: usize) -> Self {
        let per_page = q
            .get("per_page")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
            .min(max.max(default));
        let page = q
            .get("page")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        Self { page, per_page }
    }

    fn window<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip((self.page - 1).saturating_mul(self.per_page))
            .take(self.per_page)
            .cloned()
            .collect()
    }

    /// The `link` header value, or `None` when everything fits on one page.
    fn link(&self, url: &str, total: usize) -> Option<String> {
        let last = total.div_ceil(self.per_page).max(1);
        if last <= 1 {
            return None;
        }
        let at = |n: usize, rel: &str| {
            format!("<{url}?per_page={}&page={n}>; rel=\"{rel}\"", self.per_page)
        };
        let mut parts = Vec::new();
        if self.page > 1 {
            parts.push(at((self.page - 1).min(last), "prev"));
        }
        if self.page < last {
            parts.push(at(self.page + 1, "next"));
            parts.push(at(last, "last"));
        }
        if self.page > 1 {
            parts.push(at(1, "first"));
        }
        Some(parts.join(", "))
    }
}

/// Shared body of both list endpoints.
fn paged_list(
    h: &GithubHandle,
    uri: &Uri,
    query: QueryResult,
    (default, max): (usize, usize),
    field: &str,
    all: Vec<Value>,
) -> Reply {
    let Query(q) = query.map_err(|_| err(StatusCode::BAD_REQUEST, "invalid query string"))?;
    let paging = Paging::from_query(&q, h.core.page_size().unwrap_or(default), max);
    let url = format!("{}{}", h.core.root_url, uri.path());
    let mut response =
        Json(json!({ "total_count": all.len(), field: paging.window(&all) })).into_response();
    if let Some(v) = paging
        .link(&url, all.len())
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        response.headers_mut().insert(header::LINK, v);
    }
    Ok(response)
}

async fn public_key_handler(State(h): State<GithubHandle>, Path(p): Path<Params>) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let (key_id, key) = public_key_of(lock(&h.state).found(&repo, env.as_deref())?);
    Ok(Json(json!({ "key_id": key_id, "key": key })).into_response())
}

fn secret_meta(name: &str, s: &Secret) -> Value {
    json!({ "name": name, "created_at": s.created_at, "updated_at": s.updated_at })
}

async fn list_secrets(
    State(h): State<GithubHandle>,
    Path(p): Path<Params>,
    uri: Uri,
    query: QueryResult,
) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let all: Vec<Value> = {
        let mut state = lock(&h.state);
        let scope = state.found(&repo, env.as_deref())?;
        scope
            .secrets
            .iter()
            .map(|(n, s)| secret_meta(n, s))
            .collect()
    };
    paged_list(&h, &uri, query, SECRETS_PER_PAGE, "secrets", all)
}

async fn get_secret(State(h): State<GithubHandle>, Path(p): Path<Params>) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let name = path_name(&p, "secret_name");
    let mut state = lock(&h.state);
    let secret = state
        .found(&repo, env.as_deref())?
        .secrets
        .get(&name)
        .ok_or_else(not_found)?;
    Ok(Json(secret_meta(&name, secret)).into_response())
}

#[derive(Debug, Deserialize)]
struct SecretInput {
    encrypted_value: Option<String>,
    /// A string on api.github.com; some GHES versions use a number, which is
    /// accepted too.
    key_id: Option<Value>,
}

async fn put_secret(State(h): State<GithubHandle>, Path(p): Path<Params>, body: Bytes) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let raw_name = p.get("secret_name").cloned().unwrap_or_default();
    let name = check_name(&raw_name).map_err(|m| validation("Secret", "name", "invalid", &m))?;
    let input: SecretInput = parse_json(&body).map_err(|e| bad_json(&e))?;
    let encrypted = input.encrypted_value.ok_or_else(|| {
        validation(
            "Secret",
            "encrypted_value",
            "missing_field",
            "encrypted_value is required",
        )
    })?;
    let key_id = match input.key_id {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(validation(
                "Secret",
                "key_id",
                "missing_field",
                "key_id is required",
            ));
        }
    };
    let sealed = STANDARD.decode(encrypted.as_bytes()).map_err(|_| {
        validation(
            "Secret",
            "encrypted_value",
            "invalid",
            "encrypted_value must be base64",
        )
    })?;
    let mut state = lock(&h.state);
    let scope = state.found(&repo, env.as_deref())?;
    if key_id != scope.key_id {
        return Err(validation(
            "Secret",
            "key_id",
            "invalid",
            "key_id does not match the current public key",
        ));
    }
    let plaintext = scope.key.unseal(&sealed).map_err(|_| {
        validation(
            "Secret",
            "encrypted_value",
            "invalid",
            "encrypted_value could not be decrypted with the public key",
        )
    })?;
    if plaintext.len() > MAX_SECRET_BYTES {
        return Err(validation(
            "Secret",
            "encrypted_value",
            "invalid",
            "secret value exceeds 48 KB",
        ));
    }
    if upsert_secret(scope, &name, plaintext) {
        Ok((StatusCode::CREATED, Json(json!({}))).into_response())
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

async fn delete_secret(State(h): State<GithubHandle>, Path(p): Path<Params>) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let name = path_name(&p, "secret_name");
    let mut state = lock(&h.state);
    state
        .found(&repo, env.as_deref())?
        .secrets
        .remove(&name)
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn variable_json(name: &str, v: &Variable) -> Value {
    json!({ "name": name, "value": v.value, "created_at": v.created_at, "updated_at": v.updated_at })
}

async fn list_variables(
    State(h): State<GithubHandle>,
    Path(p): Path<Params>,
    uri: Uri,
    query: QueryResult,
) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let all: Vec<Value> = {
        let mut state = lock(&h.state);
        let scope = state.found(&repo, env.as_deref())?;
        scope
            .variables
            .iter()
            .map(|(n, v)| variable_json(n, v))
            .collect()
    };
    paged_list(&h, &uri, query, VARIABLES_PER_PAGE, "variables", all)
}

#[derive(Debug, Deserialize)]
struct VariableInput {
    name: Option<String>,
    value: Option<String>,
}

async fn create_variable(
    State(h): State<GithubHandle>,
    Path(p): Path<Params>,
    body: Bytes,
) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let input: VariableInput = parse_json(&body).map_err(|e| bad_json(&e))?;
    let (Some(raw_name), Some(value)) = (input.name, input.value) else {
        return Err(validation(
            "Variable",
            "name",
            "missing_field",
            "name and value are required",
        ));
    };
    let name = check_name(&raw_name).map_err(|m| validation("Variable", "name", "invalid", &m))?;
    let mut state = lock(&h.state);
    let scope = state.found(&repo, env.as_deref())?;
    if scope.variables.contains_key(&name) {
        return Err(already_exists());
    }
    let now = now_seconds();
    scope.variables.insert(
        name.clone(),
        Variable {
            value,
            created_at: now.clone(),
            updated_at: now,
        },
    );
    // The name came in the body: tell the write log which key this was.
    Ok((
        StatusCode::CREATED,
        Extension(BodyKey(name)),
        Json(json!({})),
    )
        .into_response())
}

async fn get_variable(State(h): State<GithubHandle>, Path(p): Path<Params>) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let name = path_name(&p, "name");
    let mut state = lock(&h.state);
    let var = state
        .found(&repo, env.as_deref())?
        .variables
        .get(&name)
        .ok_or_else(not_found)?;
    Ok(Json(variable_json(&name, var)).into_response())
}

async fn update_variable(
    State(h): State<GithubHandle>,
    Path(p): Path<Params>,
    body: Bytes,
) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let name = path_name(&p, "name");
    let input: VariableInput = parse_json(&body).map_err(|e| bad_json(&e))?;
    let new_name = match input.name.as_deref() {
        None => name.clone(),
        Some(n) => check_name(n).map_err(|m| validation("Variable", "name", "invalid", &m))?,
    };
    let mut state = lock(&h.state);
    let scope = state.found(&repo, env.as_deref())?;
    let mut var = scope.variables.get(&name).cloned().ok_or_else(not_found)?;
    if new_name != name && scope.variables.contains_key(&new_name) {
        return Err(already_exists());
    }
    if let Some(v) = input.value {
        var.value = v;
    }
    var.updated_at = now_seconds();
    scope.variables.remove(&name);
    scope.variables.insert(new_name, var);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_variable(State(h): State<GithubHandle>, Path(p): Path<Params>) -> Reply {
    let (repo, env) = target(&h, &p)?;
    let name = path_name(&p, "name");
    let mut state = lock(&h.state);
    state
        .found(&repo, env.as_deref())?
        .variables
        .remove(&name)
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A label as GitHub returns it; ids are derived from the name, so they are stable.
fn label_json(root: &str, full_name: &str, name: &str) -> Value {
    let id = name.bytes().fold(1_469_598_103_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211)
    }) % 10_000_000_000;
    json!({
        "id": id,
        "node_id": format!("LA_{id}"),
        "url": format!("{root}/repos/{full_name}/labels/{name}"),
        "name": name,
        "color": "ededed",
        "default": false,
        "description": null,
    })
}

/// The head's label: `owner:branch`, with the repository owner when none was given.
fn head_parts(repo_owner: &str, head: &str) -> (String, String) {
    match head.split_once(':') {
        Some((owner, branch)) => (owner.to_owned(), branch.to_owned()),
        None => (repo_owner.to_owned(), head.to_owned()),
    }
}

fn pull_json(root: &str, r: &Repository, p: &PullRequest) -> Value {
    let (owner, full_name) = (&r.owner, format!("{}/{}", r.owner, r.name));
    let (head_owner, head_ref) = head_parts(owner, &p.head);
    let api = format!("{root}/repos/{full_name}/pulls/{}", p.number);
    json!({
        "id": 1_000_000 + p.number,
        "node_id": format!("PR_emulated{}", p.number),
        "number": p.number,
        "url": api,
        "html_url": format!("{root}/{full_name}/pull/{}", p.number),
        "issue_url": format!("{root}/repos/{full_name}/issues/{}", p.number),
        "state": p.state,
        "locked": false,
        "title": p.title,
        "body": p.body,
        "draft": p.draft,
        "user": { "login": "bridge-emulator", "type": "User" },
        "labels": p.labels.iter().map(|l| label_json(root, &full_name, l)).collect::<Vec<_>>(),
        "head": {
            "label": format!("{head_owner}:{head_ref}"),
            "ref": head_ref,
            "repo": { "full_name": full_name },
        },
        "base": {
            "label": format!("{owner}:{}", p.base),
            "ref": p.base,
            "repo": { "full_name": full_name },
        },
        "created_at": p.created_at,
        "updated_at": p.created_at,
        "closed_at": null,
        "merged_at": null,
        "merged": false,
        "mergeable": null,
    })
}

#[derive(Debug, Deserialize)]
struct PullInput {
    title: Option<String>,
    head: Option<String>,
    base: Option<String>,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
}

async fn create_pull(State(h): State<GithubHandle>, Path(p): Path<Params>, body: Bytes) -> Reply {
    let (repo, _) = target(&h, &p)?;
    let input: PullInput = parse_json(&body).map_err(|e| bad_json(&e))?;
    let required = |value: Option<String>, field: &str| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            validation(
                "PullRequest",
                field,
                "missing_field",
                &format!("{field} is required"),
            )
        })
    };
    let title = required(input.title, "title")?;
    let head = required(input.head, "head")?;
    let base = required(input.base, "base")?;
    let mut state = lock(&h.state);
    let r = state.repos.get_mut(&repo).ok_or_else(not_found)?;
    let (_, head_ref) = head_parts(&r.owner, &head);
    let duplicate = r.pulls.iter().any(|o| {
        o.state == "open" && head_parts(&r.owner, &o.head).1 == head_ref && o.base == base
    });
    if duplicate {
        return Err(validation(
            "PullRequest",
            "head",
            "custom",
            &format!("A pull request already exists for {}:{head_ref}.", r.owner),
        ));
    }
    let pull = PullRequest {
        number: r.pulls.len() as u64 + 1,
        title,
        head,
        base,
        body: input.body.unwrap_or_default(),
        draft: input.draft,
        state: "open".into(),
        labels: Vec::new(),
        created_at: now_seconds(),
    };
    let json = pull_json(&h.core.root_url, r, &pull);
    r.pulls.push(pull);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

async fn list_pulls(
    State(h): State<GithubHandle>,
    Path(p): Path<Params>,
    uri: Uri,
    query: QueryResult,
) -> Reply {
    let (repo, _) = target(&h, &p)?;
    let Query(q) = query.map_err(|_| err(StatusCode::BAD_REQUEST, "invalid query string"))?;
    let wanted_state = q.get("state").map_or("open", String::as_str);
    if !matches!(wanted_state, "open" | "closed" | "all") {
        return Err(validation(
            "PullRequest",
            "state",
            "invalid",
            "state must be open, closed or all",
        ));
    }
    let all: Vec<Value> = {
        let state = lock(&h.state);
        let r = state.repos.get(&repo).ok_or_else(not_found)?;
        let head = q.get("head").map(|h| head_parts(&r.owner, h));
        r.pulls
            .iter()
            .filter(|pr| wanted_state == "all" || pr.state == wanted_state)
            .filter(|pr| {
                head.as_ref()
                    .is_none_or(|want| &head_parts(&r.owner, &pr.head) == want)
            })
            .filter(|pr| q.get("base").is_none_or(|b| &pr.base == b))
            // GitHub lists the newest first by default.
            .rev()
            .map(|pr| pull_json(&h.core.root_url, r, pr))
            .collect()
    };
    let paging = Paging::from_query(&q, h.core.page_size().unwrap_or(30), 100);
    let url = format!("{}{}", h.core.root_url, uri.path());
    let mut response = Json(Value::Array(paging.window(&all))).into_response();
    if let Some(v) = paging
        .link(&url, all.len())
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        response.headers_mut().insert(header::LINK, v);
    }
    Ok(response)
}

async fn add_labels(State(h): State<GithubHandle>, Path(p): Path<Params>, body: Bytes) -> Reply {
    let (repo, _) = target(&h, &p)?;
    let number: u64 = p
        .get("issue_number")
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_found)?;
    let value: Value = parse_json(&body).map_err(|e| bad_json(&e))?;
    // Documented forms: `{"labels": ["a"]}`, `{"labels": [{"name": "a"}]}`, or `["a"]`.
    let list = match &value {
        Value::Object(map) => map.get("labels"),
        array @ Value::Array(_) => Some(array),
        _ => None,
    };
    let Some(Value::Array(items)) = list else {
        return Err(validation(
            "Label",
            "labels",
            "missing_field",
            "labels is required and must be an array",
        ));
    };
    let mut names = Vec::new();
    for item in items {
        let name = match item {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or_default(),
            _ => "",
        };
        if name.trim().is_empty() {
            return Err(validation(
                "Label",
                "name",
                "invalid",
                "every label needs a non-empty name",
            ));
        }
        names.push(name.to_owned());
    }
    let mut state = lock(&h.state);
    let r = state.repos.get_mut(&repo).ok_or_else(not_found)?;
    let full_name = format!("{}/{}", r.owner, r.name);
    let pull = r
        .pulls
        .iter_mut()
        .find(|pr| pr.number == number)
        .ok_or_else(not_found)?;
    for name in names {
        if !pull.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
            pull.labels.push(name);
        }
    }
    let labels: Vec<Value> = pull
        .labels
        .iter()
        .map(|l| label_json(&h.core.root_url, &full_name, l))
        .collect();
    Ok(Json(Value::Array(labels)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert_eq!(check_name("api_key"), Ok("API_KEY".to_owned()));
        assert!(check_name("_X").is_ok());
        assert!(check_name("1X").is_err());
        assert!(check_name("github_token").is_err());
        assert!(check_name("GITHUB").is_ok());
        assert!(check_name("A-B").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn link_header_pages() {
        let p = Paging {
            page: 1,
            per_page: 2,
        };
        let link = p.link("http://h/x", 5).unwrap();
        assert!(link.contains("page=2>; rel=\"next\""), "{link}");
        assert!(link.contains("page=3>; rel=\"last\""), "{link}");
        assert!(!link.contains("prev"));
        let p = Paging {
            page: 3,
            per_page: 2,
        };
        let link = p.link("http://h/x", 5).unwrap();
        assert!(link.contains("rel=\"prev\"") && link.contains("rel=\"first\""));
        assert!(!link.contains("next"));
        assert!(
            Paging {
                page: 1,
                per_page: 30
            }
            .link("u", 30)
            .is_none()
        );
    }

    #[test]
    fn environments_get_their_own_keys() {
        let mut s = GithubState::new();
        let a = s.add("bridge", "emulated");
        let b = s.add("Org", "App");
        assert_eq!(
            s.add("org", "app"),
            b,
            "owner/repo match case-insensitively"
        );
        let mut id = |repo: &str, env| s.scope(repo, env).map(|sc| sc.key_id.clone());
        let repo_id = id(&a, None);
        let env_id = id(&a, Some("prod"));
        assert_ne!(repo_id, env_id);
        assert_eq!(id(&a, Some("prod")), env_id);
        assert_ne!(id(&b, None), repo_id);
        assert_ne!(id(&b, Some("prod")), env_id);
        assert_eq!(id("nobody/else", None), None);
    }

    #[tokio::test]
    async fn pull_requests_open_list_and_label() {
        let emulators = crate::start(crate::EmulatorConfig {
            render: false,
            netlify: false,
            ..crate::EmulatorConfig::default()
        })
        .await
        .unwrap();
        let gh = emulators.github().unwrap();
        let base = format!("{}/repos/bridge/emulated", gh.base_url());
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = reqwest::Client::new();
        let auth = "Bearer ghp_emulator_token";
        let post =
            |url: String, body: Value| c.post(url).header("authorization", auth).json(&body).send();

        let r = post(
            format!("{base}/pulls"),
            json!({"title": "t", "base": "main"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "head");

        let r = post(
            format!("{base}/pulls"),
            json!({"title": "Sync", "head": "autosync/web", "base": "main", "body": "b"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
        let pr: Value = r.json().await.unwrap();
        assert_eq!(pr["number"], 1);
        assert_eq!(pr["state"], "open");
        assert_eq!(pr["head"]["ref"], "autosync/web");
        assert!(
            pr["html_url"]
                .as_str()
                .unwrap()
                .ends_with("/bridge/emulated/pull/1")
        );

        let again = post(
            format!("{base}/pulls"),
            json!({"title": "Sync", "head": "autosync/web", "base": "main"}),
        )
        .await
        .unwrap();
        assert_eq!(again.status(), 422);

        let r = post(
            format!("{base}/issues/1/labels"),
            json!({"labels": ["auto-sync", "risk:low"]}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let labels: Value = r.json().await.unwrap();
        assert_eq!(labels[1]["name"], "risk:low");
        let missing = post(format!("{base}/issues/9/labels"), json!({"labels": ["x"]}))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        let list: Value = c
            .get(format!("{base}/pulls?state=open&head=bridge:autosync/web"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        let none: Value = c
            .get(format!("{base}/pulls?head=bridge:other"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(none, json!([]));
        let unauthorized = c.get(format!("{base}/pulls")).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);

        let pulls = gh.pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].labels, ["auto-sync", "risk:low"]);
        assert_eq!(pulls[0].body, "b");
        assert_eq!(
            gh.stats().by_route.get("POST /repos/{owner}/{repo}/pulls"),
            Some(&3)
        );
        emulators.shutdown().await;
    }
}
