//! `github`: GitHub Actions secrets and variables of a repository, or of one of its
//! deployment environments (`github:environment=production`).
//!
//! Each key lives in exactly one of two places. With `variables=auto` (the default) a key the
//! classifier calls secret becomes an Actions *secret* — sealed with the repository's public
//! key, never readable again, so it reads as write-only with GitHub's `updated_at` — and any
//! other key an Actions *variable*, whose value reads back. With `variables=none` every key
//! is a secret. When a key changes class, the new place is written first and the old one
//! deleted after, so a failure in between leaves the value reachable rather than lost.
//!
//! Calls: a read lists secrets (100 a page) and variables (30 a page, GitHub's maximum) —
//! two calls for up to 30 variables. An apply fetches the public key once, and only if it
//! writes a secret; then writes one request at a time, as GitHub asks of content-creating
//! requests; then lists the secrets once to stamp those it wrote with their `updated_at`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bridge_core::diff::{Change, PlanOp, SyncPlan};
use bridge_core::{SecretClassifier, SecretValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::{Call, Endpoint, HttpClient, HttpOptions};
use crate::render::missing_value;
use crate::sealed::{SealError, SealingKey};
use crate::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    RemoteSettings, RemoteValue, RuleViolation, WriteRequest, required_token, written_ops,
};

/// GitHub's API root, unless `GITHUB_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The largest value GitHub stores in a secret or a variable.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

/// How many secrets a repository (or an environment) may hold.
pub const MAX_SECRETS: usize = 100;

/// GitHub's maximum page sizes: 100 for secrets, 30 for variables (whose default is 10).
const SECRETS_PER_PAGE: usize = 100;
const VARIABLES_PER_PAGE: usize = 30;

/// Where keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VariablesMode {
    /// Secret-looking keys become secrets, the rest variables.
    Auto,
    /// Everything is a secret.
    None,
}

/// Where each key lives on GitHub.
#[derive(Debug, Clone, Default)]
struct Placement {
    /// Secret name → `updated_at`.
    secrets: BTreeMap<String, Option<String>>,
    variables: BTreeSet<String>,
}

pub struct Github {
    spec: PlatformSpec,
    client: HttpClient,
    owner: String,
    repo: String,
    environment: Option<String>,
    mode: VariablesMode,
    classifier: Arc<SecretClassifier>,
    /// Where keys were at the last read; `None` before one.
    placement: Mutex<Option<Placement>>,
}

#[derive(Deserialize)]
struct SecretList {
    #[serde(default)]
    secrets: Vec<SecretMeta>,
}

#[derive(Deserialize)]
struct SecretMeta {
    name: String,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct VariableList {
    #[serde(default)]
    variables: Vec<Variable>,
}

#[derive(Deserialize)]
struct Variable {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct PublicKeyWire {
    /// A string on github.com, a number on some GitHub Enterprise Server versions.
    key_id: serde_json::Value,
    key: String,
}

#[derive(Serialize)]
struct SealedSecret<'a> {
    encrypted_value: &'a str,
    key_id: &'a str,
}

#[derive(Serialize)]
struct NamedValue<'a> {
    name: &'a str,
    value: &'a str,
}

/// Which of the two places a key is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Secret,
    Variable,
}

