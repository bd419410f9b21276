//! The Genesis bus: durable, ordered events with topics, subscribers, history, stats and a
//! permission gate.
//!
//! ```text
//! Bus::publish(topic, payload, role)
//!   -> topic & payload checks (topic.rs, bus.rs)   bad input: typed error, nothing stored
//!   -> Policy::check (policy.rs)                    refused: `genesis.blocked` stored instead
//!   -> EventStore::append (store.rs)                seq + timestamp assigned, durable
//!        sqlite/: one writer thread, group commit (one fsync for all queued publishes)
//!   -> EventStore::live broadcast                   Subscription (subscription.rs)
//!   -> stored cursors                               DurableConsumer (consumer.rs)
//! ```
//!
//! Patterns are NATS subjects (`envsync.*`: one segment; `deploy.>`: one or more trailing
//! segments), see [`topic`]. Every backend runs [`conformance`].

#[allow(clippy::module_inception)] // `bus::bus` holds `Bus`, as `event` holds `Event`.
mod bus;
pub mod conformance;
mod consumer;
mod error;
mod event;
mod policy;
pub mod sqlite;
mod store;
mod subscription;
pub mod topic;

pub use self::bus::{
    Bus, BusStats, ConsumerOptions, ConsumerStart, DEFAULT_MAX_PAYLOAD_BYTES, Health,
};
pub use self::consumer::DurableConsumer;
pub use self::error::{BusError, MAX_CONSUMER_NAME_LEN, PublishError};
pub use self::event::{Event, NewEvent, Payload, RESERVED_PREFIX};
pub use self::policy::{Policy, PolicyMode, Refusal, Role, UnknownRole};
pub use self::sqlite::{IntegrityCheck, SqliteOptions, SqliteStore, WriterStats};
pub use self::store::{
    BoxFuture, ConsumerState, EventStore, HistoryQuery, MAX_HISTORY_LIMIT, Order, StoreError,
    StoreStats,
};
pub use self::subscription::{StartAt, Subscription};
pub use self::topic::{KNOWN_TOPICS, Topic, TopicError, TopicPattern};
