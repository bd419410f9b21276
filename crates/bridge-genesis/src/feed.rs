//! The ledger's feed: a durable consumer of the bus that appends every event of interest to
//! the Truth ledger, then signs a checkpoint.
//!
//! The CLI runs it after each command that published; `genesisctl serve` runs it whenever the
//! bus moves. Both may run at once (two processes on one state directory): a crash or a race
//! between appending and acking redelivers events the ledger already holds, so the feed skips
//! every bus sequence at or below the newest one the ledger recorded.

use time::OffsetDateTime;

use crate::bus::{Bus, BusError};
use crate::ledger::{Ledger, LedgerError, NewEntry};

/// The durable consumer that feeds the ledger.
pub const LEDGER_CONSUMER: &str = "truth-ledger";

/// Topic prefixes recorded by default: the changes Bridge made or refused, deploys, heals,
/// vault reads.
pub const DEFAULT_LEDGER_TOPICS: &[&str] = &[
    "envsync.",
    "deploy.",
    "autosync.",
    "vault.",
    "webhook.",
    "genesis.heal",
    "genesis.intent",
    "genesis.blocked",
];

static FEED_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why the feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the ledger's consumer: {0}")]
    Consumer(#[from] BusError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("opening the ledger: {0}")]
    Open(Box<dyn std::error::Error + Send + Sync>),
}

/// Appends to the ledger every event of interest published since the consumer's last ack,
/// then signs a checkpoint when it added anything. `open` is called at most once, and only
/// when there is something to read. Returns how many entries were added.
pub async fn record_pending<E>(
    bus: &Bus,
    topics: &[&str],
    open: impl FnOnce() -> Result<Ledger, E>,
) -> Result<usize, FeedError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // One feed at a time in a process: two would read the same batch and append it twice.
    let _one_at_a_time = FEED_LOCK.lock().await;
    let mut consumer = bus.consumer(LEDGER_CONSUMER, ">").await?;
    let mut open = Some(open);
    let mut ledger: Option<Ledger> = None;
    let mut added = 0;
    loop {
        let batch = consumer.next_batch(1_000).await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        let ledger = match (&mut ledger, open.take()) {
            (Some(l), _) => l,
            (None, Some(open)) => ledger.insert(open().map_err(|e| FeedError::Open(e.into()))?),
            (None, None) => unreachable!("the ledger is opened with the first batch"),
        };
        let recorded = last_recorded_seq(ledger)?;
        let entries: Vec<NewEntry> = batch
            .iter()
            .filter(|e| e.seq > recorded)
            .filter(|e| topics.iter().any(|t| e.topic.starts_with(t)))
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
        consumer.ack(last).await?;
    }
    if let Some(ledger) = &mut ledger
        && added > 0
    {
        ledger.checkpoint(OffsetDateTime::now_utc())?;
    }
    Ok(added)
}

fn last_recorded_seq(ledger: &Ledger) -> Result<u64, LedgerError> {
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
