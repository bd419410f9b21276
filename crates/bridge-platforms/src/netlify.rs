//! `netlify`: a site's environment variables (Netlify's "Envelope" API), for one deploy
//! context.
//!
//! A Netlify variable holds one value per deploy context (`all`, `production`,
//! `deploy-preview`, `branch-deploy`, `dev`, `dev-server`, `branch` + a branch name). The
//! spec picks the context (`netlify:context=production`, default `all`): reading gives, per
//! key, the value with exactly that context, else the `all` value (what a deploy in that
//! context sees); writing sets that context's value and leaves the others alone.
//!
//! Secret variables (`is_secret`) are readable only by code running on Netlify, so they read
//! as write-only, stamped with the variable's `updated_at`. Netlify's rules for them (the
//! CLI's, which the API may also enforce): a secret value must name a non-`dev` context, and
//! secrets cannot have the `post-processing` scope. So a secret written for context `all`
//! gets — as `netlify env:set --secret` does — one value for each deploy context
//! (`production`, `deploy-preview`, `branch-deploy`) and none for local development, with
//! scopes `builds`, `functions`, `runtime`; reading context `all` counts such a variable as
//! present. A secret for the `dev` context is refused by [`Platform::check_rules`].
//!
//! Calls: a read is one `GET /accounts/{account}/env?site_id=` (or `GET /sites/{site}/env`
//! when `NETLIFY_ACCOUNT_ID` is not set); an apply reads the site again (it holds the site's
//! lock, and another context's apply may have written since the plan's read), makes every
//! new variable in one bulk `POST`, then sets (`PATCH`, one context: `PUT` would replace every
//! context's value) and deletes values several at a time, within Netlify's 500 requests a
//! minute. Writes need the account: Netlify has no site-only write route.
//!
//! A variable has one `updated_at` for all its contexts, so a write here moves the stamp the
//! site's other contexts are judged by: the apply reports each move (from, to) in
//! [`ApplyReport::shared_stamps`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bridge_core::diff::{Change, PlanOp, SyncPlan};
use bridge_core::{SecretClassifier, SecretValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::{Call, Endpoint, HttpClient, HttpOptions, run_bounded};
use crate::render::missing_value;
use crate::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    RemoteSettings, RemoteValue, RuleViolation, StampMove, WriteRequest, required_token,
    written_ops,
};

/// Netlify's API root, unless `NETLIFY_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.netlify.com/api/v1";

/// The contexts a secret set "for all contexts" gets a value in: every deploy context, and
/// not local development (Netlify refuses secret values there).
const SECRET_CONTEXTS: [&str; 3] = ["production", "deploy-preview", "branch-deploy"];

/// Scopes for secret variables: all but `post-processing`, which secrets may not have.
const SECRET_SCOPES: [&str; 3] = ["builds", "functions", "runtime"];

const KNOWN_CONTEXTS: [&str; 6] = [
    "all",
    "dev",
    "dev-server",
    "branch-deploy",
    "deploy-preview",
    "production",
];

/// The deploy context a spec reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Context {
    name: String,
    /// The branch, for `branch:NAME`.
    branch: Option<String>,
}

impl Context {
    fn parse(text: Option<&str>) -> Option<Self> {
        let text = text.unwrap_or("all").trim();
        if let Some(branch) = text.strip_prefix("branch:") {
            return (!branch.is_empty()).then(|| Self {
                name: "branch".into(),
                branch: Some(branch.to_string()),
            });
        }
        KNOWN_CONTEXTS.contains(&text).then(|| Self {
            name: text.to_string(),
            branch: None,
        })
    }

    fn is_all(&self) -> bool {
        self.name == "all"
    }

    /// Local development, where Netlify keeps secret values out.
    fn is_dev(&self) -> bool {
        self.name == "dev"
    }

    /// The local-development contexts, whose secret values the API still returns.
    fn shows_secret_values(&self) -> bool {
        matches!(self.name.as_str(), "dev" | "dev-server")
    }

    fn matches(&self, value: &WireValue) -> bool {
        value.context == self.name
            && (self.branch.is_none() || value.context_parameter == self.branch)
    }
}

