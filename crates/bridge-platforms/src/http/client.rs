//! The general-purpose client: a call to any absolute http(s) URL (a deploy hook, a vault, a
//! Bridge server, GitHub for Auto-Sync) with the retry rules of [`super::retry`].
//!
//! What it promises about secrets:
//! - a bearer token goes out marked sensitive and appears in no error or `Debug` output;
//! - errors name the method and the URL's origin (scheme, host, port) only: never its path,
//!   query or userinfo, which may hold a hook's key;
//! - redirects are not followed (one to another host would carry the token there);
//! - a [`Response`]'s `Debug` shows no body (it may hold a token).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bridge_core::SecretValue;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::retry::{self, Outgoing};
use super::{HttpOptions, build_client, error_chain, error_message, install_tls};

/// A retrying HTTP client for calls to absolute URLs. Build one per use (it holds a
/// connection pool) and share it by reference.
///
/// A deploy hook: a POST to a URL that holds its key, sent at most `attempts` times with
/// jittered backoff whose ceiling starts at `backoff` and doubles; the error text names the
/// hook's origin, never its path or query.
///
/// ```no_run
/// use std::time::Duration;
///
/// use bridge_platforms::HttpOptions;
/// use bridge_platforms::http::{Client, Request};
///
/// /// The attempts made, or those and why the hook failed.
/// async fn trigger_hook(
///     url: &str,
///     attempts: u32,
///     backoff: Duration,
/// ) -> Result<u32, (u32, String)> {
///     let client = Client::new(HttpOptions {
///         max_attempts: attempts.max(1),
///         base_delay: backoff,
///         request_timeout: Duration::from_secs(15),
///         ..HttpOptions::default()
///     })
///     .map_err(|e| (0, e.to_string()))?;
///     match client.send(Request::post(url)).await {
///         Ok(answer) if answer.is_success() => Ok(answer.attempts),
///         Ok(answer) => Err((answer.attempts, format!("answered {}", answer.status))),
///         Err(e) => Err((e.attempts(), e.to_string())),
///     }
/// }
/// ```
pub struct Client {
    inner: reqwest::Client,
    options: HttpOptions,
    requests: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with these timeouts and retry bounds. Installs the TLS provider first
    /// ([`install_tls`]).
    pub fn new(options: HttpOptions) -> Result<Self, HttpError> {
        install_tls();
        let inner = build_client(&options, HeaderMap::new()).map_err(|e| {
            HttpError::Invalid(format!(
                "could not set up the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
        Ok(Self {
            inner,
            options,
            requests: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// Requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends `request`, retrying 429, 5xx and connection failures as the [module](crate::http)
    /// says, and returns the last answer whatever its status (see
    /// [`Response::error_for_status`]). Fails when the request is not valid or when no answer
    /// came at all.
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        if let Some(problem) = request.problem {
            return Err(HttpError::Invalid(problem));
        }
        let Some(url) = request.url else {
            return Err(HttpError::Invalid(NOT_A_URL.into()));
        };
        let method = request.method.as_str().to_owned();
        let target = origin(&url);
        let outcome = retry::send(
            &self.inner,
            &self.options,
            Outgoing {
                method: &request.method,
                url: &url,
                headers: &request.headers,
                body: request.body.as_deref(),
                idempotent: request.idempotent,
            },
            |status| status.is_success(),
            &self.requests,
        )
        .await;
        match outcome {
            Ok(answer) => Ok(Response {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
                attempts: answer.attempts,
                retry_after: answer.rate_limited,
                method,
                origin: target,
            }),
            Err(failure) => {
                let error = &failure.error;
                let kind = if error.is_connect() {
                    TransportKind::Connect
                } else if error.is_timeout() {
                    TransportKind::Timeout
                } else if error.is_body() || error.is_decode() {
                    TransportKind::Body
                } else {
                    TransportKind::Other
                };
                let mut secrets = request.secrets;
                secrets.push(SecretValue::new(url.as_str()));
                let detail = scrub(&error_chain(error), &secrets);
                Err(HttpError::Transport {
                    method,
                    origin: target,
                    kind,
                    message: if detail.is_empty() {
                        kind.to_string()
                    } else {
                        format!("{kind}: {detail}")
                    },
                    attempts: failure.attempts,
                })
            }
        }
    }
}

/// The URL without what may be secret: scheme, host and port only (no userinfo, path or
/// query: a deploy hook keeps its key in the query, a build hook in the path).
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

const NOT_A_URL: &str = "the URL is not an absolute http(s) URL";

/// One call to make: built step by step; a step that fails is reported by
/// [`Client::send`], without quoting the URL or any value.
pub struct Request {
    method: Method,
    url: Option<Url>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    idempotent: bool,
    /// The first step that failed.
    problem: Option<String>,
    /// Strings that must not appear in an error: the token, the URL's query and password.
    secrets: Vec<SecretValue>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method.as_str())
            .field("origin", &self.url.as_ref().map(origin))
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request of `method` to `url`, which must be an absolute http(s) URL (it may carry a
    /// query and userinfo; neither will appear in an error). GET, HEAD, PUT and DELETE are
    /// taken as idempotent, other methods not (see [`Request::idempotent`]).
    pub fn new(method: Method, url: &str) -> Self {
        let url = Url::parse(url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        let mut secrets = Vec::new();
        if let Some(u) = &url {
            secrets.extend(
                u.query()
                    .into_iter()
                    .chain(u.password())
                    .map(SecretValue::new),
            );
            secrets.extend(
                u.query_pairs()
                    .map(|(_, v)| SecretValue::new(v.into_owned()))
                    .filter(|v| v.len() >= MIN_SCRUBBED),
            );
        }
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE
        );
        Self {
            problem: url.is_none().then(|| NOT_A_URL.to_owned()),
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            secrets,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new(Method::GET, url)
    }

    /// `POST url` (not idempotent unless said so).
    pub fn post(url: &str) -> Self {
        Self::new(Method::POST, url)
    }

    /// Sends `token` as `Authorization: Bearer`, marked sensitive.
    pub fn bearer(mut self, token: &SecretValue) -> Self {
        match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.headers.insert(header::AUTHORIZATION, value);
                self.secrets.push(token.clone());
            }
            Err(_) => self.fail("the token holds characters that cannot be sent in an HTTP header"),
        }
        self
    }

    /// Sets header `name` to `value` (replacing the client's default, such as `user-agent`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.insert(name, value);
            }
            _ => self.fail(&format!("header `{name}` cannot be sent as given")),
        }
        self
    }

    /// Appends `pairs` to the URL's query, percent-encoded.
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Self {
        if let Some(url) = &mut self.url
            && !pairs.is_empty()
        {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        self
    }

    /// Sends `body` as JSON.
    pub fn json(mut self, body: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Some(bytes),
            Err(_) => self.fail("the request body could not be encoded as JSON"),
        }
        self
    }

    /// Whether sending the request twice does no harm, so that it may be repeated after a
    /// timeout or a 5xx, when the server may have acted. Whatever this says, a request is
    /// repeated after 429, 503 or a connection that could not be opened.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    fn fail(&mut self, problem: &str) {
        self.problem.get_or_insert_with(|| problem.to_owned());
    }
}

/// Shorter strings are not scrubbed from messages: they would cut ordinary words apart.
const MIN_SCRUBBED: usize = 4;

/// `text` with every secret of `secrets` replaced by `***`.
fn scrub(text: &str, secrets: &[SecretValue]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if secret.len() >= MIN_SCRUBBED {
            text = text.replace(secret.expose(), "***");
        }
    }
    text
}

