//! Netlify: `X-Webhook-Signature` is a compact JWS, HS256 under the notification's "JWS
//! secret token", with claims `{"iss": "netlify", "sha256": "<hex SHA-256 of the body>"}`.
//! The body is the deploy object; `X-Netlify-Event` names the notification.
//!
//! Verified here with `hmac` directly (no JWT library): the header must say `alg: HS256`
//! (anything else, `none` included, is refused), the signature over `header.claims` must
//! match in constant time, `iss` must be `netlify`, and `sha256` must equal the body's
//! digest (compared in constant time too). An `exp` claim, if Netlify ever sends one, is
//! honoured with the usual tolerance; `iat` is not required.
//!
//! The deploy's `state`, which is signed, decides the event type: `building` → start,
//! `ready` → success, `error` → failure, any other state → progress; status = the state.
//! The unsigned `X-Netlify-Event` only sorts out notifications that are not about a deploy's
//! progress (`deploy_locked`, `deploy_unlocked`, `deploy_deleted`, …), which are
//! acknowledged; an unknown name is refused (422).

use std::collections::BTreeMap;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::Mac;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::{
    DeliveryId, Fields, Headers, HmacSha256, Outcome, Receipt, Rejection, parse_object,
    printable_event, sha256_hex,
};
use crate::deploy::{DeployEvent, DeployEventType, DeployMetadata, Platform};

pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";
pub const EVENT_HEADER: &str = "X-Netlify-Event";

const JWS_FORM: &str = "a compact HS256 JWS (three base64url parts)";

/// base64url, padding tolerated but not required (JWS omits it).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Notifications that are authentic and not about a deploy's progress.
const NOT_DEPLOY_PROGRESS: [&str; 11] = [
    "deploy_locked",
    "deploy_unlocked",
    "deploy_deleted",
    "deploy_restored",
    "deploy_request_pending",
    "deploy_request_accepted",
    "deploy_request_rejected",
    "submission_created",
    "split_test_activated",
    "split_test_deactivated",
    "split_test_modified",
];

/// Notifications about a deploy's progress (the seeds' hyphenated spellings too).
const DEPLOY_PROGRESS: [&str; 5] = [
    "deploy_building",
    "deploy_created",
    "deploy_succeeded",
    "deploy_failed",
    "deploy_started",
];

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sha256: Option<String>,
    exp: Option<i64>,
}

/// Checks the JWS against the body.
pub(crate) fn verify(
    secret: &[u8],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: OffsetDateTime,
    tolerance: std::time::Duration,
) -> Result<(), Rejection> {
    let token = headers
        .get(SIGNATURE_HEADER)
        .ok_or(Rejection::MissingHeader {
            name: SIGNATURE_HEADER,
        })?
        .trim();
    let malformed = || Rejection::MalformedHeader {
        name: SIGNATURE_HEADER,
        expected: JWS_FORM,
    };
    let bad = || Rejection::bad_signature(Platform::Netlify);
    let (signing_input, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (header, claims) = signing_input.split_once('.').ok_or_else(malformed)?;
    if claims.contains('.') {
        return Err(malformed());
    }
    let header: JwsHeader = BASE64URL
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(malformed)?;
    if header.alg != "HS256" {
        return Err(bad());
    }
    let signature = BASE64URL.decode(signature).map_err(|_| malformed())?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| bad())?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| bad())?;

    // Authentic from here on: whoever holds the secret made these claims.
    let claims: Claims = BASE64URL
        .decode(claims)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(malformed)?;
    if claims.iss.as_deref() != Some("netlify") {
        return Err(bad());
    }
    let digest = sha256_hex(body);
    let claimed = claims.sha256.unwrap_or_default().to_ascii_lowercase();
    if !bool::from(claimed.as_bytes().ct_eq(digest.as_bytes())) {
        return Err(bad());
    }
    if let Some(exp) = claims.exp {
        let late = now.unix_timestamp().saturating_sub(exp);
        let tolerance_secs = tolerance.as_secs();
        if late > i64::try_from(tolerance_secs).unwrap_or(i64::MAX) {
            return Err(Rejection::StaleTimestamp {
                age_secs: late,
                tolerance_secs,
            });
        }
    }
    Ok(())
}