/// What the adapter learnt about a variable at its last read, for choosing between create,
/// set and delete-one-value when applying.
#[derive(Debug, Clone)]
struct Known {
    is_secret: bool,
    /// The variable's one stamp, shared by all its contexts.
    updated_at: Option<String>,
    /// `(context, branch, value id)` of each value.
    values: Vec<(String, Option<String>, Option<String>)>,
}

pub struct Netlify {
    spec: PlatformSpec,
    client: HttpClient,
    site_id: String,
    account_id: Option<String>,
    context: Context,
    classifier: Arc<SecretClassifier>,
    /// Every variable of the site (in any context) at the last read; `None` before one.
    known: Mutex<Option<BTreeMap<String, Known>>>,
}

#[derive(Deserialize)]
struct WireVar {
    key: String,
    #[serde(default)]
    values: Vec<WireValue>,
    #[serde(default)]
    is_secret: bool,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct WireValue {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    value: Option<String>,
    context: String,
    #[serde(default)]
    context_parameter: Option<String>,
}

#[derive(Serialize)]
struct NewVar<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<&'a [&'a str]>,
    values: Vec<NewValue<'a>>,
    is_secret: bool,
}

#[derive(Serialize)]
struct NewValue<'a> {
    context: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_parameter: Option<&'a str>,
    value: &'a str,
}

/// One update or delete, run concurrently with the others.
enum Task<'a> {
    /// Set the value of these contexts.
    Set {
        key: &'a str,
        contexts: Vec<&'a str>,
        value: &'a SecretValue,
        secret: bool,
    },
    DeleteVar {
        key: &'a str,
    },
    DeleteValue {
        key: &'a str,
        id: String,
    },
}

impl Netlify {
    /// The adapter for `spec`: the site is the spec's `site` option, else `NETLIFY_SITE_ID`.
    pub fn new(
        spec: PlatformSpec,
        settings: &RemoteSettings,
        classifier: Option<Arc<SecretClassifier>>,
        options: HttpOptions,
    ) -> Result<Self, PlatformError> {
        let platform = spec.to_string();
        let token = required_token(
            settings,
            &platform,
            "NETLIFY_API_TOKEN",
            "create a personal access token under User settings → Applications (NETLIFY_AUTH_TOKEN works too)",
        )?;
        let site_id = crate::required_target(
            &spec,
            "site",
            settings,
            "NETLIFY_SITE_ID",
            "set it to the site's API id (Site configuration → General), or name the site in the spec: netlify:site=…",
        )?;
        let context =
            Context::parse(spec.option("context")).ok_or_else(|| PlatformError::Unsupported {
                platform: platform.clone(),
                what: format!(
                    "unknown deploy context `{}`; use one of {} or branch:NAME",
                    spec.option("context").unwrap_or_default(),
                    KNOWN_CONTEXTS.join(", ")
                ),
            })?;
        let account_id = settings.account_id.clone().filter(|s| !s.trim().is_empty());
        let base = if settings.api_url.trim().is_empty() {
            DEFAULT_API_URL
        } else {
            settings.api_url.as_str()
        };
        let missing_hint = match &account_id {
            Some(account) => format!(
                "no site {site_id} in account {account} (or the token cannot see it): check NETLIFY_SITE_ID and NETLIFY_ACCOUNT_ID (the team's slug)"
            ),
            None => {
                format!("no site {site_id} (or the token cannot see it): check NETLIFY_SITE_ID")
            }
        };
        let client = HttpClient::new(
            base,
            "NETLIFY_API_URL",
            token,
            Endpoint {
                platform,
                token_variable: "NETLIFY_API_TOKEN",
                missing_hint,
            },
            &[],
            options,
        )?;
        Ok(Self {
            spec,
            client,
            site_id,
            account_id,
            context,
            classifier: classifier.unwrap_or_default(),
            known: Mutex::new(None),
        })
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.client.requests()
    }

    fn platform(&self) -> &str {
        self.client.platform()
    }

    fn account(&self) -> Result<&str, PlatformError> {
        self.account_id
            .as_deref()
            .ok_or_else(|| PlatformError::MissingSetting {
                platform: self.platform().to_string(),
                variable: "NETLIFY_ACCOUNT_ID",
                hint: "Netlify writes variables through the account; set it to the team's slug (Team settings → General)".into(),
            })
    }

