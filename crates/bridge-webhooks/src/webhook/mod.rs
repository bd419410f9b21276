//! Deploy webhooks: verify a delivery's signature, then turn its payload into a
//! [`DeployEvent`].
//!
//! One entry point, [`WebhookVerifier::receive`], takes the platform (the path's last
//! segment), the request headers (through the [`Headers`] trait, so that no HTTP type comes
//! below the server), the raw body and the current time, and answers a [`Receipt`] or a
//! [`Rejection`] that says which HTTP status to answer and why. In order:
//!
//! 1. the body's size ([`Rejection::BodyTooLarge`]);
//! 2. whether the platform has a secret ([`Rejection::NotConfigured`]);
//! 3. the signature, in constant time, per the platform's scheme (`github.rs`: HMAC-SHA256 in
//!    `X-Hub-Signature-256`; `netlify.rs`: an HS256 JWS in `X-Webhook-Signature` whose
//!    `sha256` claim is the body's digest; `render.rs`: Standard Webhooks), and the
//!    timestamp where the scheme signs one;
//! 4. only then the JSON, and its normalisation.
//!
//! Nothing is parsed before the signature is checked, and no message carries the secret or
//! any part of the body: details name a field or a position, never a value.
//!
//! The `sign_*` functions produce what each platform sends. They are for tests, emulators and
//! benchmarks; a receiver never signs.

pub mod github;
pub mod netlify;
pub mod render;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bridge_core::SecretValue;
use hmac::Hmac;
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::deploy::{DeployEvent, Platform};

pub use github::sign_github;
pub use netlify::sign_netlify;
pub use render::sign_render;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A read-only view of request headers. Names compare ASCII case-insensitively, as HTTP's
/// do. The server implements it over its own header type through a newtype (both the trait
/// and `http::HeaderMap` are foreign there); a value that is not UTF-8 reads as absent:
///
/// ```text
/// struct HttpHeaders<'a>(&'a http::HeaderMap);
/// impl Headers for HttpHeaders<'_> {
///     fn get(&self, name: &str) -> Option<&str> {
///         self.0.get(name)?.to_str().ok()
///     }
/// }
/// ```
pub trait Headers {
    /// The first value of the header `name`, if present.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

impl Headers for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), name)
    }
}

impl Headers for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The signing secret of each platform's webhook. `Debug` shows which are set, never a value.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    github: Option<SecretValue>,
    netlify: Option<SecretValue>,
    /// The decoded Standard Webhooks key.
    render: Option<Zeroizing<Vec<u8>>>,
}

/// A secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{var} is not a Standard Webhooks secret: expected `whsec_` followed by base64, as \
         Render shows it ({problem})"
    )]
    BadRenderSecret {
        var: &'static str,
        problem: &'static str,
    },
}

impl WebhookSecrets {
    /// No platform configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// GitHub's webhook secret (the HMAC key, as typed in the webhook's settings). An empty
    /// secret leaves GitHub unconfigured.
    pub fn with_github(mut self, secret: impl Into<SecretValue>) -> Self {
        self.github = Some(secret.into()).filter(|s| !s.is_empty());
        self
    }

    /// Netlify's JWS secret (the notification's "JWS secret token"). Empty leaves it unset.
    pub fn with_netlify(mut self, secret: impl Into<SecretValue>) -> Self {
        self.netlify = Some(secret.into()).filter(|s| !s.is_empty());
        self
    }

    /// Render's signing secret, `whsec_<base64>` (the prefix is optional). Empty leaves it
    /// unset; anything else that does not decode is refused now rather than on every
    /// delivery.
    pub fn with_render(mut self, secret: impl Into<SecretValue>) -> Result<Self, SecretError> {
        let secret = secret.into();
        self.render = if secret.is_empty() {
            None
        } else {
            Some(render::decode_secret(&secret)?)
        };
        Ok(self)
    }

