//! [`Bus`]: the front door. Publishing validates the input, asks the [`Policy`], appends to
//! the store and returns the stored event; the store fans it out. Reading offers live
//! subscriptions, durable consumers, history, stats and a health report.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::consumer::DurableConsumer;
use super::error::{BusError, MAX_CONSUMER_NAME_LEN, PublishError};
use super::event::{Event, NewEvent, Payload, RESERVED_PREFIX};
use super::policy::{Policy, Refusal, Role};
use super::store::{ConsumerState, EventStore, HistoryQuery, StoreError};
use super::subscription::{StartAt, Subscription};
use super::topic::{Topic, TopicPattern};

/// The largest payload accepted, serialized as compact JSON (the default; see
/// [`Bus::with_max_payload_bytes`]).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Where a new durable consumer starts. An existing one resumes after its ack floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumerStart {
    /// Every stored event (JetStream `DeliverPolicy::All`).
    #[default]
    Beginning,
    /// Only events published after it was created (`DeliverPolicy::New`).
    New,
}

/// How a durable consumer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    pub start: ConsumerStart,
    /// Events delivered but not acked within this are delivered again (JetStream `AckWait`).
    pub ack_wait: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            start: ConsumerStart::Beginning,
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// Event counts for `GET /genesis/stats` and `events stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct BusStats {
    pub total: u64,
    pub by_topic: BTreeMap<String, u64>,
    /// Events stamped in the last hour.
    pub last_hour: u64,
    /// `last_hour / 60`.
    pub per_minute: f64,
    pub last_seq: u64,
}

/// The introspection health report. Never fails: an unreachable store is part of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub store: String,
    pub reachable: bool,
    pub last_seq: Option<u64>,
    pub consumers: Vec<ConsumerState>,
    /// What failed when the store could not be read.
    pub error: Option<String>,
}

