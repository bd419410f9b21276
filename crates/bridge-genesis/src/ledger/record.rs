//! Ledger records and the canonical bytes their Merkle leaves hash.
//!
//! The leaf of entry *i* is `SHA-256(0x00 || E)` where `E` is the entry as canonical JSON:
//!
//! ```text
//! {"index":<i>,"payload":<payload>,"seq":<seq|null>,"timestamp":"<RFC 3339 UTC>","topic":"<topic>"}
//! ```
//!
//! Canonical JSON here means: no whitespace; object keys sorted by their UTF-8 bytes (RFC 8785
//! sorts by UTF-16 code units, which differs only between supplementary-plane characters and
//! U+E000..U+FFFF); strings escape only `"`, `\` and control characters (`\b \f \n \r \t`,
//! otherwise `\u00xx` in lowercase hex), everything else is raw UTF-8; integers in decimal;
//! other numbers as serde_json writes an `f64` (shortest round-trip form, e.g. `1.5`, `1e+300`).
//!
//! The encoder is written out here instead of trusting `serde_json::to_vec`: serde_json only
//! sorts keys while no crate in the build turns on its `preserve_order` feature, and a feature
//! switched on elsewhere must never change what a ledger hashes. Tests pin the exact bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

use super::LedgerError;
use super::merkle::{Hash, leaf_hash};

/// An entry to append; the ledger assigns its index.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// When the event happened; stored as RFC 3339 in UTC.
    pub timestamp: OffsetDateTime,
    /// The bus topic, e.g. `envsync.commit`.
    pub topic: String,
    /// The bus sequence number the event came from, if it came from the bus.
    pub seq: Option<u64>,
    /// The event body. Must already be redacted: the ledger keeps it forever, in clear.
    pub payload: Value,
}

/// An entry as stored, with the index the ledger gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Position in the log, from 0, without gaps.
    pub index: u64,
    /// RFC 3339, UTC (`Z`).
    pub timestamp: String,
    /// The bus topic.
    pub topic: String,
    /// The bus sequence number, if any.
    pub seq: Option<u64>,
    /// The (redacted) event body.
    pub payload: Value,
}

impl LedgerEntry {
    /// The canonical JSON bytes the leaf hash covers (also what `export_jsonl` writes).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let payload = canonical_json(&self.payload);
        let mut out = Vec::with_capacity(payload.len() + 128);
        write_entry(
            &mut out,
            self.index,
            self.timestamp.as_bytes(),
            self.topic.as_bytes(),
            self.seq,
            &payload,
        );
        out
    }

    /// The Merkle leaf hash of this entry.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_bytes())
    }
}