    /// Reads `GITHUB_WEBHOOK_SECRET`, `NETLIFY_WEBHOOK_SECRET` and `RENDER_WEBHOOK_SECRET`
    /// through `lookup` (the process environment, a config file's layer); unset or empty
    /// leaves that platform unconfigured.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let mut secrets = Self::new();
        if let Some(value) = lookup(Platform::Github.secret_env_var()) {
            secrets = secrets.with_github(value);
        }
        if let Some(value) = lookup(Platform::Netlify.secret_env_var()) {
            secrets = secrets.with_netlify(value);
        }
        if let Some(value) = lookup(Platform::Render.secret_env_var()) {
            secrets = secrets.with_render(value)?;
        }
        Ok(secrets)
    }

    /// [`WebhookSecrets::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, SecretError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn is_configured(&self, platform: Platform) -> bool {
        match platform {
            Platform::Github => self.github.is_some(),
            Platform::Netlify => self.netlify.is_some(),
            Platform::Render => self.render.is_some(),
        }
    }

    /// The platforms with a secret, in [`Platform::ALL`] order (for the status endpoint).
    pub fn configured(&self) -> Vec<Platform> {
        Platform::ALL
            .into_iter()
            .filter(|p| self.is_configured(*p))
            .collect()
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = |set: bool| if set { "<redacted>" } else { "<unset>" };
        f.debug_struct("WebhookSecrets")
            .field("github", &state(self.github.is_some()))
            .field("netlify", &state(self.netlify.is_some()))
            .field("render", &state(self.render.is_some()))
            .finish()
    }
}

/// Limits of [`WebhookVerifier::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How far a signed timestamp (Render's `webhook-timestamp`, a Netlify JWS `exp`) may be
    /// from the receiver's clock, either way. Standard Webhooks' libraries use 5 minutes.
    pub tolerance: Duration,
    /// The largest body accepted. Deploy payloads are a few KiB; GitHub's cap is 25 MB.
    pub max_body_bytes: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(5 * 60),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Verifies and normalises deliveries. Cheap to share (`Arc`) across requests.
#[derive(Debug, Clone, Default)]
pub struct WebhookVerifier {
    secrets: WebhookSecrets,
    options: VerifyOptions,
}

/// What a verified delivery means.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A deploy event to publish on [`DeployEvent::topics`].
    Deploy(DeployEvent),
    /// Authentic, understood, and not a deploy event: GitHub's `ping`, Render's
    /// non-deploy notifications, Netlify's lock and unlock. Answer 2xx, publish nothing.
    Acknowledged {
        /// The platform's name for it (`ping`, `server_available`, …).
        event: String,
    },
}

/// The key to de-duplicate deliveries on, `<platform>:<id>`: covered by the signature (so a
/// captured delivery cannot be replayed under a fresh id) and the same on every retry.
///
/// - GitHub: the body's SHA-256. `X-GitHub-Delivery` is not signed, so deduplicating on it
///   would let a replayed body through with a new GUID; redeliveries resend the same body.
///   The GUID is kept in [`Receipt::platform_delivery`] for logs.
/// - Render: `webhook-id`, which is signed and is the event id, stable across retries.
/// - Netlify: the deploy id and its state from the signed body (`netlify:<id>:<state>`).
///   Netlify sends no delivery id (a JWS `jti` is not documented), and one notification per
///   deploy and state is exactly what should be seen once, even if a retry re-renders the
///   body (a changed `updated_at` would defeat a body hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub(crate) fn new(platform: Platform, id: &str) -> Self {
        Self(format!("{platform}:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub platform: Platform,
    /// What to de-duplicate on.
    pub delivery_id: DeliveryId,
    /// The platform's own id of the delivery where it differs from the key (GitHub's
    /// `X-GitHub-Delivery`), for logs and for matching the platform's delivery list.
    pub platform_delivery: Option<String>,
    pub outcome: Outcome,
}

/// Why a delivery was refused, with the status to answer. No message contains a secret or
/// any part of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// 413.
    #[error("the body is {size} bytes; at most {limit} are accepted")]
    BodyTooLarge { size: usize, limit: usize },
    /// 413: a body of no stated length that went past the limit while it was read (the
    /// receiver stops reading there, so its size is not known).
    #[error("the body is over the {limit} bytes accepted")]
    BodyOverLimit { limit: usize },
    /// 503: the request may be fine, this server cannot check it. Platforms retry a 5xx, so
    /// deliveries made before the secret is set still arrive once it is.
    #[error("{platform} webhooks are not configured on this server: set {env_var}")]
    NotConfigured {
        platform: Platform,
        env_var: &'static str,
    },
    /// 401 for a signature header, 400 for another (`X-GitHub-Event`).
    #[error("the request has no {name} header")]
    MissingHeader { name: &'static str },
    /// 401 for a signature header, 400 for another.
    #[error("the {name} header is not {expected}")]
    MalformedHeader {
        name: &'static str,
        expected: &'static str,
    },
    /// 401.
    #[error(
        "the {platform} signature does not match the body: check that {env_var} holds this \
         webhook's secret and that nothing rewrites the body on the way"
    )]
    BadSignature {
        platform: Platform,
        env_var: &'static str,
    },
    /// 401: a replay, or a clock to fix. Positive ages are in the past.
    #[error(
        "the signed timestamp is {age_secs} s from this server's clock, more than the \
         {tolerance_secs} s allowed: a replayed delivery, or a clock to synchronise"
    )]
    StaleTimestamp { age_secs: i64, tolerance_secs: u64 },
    /// 400.
    #[error("the body is not a JSON object: {detail}")]
    MalformedJson { detail: String },
    /// 422: JSON, but not the payload the event says it is.
    #[error("the {platform} payload is not as documented: {detail}")]
    InvalidPayload { platform: Platform, detail: String },
    /// 422: authentic, and not an event this endpoint handles.
    #[error("{platform} event {event:?} is not handled here: {hint}")]
    UnknownEventType {
        platform: Platform,
        event: String,
        hint: &'static str,
    },
}

