//! How a background consumer waits for work: woken by the bus's live feed for the topics it
//! follows (or every second, for events other processes stored), at most once per
//! [`COALESCE`], and opened from the head of the bus when it is new.

use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::{ConsumerOptions, ConsumerStart, DurableConsumer, Event};
use tokio::sync::broadcast;

use crate::Shared;

/// How often a waiting consumer looks for events other processes stored.
pub(crate) const POLL: Duration = Duration::from_secs(1);

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

/// The consumer in `slot`, opened first when the slot is empty (at start, or after a failed
/// run). A consumer created now starts at the head of the bus: it handles what happens from
/// now on, not the whole past.
pub(crate) async fn open_from_now<'a>(
    state: &Shared,
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
        .bus
        .consumer_with(name, pattern, options)
        .await
        .map_err(|e| e.to_string())?;
    Ok(slot.insert(consumer))
}
