//! One HTTP client for every remote platform: authentication, timeouts, retries with
//! backoff, rate limits, error mapping and pagination.
//!
//! Every adapter talks through [`HttpClient::send`], so these rules hold in one place:
//! - the token goes out as `Authorization: Bearer`, marked sensitive, and appears in no error,
//!   log or `Debug` output (errors carry method, path — never the query — status and the
//!   platform's own `message`);
//! - 429, 5xx and GitHub's secondary limits are retried with exponential backoff and full
//!   jitter, honouring `Retry-After` and the rate-limit reset headers, a bounded number of
//!   times and never waiting longer than [`HttpOptions::max_wait`] at once;
//! - a request that may have been acted on is only repeated when repeating it is harmless
//!   (see [`Call::idempotent`]);
//! - 401/403/404 become errors that say what to fix (the token variable, the id variable).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_core::SecretValue;
use crypto_box::aead::OsRng;
use crypto_box::aead::rand_core::RngCore;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::PlatformError;

/// How the client times out and retries. [`HttpOptions::default`] is what users get; tests
/// shrink the waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, answer included.
    pub request_timeout: Duration,
    /// How many times one request is sent at most (first try included).
    pub max_attempts: u32,
    /// The first backoff step; step `n` is `base_delay * 2^n`, of which a random share is
    /// waited (full jitter).
    pub base_delay: Duration,
    /// The longest single wait, whatever a server asks for.
    pub max_wait: Duration,
    /// How many independent writes may be in flight at once where a platform allows it
    /// (Netlify documents 500 requests a minute).
    pub concurrency: usize,
    /// The page size to ask listings for; `None` asks for each platform's maximum (fewest
    /// calls). Smaller pages exercise pagination in tests.
    pub page_size: Option<usize>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
            concurrency: 8,
            page_size: None,
        }
    }
}

/// Who the client talks to and how to explain failures to the user.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The platform's name in messages (`render`, or the spec's label).
    pub(crate) platform: String,
    /// The variable holding the token (`RENDER_API_TOKEN`), named when the token is refused.
    pub(crate) token_variable: &'static str,
    /// What a 404 on the configured resource means ("no service srv-…: check …").
    pub(crate) missing_hint: String,
}

/// The one client of a platform adapter. Cheap to share by reference; counts its requests.
pub(crate) struct HttpClient {
    inner: reqwest::Client,
    base: Url,
    endpoint: Endpoint,
    options: HttpOptions,
    requests: AtomicU64,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token lives in the reqwest client's default headers; never print those.
        f.debug_struct("HttpClient")
            .field("base", &self.base.as_str())
            .field("platform", &self.endpoint.platform)
            .finish_non_exhaustive()
    }
}

/// One request to make.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// A JSON body, already serialized (it may carry values: it is dropped after the call).
    pub(crate) body: Option<Vec<u8>>,
    /// Whether sending it twice does no harm, so that it may be repeated after a transport
    /// error or a 5xx, when we cannot know whether the server acted. GET, PUT and DELETE are;
    /// a POST is not (it is repeated only after 429 or 503, which say the server did not act);
    /// a PATCH that sets a value to a given value is, and its caller says so.
    pub(crate) idempotent: bool,
    /// A 404 is an answer rather than an error (a delete of what is already gone).
    pub(crate) allow_404: bool,
    /// What the request does, for 403 messages ("list the service's variables").
    pub(crate) what: &'a str,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, url: Url, what: &'a str) -> Self {
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
        Self {
            method,
            url,
            body: None,
            idempotent,
            allow_404: false,
            what,
        }
    }

    /// Attaches `body` as JSON.
    pub(crate) fn json(
        mut self,
        platform: &str,
        body: &impl serde::Serialize,
    ) -> Result<Self, PlatformError> {
        // Only maps with non-string keys fail to encode, and our bodies have none; the
        // message still says what was being built rather than quoting it.
        let bytes = serde_json::to_vec(body).map_err(|_| PlatformError::Write {
            platform: platform.to_string(),
            what: format!("could not encode the request to {}", self.what),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub(crate) fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    pub(crate) fn allow_404(mut self) -> Self {
        self.allow_404 = true;
        self
    }
}

/// A successful (or allowed-404) answer, read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// Parses the body as JSON. The error says where parsing failed but never quotes the
    /// body: it may hold values.
    pub(crate) fn json<T: DeserializeOwned>(
        &self,
        platform: &str,
        what: &str,
    ) -> Result<T, PlatformError> {
        serde_json::from_slice(&self.body).map_err(|e| decode_error(platform, what, &e))
    }
}

/// A `serde_json` error described without the input it quotes ("invalid type: string
/// \"…\"" would print a value).
pub(crate) fn decode_error(platform: &str, what: &str, e: &serde_json::Error) -> PlatformError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "does not have the documented shape",
        serde_json::error::Category::Eof => "ends early",
    };
    PlatformError::Decode {
        platform: platform.to_string(),
        what: what.to_string(),
        message: format!("the body {kind} (line {}, column {})", e.line(), e.column()),
    }
}

