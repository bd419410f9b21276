//! `render`: the environment variables set directly on a Render service.
//!
//! Render returns every value in clear, so the whole set is readable. Reading is one cursor
//! listing (100 per page). A few changes (up to [`PER_KEY_MAX`]) are written key by key
//! (`PUT`/`DELETE …/env-vars/{key}`), which touches exactly the keys that changed and cannot
//! disturb anything else. More use Render's bulk "replace all" (`PUT
//! /services/{id}/env-vars`): one call carries the full desired set — what the service held
//! when the plan was made ([`WriteRequest::current`]) with the plan applied — so keys outside
//! the plan are sent back unchanged. That is why `current` must be the unfiltered read of the
//! service. Render's write limit (30 a minute) makes the bulk call necessary for large syncs.

use std::collections::BTreeMap;

/// Up to this many changes are written key by key; more go in one bulk replace.
pub const PER_KEY_MAX: usize = 10;

use async_trait::async_trait;
use bridge_core::SecretValue;
use bridge_core::diff::{Change, PlanOp, SyncPlan};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::http::{Call, Endpoint, HttpClient, HttpOptions};
use crate::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    RemoteSettings, RemoteValue, RuleViolation, WriteRequest, required_token, written_ops,
};

/// Render's API root, unless `RENDER_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.render.com/v1";

/// Render's page size limit; asking for the maximum keeps a read to one call for most
/// services.
const PAGE_LIMIT: usize = 100;

pub struct Render {
    spec: PlatformSpec,
    client: HttpClient,
    service_id: String,
}

#[derive(Deserialize)]
struct Wrapper {
    #[serde(rename = "envVar")]
    env_var: Option<EnvVar>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct EnvVar {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct ValueOnly<'a> {
    value: &'a str,
}

impl Render {
    /// The adapter for `spec`: the service is the spec's `service` option, else
    /// `RENDER_SERVICE_ID`.
    pub fn new(
        spec: PlatformSpec,
        settings: &RemoteSettings,
        options: HttpOptions,
    ) -> Result<Self, PlatformError> {
        let platform = spec.to_string();
        let token = required_token(
            settings,
            &platform,
            "RENDER_API_TOKEN",
            "create an API key under Account Settings → API Keys in the Render dashboard",
        )?;
        let service_id = crate::required_target(
            &spec,
            "service",
            settings,
            "RENDER_SERVICE_ID",
            "set it to the service's id (srv-…), or name the service in the spec: render:service=srv-…",
        )?;
        let base = if settings.api_url.trim().is_empty() {
            DEFAULT_API_URL
        } else {
            settings.api_url.as_str()
        };
        let client = HttpClient::new(
            base,
            "RENDER_API_URL",
            token,
            Endpoint {
                platform,
                token_variable: "RENDER_API_TOKEN",
                missing_hint: format!(
                    "no service {service_id} (or the token's workspace cannot see it): check RENDER_SERVICE_ID"
                ),
            },
            &[],
            options,
        )?;
        Ok(Self {
            spec,
            client,
            service_id,
        })
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.client.requests()
    }

    fn platform(&self) -> &str {
        self.client.platform()
    }

    async fn set_one(&self, key: &str, value: &SecretValue) -> Result<(), PlatformError> {
        let what = format!("set {key} on service {}", self.service_id);
        let url = self
            .client
            .url(&["services", &self.service_id, "env-vars", key], &[]);
        let call = Call::new(Method::PUT, url, &what).json(
            self.platform(),
            &ValueOnly {
                value: value.expose(),
            },
        )?;
        self.client.send(call).await.map(drop)
    }

    async fn delete_one(&self, key: &str) -> Result<(), PlatformError> {
        let what = format!("delete {key} from service {}", self.service_id);
        let url = self
            .client
            .url(&["services", &self.service_id, "env-vars", key], &[]);
        // Already gone is as good as deleted (a retried DELETE whose first answer was lost).
        let call = Call::new(Method::DELETE, url, &what).allow_404();
        self.client.send(call).await.map(drop)
    }

