//! [`ControlPlane`]: the sync engine as `genesisctl serve` offers it to the HTTP API — the
//! same plan/journal/apply/verify path as `genesisctl env sync`, the same parity as
//! `genesisctl env verify`, answered as the server's types (keys and counts, never values).

use anyhow::{Result, anyhow};
use bridge_core::diff::Change;
use bridge_platforms::spec::assign_labels;
use bridge_platforms::{PlatformKind, PlatformSpec};
use bridge_server::ApiError;
use bridge_server::service::{
    BoxFuture, ChangeSummary, EnvSync, EnvSyncHealth, PlannedChange, ProviderHealth, SyncMode,
    SyncResult,
};
use bridge_sync::{TargetOutcome, TargetStatus};

use crate::commands::sync::{Options, Scope, execute};
use crate::config::SyncMode as ScheduledMode;
use crate::context::Context;
use crate::exit::{Code, Failure};

struct Provider {
    name: String,
    spec: PlatformSpec,
    credentials: bool,
}

pub struct ControlPlane {
    ctx: Context<'static>,
    providers: Vec<Provider>,
}

impl ControlPlane {
    /// The configured targets, named as reports name them; credentials are looked for once,
    /// here, so that the public health check never runs the discovery chain.
    pub async fn new(ctx: Context<'static>) -> Result<Self> {
        let specs = ctx.config.sync.targets.clone();
        let labels = assign_labels(&specs).map_err(|e| anyhow!("sync.targets: {e}"))?;
        let mut providers = Vec::with_capacity(specs.len());
        for (spec, name) in specs.into_iter().zip(labels) {
            let credentials = match spec.kind {
                PlatformKind::Render | PlatformKind::Netlify | PlatformKind::Github => {
                    ctx.given_tokens.iter().any(|(k, _)| *k == spec.kind)
                        || ctx.discover(spec.kind).await.found.is_some()
                }
                _ => true,
            };
            providers.push(Provider {
                name,
                spec,
                credentials,
            });
        }
        Ok(Self { ctx, providers })
    }

