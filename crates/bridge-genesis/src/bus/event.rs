//! The event as stored and delivered, and its wire envelope.
//!
//! On the wire an event is its payload's fields plus three reserved ones, exactly as the
//! original bus sent them: `_genesis_topic`, `_genesis_seq`, `_genesis_timestamp`
//! (RFC 3339, UTC). Payload keys starting with `_genesis_` are refused at publish time, so
//! the envelope never has to choose between a caller's field and the bus's own.

use serde_json::Value;
use time::OffsetDateTime;

use super::topic::Topic;

/// A payload: a JSON object. Keys are kept sorted (serde_json's default map).
pub type Payload = serde_json::Map<String, Value>;

/// Payload keys with this prefix belong to the envelope.
pub const RESERVED_PREFIX: &str = "_genesis_";

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the store: strictly increasing, no gaps.
    pub seq: u64,
    pub topic: String,
    /// When the store accepted it (UTC, microsecond precision, never earlier than the event
    /// before it).
    pub timestamp: OffsetDateTime,
    /// The role that published it (`system` for the gate's own `genesis.blocked`).
    pub who: String,
    pub payload: Payload,
}

impl Event {
    /// `_genesis_timestamp`: RFC 3339 in UTC with microseconds, e.g.
    /// `2025-10-11T22:43:00.000000Z`. Fixed width, so text order is time order.
    pub fn timestamp_rfc3339(&self) -> String {
        // Infallible, and no format-description parsing on the hot path.
        bridge_core::time::rfc3339_micros(self.timestamp)
    }

    /// The payload's fields plus `_genesis_topic`, `_genesis_seq` and `_genesis_timestamp`.
    pub fn envelope(&self) -> Value {
        let mut fields = self.payload.clone();
        fields.insert("_genesis_topic".into(), Value::from(self.topic.as_str()));
        fields.insert("_genesis_seq".into(), Value::from(self.seq));
        fields.insert("_genesis_timestamp".into(), self.timestamp_rfc3339().into());
        Value::Object(fields)
    }
}

/// An event on its way into a store: validated, serialized once, not yet numbered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    topic: Topic,
    who: String,
    payload: Payload,
    payload_json: String,
}

impl NewEvent {
    /// Payload rules (object, size, reserved keys) are the bus's to check; a store stores
    /// what it is given.
    pub fn new(topic: Topic, who: impl Into<String>, payload: Payload) -> Self {
        // Serializing a `Value` cannot fail (its keys are strings), which is why this goes
        // through `Value`'s `Display` rather than the fallible `serde_json::to_string`.
        let value = Value::Object(payload);
        let payload_json = value.to_string();
        let Value::Object(payload) = value else {
            unreachable!("constructed as an object just above")
        };
        Self {
            topic,
            who: who.into(),
            payload,
            payload_json,
        }
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    pub fn who(&self) -> &str {
        &self.who
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The payload as compact JSON: what stores write and what the size limit counts.
    pub fn payload_json(&self) -> &str {
        &self.payload_json
    }

    /// The stored event, once the store has numbered and stamped it.
    pub fn into_event(self, seq: u64, timestamp: OffsetDateTime) -> Event {
        Event {
            seq,
            topic: self.topic.as_str().to_owned(),
            timestamp,
            who: self.who,
            payload: self.payload,
        }
    }
}

/// Microseconds since the Unix epoch: the precision events are stamped with.
pub(crate) fn unix_micros(at: OffsetDateTime) -> i64 {
    // i64 microseconds cover ±292,000 years; the clamp only guards arithmetic.
    let micros = at.unix_timestamp_nanos() / 1_000;
    micros.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// The inverse of [`unix_micros`]; `None` when the value is outside the dates `time` knows.
pub(crate) fn from_unix_micros(micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn envelope_adds_the_three_reserved_fields() {
        let payload = json!({"has_drift": true, "missing_in_github": ["A"]});
        let Value::Object(payload) = payload else {
            panic!()
        };
        let new = NewEvent::new(Topic::new("envsync.drift").unwrap(), "operator", payload);
        assert_eq!(
            new.payload_json(),
            r#"{"has_drift":true,"missing_in_github":["A"]}"#
        );
        let at = from_unix_micros(1_760_222_580_123_456).unwrap();
        let event = new.into_event(1041, at);
        let envelope = event.envelope();
        assert_eq!(envelope["_genesis_topic"], "envsync.drift");
        assert_eq!(envelope["_genesis_seq"], 1041);
        assert_eq!(
            envelope["_genesis_timestamp"],
            "2025-10-11T22:43:00.123456Z"
        );
        assert_eq!(envelope["has_drift"], true);
        let parsed =
            OffsetDateTime::parse(envelope["_genesis_timestamp"].as_str().unwrap(), &Rfc3339)
                .unwrap();
        assert_eq!(parsed, at);
    }

    #[test]
    fn micros_round_trip() {
        let at = from_unix_micros(-5).unwrap();
        assert_eq!(unix_micros(at), -5);
        assert_eq!(
            bridge_core::time::rfc3339_micros(at),
            "1969-12-31T23:59:59.999995Z"
        );
    }
}