/// The `X-Webhook-Signature` Netlify sends for `body`: claims `iss`, `sha256` and `iat`
/// (`now`).
///
/// For tests, emulators and benchmarks.
pub fn sign_netlify(secret: &str, body: &[u8], now: OffsetDateTime) -> String {
    let header = BASE64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": "netlify",
        "sha256": sha256_hex(body),
        "iat": now.unix_timestamp(),
    });
    let claims = BASE64URL.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(signing_input.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Normalises a verified delivery.
pub(crate) fn normalise(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Receipt, Rejection> {
    if let Some(event) = headers.get(EVENT_HEADER) {
        let name = event.trim().to_ascii_lowercase().replace('-', "_");
        if NOT_DEPLOY_PROGRESS.contains(&name.as_str()) {
            let root = parse_object(body)?;
            let fields = Fields {
                platform: Platform::Netlify,
                root: &root,
            };
            let id = fields.required_text(&["id"])?;
            return Ok(Receipt {
                platform: Platform::Netlify,
                delivery_id: DeliveryId::new(Platform::Netlify, &format!("{id}:{name}")),
                platform_delivery: None,
                outcome: Outcome::Acknowledged { event: name },
            });
        }
        if !DEPLOY_PROGRESS.contains(&name.as_str()) {
            return Err(Rejection::UnknownEventType {
                platform: Platform::Netlify,
                event: printable_event(event),
                hint: "add this webhook to the Deploy building, Deploy succeeded and Deploy \
                       failed notifications only",
            });
        }
    }
    let root = parse_object(body)?;
    let fields = Fields {
        platform: Platform::Netlify,
        root: &root,
    };
    let id = fields.required_text(&["id"])?;
    let state = fields.required_str(&["state"])?;
    let event_type = match state {
        "building" => DeployEventType::Start,
        "ready" => DeployEventType::Success,
        "error" => DeployEventType::Failure,
        _ => DeployEventType::Progress,
    };
    let deploy_url = fields
        .str(&["deploy_ssl_url"])
        .or_else(|| fields.str(&["deploy_url"]))
        .or_else(|| fields.str(&["ssl_url"]))
        .or_else(|| fields.str(&["url"]))
        .map(str::to_owned);
    let message = match event_type {
        DeployEventType::Failure => fields.str(&["error_message"]),
        _ => None,
    }
    .or_else(|| fields.str(&["title"]))
    .map(str::to_owned);
    let time_paths: &[&[&str]] = match event_type {
        DeployEventType::Success => &[&["published_at"], &["updated_at"], &["created_at"]],
        _ => &[&["updated_at"], &["created_at"]],
    };
    let extra: BTreeMap<String, Value> = ["site_id", "name", "context", "deploy_time"]
        .into_iter()
        .filter_map(|key| {
            let value = fields.value(&[key]).filter(|v| !v.is_null())?;
            Some((key.to_owned(), value.clone()))
        })
        .collect();
    let event = DeployEvent {
        platform: Platform::Netlify,
        event_type,
        status: state.to_owned(),
        timestamp: fields.time_or(time_paths, now),
        metadata: DeployMetadata {
            commit_sha: fields.str(&["commit_ref"]).map(str::to_owned),
            branch: fields.str(&["branch"]).map(str::to_owned),
            deploy_url,
            deploy_id: Some(id.clone()),
            message,
            extra,
        },
    };
    Ok(Receipt {
        platform: Platform::Netlify,
        delivery_id: DeliveryId::new(Platform::Netlify, &format!("{id}:{state}")),
        platform_delivery: None,
        outcome: Outcome::Deploy(event),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
    const TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

    fn check(secret: &str, token: &str, body: &[u8]) -> Result<(), Rejection> {
        verify(
            secret.as_bytes(),
            &[(SIGNATURE_HEADER, token)],
            body,
            NOW,
            TOLERANCE,
        )
    }

    fn hs256(secret: &str, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        );
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", BASE64URL.encode(mac.finalize().into_bytes()))
    }

    /// The reference's example token (self-made, not Netlify's).
    #[test]
    fn the_reference_example_verifies() {
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJuZXRsaWZ5Iiwic2hhMjU2Ijoi\
                     NzU0MjU3ZWQxYTMzNWU3MDI5N2Y1Yjg0NzE4MDg4NDFjNWM4NzUwMDcyYTRmYzhhOWUzMjE3ZjhhNWYzNWM5MyJ9.\
                     JjnCW7kJlnXqrJ-TtkO9l9CT4n67iJ7JDo3Kn2yJSlc";
        let body = br#"{"id":"abc","state":"ready"}"#;
        assert_eq!(check("test-jws-secret", token, body), Ok(()));
        assert_eq!(
            check("other-secret", token, body),
            Err(Rejection::bad_signature(Platform::Netlify))
        );
        assert_eq!(
            check("test-jws-secret", token, br#"{"id":"abc","state":"error"}"#),
            Err(Rejection::bad_signature(Platform::Netlify))
        );
    }

    #[test]
    fn signed_tokens_verify() {
        let body = br#"{"id":"d1","state":"building"}"#;
        let token = sign_netlify("s3cret", body, NOW);
        assert_eq!(check("s3cret", &token, body), Ok(()));
    }

    #[test]
    fn other_algorithms_issuers_and_digests_are_refused() {
        let body = b"{}";
        let digest = sha256_hex(body);
        let claims = json!({"iss": "netlify", "sha256": digest});
        let bad = Err(Rejection::bad_signature(Platform::Netlify));
        // alg none, with an empty signature.
        let none = format!(
            "{}.{}.",
            BASE64URL.encode(r#"{"alg":"none"}"#),
            BASE64URL.encode(claims.to_string())
        );
        assert_eq!(check("s", &none, body), bad);
        let hs512 = hs256("s", &json!({"alg": "HS512"}), &claims);
        assert_eq!(check("s", &hs512, body), bad);
        let issuer = hs256(
            "s",
            &json!({"alg": "HS256"}),
            &json!({"iss": "github", "sha256": digest}),
        );
        assert_eq!(check("s", &issuer, body), bad);
        let no_digest = hs256("s", &json!({"alg": "HS256"}), &json!({"iss": "netlify"}));
        assert_eq!(check("s", &no_digest, body), bad);
        let upper = hs256(
            "s",
            &json!({"alg": "HS256"}),
            &json!({"iss": "netlify", "sha256": digest.to_ascii_uppercase()}),
        );
        assert_eq!(check("s", &upper, body), Ok(()), "hex in either case");
    }

    #[test]
    fn expired_tokens_are_stale() {
        let body = b"{}";
        let claims = |exp: i64| json!({"iss": "netlify", "sha256": sha256_hex(body), "exp": exp});
        let now = NOW.unix_timestamp();
        let fresh = hs256("s", &json!({"alg": "HS256"}), &claims(now - 200));
        assert_eq!(check("s", &fresh, body), Ok(()), "within the tolerance");
        let stale = hs256("s", &json!({"alg": "HS256"}), &claims(now - 400));
        let rejection = check("s", &stale, body).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::StaleTimestamp {
                age_secs: 400,
                tolerance_secs: 300
            }
        );
        assert_eq!(rejection.status(), 401);
    }

    #[test]
    fn missing_and_malformed_tokens_are_401() {
        let missing = verify(
            b"s",
            &[("X-Netlify-Event", "deploy_created")],
            b"{}",
            NOW,
            TOLERANCE,
        )
        .unwrap_err();
        assert_eq!(
            missing,
            Rejection::MissingHeader {
                name: SIGNATURE_HEADER
            }
        );
        assert_eq!(missing.status(), 401);
        for token in ["abc", "a.b", "a.b.c.d", "!!.e30.sig", "e30.e30.!!"] {
            let rejection = check("s", token, b"{}").unwrap_err();
            assert!(
                matches!(rejection, Rejection::MalformedHeader { .. }),
                "{token}: {rejection:?}"
            );
            assert_eq!(rejection.status(), 401);
        }
    }

    fn receive(event: Option<&str>, body: &Value) -> Result<Receipt, Rejection> {
        let body = body.to_string();
        let headers: Vec<(String, String)> = event
            .map(|e| (EVENT_HEADER.to_owned(), e.to_owned()))
            .into_iter()
            .collect();
        normalise(&headers, body.as_bytes(), NOW)
    }

    #[test]
    fn states_decide_the_event_type() {
        for (state, expected) in [
            ("building", DeployEventType::Start),
            ("ready", DeployEventType::Success),
            ("error", DeployEventType::Failure),
            ("enqueued", DeployEventType::Progress),
        ] {
            let body = json!({"id": "d1", "state": state, "site_id": "s1",
                              "error_message": "Build script returned non-zero exit code: 2",
                              "title": "Fix the build"});
            let receipt = receive(Some("deploy_created"), &body).unwrap();
            assert_eq!(receipt.delivery_id.as_str(), format!("netlify:d1:{state}"));
            let Outcome::Deploy(event) = receipt.outcome else {
                panic!("not a deploy")
            };
            assert_eq!(event.event_type, expected, "{state}");
            assert_eq!(event.status, state);
            let message = event.metadata.message.as_deref();
            if expected == DeployEventType::Failure {
                assert_eq!(message, Some("Build script returned non-zero exit code: 2"));
            } else {
                assert_eq!(message, Some("Fix the build"));
            }
        }
    }

    #[test]
    fn the_event_header_only_sorts_out_other_notifications() {
        let body = json!({"id": "d1", "state": "ready"});
        for name in ["deploy-succeeded", "Deploy_Failed", "deploy_building"] {
            assert!(receive(Some(name), &body).is_ok(), "{name}");
        }
        assert!(receive(None, &body).is_ok(), "the header is optional");
        let locked = receive(Some("deploy_locked"), &body).unwrap();
        assert_eq!(
            locked.outcome,
            Outcome::Acknowledged {
                event: "deploy_locked".into()
            }
        );
        let rejection = receive(Some("form_submitted"), &body).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert_eq!(rejection.code(), "unknown_event_type");
    }

    #[test]
    fn deploys_need_an_id_and_a_state() {
        let rejection = receive(None, &json!({"id": "d1"})).unwrap_err();
        assert_eq!(
            rejection,
            Rejection::InvalidPayload {
                platform: Platform::Netlify,
                detail: "`state` is missing or not a string".into()
            }
        );
        assert_eq!(rejection.status(), 422);
        assert!(receive(None, &json!({"state": "ready"})).is_err());
    }

    proptest! {
        #[test]
        fn signed_bodies_verify_and_any_changed_byte_does_not(
            secret in "[ -~]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let token = sign_netlify(&secret, &body, NOW);
            prop_assert_eq!(check(&secret, &token, &body), Ok(()));
            let mut changed = body.clone();
            changed[index.index(body.len())] ^= flip;
            prop_assert_eq!(
                check(&secret, &token, &changed),
                Err(Rejection::bad_signature(Platform::Netlify))
            );
        }
    }
}
