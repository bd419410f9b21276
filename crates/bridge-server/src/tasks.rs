//! What runs beside the requests, each a durable consumer of the bus woken by its live feed
//! (and every second, for events other processes stored):
//!
//! - the **ledger feed** appends every event of interest to the Truth ledger and signs a
//!   checkpoint ([`bridge_genesis::feed`]);
//! - the **cascade** publishes `config_update` after each `envsync.commit`, for live clients;
//! - the **scheduled sync** ([`crate::scheduler`]), when configured.
//!
//! On shutdown both finish what is pending, so the ledger holds every acknowledged event.

use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::{ConsumerOptions, ConsumerStart, DurableConsumer, Event, Role};
use bridge_genesis::feed::{CheckpointPolicy, DEFAULT_LEDGER_TOPICS, LedgerFeed};
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;

use crate::AppState;

const POLL: Duration = Duration::from_secs(1);
/// The durable consumer behind `config_update`.
pub const CASCADE_CONSUMER: &str = "cascade";
/// How often the server signs a ledger checkpoint while events stream in: once this many
/// entries are unsigned, or a second after the last checkpoint (and on shutdown).
const CHECKPOINTS: CheckpointPolicy = CheckpointPolicy {
    entries: 1_000,
    interval: POLL,
};

/// The running tasks.
pub struct Background {
    state: AppState,
    feed: Arc<Mutex<LedgerFeed>>,
    handles: Vec<JoinHandle<()>>,
}

pub fn spawn(state: AppState) -> Background {
    let feed = Arc::new(Mutex::new(LedgerFeed::new(CHECKPOINTS)));
    let handles = vec![
        tokio::spawn(run_cascade(state.clone())),
        tokio::spawn(run_ledger_feed(state.clone(), feed.clone())),
        tokio::spawn(track_head(state.clone())),
    ]
    .into_iter()
    .chain(
        crate::autonomy::Reaction::ALL
            .into_iter()
            .map(|r| tokio::spawn(crate::autonomy::run(state.clone(), r))),
    )
    .chain(
        state
            .inner
            .scheduler
            .clone()
            .map(|s| tokio::spawn(crate::scheduler::run(state.clone(), s))),
    )
    .collect();
    Background {
        state,
        feed,
        handles,
    }
}

impl Background {
    /// Waits for the tasks to stop (they stop once shutdown begins), then runs the cascade
    /// once more and the ledger feed last, signing whatever it left unsigned.
    pub async fn finish(self) {
        self.state.begin_shutdown();
        for handle in self.handles {
            let _ = handle.await;
        }
        let mut none = None;
        if let Err(e) = cascade(&self.state, &mut none).await {
            warn_failed(&self.state, "cascade", &e);
        }
        let access = self.state.inner.ledger.clone();
        let mut feed = self.feed.lock().await;
        if let Err(e) = feed
            .flush(&self.state.inner.bus, DEFAULT_LEDGER_TOPICS, || {
                access.open()
            })
            .await
        {
            warn_failed(&self.state, "ledger feed", &e.to_string());
        }
    }
}

fn warn_failed(state: &AppState, task: &str, error: &str) {
    state.logger().warn(
        "background task failed; retrying",
        &[("task", task), ("error", error)],
    );
}

/// The least time from one run of a background consumer to the next when news wakes it.
/// Under a stream of events every wake-up would otherwise handle an event or two and pay a
/// read, a transaction and an fsync for them (the ledger's own file included); waiting this
/// long lets one run take what a burst brought. Heals and ledger entries come at most this
/// much later, which nothing downstream of them notices.
pub(crate) const COALESCE: Duration = Duration::from_millis(100);

/// Waits until the bus has news that `wanted` says matters (an event stored here whose topic
/// it accepts, or a lag, which may hide one), a second has passed (for events stored by other
/// processes), or shutdown begins. News is acted on no sooner than [`COALESCE`] after
/// `last_run` began. `false` when the server is gone.
pub(crate) async fn wait_for_news(
    live: &mut broadcast::Receiver<Arc<Event>>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    last_run: tokio::time::Instant,
    wanted: impl Fn(&str) -> bool,
) -> bool {
    let poll = tokio::time::sleep(POLL);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            news = live.recv() => match news {
                Ok(event) if !wanted(&event.topic) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    poll.await;
                    return true;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
            },
            _ = &mut poll => return true,
            changed = shutdown.changed() => return changed.is_ok(),
        }
    }
    tokio::select! {
        _ = tokio::time::sleep_until(last_run + COALESCE) => {}
        changed = shutdown.changed() => return changed.is_ok(),
    }
    // Everything announced so far is committed, so the coming run reads it: these need not
    // wake the next wait.
    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = live.try_recv() {}
    true
}

/// Runs the cascade until shutdown, on a consumer kept open between runs.
async fn run_cascade(state: AppState) {
    let mut live = state.inner.bus.store().live();
    let mut shutdown = state.inner.shutdown.clone();
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

/// Runs the ledger feed until shutdown; [`Background::finish`] runs it a last time.
async fn run_ledger_feed(state: AppState, feed: Arc<Mutex<LedgerFeed>>) {
    let mut live = state.inner.bus.store().live();
    let mut shutdown = state.inner.shutdown.clone();
    let recorded = |topic: &str| DEFAULT_LEDGER_TOPICS.iter().any(|t| topic.starts_with(t));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        let access = state.inner.ledger.clone();
        let outcome = feed
            .lock()
            .await
            .record_pending(&state.inner.bus, DEFAULT_LEDGER_TOPICS, || access.open())
            .await;
        if let Err(e) = outcome {
            warn_failed(&state, "ledger feed", &e.to_string());
        }
        if !wait_for_news(&mut live, &mut shutdown, started, recorded).await {
            return;
        }
    }
}

/// The consumer in `slot`, opened first when the slot is empty (at start, or after a failed
/// run). A consumer created now starts at the head of the bus: it handles what happens from
/// now on, not the whole past.
pub(crate) async fn open_from_now<'a>(
    state: &AppState,
    slot: &'a mut Option<DurableConsumer>,
    name: &str,
    pattern: &str,
) -> Result<&'a mut DurableConsumer, String> {
    if let Some(consumer) = slot {
        return Ok(consumer);
    }
    let options = ConsumerOptions {
        start: ConsumerStart::New,
        ..ConsumerOptions::default()
    };
    let consumer = state
        .inner
        .bus
        .consumer_with(name, pattern, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(slot.insert(consumer))
}

/// `config_update` for every `envsync.commit` since the last run, on `slot`'s consumer
/// (opened when empty).
async fn cascade(state: &AppState, slot: &mut Option<DurableConsumer>) -> Result<(), String> {
    let bus = &state.inner.bus;
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

/// Tells the history cache where the store's head is, once a second: events of other
/// processes sharing the store show in history within that second (this process's own
/// events, at once).
async fn track_head(state: AppState) {
    let store = state.inner.bus.store().clone();
    let mut shutdown = state.inner.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Ok(seq) = store.last_seq().await {
            state.inner.history_cache.observed(seq);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
