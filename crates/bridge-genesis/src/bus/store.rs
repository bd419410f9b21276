//! The contract every event store meets (SQLite now; PostgreSQL and NATS JetStream later).
//!
//! It is JetStream's contract, so one conformance suite ([`super::conformance`]) can hold
//! every backend to it:
//!
//! - [`EventStore::append`] is atomic and durable before it returns: the events get the next
//!   sequence numbers, consecutive, strictly increasing, with no gaps (a failed append
//!   assigns nothing), and timestamps that never go backwards (JetStream's stream sequence
//!   and PubAck);
//! - every committed event is then offered, in sequence order, to [`EventStore::live`]
//!   receivers; a receiver that falls behind reads the store instead (a lagged broadcast is
//!   not a lost event);
//! - a durable consumer is a name, a pattern and an ack floor (JetStream's durable pull
//!   consumer with `AckPolicy::All`): the floor only moves forward, and survives restarts.
//!
//! The trait is object safe (`Arc<dyn EventStore>`), so its async methods return boxed
//! futures instead of using `async fn`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::event::{Event, NewEvent};
use super::topic::TopicPattern;

/// A boxed, sendable future: what the async methods of an object-safe trait return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most events one history read returns, whatever the query asks.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

/// A durable event log with named consumers.
pub trait EventStore: Send + Sync {
    /// A short name for errors and health output (`sqlite:/path/to/state.db`).
    fn describe(&self) -> String;

    /// Appends `events` atomically, in order; returns them numbered and stamped once they are
    /// durable. Either all are stored, with consecutive sequence numbers, or none is.
    fn append(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Event>, StoreError>>;

    /// Events matching `query`, in the order it asks for.
    fn read(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<Event>, StoreError>>;

    /// The sequence number of the newest event; 0 when the store is empty.
    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Counts per topic, and how many events are stamped at or after `recent_since`.
    fn stats(&self, recent_since: OffsetDateTime) -> BoxFuture<'_, Result<StoreStats, StoreError>>;

    /// Every event committed from now on, in sequence order. Receivers that lag get
    /// `RecvError::Lagged` and must catch up with [`EventStore::read`].
    fn live(&self) -> broadcast::Receiver<Arc<Event>>;

    /// Creates the consumer `name` on `pattern` with its floor at `start_after` (nothing
    /// acked yet when 0), or finds it; returns its ack floor. An existing consumer keeps its
    /// floor; asking for it with another pattern is [`StoreError::ConsumerPatternMismatch`].
    fn open_consumer(
        &self,
        name: String,
        pattern: TopicPattern,
        start_after: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The next events for the durable consumer `name` (opened by this process with
    /// [`EventStore::open_consumer`]): up to `limit` events on `pattern` after `after`, oldest
    /// first. An `after` below what was last delivered means: deliver again from there.
    ///
    /// The default reads history. A store with durable consumers of its own (JetStream)
    /// serves them from those, so that their state lives where its operators look.
    fn consumer_read(
        &self,
        name: String,
        pattern: TopicPattern,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        let _ = name;
        self.read(
            HistoryQuery::default()
                .pattern(pattern)
                .after_seq(after)
                .limit(limit),
        )
    }

    /// Raises the ack floor of `name` to `seq` (never lowers it); returns the floor after.
    /// A store with durable consumers of its own acks only events it delivered through
    /// [`EventStore::consumer_read`] ([`StoreError::AckNotDelivered`] otherwise).
    fn ack(&self, name: String, seq: u64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Forgets the consumer; `false` when there was none.
    fn delete_consumer(&self, name: String) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Every consumer with its floor and the number of matching events after it.
    fn consumers(&self) -> BoxFuture<'_, Result<Vec<ConsumerState>, StoreError>>;

    /// The store's table of scheduled slots ([`crate::schedule`]), on the same database, when
    /// it keeps one; `None` (the default) when it cannot (NATS keeps none of its own, and
    /// delegates to the deployment's store when given one).
    fn schedules(&self) -> Option<Arc<dyn crate::schedule::ScheduleStore>> {
        None
    }

    /// The store's table of claimed webhook deliveries ([`crate::deliveries`]), on the same
    /// database, when it keeps one; `None` (the default) when it cannot (NATS, unless given
    /// the deployment's store).
    fn deliveries(&self) -> Option<Arc<dyn crate::deliveries::DeliveryStore>> {
        None
    }
}

/// Which end of the range a history read starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first (replay).
    #[default]
    Ascending,
    /// Newest first (`tail`: the last N events).
    Descending,
}

/// A history read. All bounds combine; the default reads the first 100 events.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    /// Only topics matching this; `None` for all.
    pub pattern: Option<TopicPattern>,
    /// Only events with `seq > after_seq`.
    pub after_seq: Option<u64>,
    /// Only events with `seq <= until_seq`.
    pub until_seq: Option<u64>,
    /// Only events stamped at or after this.
    pub from_time: Option<OffsetDateTime>,
    /// Only events stamped strictly before this.
    pub to_time: Option<OffsetDateTime>,
    /// At most this many (capped at [`MAX_HISTORY_LIMIT`]).
    pub limit: usize,
    pub order: Order,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        Self {
            pattern: None,
            after_seq: None,
            until_seq: None,
            from_time: None,
            to_time: None,
            limit: 100,
            order: Order::Ascending,
        }
    }
}

impl HistoryQuery {
    pub fn pattern(mut self, pattern: TopicPattern) -> Self {
        self.pattern = Some(pattern);
        self
    }

    pub fn after_seq(mut self, seq: u64) -> Self {
        self.after_seq = Some(seq);
        self
    }

    pub fn until_seq(mut self, seq: u64) -> Self {
        self.until_seq = Some(seq);
        self
    }

    pub fn time_range(mut self, from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Self {
        self.from_time = from;
        self.to_time = to;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The newest `limit` events, newest first.
    pub fn newest_first(mut self) -> Self {
        self.order = Order::Descending;
        self
    }

    /// The limit a backend applies.
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_HISTORY_LIMIT)
    }

    /// Whether `event` satisfies every bound but the limit: backends that cannot express a
    /// bound natively filter with this.
    pub fn admits(&self, event: &Event) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| p.matches(&event.topic))
            && self.after_seq.is_none_or(|s| event.seq > s)
            && self.until_seq.is_none_or(|s| event.seq <= s)
            && self.from_time.is_none_or(|t| event.timestamp >= t)
            && self.to_time.is_none_or(|t| event.timestamp < t)
    }
}