impl Github {
    /// The adapter for `spec`: the repository is the spec's `repository` option, else
    /// `GITHUB_REPOSITORY` (`owner/name`).
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
            "GITHUB_TOKEN",
            "create a token with the repository's \"Secrets\" and \"Variables\" permissions (read and write)",
        )?;
        let repository = crate::required_target(
            &spec,
            "repository",
            settings,
            "GITHUB_REPOSITORY",
            "set it to owner/name, or name the repository in the spec: github:repository=owner/name",
        )?;
        let (owner, repo) = repository
            .trim()
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .map(|(o, r)| (o.to_string(), r.to_string()))
            .ok_or_else(|| PlatformError::Unsupported {
                platform: platform.clone(),
                what: format!("GITHUB_REPOSITORY is `{repository}`; it must be owner/name"),
            })?;
        let mode = match spec.option("variables") {
            None | Some("auto") => VariablesMode::Auto,
            Some("none") => VariablesMode::None,
            Some(other) => {
                return Err(PlatformError::Unsupported {
                    platform,
                    what: format!(
                        "variables={other} is not an option; use variables=auto (secret-looking keys become secrets, the rest variables) or variables=none (everything a secret)"
                    ),
                });
            }
        };
        let environment = spec
            .option("environment")
            .map(str::to_string)
            .filter(|e| !e.is_empty());
        let base = if settings.api_url.trim().is_empty() {
            DEFAULT_API_URL
        } else {
            settings.api_url.as_str()
        };
        let missing_hint = match &environment {
            Some(env) => format!(
                "no environment {env} in {owner}/{repo} visible to the token: check GITHUB_REPOSITORY, the environment's name, and that GITHUB_TOKEN can see the repository"
            ),
            None => format!(
                "no repository {owner}/{repo} visible to the token: check GITHUB_REPOSITORY, and that GITHUB_TOKEN can see the repository"
            ),
        };
        let client = HttpClient::new(
            base,
            "GITHUB_API_URL",
            token,
            Endpoint {
                platform,
                token_variable: "GITHUB_TOKEN",
                missing_hint,
            },
            &[
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
            options,
        )?;
        Ok(Self {
            spec,
            client,
            owner,
            repo,
            environment,
            mode,
            classifier: classifier.unwrap_or_default(),
            placement: Mutex::new(None),
        })
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.client.requests()
    }

    fn platform(&self) -> &str {
        self.client.platform()
    }

    /// `owner/name`, or `owner/name (environment E)`, for messages.
    fn scope_name(&self) -> String {
        match &self.environment {
            Some(env) => format!("{}/{} (environment {env})", self.owner, self.repo),
            None => format!("{}/{}", self.owner, self.repo),
        }
    }

    /// The URL of `kind` (`secrets` or `variables`) [`/name`] in this scope.
    fn url(&self, kind: &str, name: Option<&str>, query: &[(&str, &str)]) -> reqwest::Url {
        let mut segments: Vec<&str> = vec!["repos", &self.owner, &self.repo];
        match &self.environment {
            Some(env) => segments.extend(["environments", env.as_str()]),
            None => segments.push("actions"),
        }
        segments.push(kind);
        segments.extend(name);
        self.client.url(&segments, query)
    }

    fn class_of(&self, key: &str, value: &SecretValue) -> Class {
        match self.mode {
            VariablesMode::None => Class::Secret,
            VariablesMode::Auto if self.classifier.is_secret_entry(key, value) => Class::Secret,
            VariablesMode::Auto => Class::Variable,
        }
    }

    async fn list_secrets(&self) -> Result<Vec<SecretMeta>, PlatformError> {
        let what = format!("list the Actions secrets of {}", self.scope_name());
        let per_page = self.client.page_size(SECRETS_PER_PAGE).to_string();
        let url = self.url("secrets", None, &[("per_page", &per_page)]);
        self.client
            .list_linked(url, &what, |page: SecretList| page.secrets)
            .await
    }

    async fn list_variables(&self) -> Result<Vec<Variable>, PlatformError> {
        let what = format!("list the Actions variables of {}", self.scope_name());
        let per_page = self.client.page_size(VARIABLES_PER_PAGE).to_string();
        let url = self.url("variables", None, &[("per_page", &per_page)]);
        self.client
            .list_linked(url, &what, |page: VariableList| page.variables)
            .await
    }

    async fn public_key(&self) -> Result<SealingKey, PlatformError> {
        let what = format!("read the Actions public key of {}", self.scope_name());
        let url = self.url("secrets", Some("public-key"), &[]);
        let wire: PublicKeyWire = self.client.json(Call::new(Method::GET, url, &what)).await?;
        let key_id = match wire.key_id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        SealingKey::new(key_id, &wire.key).map_err(|_| PlatformError::Decode {
            platform: self.platform().to_string(),
            what,
            message: "the public key is not base64 of 32 bytes".into(),
        })
    }

    async fn put_secret(
        &self,
        key: &str,
        value: &SecretValue,
        sealing: &SealingKey,
    ) -> Result<(), PlatformError> {
        let sealed = sealing.seal(value).map_err(|e| PlatformError::Write {
            platform: self.platform().to_string(),
            what: match e {
                SealError::BadKey => format!("{key}: GitHub's public key is unusable"),
                SealError::Encrypt => format!("{key}: the value could not be sealed"),
            },
        })?;
        let what = format!("write the Actions secret {key} of {}", self.scope_name());
        let body = SealedSecret {
            encrypted_value: &sealed,
            key_id: &sealing.key_id,
        };
        let call = Call::new(Method::PUT, self.url("secrets", Some(key), &[]), &what)
            .json(self.platform(), &body)?;
        self.client.send(call).await.map(drop)
    }

    /// Creates or updates the variable `key`; `exists` says which to try first, and the other
    /// is tried when GitHub says otherwise (someone else got there between read and write).
    async fn put_variable(
        &self,
        key: &str,
        value: &SecretValue,
        exists: bool,
    ) -> Result<(), PlatformError> {
        let what = format!("write the Actions variable {key} of {}", self.scope_name());
        let body = NamedValue {
            name: key,
            value: value.expose(),
        };
        if exists {
            // Setting a value to a given value twice is harmless: retry it freely.
            let call = Call::new(Method::PATCH, self.url("variables", Some(key), &[]), &what)
                .idempotent(true)
                .allow_404()
                .json(self.platform(), &body)?;
            if self.client.send(call).await?.status != StatusCode::NOT_FOUND {
                return Ok(());
            }
        }
        let call = Call::new(Method::POST, self.url("variables", None, &[]), &what)
            .json(self.platform(), &body)?;
        match self.client.send(call).await {
            Ok(_) => Ok(()),
            Err(PlatformError::Status {
                status: 409 | 422,
                message,
                ..
            }) if !exists && message.to_ascii_lowercase().contains("already exists") => {
                Box::pin(self.put_variable(key, value, true)).await
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, kind: &str, key: &str) -> Result<(), PlatformError> {
        let noun = if kind == "secrets" {
            "secret"
        } else {
            "variable"
        };
        let what = format!("delete the Actions {noun} {key} of {}", self.scope_name());
        // Already gone is as good as deleted.
        let call = Call::new(Method::DELETE, self.url(kind, Some(key), &[]), &what).allow_404();
        self.client.send(call).await.map(drop)
    }

    /// Where keys are: the last read's answer, else what `current` implies (readable values
    /// are variables, write-only ones secrets).
    fn placement(&self, current: &RemoteSet) -> Placement {
        if let Some(p) = self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return p;
        }
        let mut p = Placement::default();
        for (key, value) in current {
            match value {
                RemoteValue::Readable(_) => {
                    p.variables.insert(key.clone());
                }
                RemoteValue::WriteOnly { updated_at } => {
                    p.secrets.insert(key.clone(), updated_at.clone());
                }
            }
        }
        p
    }
}