/// Headers whose absence or damage means an unauthenticated request (401).
const SIGNATURE_HEADERS: [&str; 5] = [
    github::SIGNATURE_HEADER,
    netlify::SIGNATURE_HEADER,
    render::ID_HEADER,
    render::TIMESTAMP_HEADER,
    render::SIGNATURE_HEADER,
];

impl Rejection {
    /// The HTTP status the server answers.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BodyTooLarge { .. } | Rejection::BodyOverLimit { .. } => 413,
            Rejection::NotConfigured { .. } => 503,
            Rejection::MissingHeader { name } | Rejection::MalformedHeader { name, .. } => {
                if SIGNATURE_HEADERS.contains(name) {
                    401
                } else {
                    400
                }
            }
            Rejection::BadSignature { .. } | Rejection::StaleTimestamp { .. } => 401,
            Rejection::MalformedJson { .. } => 400,
            Rejection::InvalidPayload { .. } | Rejection::UnknownEventType { .. } => 422,
        }
    }

    /// A stable machine-readable name (the `error` of the server's `{error, detail}` body
    /// and a metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BodyTooLarge { .. } | Rejection::BodyOverLimit { .. } => "body_too_large",
            Rejection::NotConfigured { .. } => "not_configured",
            Rejection::MissingHeader { .. } => "missing_header",
            Rejection::MalformedHeader { .. } => "malformed_header",
            Rejection::BadSignature { .. } => "bad_signature",
            Rejection::StaleTimestamp { .. } => "stale_timestamp",
            Rejection::MalformedJson { .. } => "malformed_json",
            Rejection::InvalidPayload { .. } => "invalid_payload",
            Rejection::UnknownEventType { .. } => "unknown_event_type",
        }
    }

    pub(crate) fn bad_signature(platform: Platform) -> Self {
        Rejection::BadSignature {
            platform,
            env_var: platform.secret_env_var(),
        }
    }
}

impl WebhookVerifier {
    pub fn new(secrets: WebhookSecrets, options: VerifyOptions) -> Self {
        Self { secrets, options }
    }

    pub fn secrets(&self) -> &WebhookSecrets {
        &self.secrets
    }

    pub fn options(&self) -> &VerifyOptions {
        &self.options
    }