/// The canonical JSON encoding of `value` (see the module documentation).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(out, u);
            } else if let Some(i) = n.as_i64() {
                // Only negative values reach here (non-negative ones are u64).
                out.push(b'-');
                write_u64(out, i.unsigned_abs());
            } else {
                // serde_json's f64 formatting (ryu, shortest round trip); `Number` cannot hold
                // NaN or infinities, so this is always valid JSON.
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here, whatever order the map iterates in (see the module docs).
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k.as_bytes());
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Writes a JSON string. Takes bytes so that the verifier can re-encode columns read from
/// SQLite without first validating them as UTF-8: bytes >= 0x20 other than `"` and `\` are
/// copied unchanged, which for valid UTF-8 is exactly the canonical form.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    // Fast path for the usual string with nothing to escape: one check the compiler can
    // vectorise, one copy.
    if s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if short == 0 {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&bridge_core::hex::encode_byte(b));
        } else {
            out.push(b'\\');
            out.push(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Decimal without allocation; the verifier calls this a million times.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the canonical entry encoding; `payload` must already be canonical JSON.
///
/// The keys are written in their sorted order (`index` < `payload` < `seq` < `timestamp` <
/// `topic`), so this is the canonical encoding of the whole entry object.
pub(crate) fn write_entry(
    out: &mut Vec<u8>,
    index: u64,
    timestamp: &[u8],
    topic: &[u8],
    seq: Option<u64>,
    payload: &[u8],
) {
    out.extend_from_slice(b"{\"index\":");
    write_u64(out, index);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload);
    out.extend_from_slice(b",\"seq\":");
    match seq {
        Some(s) => write_u64(out, s),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timestamp\":");
    write_str(out, timestamp);
    out.extend_from_slice(b",\"topic\":");
    write_str(out, topic);
    out.push(b'}');
}

/// RFC 3339 in UTC, so that one instant always has one spelling (and one leaf hash).
pub(crate) fn format_timestamp(ts: OffsetDateTime) -> Result<String, LedgerError> {
    bridge_core::time::checked_rfc3339(ts).ok_or_else(|| {
        LedgerError::Timestamp(format!(
            "year {} is outside 0000 to 9999",
            ts.to_offset(UtcOffset::UTC).year()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonical_json(v)).unwrap()
    }

    #[test]
    fn pins_the_canonical_form() {
        let v = json!({
            "zeta": [3, -7, 1.5, 1e300, 0.1, -0.0, true, null],
            "alpha": {"b": "x", "a": "y", "B": 1, "ä": 2, "aa": 3},
            "s": "quote\" back\\ nl\n tab\t cr\r bs\u{8} ff\u{c} nul\u{0} us\u{1f} del\u{7f} é 😀 /",
            "big": u64::MAX,
            "neg": i64::MIN,
        });
        assert_eq!(
            canon(&v),
            r#"{"alpha":{"B":1,"a":"y","aa":3,"b":"x","ä":2},"big":18446744073709551615,"neg":-9223372036854775808,"s":"quote\" back\\ nl\n tab\t cr\r bs\b ff\f nul\u0000 us\u001f del"#
                .to_owned()
                + "\u{7f} é 😀 /\",\"zeta\":[3,-7,1.5,1e+300,0.1,-0.0,true,null]}"
        );
    }

    #[test]
    fn key_order_does_not_depend_on_insertion_order() {
        let mut a = serde_json::Map::new();
        a.insert("b".into(), json!(1));
        a.insert("a".into(), json!(2));
        let mut b = serde_json::Map::new();
        b.insert("a".into(), json!(2));
        b.insert("b".into(), json!(1));
        assert_eq!(
            canonical_json(&Value::Object(a)),
            canonical_json(&Value::Object(b))
        );
    }

    #[test]
    fn serde_json_map_is_sorted_in_this_build() {
        // We do not rely on it (the encoder sorts), but if this ever fails someone enabled
        // serde_json's `preserve_order`, and anything else hashing `to_vec` output would
        // silently change.
        let mut m = serde_json::Map::new();
        m.insert("b".into(), json!(1));
        m.insert("a".into(), json!(2));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn canonical_form_round_trips_through_serde_json() {
        let v = json!({"n": [1.0, 2.5e-8, 123456789012345678u64], "o": {"k": "v\u{2028}"}});
        let bytes = canonical_json(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(canonical_json(&back), bytes);
        assert_eq!(back, v);
    }

    #[test]
    fn pins_the_entry_encoding_and_leaf_hash() {
        let e = LedgerEntry {
            index: 7,
            timestamp: "2026-01-02T03:04:05Z".into(),
            topic: "envsync.commit".into(),
            seq: Some(42),
            payload: json!({"key": "API_URL", "platform": "render"}),
        };
        let bytes = e.canonical_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"index":7,"payload":{"key":"API_URL","platform":"render"},"seq":42,"timestamp":"2026-01-02T03:04:05Z","topic":"envsync.commit"}"#
        );
        // The same object through serde_json (sorted Map in this build) gives the same bytes.
        let via_serde = serde_json::to_vec(&serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(via_serde, bytes);
        let none = LedgerEntry { seq: None, ..e };
        assert!(
            String::from_utf8(none.canonical_bytes())
                .unwrap()
                .contains(r#""seq":null"#)
        );
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        let t = OffsetDateTime::parse("2026-01-02T05:04:05.250+02:00", &Rfc3339).unwrap();
        assert_eq!(format_timestamp(t).unwrap(), "2026-01-02T03:04:05.25Z");
    }

    #[test]
    fn u64_formatting_matches_std() {
        for v in [0, 1, 9, 10, 99, 100, 12345, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }
}