/// Installs `ring` as rustls' process-wide crypto provider, once. reqwest is built without a
/// provider so that the workspace does not compile aws-lc; another part of the process may
/// have installed one already, which is just as good.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpClient {
    /// Builds a client for `base` (the API root, e.g. `https://api.render.com/v1`).
    /// `base_variable` names the setting the URL came from, for the error when it is no URL.
    pub(crate) fn new(
        base: &str,
        base_variable: &'static str,
        token: &SecretValue,
        endpoint: Endpoint,
        extra_headers: &[(&'static str, &'static str)],
        options: HttpOptions,
    ) -> Result<Self, PlatformError> {
        install_crypto_provider();
        let base = parse_base(base).ok_or_else(|| PlatformError::Unsupported {
            platform: endpoint.platform.clone(),
            what: format!(
                "{base_variable} is not an http(s) URL; set it to the API root (or unset it for the default)"
            ),
        })?;
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(
            |_| PlatformError::Unsupported {
                platform: endpoint.platform.clone(),
                what: format!(
                    "{} holds characters that cannot be sent in an HTTP header; check its value",
                    endpoint.token_variable
                ),
            },
        )?;
        // Keeps the value out of hyper's and reqwest's debug output.
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in extra_headers {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let inner = reqwest::Client::builder()
            .user_agent(concat!("bridge-genesisctl/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // Retries are ours: counted, bounded and aware of rate limits.
            .retry(reqwest::retry::never())
            // A redirect to another host would carry the token there.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PlatformError::Transport {
                platform: endpoint.platform.clone(),
                method: "-".into(),
                path: "-".into(),
                message: format!("could not set up the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            inner,
            base,
            endpoint,
            options,
            requests: AtomicU64::new(0),
        })
    }

    pub(crate) fn platform(&self) -> &str {
        &self.endpoint.platform
    }

    pub(crate) fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The page size to ask for, given the platform's maximum.
    pub(crate) fn page_size(&self, max: usize) -> usize {
        self.options.page_size.map_or(max, |n| n.clamp(1, max))
    }

    /// Requests sent so far, retries included.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The URL of `segments` under the API root, each segment percent-encoded (so `/` in an
    /// environment name becomes `%2F`), with `query` appended.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        {
            // `parse_base` only accepts URLs that can be a base, so segments are available.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends `call`, retrying as the module documentation describes, and reads the answer.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Reply, PlatformError> {
        let method_name = call.method.as_str().to_string();
        let path = call.url.path().to_string();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.options.max_attempts.max(1);
            let mut request = self.inner.request(call.method.clone(), call.url.clone());
            if let Some(body) = &call.body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok((status, headers, body.to_vec())),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let (status, headers, body) = match outcome {
                Ok(answer) => answer,
                Err(e) => {
                    if call.idempotent && !last {
                        self.pause(backoff(attempt, &self.options)).await;
                        continue;
                    }
                    return Err(PlatformError::Transport {
                        platform: self.endpoint.platform.clone(),
                        method: method_name,
                        path,
                        message: transport_message(&e),
                    });
                }
            };
            if status.is_success() || (status == StatusCode::NOT_FOUND && call.allow_404) {
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let message = error_message(&body);
            let now = epoch_now();
            match classify(status, &headers, &message) {
                Verdict::RateLimited => {
                    let wait = rate_limit_wait(status, &headers, now, attempt, &self.options);
                    if last {
                        return Err(PlatformError::RateLimited {
                            platform: self.endpoint.platform.clone(),
                            attempts: attempt,
                            retry_after: Some(wait),
                        });
                    }
                    self.pause(wait).await;
                }
                Verdict::Unavailable if !last && (call.idempotent || status.as_u16() == 503) => {
                    let wait = retry_after(&headers, now)
                        .unwrap_or_else(|| backoff(attempt, &self.options));
                    self.pause(wait).await;
                }
                Verdict::Unavailable | Verdict::Fail => {
                    return Err(self.failure(&call, method_name, path, status, message));
                }
            }
        }
    }

    /// Sends `call` and parses the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<T, PlatformError> {
        let what = call.what.to_string();
        self.send(call).await?.json(&self.endpoint.platform, &what)
    }

    async fn pause(&self, wait: Duration) {
        tokio::time::sleep(wait.min(self.options.max_wait)).await;
    }

    fn failure(
        &self,
        call: &Call<'_>,
        method: String,
        path: String,
        status: StatusCode,
        message: String,
    ) -> PlatformError {
        let platform = self.endpoint.platform.clone();
        match status.as_u16() {
            401 => PlatformError::Auth {
                platform,
                method,
                path,
                status: 401,
                meaning: format!(
                    "the token was refused: check {}{}",
                    self.endpoint.token_variable,
                    suffix(&message)
                ),
            },
            403 => PlatformError::Auth {
                platform,
                method,
                path,
                status: 403,
                meaning: format!(
                    "the token lacks permission to {}: give {} that access{}",
                    call.what,
                    self.endpoint.token_variable,
                    suffix(&message)
                ),
            },
            404 => PlatformError::Missing {
                platform,
                method,
                path,
                meaning: self.endpoint.missing_hint.clone(),
            },
            code => PlatformError::Status {
                platform,
                method,
                path,
                status: code,
                message: if message.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    message
                },
            },
        }
    }

    /// Every item of a listing that pages with `Link: <…>; rel="next"` (GitHub, Netlify),
    /// starting at `first`; `items` takes one page's parsed body apart.
    pub(crate) async fn list_linked<T, P: DeserializeOwned>(
        &self,
        first: Url,
        what: &str,
        mut items: impl FnMut(P) -> Vec<T>,
    ) -> Result<Vec<T>, PlatformError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let reply = self.send(Call::new(Method::GET, url, what)).await?;
            out.extend(items(reply.json(&self.endpoint.platform, what)?));
            if let Some(link) = next_link(&reply.headers) {
                next = Some(self.follow(&link, what)?);
            }
        }
        Ok(out)
    }

    /// Every item of a Render listing: an array of wrappers, each with a `cursor`
    /// (`cursor_of` finds it); the next page starts after the last item's cursor. An empty
    /// page, or one shorter than asked for, is the last.
    pub(crate) async fn list_cursor<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        limit: usize,
        what: &str,
        cursor_of: impl Fn(&T) -> Option<&str>,
    ) -> Result<Vec<T>, PlatformError> {
        let limit_text = limit.to_string();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", limit_text.as_str())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let url = self.url(segments, &query);
            let page: Vec<T> = self.json(Call::new(Method::GET, url, what)).await?;
            let len = page.len();
            let next = page.last().and_then(&cursor_of).map(str::to_string);
            out.extend(page);
            match next {
                // A cursor that does not move would loop forever.
                Some(c) if len >= limit && cursor.as_deref() != Some(c.as_str()) => {
                    cursor = Some(c);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Checks that a `next` link stays on the API's origin before following it: the token
    /// goes with every request, and a link elsewhere would hand it over.
    fn follow(&self, link: &str, what: &str) -> Result<Url, PlatformError> {
        let url = self.base.join(link).map_err(|_| PlatformError::Decode {
            platform: self.endpoint.platform.clone(),
            what: what.to_string(),
            message: "the `link` header's next page is not a URL".into(),
        })?;
        if url.origin() != self.base.origin() {
            return Err(PlatformError::Decode {
                platform: self.endpoint.platform.clone(),
                what: what.to_string(),
                message: format!(
                    "the next page is on another host ({}); not following it with the token",
                    url.host_str().unwrap_or("?")
                ),
            });
        }
        Ok(url)
    }
}

fn parse_base(text: &str) -> Option<Url> {
    let url = Url::parse(text.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base()).then_some(url)
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" (the platform said: {message})")
    }
}