/// The Genesis bus over one [`EventStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    store: Arc<dyn EventStore>,
    policy: Arc<Policy>,
    max_payload_bytes: usize,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("store", &self.store.describe())
            .field("policy", &self.policy)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl Bus {
    pub fn new(store: Arc<dyn EventStore>, policy: Policy) -> Self {
        Self {
            store,
            policy: Arc::new(policy),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    pub fn with_max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Validates, gates, stores and returns the event (durable when this returns).
    ///
    /// Malformed input (topic, payload shape, size, reserved keys) is refused before the gate
    /// and leaves no trace in the log: recording it would let anyone write arbitrary strings
    /// into it. A gate refusal is recorded as a `genesis.blocked` event `{topic, who, reason}`
    /// published as `system`; it never carries the refused payload.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Value,
        who: Role,
    ) -> Result<Event, PublishError> {
        let topic = Topic::new(topic).map_err(PublishError::InvalidTopic)?;
        let payload = check_payload(payload)?;
        let new = NewEvent::new(topic, who.as_str(), payload);
        if new.payload_json().len() > self.max_payload_bytes {
            return Err(PublishError::PayloadTooLarge {
                size: new.payload_json().len(),
                limit: self.max_payload_bytes,
            });
        }
        if let Err(refusal) = self.policy.check(new.topic(), who) {
            return Err(self.record_refusal(new.topic(), who, refusal).await);
        }
        let stored = self.store.append(vec![new]).await?;
        stored.into_iter().next().ok_or_else(|| {
            PublishError::Store(StoreError::Task {
                store: self.store.describe(),
                op: "append",
                message: "the store acknowledged the append but returned no event".into(),
            })
        })
    }

    /// Publishes several events atomically, in order, as one append (one commit): all are
    /// stored with consecutive sequence numbers, or none is. Each is validated and gated as
    /// [`Bus::publish`] does; the first refusal refuses them all.
    pub async fn publish_all(
        &self,
        events: Vec<(&str, Value)>,
        who: Role,
    ) -> Result<Vec<Event>, PublishError> {
        let mut batch = Vec::with_capacity(events.len());
        for (topic, payload) in events {
            let topic = Topic::new(topic).map_err(PublishError::InvalidTopic)?;
            let payload = check_payload(payload)?;
            let new = NewEvent::new(topic, who.as_str(), payload);
            if new.payload_json().len() > self.max_payload_bytes {
                return Err(PublishError::PayloadTooLarge {
                    size: new.payload_json().len(),
                    limit: self.max_payload_bytes,
                });
            }
            if let Err(refusal) = self.policy.check(new.topic(), who) {
                return Err(self.record_refusal(new.topic(), who, refusal).await);
            }
            batch.push(new);
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.store.append(batch).await?)
    }

    async fn record_refusal(&self, topic: &Topic, who: Role, refusal: Refusal) -> PublishError {
        let mut fields = Payload::new();
        fields.insert("topic".into(), topic.as_str().into());
        fields.insert("who".into(), who.as_str().into());
        fields.insert("reason".into(), refusal.to_string().into());
        let blocked = NewEvent::new(Topic::blocked(), Role::System.as_str(), fields);
        match self.store.append(vec![blocked]).await {
            Ok(events) => PublishError::Refused {
                refusal,
                blocked_seq: events.first().map_or(0, |e| e.seq),
            },
            Err(source) => PublishError::RefusedUnrecorded {
                refusal,
                source: Box::new(source),
            },
        }
    }

    /// A live stream of events matching `pattern`, in sequence order, without gaps: it
    /// starts after `start` and reads from the store whatever the live feed did not bring.
    pub async fn subscribe(&self, pattern: &str, start: StartAt) -> Result<Subscription, BusError> {
        let pattern = TopicPattern::parse(pattern).map_err(BusError::InvalidPattern)?;
        Ok(Subscription::start(self.store.clone(), pattern, start).await?)
    }

    /// The durable consumer `name` on `pattern`, created at the beginning of the log if it
    /// does not exist, resuming after its last ack if it does.
    pub async fn consumer(&self, name: &str, pattern: &str) -> Result<DurableConsumer, BusError> {
        self.consumer_with(name, pattern, ConsumerOptions::default())
            .await
    }

    pub async fn consumer_with(
        &self,
        name: &str,
        pattern: &str,
        options: ConsumerOptions,
    ) -> Result<DurableConsumer, BusError> {
        check_consumer_name(name)?;
        let pattern = TopicPattern::parse(pattern).map_err(BusError::InvalidPattern)?;
        let start_after = match options.start {
            ConsumerStart::Beginning => 0,
            ConsumerStart::New => self.store.last_seq().await?,
        };
        let acked = self
            .store
            .open_consumer(name.to_owned(), pattern.clone(), start_after)
            .await?;
        Ok(DurableConsumer::new(
            self.store.clone(),
            name.to_owned(),
            pattern,
            acked,
            options.ack_wait,
        ))
    }

    /// Removes a durable consumer and its cursor; `false` when there was none.
    pub async fn delete_consumer(&self, name: &str) -> Result<bool, BusError> {
        Ok(self.store.delete_consumer(name.to_owned()).await?)
    }

    pub async fn history(&self, query: HistoryQuery) -> Result<Vec<Event>, StoreError> {
        self.store.read(query).await
    }

    pub async fn stats(&self) -> Result<BusStats, StoreError> {
        let hour_ago = OffsetDateTime::now_utc() - time::Duration::HOUR;
        let stats = self.store.stats(hour_ago).await?;
        let last_seq = self.store.last_seq().await?;
        Ok(BusStats {
            total: stats.total,
            by_topic: stats.by_topic,
            last_hour: stats.recent,
            per_minute: stats.recent as f64 / 60.0,
            last_seq,
        })
    }

    pub async fn health(&self) -> Health {
        let store = self.store.describe();
        let read = async {
            let last_seq = self.store.last_seq().await?;
            let consumers = self.store.consumers().await?;
            Ok::<_, StoreError>((last_seq, consumers))
        };
        match read.await {
            Ok((last_seq, consumers)) => Health {
                store,
                reachable: true,
                last_seq: Some(last_seq),
                consumers,
                error: None,
            },
            Err(e) => Health {
                store,
                reachable: false,
                last_seq: None,
                consumers: Vec::new(),
                error: Some(e.to_string()),
            },
        }
    }
}

fn check_consumer_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONSUMER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidConsumerName {
            name: name.chars().take(MAX_CONSUMER_NAME_LEN + 1).collect(),
        })
    }
}

fn check_payload(payload: Value) -> Result<Payload, PublishError> {
    let payload = match payload {
        Value::Object(map) => map,
        other => {
            return Err(PublishError::PayloadNotObject {
                found: json_kind(&other),
            });
        }
    };
    if let Some(key) = payload.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        return Err(PublishError::ReservedKey { key: key.clone() });
    }
    Ok(payload)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