/// GitHub's name rules for secrets and variables, as `(holds, rule)` pairs.
fn name_violations(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        out.push(
            "GitHub names are letters, digits and `_`, not starting with a digit ([A-Za-z_][A-Za-z0-9_]*)"
                .to_string(),
        );
    }
    if key
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("GITHUB_"))
    {
        out.push("GitHub reserves names starting with GITHUB_".to_string());
    }
    // Names are case-insensitive and stored upper case: `api_token` would be listed back as
    // `API_TOKEN`, a different key to every comparison, so it could never be proven equal
    // (and every sync would write it again).
    if valid && key.chars().any(|c| c.is_ascii_lowercase()) {
        out.push(format!(
            "GitHub stores names in upper case, so this key would come back as {}; rename it \
             in the source (workflows read names case-insensitively)",
            key.to_ascii_uppercase()
        ));
    }
    out
}

#[async_trait]
impl Platform for Github {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: false,
            bulk_write: false,
            serial_writes: true,
            ownership_applies: true,
            applies_by_printing: false,
            same_place_by_path: false,
            atomic_apply: false,
        }
    }

    /// The repository (names compared without case, as GitHub does) and environment.
    fn identity(&self) -> String {
        let repo = format!("{}/{}", self.owner, self.repo).to_ascii_lowercase();
        match &self.environment {
            Some(env) => format!("github:{repo}:environment={env}"),
            None => format!("github:{repo}"),
        }
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        let (secrets, variables) = tokio::try_join!(self.list_secrets(), self.list_variables())?;
        let mut placement = Placement::default();
        let mut set = RemoteSet::new();
        for v in variables {
            placement.variables.insert(v.name.clone());
            let value = SecretValue::new(v.value.unwrap_or_default());
            set.insert(v.name, RemoteValue::Readable(value));
        }
        // A name that is both (possible on GitHub) reads as the secret: its value is the one
        // that cannot be checked, so the plan treats it with the care write-only values get.
        for s in secrets {
            placement
                .secrets
                .insert(s.name.clone(), s.updated_at.clone());
            set.insert(
                s.name,
                RemoteValue::WriteOnly {
                    updated_at: s.updated_at,
                },
            );
        }
        *self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(placement);
        Ok(set)
    }

    fn check_rules(&self, plan: &SyncPlan) -> Vec<RuleViolation> {
        let mut violations = Vec::new();
        let known = self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Without a read, the plan's write-only (unknown) keys are the secrets we know of.
        let mut secrets: BTreeSet<&str> = match &known {
            Some(p) => p.secrets.keys().map(String::as_str).collect(),
            None => plan
                .ops
                .iter()
                .filter(|op| op.change == Change::Unknown)
                .map(|op| op.key.as_str())
                .collect(),
        };
        let mut added = Vec::new();
        for op in plan.writes() {
            match (op.change, &op.after) {
                (Change::Delete, _) => {
                    secrets.remove(op.key.as_str());
                }
                (_, Some(value)) => {
                    for rule in name_violations(&op.key) {
                        violations.push(RuleViolation {
                            key: op.key.clone(),
                            unwritable: false,
                            rule,
                        });
                    }
                    if value.len() > MAX_VALUE_BYTES {
                        violations.push(RuleViolation {
                            key: op.key.clone(),
                            unwritable: false,
                            rule: format!(
                                "GitHub stores values of at most 48 KB; this one is {} bytes",
                                value.len()
                            ),
                        });
                    }
                    match self.class_of(&op.key, value) {
                        Class::Secret => {
                            if secrets.insert(op.key.as_str()) {
                                added.push(op.key.as_str());
                            }
                        }
                        Class::Variable => {
                            secrets.remove(op.key.as_str());
                        }
                    }
                }
                (_, None) => {}
            }
        }
        if secrets.len() > MAX_SECRETS {
            let over = secrets.len() - MAX_SECRETS;
            let place = if self.environment.is_some() {
                "environment"
            } else {
                "repository"
            };
            for key in added.iter().rev().take(over).rev() {
                violations.push(RuleViolation {
                    key: (*key).to_string(),
                    unwritable: false,
                    rule: format!(
                        "GitHub allows at most {MAX_SECRETS} secrets per {place}; this plan would leave {}",
                        secrets.len()
                    ),
                });
            }
        }
        violations
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
        let mut placement = self.placement(request.current);
        // What GitHub holds is about to change; the next apply goes by a new read.
        *self
            .placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let mut sealing: Option<SealingKey> = None;
        let mut written_secrets = Vec::new();
        let mut report = ApplyReport::default();
        // One request at a time: GitHub asks that content-creating requests be serial.
        for op in ops {
            let key = op.key.as_str();
            let in_secrets = placement.secrets.contains_key(key);
            let in_variables = placement.variables.contains(key);
            match (op.change, &op.after) {
                (Change::Delete, _) => {
                    // Not known in either place (a resumed apply): try both.
                    let neither = !in_secrets && !in_variables;
                    if in_secrets || neither {
                        self.delete("secrets", key).await?;
                    }
                    if in_variables || neither {
                        self.delete("variables", key).await?;
                    }
                    placement.secrets.remove(key);
                    placement.variables.remove(key);
                }
                (_, Some(value)) => match self.class_of(key, value) {
                    Class::Secret => {
                        if sealing.is_none() {
                            sealing = Some(self.public_key().await?);
                        }
                        if let Some(sealing) = &sealing {
                            self.put_secret(key, value, sealing).await?;
                        }
                        placement.secrets.insert(key.to_string(), None);
                        written_secrets.push(key);
                        // The new place holds the value; only now drop the old one.
                        if in_variables {
                            self.delete("variables", key).await?;
                            placement.variables.remove(key);
                        }
                    }
                    Class::Variable => {
                        self.put_variable(key, value, in_variables).await?;
                        placement.variables.insert(key.to_string());
                        if in_secrets {
                            self.delete("secrets", key).await?;
                            placement.secrets.remove(key);
                        }
                    }
                },
                (_, None) => return Err(missing_value(self.platform(), key)),
            }
            progress.applied(&[key]).await?;
            report.writes += 1;
        }
        if !written_secrets.is_empty() {
            // GitHub's PUT answers with no body; the list is where `updated_at` is.
            let listed: BTreeMap<String, Option<String>> = self
                .list_secrets()
                .await?
                .into_iter()
                .map(|s| (s.name.to_ascii_uppercase(), s.updated_at))
                .collect();
            for key in written_secrets {
                if let Some(Some(stamp)) = listed.get(&key.to_ascii_uppercase()) {
                    report.stamps.insert(key.to_string(), stamp.clone());
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(spec: &str) -> Github {
        let settings = RemoteSettings {
            api_url: "http://127.0.0.1:9".into(),
            target_id: Some("acme/shop".into()),
            account_id: None,
            token: Some(SecretValue::new("ghp_x")),
        };
        Github::new(
            spec.parse().expect("spec"),
            &settings,
            None,
            HttpOptions::default(),
        )
        .expect("opens")
    }

    fn op(key: &str, change: Change, after: Option<&str>) -> PlanOp {
        PlanOp {
            key: key.into(),
            change,
            before: None,
            after: after.map(SecretValue::new),
            reason: None,
        }
    }

    #[test]
    fn urls_cover_repository_and_environment_scopes() {
        let repo = github("github");
        assert_eq!(repo.identity(), "github:acme/shop");
        assert_eq!(
            github("x=github:environment=prod:variables=none").identity(),
            "github:acme/shop:environment=prod"
        );
        assert_eq!(
            repo.url("secrets", Some("public-key"), &[]).path(),
            "/repos/acme/shop/actions/secrets/public-key"
        );
        let env = github("github:environment=prod/eu");
        assert_eq!(
            env.url("variables", None, &[("per_page", "30")]).as_str(),
            "http://127.0.0.1:9/repos/acme/shop/environments/prod%2Feu/variables?per_page=30"
        );
    }

    #[test]
    fn names_and_sizes_follow_githubs_rules() {
        let plan = SyncPlan {
            ops: vec![
                op("1ST", Change::Create, Some("x")),
                op("github_sha", Change::Create, Some("x")),
                op("OK_NAME", Change::Create, Some("x")),
                op(
                    "BIG",
                    Change::Update,
                    Some(&"x".repeat(MAX_VALUE_BYTES + 1)),
                ),
                op("BAD-NAME", Change::Delete, None),
            ],
            ..SyncPlan::default()
        };
        let violations = github("github").check_rules(&plan);
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        // github_sha: reserved, and lower case.
        assert_eq!(keys, ["1ST", "github_sha", "github_sha", "BIG"]);
        assert!(violations[1].rule.contains("GITHUB_"));
        assert!(violations[2].rule.contains("come back as GITHUB_SHA"));
        assert!(violations[3].rule.contains("48 KB"));
    }

    #[test]
    fn at_most_a_hundred_secrets() {
        let g = github("github:variables=none");
        let ops: Vec<PlanOp> = (0..102)
            .map(|i| op(&format!("K{i:03}"), Change::Create, Some("v")))
            .collect();
        let plan = SyncPlan {
            ops,
            ..SyncPlan::default()
        };
        let violations = g.check_rules(&plan);
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["K100", "K101"]);
        assert!(
            violations[0]
                .rule
                .contains("at most 100 secrets per repository")
        );
        // With auto, public keys are variables and do not count.
        assert!(github("github").check_rules(&plan).is_empty());
    }

    #[test]
    fn classes_follow_the_mode() {
        let v = SecretValue::new("v");
        let auto = github("github");
        assert_eq!(auto.class_of("API_TOKEN", &v), Class::Secret);
        assert_eq!(auto.class_of("LOG_LEVEL", &v), Class::Variable);
        assert_eq!(
            auto.class_of("DATABASE_URL", &SecretValue::new("postgres://u:p@h/db")),
            Class::Secret
        );
        assert_eq!(
            github("github:variables=none").class_of("LOG_LEVEL", &v),
            Class::Secret
        );
    }

    #[test]
    fn settings_are_checked() {
        let with = |target: Option<&str>, spec: &str| {
            let settings = RemoteSettings {
                target_id: target.map(str::to_string),
                token: Some(SecretValue::new("t")),
                ..RemoteSettings::default()
            };
            Github::new(
                spec.parse().expect("spec"),
                &settings,
                None,
                HttpOptions::default(),
            )
        };
        assert!(matches!(
            with(None, "github").err(),
            Some(PlatformError::MissingSetting {
                variable: "GITHUB_REPOSITORY",
                ..
            })
        ));
        assert!(
            with(Some("no-slash"), "github")
                .err()
                .is_some_and(|e| e.to_string().contains("owner/name"))
        );
        assert!(with(Some("a/b"), "github:variables=some").is_err());
        assert!(with(None, "github:repository=a/b").is_ok());
        assert!(matches!(
            Github::new(
                "github".parse().expect("spec"),
                &RemoteSettings::default(),
                None,
                HttpOptions::default()
            )
            .err(),
            Some(PlatformError::MissingSetting {
                variable: "GITHUB_TOKEN",
                ..
            })
        ));
    }
}
