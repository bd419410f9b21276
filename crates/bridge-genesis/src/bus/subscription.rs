//! Live subscriptions: the store's broadcast feed, made lossless by the store itself.
//!
//! A [`Subscription`] remembers the last sequence number it has accounted for (`seen`,
//! matching or not). The live feed carries every event in order; whenever what arrives is
//! not `seen + 1` (the subscription started in the past, the broadcast lagged and dropped
//! events, or a backend delivered out of order) it reads the missing range from the store
//! in pages, then goes back to the feed, skipping what it has already delivered. Events
//! therefore come out in sequence order, each exactly once, whatever the feed did.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::event::Event;
use super::store::{EventStore, HistoryQuery, StoreError};
use super::topic::TopicPattern;

/// How many events one catch-up read fetches.
const CATCH_UP_PAGE: usize = 512;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// With the first event committed after the subscription was made.
    Now,
    /// With the first event after this sequence number (`After(0)`: the whole log).
    After(u64),
}

/// What still has to be read from the store before the live feed can be trusted again.
#[derive(Debug, Clone, Copy)]
enum CatchUp {
    /// Up to whatever is the newest event when the read starts.
    ToEnd,
    /// Up to and including this sequence number.
    Until(u64),
}

/// An ordered, gap-free stream of the events matching one pattern. Dropping it unsubscribes.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    pattern: TopicPattern,
    live: tokio::sync::broadcast::Receiver<Arc<Event>>,
    seen: u64,
    ready: VecDeque<Arc<Event>>,
    catch_up: Option<CatchUp>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern.as_str())
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(super) async fn start(
        store: Arc<dyn EventStore>,
        pattern: TopicPattern,
        start: StartAt,
    ) -> Result<Self, StoreError> {
        // Listen before looking at the store, so nothing committed in between is missed.
        let live = store.live();
        let (seen, catch_up) = match start {
            StartAt::Now => (store.last_seq().await?, None),
            StartAt::After(seq) => (seq, Some(CatchUp::ToEnd)),
        };
        Ok(Self {
            store,
            pattern,
            live,
            seen,
            ready: VecDeque::new(),
            catch_up,
        })
    }

    pub fn pattern(&self) -> &TopicPattern {
        &self.pattern
    }

    /// The next matching event; `None` once the store has shut down.
    ///
    /// Cancel safe: dropping the future (in a `select!`) loses no event.
    pub async fn next(&mut self) -> Result<Option<Arc<Event>>, StoreError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some(target) = self.catch_up {
                self.read_from_store(target).await?;
                continue;
            }
            match self.live.recv().await {
                Ok(event) if event.seq <= self.seen => {}
                Ok(event) if event.seq == self.seen + 1 => {
                    self.seen = event.seq;
                    if self.pattern.matches(&event.topic) {
                        return Ok(Some(event));
                    }
                }
                // Events between `seen` and this one are committed (sequence numbers are
                // assigned in commit order) but did not come through here: read them.
                Ok(event) => self.catch_up = Some(CatchUp::Until(event.seq)),
                Err(RecvError::Lagged(_)) => self.catch_up = Some(CatchUp::ToEnd),
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// Reads one page of the range still missing and queues its matching events.
    async fn read_from_store(&mut self, target: CatchUp) -> Result<(), StoreError> {
        let until = match target {
            CatchUp::Until(seq) => seq,
            CatchUp::ToEnd => self.store.last_seq().await?,
        };
        if until <= self.seen {
            self.catch_up = None;
            return Ok(());
        }
        let page = self
            .store
            .read(
                HistoryQuery::default()
                    .pattern(self.pattern.clone())
                    .after_seq(self.seen)
                    .until_seq(until)
                    .limit(CATCH_UP_PAGE),
            )
            .await?;
        // Only state changes after the await, so a cancelled read leaves nothing half done.
        match page.last() {
            Some(last) if page.len() == CATCH_UP_PAGE => {
                self.seen = last.seq;
                self.catch_up = Some(CatchUp::Until(until));
            }
            _ => {
                self.seen = until;
                self.catch_up = None;
            }
        }
        self.ready.extend(page.into_iter().map(Arc::new));
        Ok(())
    }
}