/// The last answer to a request, read in full, whatever its status.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Requests sent, this one included.
    pub attempts: u32,
    /// For a rate limit that outlasted the retries: the wait the server last asked for.
    pub retry_after: Option<Duration>,
    method: String,
    origin: String,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may hold a token (a vault's answer): its length only.
        f.debug_struct("Response")
            .field("status", &self.status.as_u16())
            .field("attempts", &self.attempts)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Response {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body parsed as JSON. The error says where parsing failed, never what the body
    /// holds.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Io => "could not be read",
                serde_json::error::Category::Syntax => "is not valid JSON",
                serde_json::error::Category::Data => "does not have the expected shape",
                serde_json::error::Category::Eof => "ends early",
            };
            HttpError::Decode {
                method: self.method.clone(),
                origin: self.origin.clone(),
                message: format!(
                    "the answer {kind} (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            }
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The server's own explanation: a JSON body's `message` (or `error`), else the first line
    /// of a text body, at most 200 characters. It is the server's text: quote it only where a
    /// server may be quoted.
    pub fn message(&self) -> String {
        error_message(&self.body)
    }

    /// `self` when the status is a success, else [`HttpError::Status`] (which quotes nothing
    /// of the body).
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(HttpError::Status {
                method: self.method,
                origin: self.origin,
                status: self.status.as_u16(),
                attempts: self.attempts,
                retry_after: self.retry_after,
            })
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection could not be opened (refused, unreachable, TLS).
    Connect,
    /// No answer in time.
    Timeout,
    /// The answer was cut off.
    Body,
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "could not connect",
            TransportKind::Timeout => "timed out",
            TransportKind::Body => "the answer was cut off",
            TransportKind::Other => "the request failed",
        })
    }
}

