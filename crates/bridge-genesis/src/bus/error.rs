//! The bus's error types, and the consumer-name limit their messages quote.
//!
//! [`BusError`] is returned by both [`Bus`](super::Bus) and
//! [`DurableConsumer`](super::DurableConsumer), and the bus builds consumers, so the errors
//! live apart from either: `bus` depends on `consumer`, and both depend on this module.
//! [`PublishError`] sits beside it so every error of the bus has one home.

use super::policy::Refusal;
use super::store::StoreError;
use super::topic::TopicError;

/// Why a publish did not store the event.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid topic: {0}")]
    InvalidTopic(#[source] TopicError),
    #[error("the payload must be a JSON object, not {found}")]
    PayloadNotObject { found: &'static str },
    #[error("the payload is {size} bytes as JSON; the limit is {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("payload key {key:?} is reserved: keys starting with `_genesis_` belong to the bus")]
    ReservedKey { key: String },
    /// The gate refused; the refusal is stored as `genesis.blocked` event `blocked_seq`.
    #[error("publish refused: {refusal}")]
    Refused { refusal: Refusal, blocked_seq: u64 },
    /// The gate refused, and recording the refusal failed too.
    #[error("publish refused: {refusal} (recording genesis.blocked failed: {source})")]
    RefusedUnrecorded {
        refusal: Refusal,
        #[source]
        source: Box<StoreError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PublishError {
    /// The caller sent something malformed (an HTTP server answers 400/422).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PublishError::InvalidTopic(_)
                | PublishError::PayloadNotObject { .. }
                | PublishError::PayloadTooLarge { .. }
                | PublishError::ReservedKey { .. }
        )
    }

    /// The gate said no (an HTTP server answers 403).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            PublishError::Refused { refusal, .. }
            | PublishError::RefusedUnrecorded { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// Errors of the read side and of durable consumers.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid pattern: {0}")]
    InvalidPattern(#[source] TopicError),
    #[error(
        "invalid consumer name {name:?}: use 1 to {MAX_CONSUMER_NAME_LEN} letters, digits, \
         `_` or `-`"
    )]
    InvalidConsumerName { name: String },
    #[error(
        "consumer {consumer:?} cannot ack seq {seq}: only events up to {delivered} were delivered"
    )]
    AckNotDelivered {
        consumer: String,
        seq: u64,
        delivered: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest durable consumer name (JetStream durable names have the same alphabet).
pub const MAX_CONSUMER_NAME_LEN: usize = 64;
