//! The workers and their lifecycle, plus the two that are not reactions:
//!
//! - the **ledger feed** appends every event of interest to the Truth ledger and signs a
//!   checkpoint ([`bridge_genesis::feed`]): the server's one feeder of the ledger;
//! - the **cascade** publishes `config_update` after each `envsync.commit`, for live clients.
//!
//! [`Workers::finish`] stops them within a grace period: each stops between events, so what
//! it has not acknowledged is redelivered on the next start; then the cascade and the
//! ledger feed run once more, so the ledger holds every event acknowledged so far.

use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::{DurableConsumer, Role};
use bridge_genesis::feed::{CheckpointPolicy, DEFAULT_LEDGER_TOPICS, LedgerFeed};
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::{Shared, State, WorkerParts};

use crate::wake::{POLL, open_from_now, wait_for_news};

/// The durable consumer behind `config_update`.
pub const CASCADE_CONSUMER: &str = "cascade";
/// How often the server signs a ledger checkpoint while events stream in: once this many
/// entries are unsigned, or a second after the last checkpoint (and on shutdown).
const CHECKPOINTS: CheckpointPolicy = CheckpointPolicy {
    entries: 1_000,
    interval: POLL,
};

/// The running workers.
pub struct Workers {
    state: State,
    shutdown_tx: watch::Sender<bool>,
    feed: Arc<Mutex<LedgerFeed>>,
    handles: Vec<JoinHandle<()>>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Workers still busy when the grace period ended, stopped where they were (their
    /// unacknowledged events come again on the next start).
    pub abandoned: usize,
}

impl Workers {
    /// Starts every worker: the cascade, the ledger feed, each reaction, and the scheduled
    /// sync when configured.
    pub fn spawn(parts: WorkerParts) -> Workers {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let scheduler = parts.scheduler;
        let state: State = Arc::new(Shared {
            bus: parts.bus,
            ops: parts.ops,
            ledger: parts.ledger,
            options: parts.options,
            logger: parts.logger,
            shutdown,
        });
        let feed = Arc::new(Mutex::new(LedgerFeed::new(CHECKPOINTS)));
        let handles = vec![
            tokio::spawn(run_cascade(state.clone())),
            tokio::spawn(run_ledger_feed(state.clone(), feed.clone())),
        ]
        .into_iter()
        .chain(
            crate::reactions::Reaction::ALL
                .into_iter()
                .map(|r| tokio::spawn(crate::reactions::run(state.clone(), r))),
        )
        .chain(scheduler.map(|s| tokio::spawn(crate::scheduler::run(state.clone(), s))))
        .collect();
        Workers {
            state,
            shutdown_tx,
            feed,
            handles,
        }
    }

    /// Tells every worker to stop at its next boundary (between events).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Stops the workers, waiting at most `grace` for them to reach a boundary; any still
    /// busy then is aborted where it is (what it had not acknowledged comes again on the
    /// next start). Then runs the cascade once more and the ledger feed last, signing
    /// whatever it left unsigned, each bounded by what is left of `grace` (at least a
    /// second: the ledger must hold what was acknowledged).
    pub async fn finish(self, grace: Duration) -> Finished {
        self.begin_shutdown();
        let deadline = tokio::time::Instant::now() + grace;
        let mut abandoned = 0;
        for mut handle in self.handles {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                abandoned += 1;
            }
        }
        let left = || {
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_secs(1))
        };
        let mut none = None;
        match tokio::time::timeout(left(), cascade(&self.state, &mut none)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn_failed(&self.state, "cascade", &e),
            Err(_) => warn_failed(&self.state, "cascade", "out of time at shutdown"),
        }
        let access = self.state.ledger.clone();
        let mut feed = self.feed.lock().await;
        let flush = feed.flush(&self.state.bus, DEFAULT_LEDGER_TOPICS, move || {
            access.open()
        });
        match tokio::time::timeout(left(), flush).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn_failed(&self.state, "ledger feed", &e.to_string()),
            Err(_) => warn_failed(
                &self.state,
                "ledger feed",
                "out of time at shutdown; the next start records the rest",
            ),
        }
        if abandoned > 0 {
            self.state.logger.warn(
                "shutdown: workers stopped mid-run; their events come again on the next start",
                &[("abandoned", &abandoned.to_string())],
            );
        }
        Finished { abandoned }
    }
}

pub(crate) fn warn_failed(state: &Shared, task: &str, error: &str) {
    state.logger.warn(
        "background task failed; retrying",
        &[("task", task), ("error", error)],
    );
}

/// Runs the cascade until shutdown, on a consumer kept open between runs.
async fn run_cascade(state: State) {
    let mut live = state.bus.store().live();
    let mut shutdown = state.shutdown.clone();
    let mut consumer = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = cascade(&state, &mut consumer).await {
            // Reopened from the stored floor next time: nothing unacked is lost.
            consumer = None;
            warn_failed(&state, "cascade", &e);
        }
        if !wait_for_news(&mut live, &mut shutdown, started, |t| t == "envsync.commit").await {
            return;
        }
    }
}

/// Runs the ledger feed until shutdown; [`Workers::finish`] runs it a last time.
async fn run_ledger_feed(state: State, feed: Arc<Mutex<LedgerFeed>>) {
    let mut live = state.bus.store().live();
    let mut shutdown = state.shutdown.clone();
    let recorded = |topic: &str| DEFAULT_LEDGER_TOPICS.iter().any(|t| topic.starts_with(t));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        let access = state.ledger.clone();
        let outcome = feed
            .lock()
            .await
            .record_pending(&state.bus, DEFAULT_LEDGER_TOPICS, move || access.open())
            .await;
        if let Err(e) = outcome {
            warn_failed(&state, "ledger feed", &e.to_string());
        }
        if !wait_for_news(&mut live, &mut shutdown, started, recorded).await {
            return;
        }
    }
}

/// `config_update` for every `envsync.commit` since the last run, on `slot`'s consumer
/// (opened when empty).
async fn cascade(state: &State, slot: &mut Option<DurableConsumer>) -> Result<(), String> {
    let bus = &state.bus;
    // A new server does not replay old commits to its clients.
    let consumer = open_from_now(state, slot, CASCADE_CONSUMER, "envsync.commit").await?;
    loop {
        let batch = consumer.next_batch(100).await.map_err(|e| e.to_string())?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        for commit in &batch {
            let target = commit.payload.get("target").cloned().unwrap_or(Value::Null);
            bus.publish(
                "config_update",
                json!({
                    "type": "config_update",
                    "timestamp": commit.timestamp_rfc3339(),
                    "target": target,
                    "commit_seq": commit.seq,
                }),
                Role::System,
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        consumer.ack(last).await.map_err(|e| e.to_string())?;
    }
}