/// Event counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub total: u64,
    pub by_topic: BTreeMap<String, u64>,
    /// Events stamped at or after the `recent_since` the caller gave.
    pub recent: u64,
}

/// A durable consumer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerState {
    pub name: String,
    pub pattern: String,
    /// Every matching event up to here is acknowledged.
    pub acked_seq: u64,
    /// Matching events after `acked_seq`: how far behind the consumer is.
    pub pending: u64,
}

/// What went wrong in a store. Messages name the store and the operation. Cloneable (sources
/// are shared), so a writer can answer every caller of a failed group commit.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{store}: {op}: {source}")]
    Sqlite {
        store: String,
        op: &'static str,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("{store}: {op}: {source}")]
    Io {
        store: String,
        op: &'static str,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The stored data breaks an invariant: the file was truncated, edited or damaged.
    #[error("{store} is damaged: {what}; restore it from a backup or move it aside")]
    Corrupt { store: String, what: String },
    #[error("{store}: no durable consumer named {name:?}")]
    ConsumerNotFound { store: String, name: String },
    #[error(
        "{store}: durable consumer {name:?} follows {stored:?}, not {requested:?}; \
         delete it or pick another name"
    )]
    ConsumerPatternMismatch {
        store: String,
        name: String,
        stored: String,
        requested: String,
    },
    #[error("{store}: cannot ack seq {seq} for consumer {name:?}: the log ends at {last_seq}")]
    AckBeyondEnd {
        store: String,
        name: String,
        seq: u64,
        last_seq: u64,
    },
    #[error(
        "{store}: cannot ack seq {seq} for consumer {name:?}: this process delivered it events \
         up to {delivered} only"
    )]
    AckNotDelivered {
        store: String,
        name: String,
        seq: u64,
        delivered: u64,
    },
    #[error("{store}: the writer has stopped; reopen the store")]
    WriterStopped { store: String },
    #[error("{store}: {op}: a blocking task failed: {message}")]
    Task {
        store: String,
        op: &'static str,
        message: String,
    },
}