    /// `/accounts/{account}/env[/more…]?site_id=…`
    fn env_url(&self, account: &str, more: &[&str]) -> reqwest::Url {
        let mut segments = vec!["accounts", account, "env"];
        segments.extend_from_slice(more);
        self.client
            .url(&segments, &[("site_id", self.site_id.as_str())])
    }

    /// Every variable of the site, in every context.
    async fn list(&self) -> Result<Vec<WireVar>, PlatformError> {
        let what = format!("list the environment variables of site {}", self.site_id);
        let url = match &self.account_id {
            Some(account) => self.env_url(account, &[]),
            None => self.client.url(&["sites", &self.site_id, "env"], &[]),
        };
        // The env routes return the whole array; a `link` header, should one appear, is
        // followed all the same.
        let vars = self
            .client
            .list_linked(url, &what, |page: Vec<WireVar>| page)
            .await?;
        let known = vars
            .iter()
            .map(|v| {
                let values = v
                    .values
                    .iter()
                    .map(|x| (x.context.clone(), x.context_parameter.clone(), x.id.clone()))
                    .collect();
                (
                    v.key.clone(),
                    Known {
                        is_secret: v.is_secret,
                        updated_at: v.updated_at.clone(),
                        values,
                    },
                )
            })
            .collect();
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = Some(known);
        Ok(vars)
    }

    /// What the spec's context sees of `var`, if anything.
    fn resolve(&self, var: WireVar) -> Option<RemoteValue> {
        let exact = var.values.iter().position(|v| self.context.matches(v));
        let chosen = exact.or_else(|| var.values.iter().position(|v| v.context == "all"));
        let write_only = || RemoteValue::WriteOnly {
            updated_at: var.updated_at.clone(),
        };
        if var.is_secret && !self.context.shows_secret_values() {
            let present = chosen.is_some()
                // Written "for all contexts" as one value per deploy context.
                || (self.context.is_all()
                    && SECRET_CONTEXTS
                        .iter()
                        .all(|c| var.values.iter().any(|v| v.context == *c)))
                // Values withheld altogether: the key exists, its contexts are unknown.
                || var.values.is_empty();
            return present.then(write_only);
        }
        let mut values = var.values;
        let index = chosen?;
        let value = values.swap_remove(index).value.unwrap_or_default();
        Some(RemoteValue::Readable(SecretValue::new(value)))
    }

    /// What the site holds now. An apply reads again rather than trust the plan's read: it
    /// runs under the site's lock, and another context of this site may have been written
    /// since (a variable created there is set here, not created twice).
    async fn fresh_known(&self) -> Result<BTreeMap<String, Known>, PlatformError> {
        self.list().await?;
        Ok(self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default())
    }

    /// The contexts a value for the spec's context is written to.
    fn write_contexts(&self, secret: bool) -> Vec<&str> {
        if secret && self.context.is_all() {
            SECRET_CONTEXTS.to_vec()
        } else {
            vec![self.context.name.as_str()]
        }
    }

