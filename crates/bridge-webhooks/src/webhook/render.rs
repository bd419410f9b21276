//! Render: Standard Webhooks. `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` (space-separated `v1,<base64>` entries); the signature is
//! HMAC-SHA256 of `{id}.{timestamp}.{body}` under the base64-decoded secret (`whsec_`
//! prefix optional). Any `v1` entry may match (secrets rotate); the timestamp must be within
//! the tolerance either way, which bounds replays. The body is Render's thin payload
//! `{"type", "timestamp", "data": {"id", "serviceId", "serviceName", "status"?}}`.
//!
//! | type | becomes |
//! |---|---|
//! | `deploy_started` | start, status `started` |
//! | `deploy_ended` | `data.status` `succeeded` → success, `failed` → failure, `canceled` (or anything else) → progress; status = `data.status` |
//! | `build_started`, `build_ended`, `pre_deploy_started`, `pre_deploy_ended` | progress, status `build_started`, `build_<data.status>`, … (the deploy's outcome comes with `deploy_ended`) |
//! | `image_pull_failed` | failure, status `image_pull_failed` |
//! | any other type | acknowledged |
//!
//! Other types are acknowledged rather than refused: Render retries a refused delivery for
//! 33 hours and then disables the webhook, so one new notification type must not switch off
//! deploy events. A cancelled deploy is progress, not failure: nobody should heal a deploy a
//! person stopped.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bridge_core::SecretValue;
use hmac::Mac;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    DeliveryId, Fields, Headers, HmacSha256, Outcome, Receipt, Rejection, SecretError, parse_object,
};
use crate::deploy::{DeployEvent, DeployEventType, DeployMetadata, Platform};

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a `whsec_<base64>` secret.
pub(crate) fn decode_secret(secret: &SecretValue) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let text = secret.expose().trim();
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    let bad = |problem| SecretError::BadRenderSecret {
        var: Platform::Render.secret_env_var(),
        problem,
    };
    let key = Zeroizing::new(STANDARD.decode(encoded).map_err(|_| bad("not base64"))?);
    if key.is_empty() {
        return Err(bad("empty"));
    }
    Ok(key)
}

/// Checks the signature, then the timestamp; answers the `webhook-id`.
pub(crate) fn verify<'h>(
    key: &[u8],
    headers: &'h (impl Headers + ?Sized),
    body: &[u8],
    now: OffsetDateTime,
    tolerance: std::time::Duration,
) -> Result<&'h str, Rejection> {
    let header = |name| headers.get(name).ok_or(Rejection::MissingHeader { name });
    let id = header(ID_HEADER)?;
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signatures = header(SIGNATURE_HEADER)?;
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::MalformedHeader {
            name: TIMESTAMP_HEADER,
            expected: "Unix seconds",
        })?;

    let mut mac =
        HmacSha256::new_from_slice(key).map_err(|_| Rejection::bad_signature(Platform::Render))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let mut any_v1 = false;
    let mut matched = false;
    for entry in signatures.split_whitespace() {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            continue;
        };
        any_v1 = true;
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        // Every entry is checked, so the time taken does not say which one matched.
        matched |= mac.clone().verify_slice(&signature).is_ok();
    }
    if !any_v1 {
        return Err(Rejection::MalformedHeader {
            name: SIGNATURE_HEADER,
            expected: "space-separated v1,<base64> signatures",
        });
    }
    if !matched {
        return Err(Rejection::bad_signature(Platform::Render));
    }

    let age_secs = now.unix_timestamp().saturating_sub(seconds);
    let tolerance_secs = tolerance.as_secs();
    if age_secs.unsigned_abs() > tolerance_secs {
        return Err(Rejection::StaleTimestamp {
            age_secs,
            tolerance_secs,
        });
    }
    Ok(id)
}

/// The `webhook-signature` Render sends: `v1,<base64>`, under a `whsec_<base64>` secret.
///
/// For tests, emulators and benchmarks.
pub fn sign_render(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let key = decode_secret(&SecretValue::new(secret))?;
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| SecretError::BadRenderSecret {
        var: Platform::Render.secret_env_var(),
        problem: "unusable as a key",
    })?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Normalises a verified delivery; `id` is its `webhook-id`.
