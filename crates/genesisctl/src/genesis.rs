//! The Genesis bus and the Truth ledger as the CLI uses them: the event store named by
//! `--store` (SQLite in the state directory by default), the gate's policy, and the ledger's
//! durable consumer, which records every event that matters after each command — so an event
//! published just before a crash is recorded by the next run, not lost.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use bridge_genesis::bus::{Bus, Event, EventStore, Policy, PolicyMode, Role, SqliteStore};
use bridge_genesis::feed::DEFAULT_LEDGER_TOPICS;
use bridge_genesis::ledger::LedgerAccess;
use serde_json::Value;

use crate::config::Config;
use crate::state::StateDir;

/// The events file inside the state directory, when `--store` names no other.
pub const EVENTS_FILE: &str = "events.db";

/// Whether the `--store` and `--bus` URLs are well formed, before connecting to either.
pub fn check_bus_urls(config: &Config) -> Result<()> {
    crate::store::StoreUrl::parse(&config.store_url)?;
    let bus_url = config.bus_url.trim();
    match bus_url.strip_prefix("nats://") {
        _ if bus_url.is_empty() => Ok(()),
        Some(server) if !server.trim().is_empty() => Ok(()),
        _ => bail!(
            "--bus {}: expected nats://HOST:PORT, or nothing for the store itself",
            crate::store::redact_url(bus_url)
        ),
    }
}