    fn new_var<'a>(&'a self, key: &'a str, value: &'a SecretValue) -> NewVar<'a> {
        let secret = self.classifier.is_secret_entry(key, value);
        let values = self
            .write_contexts(secret)
            .into_iter()
            .map(|context| NewValue {
                context,
                context_parameter: self.context.branch.as_deref(),
                value: value.expose(),
            })
            .collect();
        NewVar {
            key,
            scopes: secret.then_some(&SECRET_SCOPES[..]),
            values,
            is_secret: secret,
        }
    }

    /// What deleting `key` from the spec's context takes: the value that context sees, or
    /// the whole variable when that value is its only one (or it is a secret set for all
    /// deploy contexts and the spec's context is `all`).
    fn delete_task<'a>(&self, key: &'a str, known: &Known) -> Task<'a> {
        let exact = known.values.iter().find(|(c, b, _)| {
            *c == self.context.name && (self.context.branch.is_none() || *b == self.context.branch)
        });
        let seen = exact.or_else(|| known.values.iter().find(|(c, _, _)| c == "all"));
        match seen {
            Some((_, _, Some(id)))
                if known.values.len() > 1 && !(known.is_secret && self.context.is_all()) =>
            {
                Task::DeleteValue {
                    key,
                    id: id.clone(),
                }
            }
            _ => Task::DeleteVar { key },
        }
    }

    /// Runs one update or delete.
    async fn run(&self, account: &str, task: Task<'_>) -> Result<Written, PlatformError> {
        match task {
            Task::Set {
                key,
                contexts,
                value,
                secret,
            } => {
                let what = format!("set the value of {key} on site {}", self.site_id);
                let mut stamp = None;
                for context in contexts {
                    let body = NewValue {
                        context,
                        context_parameter: self.context.branch.as_deref(),
                        value: value.expose(),
                    };
                    // Setting a value to a given value twice is harmless: retry it freely.
                    let call = Call::new(Method::PATCH, self.env_url(account, &[key]), &what)
                        .idempotent(true)
                        .json(self.platform(), &body)?;
                    let reply = self.client.send(call).await?;
                    stamp = serde_json::from_slice::<StampOnly>(&reply.body)
                        .ok()
                        .and_then(|s| s.updated_at);
                }
                Ok(Written {
                    key: key.to_string(),
                    stamp,
                    secret,
                    value_deleted: false,
                })
            }
            Task::DeleteVar { key } => {
                let what = format!("delete {key} from site {}", self.site_id);
                let call =
                    Call::new(Method::DELETE, self.env_url(account, &[key]), &what).allow_404();
                self.client.send(call).await?;
                Ok(Written::deleted(key, false))
            }
            Task::DeleteValue { key, id } => {
                let what = format!("delete a value of {key} from site {}", self.site_id);
                let url = self.env_url(account, &[key, "value", &id]);
                let call = Call::new(Method::DELETE, url, &what).allow_404();
                self.client.send(call).await?;
                Ok(Written::deleted(key, true))
            }
        }
    }

    /// The stamps the writes left: this context's for its write-only values, and every
    /// variable's move from what `before` showed, which the site's other contexts share.
    async fn moved_stamps(
        &self,
        before: &BTreeMap<String, Known>,
        mut written: Vec<Written>,
    ) -> Result<MovedStamps, PlatformError> {
        // A removed value's `204` carries no stamp: read the site once more to learn it.
        if written.iter().any(|w| w.value_deleted) {
            let now = self.fresh_known().await?;
            for w in written.iter_mut().filter(|w| w.value_deleted) {
                w.stamp = now.get(&w.key).and_then(|k| k.updated_at.clone());
            }
        }
        let mut moved = MovedStamps::default();
        for w in written {
            let Some(to) = w.stamp else { continue };
            if let Some(from) = before.get(&w.key).and_then(|k| k.updated_at.clone()) {
                moved.shared.insert(
                    w.key.clone(),
                    StampMove {
                        from,
                        to: to.clone(),
                    },
                );
            }
            if w.secret {
                moved.own.insert(w.key, to);
            }
        }
        Ok(moved)
    }

    /// Creates `ops`' variables in one call; returns the stamps of the secret ones.
    async fn create_all(
        &self,
        account: &str,
        ops: &[(&str, &SecretValue)],
    ) -> Result<BTreeMap<String, String>, PlatformError> {
        let body: Vec<NewVar<'_>> = ops.iter().map(|(k, v)| self.new_var(k, v)).collect();
        let what = format!("create environment variables on site {}", self.site_id);
        // A POST is repeated only after 429/503, when Netlify says it did nothing.
        let call = Call::new(Method::POST, self.env_url(account, &[]), &what)
            .json(self.platform(), &body)?;
        let reply = self.client.send(call).await?;
        let created: Vec<StampVar> = if reply.status == StatusCode::NO_CONTENT {
            Vec::new()
        } else {
            serde_json::from_slice(&reply.body).unwrap_or_default()
        };
        Ok(created
            .into_iter()
            .filter(|v| v.is_secret)
            .filter_map(|v| Some((v.key, v.updated_at?)))
            .collect())
    }
}

/// What one update or delete did.
struct Written {
    key: String,
    /// Netlify's stamp after the write, when its answer carried one.
    stamp: Option<String>,
    /// A write-only value: its stamp is what later reads are judged by.
    secret: bool,
    /// One context's value was removed and the variable kept: its stamp moved, and the
    /// `204` does not say to what.
    value_deleted: bool,
}

