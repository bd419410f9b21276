//! The Genesis bus and the Truth ledger as the CLI uses them: the event store named by
//! `--store` (SQLite in the state directory by default), the gate's policy, and the ledger's
//! durable consumer, which records every event that matters after each command — so an event
//! published just before a crash is recorded by the next run, not lost.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use bridge_genesis::bus::{Bus, Event, EventStore, Policy, PolicyMode, Role, SqliteStore};
use bridge_genesis::ledger::NewEntry;
use serde_json::Value;

use crate::context::Context;

/// The events file inside the state directory, when `--store` names no other.
pub const EVENTS_FILE: &str = "events.db";

/// The durable consumer that feeds the ledger.
const LEDGER_CONSUMER: &str = "truth-ledger";

/// Topics recorded in the ledger: the changes Bridge made or refused, and deploys.
const LEDGER_TOPICS: &[&str] = &[
    "envsync.",
    "deploy.",
    "autosync.",
    "genesis.heal",
    "genesis.blocked",
];

pub async fn open_bus(ctx: &Context<'_>) -> Result<Bus> {
    let url = ctx.config.store_url.trim();
    let bus_url = ctx.config.bus_url.trim();
    let store: Arc<dyn EventStore> = if let Some(server) = bus_url.strip_prefix("nats://") {
        // JetStream is both the bus and the event log: its stream sequence is _genesis_seq.
        let options = bridge_genesis_scale::NatsOptions {
            stream: "GENESIS".into(),
            subject_prefix: "genesis".into(),
        };
        Arc::new(
            bridge_genesis_scale::NatsStore::connect(server, options)
                .await
                .with_context(|| format!("connecting to the --bus NATS server {server}"))?,
        )
    } else if !bus_url.is_empty() {
        bail!("--bus {bus_url}: expected nats://HOST:PORT, or nothing for the store itself");
    } else if url.is_empty() {
        ctx.state.ensure()?;
        let path = ctx.state.path().join(EVENTS_FILE);
        Arc::new(SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?)
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(SqliteStore::open(path).with_context(|| format!("opening {path}"))?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Several `genesisctl serve` replicas (or CLIs) share one log through PostgreSQL.
        Arc::new(
            bridge_genesis_scale::PostgresStore::connect(url)
                .await
                .with_context(|| "connecting to the --store PostgreSQL database".to_string())?,
        )
    } else {
        bail!(
            "--store {url}: expected sqlite://PATH (the default is SQLite in the state \
             directory) or postgres://USER@HOST/DB"
        );
    };
    let mode = if ctx.config.strict_policy {
        PolicyMode::Strict
    } else {
        PolicyMode::Permissive
    };
    Ok(Bus::new(store, Policy::new(mode)))
}

/// Publishes as the system itself (the sync engine, the ledger); refusals are errors.
pub async fn publish(bus: &Bus, topic: &str, payload: Value) -> Result<Event> {
    bus.publish(topic, payload, Role::System)
        .await
        .map_err(|e| anyhow!("publishing {topic}: {e}"))
}

/// Appends to the ledger every event of interest published since the consumer's last ack,
/// then signs a checkpoint. Returns how many entries it added.
pub async fn record_in_ledger(ctx: &Context<'_>, bus: &Bus) -> Result<usize> {
    let mut consumer = bus
        .consumer(LEDGER_CONSUMER, ">")
        .await
        .map_err(|e| anyhow!("the ledger's consumer: {e}"))?;
    let mut ledger = None;
    let mut added = 0;
    loop {
        let batch = consumer
            .next_batch(1_000)
            .await
            .map_err(|e| anyhow!("reading events for the ledger: {e}"))?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        let ledger = match &mut ledger {
            Some(l) => l,
            None => ledger.insert(ctx.state.ledger()?),
        };
        // A crash between appending and acking redelivers events the ledger already holds:
        // skip what it has (bus sequences only grow).
        let recorded = last_recorded_seq(ledger)?;
        let entries: Vec<NewEntry> = batch
            .iter()
            .filter(|e| e.seq > recorded)
            .filter(|e| LEDGER_TOPICS.iter().any(|t| e.topic.starts_with(t)))
            .map(|e| NewEntry {
                timestamp: e.timestamp,
                topic: e.topic.clone(),
                seq: Some(e.seq),
                payload: e.envelope(),
            })
            .collect();
        if !entries.is_empty() {
            ledger.append_batch(&entries)?;
            added += entries.len();
        }
        consumer
            .ack(last)
            .await
            .map_err(|e| anyhow!("acknowledging events for the ledger: {e}"))?;
    }
    if let Some(ledger) = &mut ledger
        && added > 0
    {
        ledger.checkpoint(time::OffsetDateTime::now_utc())?;
    }
    Ok(added)
}

fn last_recorded_seq(ledger: &bridge_genesis::ledger::Ledger) -> Result<u64> {
    let len = ledger.len();
    if len == 0 {
        return Ok(0);
    }
    Ok(ledger
        .entries(len - 1..len)?
        .first()
        .and_then(|e| e.seq)
        .unwrap_or(0))
}
