//! Durable consumers: a stored cursor per name, at-least-once delivery.
//!
//! The store keeps one number per consumer, its ack floor: every matching event up to it
//! is done. The handle keeps, in memory, how far it has delivered. [`DurableConsumer::next_batch`]
//! hands out events after the delivered point; [`DurableConsumer::ack`] raises the floor
//! (acking N acks everything up to N, like JetStream's `AckPolicy::All`). Events delivered
//! but not acked within `ack_wait` are delivered again, and a consumer reopened after a
//! crash starts again after its floor: an event can come twice, never zero times, so
//! handlers must be idempotent.
//!
//! One process should drive a given consumer name at a time: two handles on one name both
//! read from the same floor (JetStream would share the work out between them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;

use super::error::BusError;
use super::event::Event;
use super::store::EventStore;
use super::topic::TopicPattern;

/// A named, resumable reader of the events matching one pattern.
pub struct DurableConsumer {
    store: Arc<dyn EventStore>,
    name: String,
    pattern: TopicPattern,
    acked: u64,
    delivered: u64,
    /// When the oldest unacked delivery went out; `None` when everything delivered is acked.
    oldest_unacked_at: Option<Instant>,
    ack_wait: Duration,
}

impl std::fmt::Debug for DurableConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableConsumer")
            .field("name", &self.name)
            .field("pattern", &self.pattern.as_str())
            .field("acked", &self.acked)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl DurableConsumer {
    pub(super) fn new(
        store: Arc<dyn EventStore>,
        name: String,
        pattern: TopicPattern,
        acked: u64,
        ack_wait: Duration,
    ) -> Self {
        Self {
            store,
            name,
            pattern,
            acked,
            delivered: acked,
            oldest_unacked_at: None,
            ack_wait,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pattern(&self) -> &TopicPattern {
        &self.pattern
    }

    /// The stored ack floor.
    pub fn acked_seq(&self) -> u64 {
        self.acked
    }

    /// The last sequence number handed out (at least the ack floor).
    pub fn delivered_seq(&self) -> u64 {
        self.delivered
    }

    /// Up to `max` matching events after the delivered point, oldest first; empty when there
    /// are none yet. Unacked events older than `ack_wait` come first, again.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Event>, BusError> {
        if self
            .oldest_unacked_at
            .is_some_and(|at| at.elapsed() >= self.ack_wait)
        {
            self.redeliver();
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let batch = self
            .store
            .consumer_read(self.name.clone(), self.pattern.clone(), self.delivered, max)
            .await?;
        if let Some(last) = batch.last() {
            self.delivered = last.seq;
            self.oldest_unacked_at.get_or_insert_with(Instant::now);
        }
        Ok(batch)
    }

    /// Like [`DurableConsumer::next_batch`], but when nothing is there yet waits up to
    /// `timeout` for an event to arrive (JetStream's pull with `expires`).
    pub async fn wait_batch(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Event>, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Listen before reading, so an event committed in between wakes us.
        let mut live = self.store.live();
        loop {
            let batch = self.next_batch(max).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            match tokio::time::timeout_at(deadline, live.recv()).await {
                Err(_) | Ok(Err(RecvError::Closed)) => return Ok(Vec::new()),
                // Any new event (or a lag, which means many) may match: look again.
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
            }
        }
    }

    /// Marks every matching event up to `seq` as done, durably. Acking at or below the floor
    /// does nothing; acking past what was delivered is refused.
    pub async fn ack(&mut self, seq: u64) -> Result<(), BusError> {
        if seq <= self.acked {
            return Ok(());
        }
        if seq > self.delivered {
            return Err(BusError::AckNotDelivered {
                consumer: self.name.clone(),
                seq,
                delivered: self.delivered,
            });
        }
        self.acked = self.store.ack(self.name.clone(), seq).await?;
        // The ack wait restarts for what is still outstanding: an approximation of
        // JetStream's per-message timers that never redelivers early.
        self.oldest_unacked_at = (self.acked < self.delivered).then(Instant::now);
        Ok(())
    }

    /// Hands out everything after the ack floor again on the next batch (a negative ack).
    pub fn redeliver(&mut self) {
        self.delivered = self.acked;
        self.oldest_unacked_at = None;
    }
}