impl Written {
    fn deleted(key: &str, value_deleted: bool) -> Self {
        Self {
            key: key.to_string(),
            stamp: None,
            secret: false,
            value_deleted,
        }
    }
}

#[derive(Default)]
struct MovedStamps {
    own: BTreeMap<String, String>,
    shared: BTreeMap<String, StampMove>,
}

#[derive(Deserialize)]
struct StampOnly {
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct StampVar {
    key: String,
    #[serde(default)]
    is_secret: bool,
    #[serde(default)]
    updated_at: Option<String>,
}

#[async_trait]
impl Platform for Netlify {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: false,
            bulk_write: true,
            serial_writes: false,
            ownership_applies: true,
            applies_by_printing: false,
            same_place_by_path: false,
            atomic_apply: false,
        }
    }

    /// The site and the context: two contexts of one site are two places.
    fn identity(&self) -> String {
        match &self.context.branch {
            Some(branch) => format!("netlify:{}:branch:{branch}", self.site_id),
            None => format!("netlify:{}:{}", self.site_id, self.context.name),
        }
    }

    /// The site, whatever the context: one variable holds the values of every context, so
    /// applies to two contexts of one site write the same variables.
    fn lock_scope(&self) -> String {
        format!("netlify:{}", self.site_id)
    }

    /// Every context of this site: a variable's one `updated_at` is theirs too.
    fn shares_stamps_with(&self, identity: &str) -> bool {
        identity != self.identity()
            && identity
                .strip_prefix(&self.lock_scope())
                .is_some_and(|rest| rest.starts_with(':'))
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        let vars = self.list().await?;
        Ok(vars
            .into_iter()
            .filter_map(|var| {
                let key = var.key.clone();
                self.resolve(var).map(|value| (key, value))
            })
            .collect())
    }

    fn check_rules(&self, plan: &SyncPlan) -> Vec<RuleViolation> {
        if !self.context.is_dev() {
            return Vec::new();
        }
        let known = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        plan.writes()
            .filter_map(|op| {
                let value = op.after.as_ref()?;
                let secret = match known.get(&op.key) {
                    Some(k) => k.is_secret,
                    None => self.classifier.is_secret_entry(&op.key, value),
                };
                secret.then(|| RuleViolation {
                    key: op.key.clone(),
                    unwritable: false,
                    rule: "Netlify keeps secret values out of the dev context; sync this key to a deploy context (e.g. netlify:context=production) or classify it as public".into(),
                })
            })
            .collect()
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let ops: Vec<&PlanOp> = written_ops(request.ops);
        if ops.is_empty() {
            return Ok(ApplyReport::default());
        }
        let account = self.account()?;
        let known = self.fresh_known().await?;
        let mut creates: Vec<(&str, &SecretValue)> = Vec::new();
        let mut tasks: Vec<Task<'_>> = Vec::new();
        for op in &ops {
            let key = op.key.as_str();
            match (op.change, &op.after, known.get(key)) {
                (Change::Delete, _, Some(k)) => tasks.push(self.delete_task(key, k)),
                // Gone since the plan (deleted elsewhere): a DELETE that may find nothing
                // costs one call and keeps the bookkeeping simple.
                (Change::Delete, _, None) => tasks.push(Task::DeleteVar { key }),
                // Decided by what Netlify holds rather than by the plan's create/update: a
                // key new to this context may exist in another, and then it gets a value
                // rather than a second variable.
                (_, Some(value), None) => creates.push((key, value)),
                (_, Some(value), Some(k)) => tasks.push(Task::Set {
                    key,
                    contexts: self.write_contexts(k.is_secret),
                    value,
                    secret: k.is_secret && !self.context.shows_secret_values(),
                }),
                (_, None, _) => return Err(missing_value(self.platform(), key)),
            }
        }
        // What Netlify holds is about to change; the next apply reads again.
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = None;

        let mut report = ApplyReport::default();
        if !creates.is_empty() {
            report.stamps = self.create_all(account, &creates).await?;
            let keys: Vec<&str> = creates.iter().map(|(k, _)| *k).collect();
            progress.applied(&keys).await?;
            report.writes += keys.len();
        }
        let mut written = Vec::new();
        let mut done = 0;
        // Built up front: a lazy `map` over the tasks would keep a closure in this future's
        // state, which trips the `Send` check async-trait imposes.
        let mut futures = Vec::with_capacity(tasks.len());
        for task in tasks {
            futures.push(async move {
                let w = self.run(account, task).await?;
                // Recorded before the next write of this task's slot starts.
                progress.applied(&[w.key.as_str()]).await?;
                Ok::<_, PlatformError>(w)
            });
        }
        let result = run_bounded(futures, self.client.options().concurrency, |w: Written| {
            done += 1;
            written.push(w);
        })
        .await;
        report.writes += done;
        // Even after a failure: what was written moved stamps that siblings share.
        let moved = self.moved_stamps(&known, written).await;
        result?;
        let moved = moved?;
        report.stamps.extend(moved.own);
        report.shared_stamps = moved.shared;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netlify(spec: &str) -> Netlify {
        let settings = RemoteSettings {
            api_url: "http://127.0.0.1:9/api/v1".into(),
            target_id: Some("site-1".into()),
            account_id: Some("team".into()),
            token: Some(SecretValue::new("nfp_x")),
        };
        Netlify::new(
            spec.parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .expect("opens")
    }

    fn value(context: &str, v: Option<&str>) -> WireValue {
        WireValue {
            id: Some(format!("id-{context}")),
            value: v.map(str::to_string),
            context: context.into(),
            context_parameter: None,
        }
    }

    fn var(key: &str, secret: bool, values: Vec<WireValue>) -> WireVar {
        WireVar {
            key: key.into(),
            values,
            is_secret: secret,
            updated_at: Some("2026-01-01T00:00:00Z".into()),
        }
    }

    fn readable(v: &str) -> Option<RemoteValue> {
        Some(RemoteValue::Readable(SecretValue::new(v)))
    }

    #[test]
    fn two_contexts_of_one_site_share_a_lock_scope_but_not_an_identity() {
        let production = netlify("netlify:context=production");
        let preview = netlify("netlify:context=deploy-preview");
        let branch = netlify("netlify:context=branch:staging");
        assert_eq!(production.lock_scope(), "netlify:site-1");
        assert_eq!(preview.lock_scope(), production.lock_scope());
        assert_eq!(branch.lock_scope(), production.lock_scope());
        assert_ne!(preview.identity(), production.identity());
        assert_ne!(branch.identity(), production.identity());
        // Each context shares the variables' stamps with the site's other contexts only.
        assert!(production.shares_stamps_with(&preview.identity()));
        assert!(preview.shares_stamps_with(&branch.identity()));
        assert!(!production.shares_stamps_with(&production.identity()));
        assert!(!production.shares_stamps_with("netlify:site-10:production"));
        assert!(!production.shares_stamps_with("github:site-1"));
    }

    #[test]
    fn a_context_sees_its_own_value_else_the_all_value() {
        let both = || {
            var(
                "A",
                false,
                vec![value("all", Some("a")), value("production", Some("p"))],
            )
        };
        assert_eq!(netlify("netlify").resolve(both()), readable("a"));
        assert_eq!(
            netlify("netlify:context=production").resolve(both()),
            readable("p")
        );
        assert_eq!(
            netlify("netlify:context=deploy-preview").resolve(both()),
            readable("a")
        );
        let prod_only = var("B", false, vec![value("production", Some("p"))]);
        assert_eq!(netlify("netlify").resolve(prod_only), None);
    }

    #[test]
    fn secrets_read_as_write_only_and_count_when_set_for_every_deploy_context() {
        let n = netlify("netlify");
        let spread = var(
            "TOKEN",
            true,
            SECRET_CONTEXTS.iter().map(|c| value(c, None)).collect(),
        );
        assert!(matches!(
            n.resolve(spread),
            Some(RemoteValue::WriteOnly {
                updated_at: Some(_)
            })
        ));
        let prod_only = var("TOKEN", true, vec![value("production", None)]);
        assert_eq!(n.resolve(prod_only), None);
        let hidden = var("TOKEN", true, Vec::new());
        assert!(matches!(
            n.resolve(hidden),
            Some(RemoteValue::WriteOnly { .. })
        ));
        let prod = netlify("netlify:context=production");
        let returned = var("TOKEN", true, vec![value("production", Some("leaked?"))]);
        assert!(matches!(
            prod.resolve(returned),
            Some(RemoteValue::WriteOnly { .. })
        ));
    }

    #[test]
    fn new_secrets_for_all_contexts_get_one_value_per_deploy_context() {
        let n = netlify("netlify");
        let v = SecretValue::new("s");
        let secret = n.new_var("API_TOKEN", &v);
        assert!(secret.is_secret);
        let contexts: Vec<&str> = secret.values.iter().map(|x| x.context).collect();
        assert_eq!(contexts, SECRET_CONTEXTS);
        assert_eq!(secret.scopes, Some(&SECRET_SCOPES[..]));
        let public = n.new_var("LOG_LEVEL", &v);
        assert!(!public.is_secret);
        assert_eq!(public.values.len(), 1);
        assert_eq!(public.values[0].context, "all");
        assert!(public.scopes.is_none());
        let branch = netlify("netlify:context=branch:staging");
        let b = branch.new_var("LOG_LEVEL", &v);
        assert_eq!(
            (b.values[0].context, b.values[0].context_parameter),
            ("branch", Some("staging"))
        );
    }

    #[test]
    fn deletes_remove_only_what_the_context_sees() {
        let prod = netlify("netlify:context=production");
        let k = Known {
            is_secret: false,
            updated_at: None,
            values: vec![
                ("all".into(), None, Some("id-all".into())),
                ("production".into(), None, Some("id-prod".into())),
            ],
        };
        assert!(
            matches!(prod.delete_task("A", &k), Task::DeleteValue { id, .. } if id == "id-prod")
        );
        let single = Known {
            is_secret: false,
            updated_at: None,
            values: vec![("production".into(), None, Some("id-prod".into()))],
        };
        assert!(matches!(
            prod.delete_task("A", &single),
            Task::DeleteVar { .. }
        ));
        let all = netlify("netlify");
        let secret = Known {
            is_secret: true,
            updated_at: None,
            values: SECRET_CONTEXTS
                .iter()
                .map(|c| (c.to_string(), None, Some(format!("id-{c}"))))
                .collect(),
        };
        assert!(matches!(
            all.delete_task("T", &secret),
            Task::DeleteVar { .. }
        ));
    }

    #[test]
    fn secrets_are_refused_in_the_dev_context() {
        let dev = netlify("netlify:context=dev");
        let op = |key: &str| PlanOp {
            key: key.into(),
            change: Change::Create,
            before: None,
            after: Some(SecretValue::new("v")),
            reason: None,
        };
        let plan = SyncPlan {
            ops: vec![op("API_TOKEN"), op("LOG_LEVEL")],
            ..SyncPlan::default()
        };
        let violations = dev.check_rules(&plan);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].key, "API_TOKEN");
        assert!(netlify("netlify").check_rules(&plan).is_empty());
    }

    #[test]
    fn settings_are_checked() {
        let settings = RemoteSettings {
            token: Some(SecretValue::new("t")),
            ..RemoteSettings::default()
        };
        let err = Netlify::new(
            "netlify".parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .err()
        .expect("no site");
        assert!(matches!(
            err,
            PlatformError::MissingSetting {
                variable: "NETLIFY_SITE_ID",
                ..
            }
        ));
        let err = Netlify::new(
            "netlify:site=s:context=prod".parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .err()
        .expect("bad context");
        assert!(
            err.to_string().contains("unknown deploy context `prod`"),
            "{err}"
        );
        let n = Netlify::new(
            "netlify:site=s".parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .expect("opens");
        assert_eq!(n.identity(), "netlify:s:all");
        let b = Netlify::new(
            "netlify:site=s:context=branch:staging"
                .parse()
                .expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .expect("opens");
        assert_eq!(b.identity(), "netlify:s:branch:staging");
        let n = Netlify::new(
            "netlify:site=s".parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .expect("reads without an account");
        assert!(matches!(
            n.account(),
            Err(PlatformError::MissingSetting {
                variable: "NETLIFY_ACCOUNT_ID",
                ..
            })
        ));
    }
}
