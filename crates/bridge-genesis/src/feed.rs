//! The ledger's feed: a durable consumer of the bus that appends every event of interest to
//! the Truth ledger, then signs a checkpoint.
//!
//! The CLI runs it after each command that published; `genesisctl serve` runs it whenever the
//! bus moves. Both may run at once (two processes on one state directory, or a one-shot run
//! beside a server's feed): a crash or a race between appending and acking redelivers events
//! the ledger already holds, and the ledger itself leaves out every event it already records
//! (checked under its write lock), so each event is recorded once.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::bus::{Bus, BusError, DurableConsumer};
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
    #[error("the ledger's blocking task failed: {0}")]
    Task(String),
}

/// Appends to the ledger every event of interest published since the consumer's last ack,
/// then signs a checkpoint when it added anything. `open` is called at most once, and only
/// when there is something to read. Returns how many entries were added.
///
/// For a one-shot command; a long-running process keeps a [`LedgerFeed`] instead.
pub async fn record_pending<E>(
    bus: &Bus,
    topics: &[&str],
    open: impl FnOnce() -> Result<Ledger, E> + Send + 'static,
) -> Result<usize, FeedError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let mut feed = LedgerFeed::new(CheckpointPolicy::AFTER_EVERY_RUN);
    feed.record_pending(bus, topics, open).await
}

/// When a [`LedgerFeed`] signs a checkpoint: once `entries` are unsigned, or once `interval`
/// has passed since the last one and something is unsigned (checked on each run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub entries: usize,
    pub interval: Duration,
}

impl CheckpointPolicy {
    /// A checkpoint at the end of every run that appended.
    pub const AFTER_EVERY_RUN: Self = Self {
        entries: 1,
        interval: Duration::ZERO,
    };
}

/// The feed of a long-running process: the ledger and the consumer stay open between runs, so
/// a run costs what it appends (opening the ledger rereads every leaf hash), and checkpoints
/// follow a [`CheckpointPolicy`] rather than every run, since under a stream of events each
/// run appends a few entries and a checkpoint proves consistency with the last one before it
/// signs.
pub struct LedgerFeed {
    policy: CheckpointPolicy,
    ledger: Option<Ledger>,
    consumer: Option<DurableConsumer>,
    /// Entries appended since the last checkpoint.
    unsigned: usize,
    last_checkpoint: Instant,
}

impl std::fmt::Debug for LedgerFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerFeed")
            .field("policy", &self.policy)
            .field("open", &self.ledger.is_some())
            .field("unsigned", &self.unsigned)
            .finish_non_exhaustive()
    }
}

impl LedgerFeed {
    pub fn new(policy: CheckpointPolicy) -> Self {
        Self {
            policy,
            ledger: None,
            consumer: None,
            unsigned: 0,
            last_checkpoint: Instant::now(),
        }
    }

    /// Entries appended and not yet covered by a checkpoint.
    pub fn unsigned(&self) -> usize {
        self.unsigned
    }

    /// Appends every event of interest since the consumer's last ack, then signs a checkpoint
    /// if the policy says so. `open` is called only when the ledger is not open yet and there
    /// is something to read. Returns how many entries were added. After an error everything
    /// is reopened on the next run, from the stored ack floor.
    pub async fn record_pending<E>(
        &mut self,
        bus: &Bus,
        topics: &[&str],
        open: impl FnOnce() -> Result<Ledger, E> + Send + 'static,
    ) -> Result<usize, FeedError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.run(bus, topics, open, false).await
    }

    /// Like [`LedgerFeed::record_pending`], then a checkpoint over whatever is unsigned,
    /// whatever the policy (before the process exits).
    pub async fn flush<E>(
        &mut self,
        bus: &Bus,
        topics: &[&str],
        open: impl FnOnce() -> Result<Ledger, E> + Send + 'static,
    ) -> Result<usize, FeedError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.run(bus, topics, open, true).await
    }

    /// One run; after an error the ledger and consumer are dropped, to be reopened next run.
    async fn run<E>(
        &mut self,
        bus: &Bus,
        topics: &[&str],
        open: impl FnOnce() -> Result<Ledger, E> + Send + 'static,
        sign_now: bool,
    ) -> Result<usize, FeedError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let result = self.append_pending(bus, topics, open, sign_now).await;
        if result.is_err() {
            self.ledger = None;
            self.consumer = None;
        }
        result
    }

    async fn append_pending<E>(
        &mut self,
        bus: &Bus,
        topics: &[&str],
        open: impl FnOnce() -> Result<Ledger, E> + Send + 'static,
        sign_now: bool,
    ) -> Result<usize, FeedError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        // One feed at a time in a process: two would read the same batch and append it twice.
        let _one_at_a_time = FEED_LOCK.lock().await;
        let consumer = match &mut self.consumer {
            Some(consumer) => consumer,
            None => self
                .consumer
                .insert(bus.consumer(LEDGER_CONSUMER, ">").await?),
        };
        let mut open = Some(open);
        let mut added = 0;
        loop {
            let batch = consumer.next_batch(1_000).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let ledger = match (self.ledger.take(), open.take()) {
                (Some(l), _) => l,
                // Opening may connect to a networked store: off the runtime too.
                (None, Some(open)) => tokio::task::spawn_blocking(open)
                    .await
                    .map_err(|e| FeedError::Task(e.to_string()))?
                    .map_err(|e| FeedError::Open(e.into()))?,
                (None, None) => unreachable!("the ledger is opened with the first batch"),
            };
            let entries: Vec<NewEntry> = batch
                .iter()
                .filter(|e| topics.iter().any(|t| e.topic.starts_with(t)))
                .map(|e| NewEntry {
                    timestamp: e.timestamp,
                    topic: e.topic.clone(),
                    seq: Some(e.seq),
                    payload: e.envelope(),
                })
                .collect();
            let (ledger, count) = if entries.is_empty() {
                (ledger, 0)
            } else {
                off_the_runtime(ledger, move |ledger| {
                    ledger.append_batch(&entries).map(|appended| appended.len())
                })
                .await?
            };
            self.ledger = Some(ledger);
            added += count;
            self.unsigned += count;
            consumer.ack(last).await?;
        }
        let due = self.unsigned >= self.policy.entries
            || self.last_checkpoint.elapsed() >= self.policy.interval;
        if self.unsigned > 0
            && (due || sign_now)
            && let Some(ledger) = self.ledger.take()
        {
            let (ledger, ()) = off_the_runtime(ledger, |ledger| {
                ledger.checkpoint(OffsetDateTime::now_utc()).map(drop)
            })
            .await?;
            self.ledger = Some(ledger);
            self.unsigned = 0;
            self.last_checkpoint = Instant::now();
        }
        Ok(added)
    }
}

/// Runs `work` on the ledger on a blocking thread and hands the ledger back with its result. An append waits
/// for an fsync and a checkpoint signs and proves consistency: on a runtime worker either
/// would hold up every request scheduled behind it. The ledger is dropped (and reopened on
/// the next run) when `work` fails.
async fn off_the_runtime<T: Send + 'static>(
    mut ledger: Ledger,
    work: impl FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<(Ledger, T), FeedError> {
    tokio::task::spawn_blocking(move || work(&mut ledger).map(|t| (ledger, t)))
        .await
        .map_err(|e| FeedError::Task(e.to_string()))?
        .map_err(FeedError::from)
}