    /// The full set the service must hold after `ops`: `current` with each write applied.
    fn desired<'a>(
        &self,
        current: &'a RemoteSet,
        ops: &[&'a PlanOp],
    ) -> Result<BTreeMap<&'a str, &'a SecretValue>, PlatformError> {
        let mut set = BTreeMap::new();
        for (key, value) in current {
            match value {
                RemoteValue::Readable(v) => {
                    set.insert(key.as_str(), v);
                }
                // Render never hides a value; a write-only entry means `current` is not a
                // read of this service, and replacing the set from it would lose data.
                RemoteValue::WriteOnly { .. } => {
                    return Err(PlatformError::Write {
                        platform: self.platform().to_string(),
                        what: format!(
                            "{key} is marked write-only in the current set, which Render never does; re-read the service and plan again"
                        ),
                    });
                }
            }
        }
        for op in ops {
            match (op.change, &op.after) {
                (Change::Delete, _) => {
                    set.remove(op.key.as_str());
                }
                (_, Some(value)) => {
                    set.insert(op.key.as_str(), value);
                }
                (_, None) => return Err(missing_value(self.platform(), &op.key)),
            }
        }
        Ok(set)
    }
}

pub(crate) fn missing_value(platform: &str, key: &str) -> PlatformError {
    PlatformError::Write {
        platform: platform.to_string(),
        what: format!("the plan has no value to write for {key}; plan again"),
    }
}

#[async_trait]
impl Platform for Render {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: true,
            bulk_write: true,
            serial_writes: false,
            ownership_applies: true,
            applies_by_printing: false,
            same_place_by_path: false,
            atomic_apply: false,
        }
    }

    /// The service, whatever the spec's label or where the id came from.
    fn identity(&self) -> String {
        format!("render:{}", self.service_id)
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        let what = format!(
            "list the environment variables of service {}",
            self.service_id
        );
        let items: Vec<Wrapper> = self
            .client
            .list_cursor(
                &["services", &self.service_id, "env-vars"],
                self.client.page_size(PAGE_LIMIT),
                &what,
                |w: &Wrapper| w.cursor.as_deref(),
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|w| w.env_var)
            .map(|v| {
                let value = SecretValue::new(v.value.unwrap_or_default());
                (v.key, RemoteValue::Readable(value))
            })
            .collect())
    }

    fn check_rules(&self, plan: &SyncPlan) -> Vec<RuleViolation> {
        plan.writes()
            .filter(|op| matches!(op.change, Change::Create | Change::Update))
            .filter(|op| op.after.as_ref().is_some_and(SecretValue::is_empty))
            .map(|op| RuleViolation {
                key: op.key.clone(),
                unwritable: false,
                rule: "Render does not accept empty values; give it a value or leave it out of the sync".into(),
            })
            .collect()
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let ops = written_ops(request.ops);
        match ops.len() {
            0 => return Ok(ApplyReport::default()),
            n if n <= PER_KEY_MAX => {
                for op in &ops {
                    match (op.change, &op.after) {
                        (Change::Delete, _) => self.delete_one(&op.key).await?,
                        (_, Some(value)) => self.set_one(&op.key, value).await?,
                        (_, None) => return Err(missing_value(self.platform(), &op.key)),
                    }
                    progress.applied(&[op.key.as_str()]).await?;
                }
            }
            _ => {
                let desired = self.desired(request.current, &ops)?;
                let body: Vec<KeyValue<'_>> = desired
                    .iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value: value.expose(),
                    })
                    .collect();
                let what = format!(
                    "replace the environment variables of service {}",
                    self.service_id
                );
                let url = self
                    .client
                    .url(&["services", &self.service_id, "env-vars"], &[]);
                let call = Call::new(Method::PUT, url, &what).json(self.platform(), &body)?;
                self.client.send(call).await?;
                // One call made every change at once; report them together.
                let keys: Vec<&str> = ops.iter().map(|op| op.key.as_str()).collect();
                progress.applied(&keys).await?;
            }
        }
        Ok(ApplyReport {
            writes: ops.len(),
            ..ApplyReport::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use bridge_core::diff::PlanOp;

    use super::*;

    fn render() -> Render {
        let settings = RemoteSettings {
            api_url: "http://127.0.0.1:9/v1".into(),
            target_id: Some("srv-1".into()),
            account_id: None,
            token: Some(SecretValue::new("rnd_x")),
        };
        Render::new(
            "render".parse().expect("spec"),
            &settings,
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
    fn empty_values_break_the_rules() {
        let plan = SyncPlan {
            ops: vec![
                op("A", Change::Create, Some("")),
                op("B", Change::Update, Some("x")),
                op("C", Change::Delete, None),
                op("D", Change::Update, Some("")),
            ],
            ..SyncPlan::default()
        };
        let keys: Vec<String> = render()
            .check_rules(&plan)
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(keys, ["A", "D"]);
    }

    #[test]
    fn the_desired_set_is_current_with_the_plan_applied() {
        let r = render();
        let current: RemoteSet = [("KEEP", "1"), ("CHANGE", "old"), ("DROP", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), RemoteValue::Readable(SecretValue::new(v))))
            .collect();
        let ops = [
            op("CHANGE", Change::Update, Some("new")),
            op("DROP", Change::Delete, None),
            op("NEW", Change::Create, Some("n")),
        ];
        let refs: Vec<&PlanOp> = ops.iter().collect();
        let desired = r.desired(&current, &refs).expect("desired");
        let flat: Vec<(&str, &str)> = desired.iter().map(|(k, v)| (*k, v.expose())).collect();
        assert_eq!(flat, [("CHANGE", "new"), ("KEEP", "1"), ("NEW", "n")]);
    }

    #[test]
    fn missing_settings_name_the_variable() {
        let spec: PlatformSpec = "render".parse().expect("spec");
        let err = Render::new(
            spec.clone(),
            &RemoteSettings::default(),
            HttpOptions::default(),
        )
        .err()
        .expect("no token");
        assert!(matches!(
            err,
            PlatformError::MissingSetting {
                variable: "RENDER_API_TOKEN",
                ..
            }
        ));
        let settings = RemoteSettings {
            token: Some(SecretValue::new("t")),
            ..RemoteSettings::default()
        };
        let err = Render::new(spec, &settings, HttpOptions::default())
            .err()
            .expect("no service");
        assert!(matches!(
            err,
            PlatformError::MissingSetting {
                variable: "RENDER_SERVICE_ID",
                ..
            }
        ));
        // The spec's option is enough, and it is what the identity names.
        let spec: PlatformSpec = "prod=render:service=srv-9".parse().expect("spec");
        let r = Render::new(spec, &settings, HttpOptions::default()).expect("opens");
        assert_eq!(r.identity(), "render:srv-9");
    }
}