    pub fn context(&self) -> &Context<'static> {
        &self.ctx
    }

    async fn run(&self, name: &str, mode: SyncMode) -> Result<SyncResult, ApiError> {
        let provider = self
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ApiError::not_found(format!("no provider `{name}` is configured")))?;
        let options = Options {
            dry_run: mode == SyncMode::DryRun,
            force: false,
            allow_empty_source: false,
        };
        let outcome = execute(
            &self.ctx,
            self.ctx.config.sync.source.clone(),
            vec![provider.spec.clone()],
            &Scope::from_config(&self.ctx),
            options,
        )
        .await
        .map_err(api_error)?;
        let journal = outcome.journal.and_then(|j| u64::try_from(j.0).ok());
        let target =
            outcome.targets.into_iter().next().ok_or_else(|| {
                ApiError::internal("the sync returned no outcome for the provider")
            })?;
        Ok(self.result(&provider.name, mode, target, journal))
    }

    fn result(
        &self,
        name: &str,
        mode: SyncMode,
        target: TargetOutcome,
        journal: Option<u64>,
    ) -> SyncResult {
        let classifier = self.ctx.classifier();
        let mut summary = ChangeSummary::default();
        let mut plan = Vec::new();
        if let Some(p) = &target.plan {
            let s = p.summary();
            summary = ChangeSummary {
                create: s.create,
                update: s.update,
                delete: s.delete,
                unknown: s.unknown,
                noop: s.noop,
            };
            plan = p
                .ops
                .iter()
                .filter(|op| op.change != Change::Noop)
                .map(|op| PlannedChange {
                    key: op.key.clone(),
                    op: op.change.as_str().to_owned(),
                    secret: match &op.after {
                        Some(value) => classifier.is_secret_entry(&op.key, value),
                        None => classifier.is_secret(&op.key),
                    },
                })
                .collect();
        }
        let planned = summary.create + summary.update + summary.delete;
        let (status, applied, changes, errors, detail) = match &target.status {
            TargetStatus::InSync => ("in_sync", false, 0, 0, None),
            TargetStatus::Planned => ("planned", false, planned, 0, None),
            TargetStatus::Applied { writes } => ("applied", true, *writes, 0, None),
            TargetStatus::Unverified { writes, remaining } => (
                "unverified",
                true,
                *writes,
                remaining.len(),
                Some(format!(
                    "still differs after writing: {}",
                    remaining.join(", ")
                )),
            ),
            TargetStatus::Refused(e) => ("refused", false, planned, 1, Some(e.to_string())),
            TargetStatus::Rejected(v) => (
                "rejected",
                false,
                planned,
                v.len(),
                Some(
                    v.iter()
                        .map(|v| format!("{}: {}", v.key, v.rule))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
            TargetStatus::Failed(e) => ("failed", false, planned, 1, Some(e.to_string())),
        };
        SyncResult {
            provider: name.to_owned(),
            spec: target.spec.to_string(),
            mode: mode.as_str().to_owned(),
            status: status.to_owned(),
            applied,
            changes,
            errors,
            summary,
            plan,
            detail,
            journal: if applied { journal } else { None },
        }
    }
}

/// A failure of the whole sync (the source unreadable, bad configuration) as an answer.
fn api_error(failure: Failure) -> ApiError {
    let detail = format!("{:#}", failure.error);
    match failure.code {
        Code::Platform => ApiError::upstream(detail),
        Code::Input => ApiError::unprocessable(detail),
        Code::Ok | Code::Drift => ApiError::internal(detail),
    }
}

impl EnvSync for ControlPlane {
    fn health(&self) -> BoxFuture<'_, EnvSyncHealth> {
        Box::pin(async move {
            let cfg = &self.ctx.config;
            let degraded = self.providers.iter().any(|p| !p.credentials);
            EnvSyncHealth {
                status: if degraded { "degraded" } else { "ok" }.into(),
                enabled: cfg.schedule.enabled,
                mode: match cfg.schedule.mode {
                    ScheduledMode::DryRun => "dry-run",
                    ScheduledMode::Enforce => "enforce",
                }
                .into(),
                schedule: cfg.schedule.schedule.clone(),
                source: cfg.sync.source.to_string(),
                providers: self
                    .providers
                    .iter()
                    .map(|p| ProviderHealth {
                        name: p.name.clone(),
                        spec: p.spec.to_string(),
                        credentials: p.credentials,
                    })
                    .collect(),
                include_prefixes: cfg.sync.include_prefixes.clone(),
                exclude_prefixes: cfg.sync.exclude_prefixes.clone(),
                allow_deletions: cfg.sync.allow_deletions,
                version: env!("CARGO_PKG_VERSION").into(),
            }
        })
    }

    fn providers(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name.clone()).collect()
    }

    fn sync<'a>(
        &'a self,
        provider: &'a str,
        mode: SyncMode,
    ) -> BoxFuture<'a, Result<SyncResult, ApiError>> {
        Box::pin(self.run(provider, mode))
    }

    fn schema_check(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, ApiError>> {
        Box::pin(async move {
            let schema = &self.ctx.config.schema;
            if schema.is_empty() {
                return Ok(None);
            }
            let compiled = schema
                .compile()
                .map_err(|e| ApiError::unprocessable(format!("bridge.toml [schema]: {e}")))?;
            let spec = self.ctx.config.sync.source.clone();
            let vars = self
                .ctx
                .place(&spec)
                .await
                .map_err(api_error)?
                .platform
                .load()
                .await
                .map_err(|e| ApiError::upstream(format!("reading {spec}: {e}")))?;
            Ok(Some(
                compiled
                    .check(&vars)
                    .iter()
                    .map(|v| v.to_string())
                    .collect(),
            ))
        })
    }

    fn parity(&self) -> BoxFuture<'_, Result<serde_json::Value, ApiError>> {
        Box::pin(async move {
            let mut specs = vec![self.ctx.config.sync.source.clone()];
            specs.extend(self.providers.iter().map(|p| p.spec.clone()));
            if specs.len() < 2 {
                return Err(ApiError::unprocessable(
                    "parity needs at least one target: set sync.targets or ENVSYNC_TARGETS",
                ));
            }
            let (_, report) = crate::commands::verify::compute(&self.ctx, &specs)
                .await
                .map_err(api_error)?;
            serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))
        })
    }
}