pub(crate) fn normalise(id: &str, body: &[u8], now: OffsetDateTime) -> Result<Receipt, Rejection> {
    let root = parse_object(body)?;
    let fields = Fields {
        platform: Platform::Render,
        root: &root,
    };
    let kind = fields.required_str(&["type"])?;
    let status = || fields.required_str(&["data", "status"]);
    let (event_type, status) = match kind {
        "deploy_started" => (DeployEventType::Start, "started".to_owned()),
        "deploy_ended" => {
            let status = status()?;
            let event_type = match status {
                "succeeded" => DeployEventType::Success,
                "failed" => DeployEventType::Failure,
                _ => DeployEventType::Progress,
            };
            (event_type, status.to_owned())
        }
        "build_started" | "pre_deploy_started" => (DeployEventType::Progress, kind.to_owned()),
        "build_ended" | "pre_deploy_ended" => {
            let step = kind.trim_end_matches("_ended");
            (DeployEventType::Progress, format!("{step}_{}", status()?))
        }
        "image_pull_failed" => (DeployEventType::Failure, kind.to_owned()),
        _ => {
            return Ok(Receipt {
                platform: Platform::Render,
                delivery_id: DeliveryId::new(Platform::Render, id),
                platform_delivery: None,
                outcome: Outcome::Acknowledged {
                    event: super::printable_event(kind),
                },
            });
        }
    };
    fields.required_object(&["data"])?;
    let extra: BTreeMap<String, Value> = [
        ("service_id", "serviceId"),
        ("service_name", "serviceName"),
        ("event_id", "id"),
    ]
    .into_iter()
    .filter_map(|(name, key)| {
        let value = fields.value(&["data", key]).filter(|v| !v.is_null())?;
        Some((name.to_owned(), value.clone()))
    })
    .collect();
    let event = DeployEvent {
        platform: Platform::Render,
        event_type,
        status,
        timestamp: fields.time_or(&[&["timestamp"]], now),
        metadata: DeployMetadata {
            // The thin payload carries no commit, branch or URL; a deploy id only if Render
            // adds one (the event's details, `GET /v1/events/{id}`, have it).
            commit_sha: None,
            branch: None,
            deploy_url: None,
            deploy_id: fields.text(&["data", "deployId"]),
            message: None,
            extra,
        },
    };
    Ok(Receipt {
        platform: Platform::Render,
        delivery_id: DeliveryId::new(Platform::Render, id),
        platform_delivery: None,
        outcome: Outcome::Deploy(event),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

    fn key() -> Zeroizing<Vec<u8>> {
        decode_secret(&SecretValue::new(SECRET)).unwrap()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    /// The Standard Webhooks libraries' test vector.
    #[test]
    fn the_standard_webhooks_vector() {
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        assert_eq!(
            sign_render(SECRET, id, 1_649_367_553, body).unwrap(),
            expected
        );
        let headers = [
            (ID_HEADER, id),
            (TIMESTAMP_HEADER, "1649367553"),
            (SIGNATURE_HEADER, expected),
        ];
        assert_eq!(
            verify(&key(), &headers, body, at(1_649_367_553), TOLERANCE),
            Ok(id)
        );
        // The same secret without its prefix.
        let bare = decode_secret(&SecretValue::new(&SECRET[6..])).unwrap();
        assert_eq!(bare, key());
    }

    fn headers<'a>(id: &'a str, ts: &'a str, signature: &'a str) -> [(&'a str, &'a str); 3] {
        [
            (ID_HEADER, id),
            (TIMESTAMP_HEADER, ts),
            (SIGNATURE_HEADER, signature),
        ]
    }

    #[test]
    fn any_v1_entry_may_match() {
        let body = b"{}";
        let good = sign_render(SECRET, "evt-1", 1000, body).unwrap();
        let other = sign_render("whsec_b3RoZXIgc2VjcmV0", "evt-1", 1000, body).unwrap();
        let list = format!("v1a,ZWQyNTUxOQ== {other} v1,!!notbase64 {good}");
        assert_eq!(
            verify(
                &key(),
                &headers("evt-1", "1000", &list),
                body,
                at(1000),
                TOLERANCE
            ),
            Ok("evt-1")
        );
        assert_eq!(
            verify(
                &key(),
                &headers("evt-1", "1000", &other),
                body,
                at(1000),
                TOLERANCE
            ),
            Err(Rejection::bad_signature(Platform::Render))
        );
    }

    #[test]
    fn the_id_and_timestamp_are_signed() {
        let body = b"{}";
        let signature = sign_render(SECRET, "evt-1", 1000, body).unwrap();
        let bad = Err(Rejection::bad_signature(Platform::Render));
        assert_eq!(
            verify(
                &key(),
                &headers("evt-2", "1000", &signature),
                body,
                at(1000),
                TOLERANCE
            ),
            bad
        );
        assert_eq!(
            verify(
                &key(),
                &headers("evt-1", "1001", &signature),
                body,
                at(1000),
                TOLERANCE
            ),
            bad
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_stale() {
        let body = b"{}";
        for (now, expected) in [
            (1300, Ok("evt-1")),
            (700, Ok("evt-1")),
            (
                1301,
                Err(Rejection::StaleTimestamp {
                    age_secs: 301,
                    tolerance_secs: 300,
                }),
            ),
            (
                699,
                Err(Rejection::StaleTimestamp {
                    age_secs: -301,
                    tolerance_secs: 300,
                }),
            ),
        ] {
            let signature = sign_render(SECRET, "evt-1", 1000, body).unwrap();
            assert_eq!(
                verify(
                    &key(),
                    &headers("evt-1", "1000", &signature),
                    body,
                    at(now),
                    TOLERANCE
                ),
                expected,
                "now {now}"
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers_are_401() {
        let body = b"{}";
        let signature = sign_render(SECRET, "evt-1", 1000, body).unwrap();
        let all = headers("evt-1", "1000", &signature);
        for missing in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let partial: Vec<(&str, &str)> =
                all.iter().copied().filter(|(n, _)| *n != missing).collect();
            let rejection =
                verify(&key(), partial.as_slice(), body, at(1000), TOLERANCE).unwrap_err();
            assert_eq!(rejection, Rejection::MissingHeader { name: missing });
            assert_eq!(rejection.status(), 401);
        }
        let rejection = verify(
            &key(),
            &headers("evt-1", "yesterday", &signature),
            body,
            at(1000),
            TOLERANCE,
        )
        .unwrap_err();
        assert_eq!(rejection.code(), "malformed_header");
        assert_eq!(rejection.status(), 401);
        let rejection = verify(
            &key(),
            &headers("evt-1", "1000", "v1a,abc"),
            body,
            at(1000),
            TOLERANCE,
        )
        .unwrap_err();
        assert_eq!(
            rejection,
            Rejection::MalformedHeader {
                name: SIGNATURE_HEADER,
                expected: "space-separated v1,<base64> signatures"
            }
        );
    }

    fn deploy(body: &Value) -> DeployEvent {
        match normalise("evt-1", body.to_string().as_bytes(), at(0))
            .unwrap()
            .outcome
        {
            Outcome::Deploy(event) => event,
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn types_and_statuses_decide_the_event_type() {
        for (kind, status, expected, word) in [
            ("deploy_started", None, DeployEventType::Start, "started"),
            (
                "deploy_ended",
                Some("succeeded"),
                DeployEventType::Success,
                "succeeded",
            ),
            (
                "deploy_ended",
                Some("failed"),
                DeployEventType::Failure,
                "failed",
            ),
            (
                "deploy_ended",
                Some("canceled"),
                DeployEventType::Progress,
                "canceled",
            ),
            (
                "build_ended",
                Some("failed"),
                DeployEventType::Progress,
                "build_failed",
            ),
            (
                "build_started",
                None,
                DeployEventType::Progress,
                "build_started",
            ),
            (
                "image_pull_failed",
                None,
                DeployEventType::Failure,
                "image_pull_failed",
            ),
        ] {
            let event = deploy(&json!({
                "type": kind,
                "timestamp": "2025-02-25T16:22:19.979294509Z",
                "data": {"id": "evt-1", "serviceId": "srv-1", "serviceName": "api",
                         "status": status},
            }));
            assert_eq!(event.event_type, expected, "{kind} {status:?}");
            assert_eq!(event.status, word);
            assert_eq!(event.timestamp, "2025-02-25T16:22:19.979294509Z");
            assert_eq!(event.metadata.extra["service_id"], json!("srv-1"));
        }
    }

    #[test]
    fn other_types_are_acknowledged_and_bad_payloads_refused() {
        let receipt = normalise(
            "evt-9",
            br#"{"type":"server_available","data":{"id":"evt-9"}}"#,
            at(0),
        )
        .unwrap();
        assert_eq!(receipt.delivery_id.as_str(), "render:evt-9");
        assert_eq!(
            receipt.outcome,
            Outcome::Acknowledged {
                event: "server_available".into()
            }
        );
        let rejection = normalise("e", br#"{"type":"deploy_ended","data":{}}"#, at(0)).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::InvalidPayload {
                platform: Platform::Render,
                detail: "`data.status` is missing or not a string".into()
            }
        );
        let rejection = normalise("e", br#"{"data":{}}"#, at(0)).unwrap_err();
        assert_eq!(rejection.status(), 422);
        let rejection = normalise("e", b"not json", at(0)).unwrap_err();
        assert_eq!(rejection.status(), 400);
    }

    #[test]
    fn secrets_must_decode() {
        for bad in ["whsec_!!!", "whsec_", "plain words"] {
            assert!(
                decode_secret(&SecretValue::new(bad)).is_err(),
                "{bad} should be refused"
            );
        }
    }

    proptest! {
        #[test]
        fn signed_bodies_verify_and_any_changed_byte_does_not(
            key in proptest::collection::vec(any::<u8>(), 24..64),
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let secret = format!("whsec_{}", STANDARD.encode(&key));
            let signature = sign_render(&secret, "evt-x", 5000, &body).unwrap();
            let headers = headers("evt-x", "5000", &signature);
            prop_assert_eq!(verify(&key, &headers, &body, at(5000), TOLERANCE), Ok("evt-x"));
            let mut changed = body.clone();
            changed[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                verify(&key, &headers, &changed, at(5000), TOLERANCE),
                Err(Rejection::bad_signature(Platform::Render))
            );
        }
    }
}