    /// Verifies one delivery to `POST /webhooks/deployment/<platform>` and normalises it.
    /// `now` is the receiver's clock (passed in, so tests can move it).
    pub fn receive(
        &self,
        platform: Platform,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Receipt, Rejection> {
        if body.len() > self.options.max_body_bytes {
            return Err(Rejection::BodyTooLarge {
                size: body.len(),
                limit: self.options.max_body_bytes,
            });
        }
        let not_configured = || Rejection::NotConfigured {
            platform,
            env_var: platform.secret_env_var(),
        };
        match platform {
            Platform::Github => {
                let secret = self.secrets.github.as_ref().ok_or_else(not_configured)?;
                github::verify(secret.expose().as_bytes(), headers, body)?;
                github::normalise(headers, body, now)
            }
            Platform::Netlify => {
                let secret = self.secrets.netlify.as_ref().ok_or_else(not_configured)?;
                netlify::verify(
                    secret.expose().as_bytes(),
                    headers,
                    body,
                    now,
                    self.options.tolerance,
                )?;
                netlify::normalise(headers, body, now)
            }
            Platform::Render => {
                let key = self.secrets.render.as_ref().ok_or_else(not_configured)?;
                let id = render::verify(key, headers, body, now, self.options.tolerance)?;
                render::normalise(id, body, now)
            }
        }
    }
}

/// Parses the body as a JSON object, with an error that names a position, never content.
pub(crate) fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Rejection::MalformedJson {
            detail: format!("the top level is {}", kind(&other)),
        }),
        Err(e) => {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data | serde_json::error::Category::Io => "unreadable",
            };
            Err(Rejection::MalformedJson {
                detail: format!("{what} at line {}, column {}", e.line(), e.column()),
            })
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed reads from a payload whose errors name the field's path, never its value.
pub(crate) struct Fields<'a> {
    pub(crate) platform: Platform,
    pub(crate) root: &'a serde_json::Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn value(&self, path: &[&str]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.root.get(*first)?;
        for key in rest {
            value = value.get(key)?;
        }
        Some(value)
    }

    /// A string, or `None` when absent, null or empty.
    pub(crate) fn str(&self, path: &[&str]) -> Option<&'a str> {
        self.value(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A string or a number as text (GitHub's ids are numbers), `None` when absent.
    pub(crate) fn text(&self, path: &[&str]) -> Option<String> {
        match self.value(path)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub(crate) fn required_str(&self, path: &[&str]) -> Result<&'a str, Rejection> {
        self.str(path).ok_or_else(|| self.invalid(path, "a string"))
    }

    pub(crate) fn required_text(&self, path: &[&str]) -> Result<String, Rejection> {
        self.text(path)
            .ok_or_else(|| self.invalid(path, "a string or a number"))
    }

    /// Requires an object at `path` (the payload's main part).
    pub(crate) fn required_object(&self, path: &[&str]) -> Result<(), Rejection> {
        match self.value(path) {
            Some(Value::Object(_)) => Ok(()),
            _ => Err(self.invalid(path, "an object")),
        }
    }

    fn invalid(&self, path: &[&str], expected: &str) -> Rejection {
        Rejection::InvalidPayload {
            platform: self.platform,
            detail: format!("`{}` is missing or not {expected}", path.join(".")),
        }
    }

    /// The RFC 3339 time at the first of `paths` that holds one, else `now`.
    pub(crate) fn time_or(&self, paths: &[&[&str]], now: OffsetDateTime) -> String {
        let at = paths
            .iter()
            .find_map(|path| self.str(path).and_then(crate::deploy::parse_time))
            .unwrap_or(now);
        crate::deploy::format_time(at)
    }
}

/// An event name safe to echo in an error: a short token, or a placeholder.
pub(crate) fn printable_event(name: &str) -> String {
    let ok = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        name.to_owned()
    } else {
        "<not a short event name>".to_owned()
    }
}