/// A failed call. Its text names the method and the URL's origin, never the URL's path,
/// query or userinfo, a header or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request could not be built or the client set up.
    Invalid(String),
    /// No answer came, after `attempts` requests.
    Transport {
        method: String,
        origin: String,
        kind: TransportKind,
        message: String,
        attempts: u32,
    },
    /// The last answer was not a success (from [`Response::error_for_status`]).
    Status {
        method: String,
        origin: String,
        status: u16,
        attempts: u32,
        retry_after: Option<Duration>,
    },
    /// The answer is not what was expected (from [`Response::json`]).
    Decode {
        method: String,
        origin: String,
        message: String,
    },
}

impl HttpError {
    /// Requests sent before giving up (0 when none could be).
    pub fn attempts(&self) -> u32 {
        match self {
            HttpError::Transport { attempts, .. } | HttpError::Status { attempts, .. } => *attempts,
            HttpError::Invalid(_) | HttpError::Decode { .. } => 0,
        }
    }

    /// The status of the last answer, if one came.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may help: no answer, 429 or 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Transport { .. } => true,
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
            HttpError::Invalid(_) | HttpError::Decode { .. } => false,
        }
    }
}

fn attempts_text(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Invalid(problem) => f.write_str(problem),
            HttpError::Transport {
                method,
                origin,
                message,
                attempts,
                ..
            } => write!(
                f,
                "{method} {origin}: {message} (after {})",
                attempts_text(*attempts)
            ),
            HttpError::Status {
                method,
                origin,
                status,
                attempts,
                retry_after,
            } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{method} {origin} answered {status}{reason} (after {}",
                    attempts_text(*attempts)
                )?;
                if let Some(wait) = retry_after {
                    write!(f, "; last asked to wait {}s", wait.as_secs())?;
                }
                f.write_str(")")
            }
            HttpError::Decode {
                method,
                origin,
                message,
            } => write!(f, "{method} {origin}: {message}"),
        }
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_cannot_be_built_say_why_without_quoting() {
        for url in [
            "not a url",
            "ftp://host/x?key=hook-secret",
            "/relative?key=hook-secret",
        ] {
            let request = Request::get(url);
            let text = request.problem.clone().expect("refused");
            assert_eq!(text, NOT_A_URL);
            assert!(!format!("{request:?}").contains("hook-secret"));
        }
        let request = Request::post("https://h.example/x?key=hook-secret")
            .bearer(&SecretValue::new("bad\ntoken"));
        let text = request.problem.clone().expect("refused");
        assert!(text.contains("token") && !text.contains("bad\n"), "{text}");
        let request = Request::get("https://h.example/").header("bad name", "v");
        assert!(request.problem.is_some());
    }

    #[test]
    fn methods_default_to_their_idempotence() {
        assert!(Request::get("https://h.example/").idempotent);
        assert!(Request::new(Method::PUT, "https://h.example/").idempotent);
        assert!(!Request::post("https://h.example/").idempotent);
        assert!(
            Request::post("https://h.example/")
                .idempotent(true)
                .idempotent
        );
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let request =
            Request::post("https://user:pass-word@h.example/deploy/srv-1?key=hook-secret")
                .bearer(&SecretValue::new("tok_secret"))
                .json(&serde_json::json!({"value": "body-secret"}));
        let text = format!("{request:?}");
        assert!(text.contains("https://h.example"), "{text}");
        for secret in [
            "pass-word",
            "user",
            "srv-1",
            "hook-secret",
            "tok_secret",
            "body-secret",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let response = Response {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: br#"{"value":"tok_secret"}"#.to_vec(),
            attempts: 1,
            retry_after: None,
            method: "GET".into(),
            origin: "https://h.example".into(),
        };
        assert!(!format!("{response:?}").contains("tok_secret"));
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let request = Request::get("https://u:pass-word@h.example/x?key=hook-secret&n=1")
            .bearer(&SecretValue::new("tok_secret"));
        let text = scrub(
            "saw key=hook-secret, hook-secret, pass-word and tok_secret; n=1",
            &request.secrets,
        );
        assert_eq!(text, "saw key=***, ***, *** and ***; n=1");
    }

    #[test]
    fn errors_read_well() {
        let e = HttpError::Status {
            method: "POST".into(),
            origin: "https://api.render.com".into(),
            status: 503,
            attempts: 3,
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "POST https://api.render.com answered 503 Service Unavailable (after 3 attempts)"
        );
        assert!(e.is_transient());
        assert_eq!((e.attempts(), e.status()), (3, Some(503)));
        let e = HttpError::Status {
            method: "GET".into(),
            origin: "https://h".into(),
            status: 404,
            attempts: 1,
            retry_after: None,
        };
        assert!(!e.is_transient());
        assert!(e.to_string().ends_with("(after 1 attempt)"), "{e}");
    }
}