/// What to do about a non-success answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 429, or GitHub's 403 forms of a rate limit: wait and retry, whatever the method
    /// (the server did not act).
    RateLimited,
    /// 5xx: retry when repeating is harmless.
    Unavailable,
    Fail,
}

fn classify(status: StatusCode, headers: &HeaderMap, message: &str) -> Verdict {
    match status.as_u16() {
        429 => Verdict::RateLimited,
        // GitHub answers 403 for its primary limit (`x-ratelimit-remaining: 0`) and its
        // secondary limits (`retry-after`, or just a message saying so).
        403 if headers.contains_key(header::RETRY_AFTER)
            || header_u64(headers, "x-ratelimit-remaining") == Some(0)
            || message.to_ascii_lowercase().contains("rate limit") =>
        {
            Verdict::RateLimited
        }
        500..=599 => Verdict::Unavailable,
        _ => Verdict::Fail,
    }
}

/// Seconds since the epoch, now.
fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.ceil() as u64)
}

/// Values above this are epoch seconds, below it seconds from now (Render sends "42" where
/// its docs say epoch; Netlify and GitHub send epoch).
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// A reset header as a wait from `now`, accepting both forms.
fn reset_wait(value: u64, now: u64) -> Duration {
    if value > EPOCH_THRESHOLD {
        Duration::from_secs(value.saturating_sub(now))
    } else {
        Duration::from_secs(value)
    }
}

