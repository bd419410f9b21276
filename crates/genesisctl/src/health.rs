//! `GET /envsync/health`'s answer, made once when `genesisctl serve` starts: the sync
//! configuration and whether each provider has credentials. Credentials are looked for
//! here, once, so that the public health check never runs the discovery chain.

use bridge_platforms::PlatformKind;
use bridge_server::answers::{EnvSyncHealth, ProviderHealth};

use crate::config::SyncMode;
use crate::context::Context;

pub async fn envsync_health(
    ctx: &Context<'_>,
    providers: &[bridge_operations::Provider],
) -> EnvSyncHealth {
    let cfg = &ctx.config;
    let mut listed = Vec::with_capacity(providers.len());
    for p in providers {
        let credentials = match p.spec.kind {
            PlatformKind::Render | PlatformKind::Netlify | PlatformKind::Github => {
                ctx.given_tokens.iter().any(|(k, _)| *k == p.spec.kind)
                    || ctx.discover(p.spec.kind).await.found.is_some()
            }
            _ => true,
        };
        listed.push(ProviderHealth {
            name: p.name.clone(),
            spec: p.spec.to_string(),
            credentials,
        });
    }
    let degraded = listed.iter().any(|p| !p.credentials);
    EnvSyncHealth {
        status: if degraded { "degraded" } else { "ok" }.into(),
        enabled: cfg.schedule.enabled,
        mode: match cfg.schedule.mode {
            SyncMode::DryRun => "dry-run",
            SyncMode::Enforce => "enforce",
        }
        .into(),
        schedule: cfg.schedule.schedule.clone(),
        source: cfg.sync.source.to_string(),
        providers: listed,
        include_prefixes: cfg.sync.include_prefixes.clone(),
        exclude_prefixes: cfg.sync.exclude_prefixes.clone(),
        allow_deletions: cfg.sync.allow_deletions,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}