pub(crate) fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    bridge_core::hex::encode(&Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn headers_are_case_insensitive() {
        let pairs = vec![("X-GitHub-Event".to_owned(), "ping".to_owned())];
        assert_eq!(Headers::get(&pairs, "x-github-event"), Some("ping"));
        let map = BTreeMap::from([("webhook-id".to_owned(), "evt-1".to_owned())]);
        assert_eq!(Headers::get(&map, "Webhook-Id"), Some("evt-1"));
        let array = [("A", "1"), ("a", "2")];
        assert_eq!(Headers::get(&array, "A"), Some("1"), "the first value wins");
        assert_eq!(Headers::get(&array, "b"), None);
    }

    #[test]
    fn secrets_are_redacted_and_optional() {
        let secrets = WebhookSecrets::from_lookup(|name| match name {
            "GITHUB_WEBHOOK_SECRET" => Some("hunter2".into()),
            "NETLIFY_WEBHOOK_SECRET" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(secrets.configured(), [Platform::Github]);
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("github: \"<redacted>\""), "{debug}");
        assert!(debug.contains("netlify: \"<unset>\""), "{debug}");
    }

    #[test]
    fn a_bad_render_secret_is_refused_at_configuration() {
        let error = WebhookSecrets::from_lookup(|name| {
            (name == "RENDER_WEBHOOK_SECRET").then(|| "whsec_not base64!".to_owned())
        })
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("RENDER_WEBHOOK_SECRET"), "{message}");
        assert!(!message.contains("not base64!"), "{message}");
    }

    #[test]
    fn unconfigured_platforms_answer_503() {
        let verifier = WebhookVerifier::default();
        let now = datetime!(2026-01-01 00:00 UTC);
        for platform in Platform::ALL {
            let rejection = verifier
                .receive(platform, &[("a", "b")], b"{}", now)
                .unwrap_err();
            assert_eq!(
                rejection,
                Rejection::NotConfigured {
                    platform,
                    env_var: platform.secret_env_var()
                }
            );
            assert_eq!(rejection.status(), 503);
            assert!(rejection.to_string().contains(platform.secret_env_var()));
        }
    }

    #[test]
    fn large_bodies_answer_413_before_anything_else() {
        let verifier = WebhookVerifier::new(
            WebhookSecrets::new().with_github("s"),
            VerifyOptions {
                max_body_bytes: 4,
                ..VerifyOptions::default()
            },
        );
        let rejection = verifier
            .receive(
                Platform::Github,
                &[("a", "b")],
                b"12345",
                datetime!(2026-01-01 00:00 UTC),
            )
            .unwrap_err();
        assert_eq!(rejection, Rejection::BodyTooLarge { size: 5, limit: 4 });
        assert_eq!(rejection.status(), 413);
        assert_eq!(rejection.code(), "body_too_large");
    }

    #[test]
    fn json_errors_name_positions_not_content() {
        let secret_looking = br#"{"token": "sk_live_abcdef" "#;
        let Err(Rejection::MalformedJson { detail }) = parse_object(secret_looking) else {
            panic!("expected malformed JSON");
        };
        assert!(!detail.contains("sk_live"), "{detail}");
        assert!(detail.contains("line 1"), "{detail}");
        let Err(Rejection::MalformedJson { detail }) = parse_object(b"[1]") else {
            panic!("expected malformed JSON");
        };
        assert_eq!(detail, "the top level is an array");
        assert_eq!(
            Rejection::MalformedJson { detail }.status(),
            400,
            "malformed bodies are the client's fault"
        );
    }

    #[test]
    fn statuses_follow_the_header_kind() {
        let missing = |name| Rejection::MissingHeader { name }.status();
        assert_eq!(missing(github::SIGNATURE_HEADER), 401);
        assert_eq!(missing(render::TIMESTAMP_HEADER), 401);
        assert_eq!(missing(github::EVENT_HEADER), 400);
        assert_eq!(Rejection::bad_signature(Platform::Render).status(), 401);
        assert_eq!(
            Rejection::StaleTimestamp {
                age_secs: 400,
                tolerance_secs: 300
            }
            .status(),
            401
        );
    }

    const SECRET: &str = "prop-secret-Zx9";
    const RENDER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn prop_verifier() -> WebhookVerifier {
        let secrets = WebhookSecrets::new()
            .with_github(SECRET)
            .with_netlify(SECRET)
            .with_render(RENDER_SECRET)
            .unwrap();
        WebhookVerifier::new(secrets, VerifyOptions::default())
    }

    /// A JSON-ish body: mostly objects with the fields the platforms read, of any type.
    fn bodies() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z_]{0,12}".prop_map(Value::from),
        ];
        let value = scalar.prop_recursive(3, 24, 6, |inner| {
            let keys = prop_oneof![
                Just("state".to_owned()),
                Just("id".to_owned()),
                Just("type".to_owned()),
                Just("data".to_owned()),
                Just("status".to_owned()),
                Just("action".to_owned()),
                Just("deployment".to_owned()),
                Just("deployment_status".to_owned()),
                Just("workflow_run".to_owned()),
                Just("sha".to_owned()),
                Just("conclusion".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            value.prop_map(|v| v.to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest::proptest! {
        /// Any header values and any body: an answer, never a panic, and never the secret
        /// in a message.
        #[test]
        fn arbitrary_requests_never_panic(
            platform in proptest::sample::select(Platform::ALL.to_vec()),
            values in proptest::collection::vec("[ -~]{0,80}", 6),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let names = [
                github::SIGNATURE_HEADER, github::EVENT_HEADER, github::DELIVERY_HEADER,
                netlify::SIGNATURE_HEADER, render::TIMESTAMP_HEADER, render::SIGNATURE_HEADER,
            ];
            let headers: Vec<(String, String)> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .chain([(render::ID_HEADER.to_owned(), "evt-1".to_owned())])
                .collect();
            let now = datetime!(2026-01-01 00:00 UTC);
            if let Err(rejection) = prop_verifier().receive(platform, &headers, &body, now) {
                let message = rejection.to_string();
                proptest::prop_assert!(!message.contains(SECRET));
                proptest::prop_assert!(!message.contains(&RENDER_SECRET[6..]));
            }
        }

        /// Correctly signed deliveries of any JSON-ish body: normalisation answers, never
        /// panics, and an accepted deploy event serialises with every named field.
        #[test]
        fn signed_arbitrary_bodies_never_panic(
            platform in proptest::sample::select(Platform::ALL.to_vec()),
            event in proptest::sample::select(vec![
                "ping", "deployment", "deployment_status", "workflow_run", "push",
                "deploy_created", "deploy_locked",
            ]),
            body in bodies(),
        ) {
            let now = datetime!(2026-01-01 00:00 UTC);
            let ts = now.unix_timestamp();
            let headers: Vec<(String, String)> = match platform {
                Platform::Github => vec![
                    (github::SIGNATURE_HEADER.into(), sign_github(SECRET, &body)),
                    (github::EVENT_HEADER.into(), event.into()),
                    (github::DELIVERY_HEADER.into(), "g-1".into()),
                ],
                Platform::Netlify => vec![
                    (netlify::SIGNATURE_HEADER.into(), sign_netlify(SECRET, &body, now)),
                    (netlify::EVENT_HEADER.into(), event.into()),
                ],
                Platform::Render => vec![
                    (render::ID_HEADER.into(), "evt-1".into()),
                    (render::TIMESTAMP_HEADER.into(), ts.to_string()),
                    (
                        render::SIGNATURE_HEADER.into(),
                        sign_render(RENDER_SECRET, "evt-1", ts, &body).unwrap(),
                    ),
                ],
            };
            match prop_verifier().receive(platform, &headers, &body, now) {
                Ok(Receipt { outcome: Outcome::Deploy(event), .. }) => {
                    let value = serde_json::to_value(&event).unwrap();
                    for field in ["commit_sha", "branch", "deploy_url", "deploy_id", "message"] {
                        proptest::prop_assert!(value["metadata"].get(field).is_some());
                    }
                }
                Ok(_) => {}
                Err(rejection) => {
                    // Signed correctly: only the payload can be at fault.
                    proptest::prop_assert!(
                        matches!(rejection.status(), 400 | 422),
                        "{:?}", rejection
                    );
                }
            }
        }
    }

    #[test]
    fn event_names_are_echoed_only_when_short_tokens() {
        assert_eq!(printable_event("deploy_ended"), "deploy_ended");
        assert_eq!(
            printable_event("x\" onload=\"alert(1)"),
            "<not a short event name>"
        );
        assert_eq!(printable_event(&"a".repeat(65)), "<not a short event name>");
    }
}