/// `Retry-After` as a wait (seconds; an HTTP date is not used by these platforms).
fn retry_after(headers: &HeaderMap, now: u64) -> Option<Duration> {
    header_u64(headers, "retry-after").map(|v| reset_wait(v, now))
}

/// How long to wait before retrying a rate-limited request: `Retry-After` if given, else
/// the rate-limit reset, else backoff — except that GitHub, for a secondary limit it gives
/// no time for (a 403), asks for at least a minute.
pub(crate) fn rate_limit_wait(
    status: StatusCode,
    headers: &HeaderMap,
    now: u64,
    attempt: u32,
    options: &HttpOptions,
) -> Duration {
    let wait = retry_after(headers, now).or_else(|| {
        ["ratelimit-reset", "x-ratelimit-reset"]
            .iter()
            .find_map(|name| header_u64(headers, name))
            // A reset that has already passed still deserves a short pause.
            .map(|v| reset_wait(v, now).max(options.base_delay))
    });
    // Not capped here: the error reports what the platform asked for; `pause` caps the
    // actual wait.
    match wait {
        Some(w) => w,
        None if status == StatusCode::FORBIDDEN => {
            // GitHub's secondary limit without `retry-after`: "wait at least one minute".
            backoff(attempt, options).max(Duration::from_secs(60))
        }
        None => backoff(attempt, options),
    }
}

/// Exponential backoff with full jitter: a random wait in `[0, base * 2^(attempt-1)]`,
/// capped, so that many clients retrying at once spread out.
pub(crate) fn backoff(attempt: u32, options: &HttpOptions) -> Duration {
    let ceiling = backoff_ceiling(attempt, options);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(OsRng.next_u64() % (millis + 1))
}

/// The largest wait [`backoff`] may pick for `attempt` (1-based).
pub(crate) fn backoff_ceiling(attempt: u32, options: &HttpOptions) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    options
        .base_delay
        .saturating_mul(factor)
        .min(options.max_wait)
}

/// The platform's own explanation, from a JSON body's `message` (all three platforms use
/// that field), else the first line of a short text body; trimmed to a readable length.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut text = match value.get("message").or_else(|| value.get("error")) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Object(o)) => o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            // GitHub's 422 says "Validation Failed" and puts the reason in `errors`; only
            // its `message` is taken (a `value` field there could echo what was sent).
            if let Some(detail) = value
                .get("errors")
                .and_then(|e| e.get(0))
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
            {
                text = format!("{text}: {detail}");
            }
            text
        }
        Err(_) => String::from_utf8_lossy(body)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let text = text.trim();
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(200).collect();
        format!("{cut}…")
    } else {
        text.to_string()
    }
}

/// A transport error in words, without the URL (whose query we keep out of messages).
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    let detail = error_chain(e);
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The sources of `e`, joined; reqwest's own message is dropped because it repeats the URL.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The URL of `rel="next"` in a `Link` header (RFC 8288), if any.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_next)
}

