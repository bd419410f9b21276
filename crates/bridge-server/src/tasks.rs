//! What runs beside the requests, each a durable consumer of the bus woken by its live feed
//! (and every second, for events other processes stored):
//!
//! - the **ledger feed** appends every event of interest to the Truth ledger and signs a
//!   checkpoint ([`bridge_genesis::feed`]);
//! - the **cascade** publishes `config_update` after each `envsync.commit`, for live clients;
//! - the **scheduled sync** ([`crate::scheduler`]), when configured.
//!
//! On shutdown both finish what is pending, so the ledger holds every acknowledged event.

use std::time::Duration;

use bridge_genesis::bus::{ConsumerOptions, ConsumerStart, Role};
use bridge_genesis::feed::{DEFAULT_LEDGER_TOPICS, record_pending};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::AppState;

const POLL: Duration = Duration::from_secs(1);
/// The durable consumer behind `config_update`.
pub const CASCADE_CONSUMER: &str = "cascade";

/// The running tasks.
pub struct Background {
    state: AppState,
    handles: Vec<JoinHandle<()>>,
}

pub fn spawn(state: AppState) -> Background {
    let handles = vec![
        tokio::spawn(run_until_shutdown(state.clone(), Task::Cascade)),
        tokio::spawn(run_until_shutdown(state.clone(), Task::LedgerFeed)),
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
    Background { state, handles }
}

impl Background {
    /// Waits for the tasks to stop (they stop once shutdown begins), then runs each once more.
    pub async fn finish(self) {
        self.state.begin_shutdown();
        for handle in self.handles {
            let _ = handle.await;
        }
        Task::Cascade.run_once(&self.state).await;
        Task::LedgerFeed.run_once(&self.state).await;
    }
}

/// Waits until the bus has news (an event stored here, or a lag), a second has passed (for
/// events stored by other processes), or shutdown begins. `false` when the server is gone.
pub(crate) async fn wait_for_news(
    live: &mut broadcast::Receiver<std::sync::Arc<bridge_genesis::bus::Event>>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        news = live.recv() => {
            if let Err(broadcast::error::RecvError::Closed) = news {
                tokio::time::sleep(POLL).await;
            }
            true
        }
        _ = tokio::time::sleep(POLL) => true,
        changed = shutdown.changed() => changed.is_ok(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Task {
    Cascade,
    LedgerFeed,
}

async fn run_until_shutdown(state: AppState, task: Task) {
    let mut live = state.inner.bus.store().live();
    let mut shutdown = state.inner.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        task.run_once(&state).await;
        if !wait_for_news(&mut live, &mut shutdown).await {
            return;
        }
    }
}

impl Task {
    async fn run_once(self, state: &AppState) {
        let outcome = match self {
            Task::Cascade => cascade(state).await,
            Task::LedgerFeed => {
                let access = state.inner.ledger.clone();
                record_pending(&state.inner.bus, DEFAULT_LEDGER_TOPICS, || access.open())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = outcome {
            let task = match self {
                Task::Cascade => "cascade",
                Task::LedgerFeed => "ledger feed",
            };
            state.logger().warn(
                "background task failed; retrying",
                &[("task", task), ("error", &e)],
            );
        }
    }
}

/// `config_update` for every `envsync.commit` since the last run.
async fn cascade(state: &AppState) -> Result<(), String> {
    let bus = &state.inner.bus;
    let options = ConsumerOptions {
        // A new server does not replay old commits to its clients.
        start: ConsumerStart::New,
        ..ConsumerOptions::default()
    };
    let mut consumer = bus
        .consumer_with(CASCADE_CONSUMER, "envsync.commit", options)
        .await
        .map_err(|e| e.to_string())?;
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