/// Connects the bus `config` names (`--store`, `--bus`), SQLite in `state` by default, with
/// at most `connections` to a PostgreSQL store.
pub async fn connect_bus(config: &Config, state: &StateDir, connections: usize) -> Result<Bus> {
    let url = config.store_url.trim();
    let bus_url = config.bus_url.trim();
    let store: Arc<dyn EventStore> = if let Some(server) = bus_url.strip_prefix("nats://") {
        // JetStream is both the bus and the event log: its stream sequence is _genesis_seq.
        let options = bridge_genesis_scale::NatsOptions::new("GENESIS", "genesis");
        let nats = bridge_genesis_scale::NatsStore::connect(server, options)
            .await
            .with_context(|| {
                format!(
                    "connecting to the --bus NATS server {}",
                    crate::store::redact_url(server)
                )
            })?;
        // The claims (schedule slots, webhook deliveries) stay in the store.
        let claims = claims_store(url, state, connections).await?;
        Arc::new(nats.with_claims(claims))
    } else if !bus_url.is_empty() {
        bail!(
            "--bus {}: expected nats://HOST:PORT, or nothing for the store itself",
            crate::store::redact_url(bus_url)
        );
    } else if url.is_empty() {
        state.ensure()?;
        let path = state.path().join(EVENTS_FILE);
        Arc::new(SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?)
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(SqliteStore::open(path).with_context(|| format!("opening {path}"))?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Several `genesisctl serve` replicas (or CLIs) share one log through PostgreSQL.
        let options = bridge_genesis_scale::PostgresOptions {
            max_connections: connections,
            ..bridge_genesis_scale::PostgresOptions::default()
        };
        Arc::new(
            bridge_genesis_scale::PostgresStore::connect_with(url, options)
                .await
                .with_context(|| "connecting to the --store PostgreSQL database".to_string())?,
        )
    } else {
        bail!(
            "--store {}: expected sqlite://PATH (the default is SQLite in the state \
             directory) or postgres://USER@HOST/DB",
            crate::store::redact_url(url)
        );
    };
    let mode = if config.strict_policy {
        PolicyMode::Strict
    } else {
        PolicyMode::Permissive
    };
    Ok(Bus::new(store, Policy::new(mode)))
}

/// Where a NATS bus's claims are kept: the `--store` database (its events unused), or
/// `events.db` in the state directory.
async fn claims_store(
    url: &str,
    state: &StateDir,
    connections: usize,
) -> Result<Arc<dyn EventStore>> {
    Ok(match crate::store::StoreUrl::parse(url)? {
        crate::store::StoreUrl::Postgres(url) => {
            let options = bridge_genesis_scale::PostgresOptions {
                max_connections: connections,
                ..bridge_genesis_scale::PostgresOptions::default()
            };
            Arc::new(
                bridge_genesis_scale::PostgresStore::connect_with(&url, options)
                    .await
                    .context("connecting to the --store PostgreSQL database for the claims")?,
            )
        }
        crate::store::StoreUrl::Local => {
            state.ensure()?;
            let path = match url.strip_prefix("sqlite://") {
                Some(path) => std::path::PathBuf::from(path),
                None => state.path().join(EVENTS_FILE),
            };
            Arc::new(
                SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?,
            )
        }
    })
}

/// Publishes as the system itself (the sync engine, the ledger); refusals are errors.
pub async fn publish(bus: &Bus, topic: &str, payload: Value) -> Result<Event> {
    bus.publish(topic, payload, Role::System)
        .await
        .map_err(|e| anyhow!("publishing {topic}: {e}"))
}

/// Appends to the ledger every event of interest published since the consumer's last ack,
/// then signs a checkpoint. Returns how many entries it added.
pub async fn record_in_ledger(ledger: &LedgerAccess, bus: &Bus) -> Result<usize> {
    let ledger = ledger.clone();
    bridge_genesis::feed::record_pending(bus, DEFAULT_LEDGER_TOPICS, move || ledger.take())
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// The scheduled sync of `genesisctl serve` (`ENVSYNC_ENABLED`, `ENVSYNC_SCHEDULE`,
/// `ENVSYNC_MODE`), claiming its slots in the bus's store so that it runs once across the
/// servers sharing it. `None` (with a log line saying why) when it is off, its schedule does
/// not parse, or the store keeps no schedule table.
pub fn scheduled_sync(
    bus: &Bus,
    config: &crate::config::ScheduleConfig,
    logger: &bridge_server::Logger,
) -> Option<bridge_autonomy::ScheduledSync> {
    if !config.enabled {
        logger.info("scheduled sync is off (ENVSYNC_ENABLED=false)", &[]);
        return None;
    }
    let schedule = match bridge_autonomy::Schedule::parse(&config.schedule) {
        Ok(schedule) => schedule,
        Err(e) => {
            logger.warn(
                "scheduled sync is off: ENVSYNC_SCHEDULE does not parse",
                &[("error", &e)],
            );
            return None;
        }
    };
    let Some(store) = bus.store().schedules() else {
        logger.warn(
            "scheduled sync is off: the store keeps no schedule table to share the runs \
             across servers",
            &[("store", &bus.store().describe())],
        );
        return None;
    };
    let mode = match config.mode {
        crate::config::SyncMode::DryRun => bridge_sync::Mode::DryRun,
        crate::config::SyncMode::Enforce => bridge_sync::Mode::Apply,
    };
    let options = bridge_autonomy::SchedulerOptions {
        enabled: true,
        schedule: Some(schedule),
        mode,
        owner: scheduler_owner(),
    };
    Some(bridge_autonomy::ScheduledSync::new(options, store))
}

/// `host:pid`, or `genesisctl:pid` when the host has no readable name.
fn scheduler_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "genesisctl".to_owned());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScheduleConfig, SyncMode};

    fn config(enabled: bool, schedule: &str) -> ScheduleConfig {
        ScheduleConfig {
            enabled,
            mode: SyncMode::Enforce,
            schedule: schedule.to_owned(),
        }
    }

    #[tokio::test]
    async fn the_scheduled_sync_follows_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join(EVENTS_FILE)).unwrap();
        let bus = Bus::new(Arc::new(store), Policy::default());
        let logger = bridge_server::Logger::off();

        let on = scheduled_sync(&bus, &config(true, "@daily"), &logger).unwrap();
        assert!(on.options.enabled);
        assert_eq!(on.options.mode, bridge_sync::Mode::Apply);
        assert_eq!(
            on.options.schedule.as_ref().map(|s| s.as_str()),
            Some("@daily")
        );
        assert!(
            on.options
                .owner
                .ends_with(&format!(":{}", std::process::id()))
        );

        assert!(scheduled_sync(&bus, &config(false, "@daily"), &logger).is_none());
        assert!(scheduled_sync(&bus, &config(true, "every hour"), &logger).is_none());
    }
}