fn parse_next(value: &str) -> Option<String> {
    // Entries are `<url>; param; param`, separated by commas; a URL holds no `>`, but it may
    // hold commas, so split on the `<` that starts each entry.
    value.split('<').skip(1).find_map(|entry| {
        let (url, params) = entry.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        is_next.then(|| url.trim().to_string())
    })
}

/// Runs `tasks` with at most `limit` in flight, in this task (no spawning, so they may
/// borrow), handing each success to `done` as soon as it completes. After the first error no
/// new task starts, but those already running finish — and report — before the error is
/// returned, since the platform may have acted on them.
pub(crate) async fn run_bounded<T, E, F>(
    tasks: impl IntoIterator<Item = F>,
    limit: usize,
    mut done: impl FnMut(T),
) -> Result<(), E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut pending = tasks.into_iter();
    let mut running: Vec<Pin<Box<F>>> = Vec::new();
    let mut first_error = None;
    loop {
        while first_error.is_none() && running.len() < limit.max(1) {
            match pending.next() {
                Some(task) => running.push(Box::pin(task)),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        let (index, output) = poll_fn(|cx| {
            for (i, task) in running.iter_mut().enumerate() {
                if let Poll::Ready(output) = task.as_mut().poll(cx) {
                    return Poll::Ready((i, output));
                }
            }
            Poll::Pending
        })
        .await;
        // A finished future must not be polled again: drop it now.
        drop(running.swap_remove(index));
        match output {
            Ok(value) => done(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    #[test]
    fn link_header_next_is_found_among_other_relations() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/repositories/1/actions/secrets?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/actions/secrets?per_page=100&page=5>; rel="last""#,
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/actions/secrets?per_page=100&page=2")
        );
        let last_only = headers(&[(
            "link",
            r#"<https://x/a?page=1>; rel="prev", <https://x/a?page=1>; rel="first""#,
        )]);
        assert_eq!(next_link(&last_only), None);
        let unquoted = headers(&[("link", "<https://x/a?page=3&b=1,2>; rel=next")]);
        assert_eq!(
            next_link(&unquoted).as_deref(),
            Some("https://x/a?page=3&b=1,2")
        );
        let several = headers(&[
            ("link", r#"<https://x/p>; rel="prev""#),
            ("link", r#"<https://x/n>; rel="next""#),
        ]);
        assert_eq!(next_link(&several).as_deref(), Some("https://x/n"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_wins_then_reset_headers_in_both_forms() {
        let options = HttpOptions::default();
        let now = 1_700_000_000;
        let wait = |pairs: &[(&'static str, &str)]| {
            rate_limit_wait(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(pairs),
                now,
                1,
                &options,
            )
        };
        assert_eq!(
            wait(&[("retry-after", "7"), ("ratelimit-reset", "30")]),
            Duration::from_secs(7)
        );
        // Render: seconds until the reset.
        assert_eq!(wait(&[("ratelimit-reset", "42")]), Duration::from_secs(42));
        // Netlify and GitHub: epoch seconds.
        assert_eq!(
            wait(&[("x-ratelimit-reset", "1700000012")]),
            Duration::from_secs(12)
        );
        // A reset in the past still waits a little rather than hammering.
        assert_eq!(
            wait(&[("x-ratelimit-reset", "1699999990")]),
            options.base_delay
        );
        // What the platform asked for, even beyond the cap (which `pause` applies).
        assert_eq!(wait(&[("retry-after", "3600")]), Duration::from_secs(3600));
        // GitHub's secondary limit with nothing to go on: at least a minute (capped).
        let secondary = rate_limit_wait(StatusCode::FORBIDDEN, &HeaderMap::new(), now, 1, &options);
        assert_eq!(secondary, Duration::from_secs(60));
        // Nothing at all: jittered backoff within the first step.
        assert!(wait(&[]) <= options.base_delay);
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let options = HttpOptions {
            base_delay: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            ..HttpOptions::default()
        };
        assert_eq!(backoff_ceiling(1, &options), Duration::from_millis(100));
        assert_eq!(backoff_ceiling(2, &options), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(4, &options), Duration::from_millis(800));
        assert_eq!(backoff_ceiling(5, &options), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(60, &options), Duration::from_secs(1));
        for attempt in 1..8 {
            assert!(backoff(attempt, &options) <= backoff_ceiling(attempt, &options));
        }
        // Full jitter: the waits are spread, not all at the ceiling.
        let waits: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(5, &options)).collect();
        assert!(waits.len() > 5);
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &none, ""),
            Verdict::RateLimited
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &none, "Resource not accessible"),
            Verdict::Fail
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &headers(&[("retry-after", "1")]), ""),
            Verdict::RateLimited
        );
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &headers(&[("x-ratelimit-remaining", "0")]),
                ""
            ),
            Verdict::RateLimited
        );
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &none,
                "You have exceeded a secondary rate limit"
            ),
            Verdict::RateLimited
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &none, ""),
            Verdict::Unavailable
        );
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, &none, ""),
            Verdict::Fail
        );
    }

    #[test]
    fn error_messages_come_from_the_body_and_stay_short() {
        assert_eq!(
            error_message(br#"{"message":"not found: srv-1"}"#),
            "not found: srv-1"
        );
        assert_eq!(
            error_message(br#"{"code":401,"message":"Access Denied"}"#),
            "Access Denied"
        );
        assert_eq!(error_message(b"Bad Gateway\n<html>"), "Bad Gateway");
        assert_eq!(error_message(b""), "");
        assert_eq!(
            error_message(
                br#"{"message":"Validation Failed","errors":[{"field":"name","message":"bad name","value":"v"}]}"#
            ),
            "Validation Failed: bad name"
        );
        assert_eq!(
            error_message("x".repeat(500).as_bytes()).chars().count(),
            201
        );
    }

    #[test]
    fn decode_errors_do_not_quote_the_body() {
        let e = serde_json::from_slice::<Vec<u32>>(br#"["hunter2"]"#).expect_err("not numbers");
        let text = decode_error("render", "listing", &e).to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn urls_encode_segments() {
        let client = HttpClient::new(
            "https://api.example.com/v1/",
            "X_URL",
            &SecretValue::new("t"),
            Endpoint {
                platform: "p".into(),
                token_variable: "X_TOKEN",
                missing_hint: String::new(),
            },
            &[],
            HttpOptions::default(),
        )
        .expect("client");
        let url = client.url(
            &["repos", "o", "environments", "prod/eu", "secrets"],
            &[("per_page", "100")],
        );
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/repos/o/environments/prod%2Feu/secrets?per_page=100"
        );
        assert!(
            client
                .follow("https://evil.example.com/v1/x", "listing")
                .is_err()
        );
        assert!(
            client
                .follow("https://api.example.com/v1/x?page=2", "listing")
                .is_ok()
        );
        assert!(!format!("{client:?}").contains("Bearer"));
    }

    #[test]
    fn bad_settings_are_named() {
        let endpoint = Endpoint {
            platform: "render".into(),
            token_variable: "RENDER_API_TOKEN",
            missing_hint: String::new(),
        };
        let err = HttpClient::new(
            "not a url",
            "RENDER_API_URL",
            &SecretValue::new("t"),
            endpoint.clone(),
            &[],
            HttpOptions::default(),
        )
        .expect_err("bad url");
        assert!(err.to_string().contains("RENDER_API_URL"));
        let err = HttpClient::new(
            "https://x",
            "RENDER_API_URL",
            &SecretValue::new("bad\ntoken"),
            endpoint,
            &[],
            HttpOptions::default(),
        )
        .expect_err("bad token");
        let text = format!("{err} {err:?}");
        assert!(
            text.contains("RENDER_API_TOKEN")
                && !text.contains("bad\ntoken")
                && !text.contains("token\"")
        );
    }

    #[tokio::test]
    async fn bounded_runs_report_each_success_and_the_first_error() {
        let mut seen = Vec::new();
        let result: Result<(), &str> = run_bounded(
            (0..10).map(|i| async move {
                tokio::task::yield_now().await;
                if i == 5 { Err("five") } else { Ok(i) }
            }),
            3,
            |i| seen.push(i),
        )
        .await;
        assert_eq!(result, Err("five"));
        // Nothing after the failure was started beyond those already in flight.
        assert!(seen.len() >= 4 && seen.len() <= 7, "{seen:?}");
        assert!(!seen.contains(&9));
        let mut all = Vec::new();
        run_bounded((0..20).map(|i| async move { Ok::<_, ()>(i) }), 8, |i| {
            all.push(i)
        })
        .await
        .expect("all succeed");
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
    }
}
