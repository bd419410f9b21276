//! Every outbound HTTP call of Bridge goes through this module: one TLS set-up
//! ([`install_tls`]), one retry loop (`retry.rs`), and two clients over them:
//! - [`Client`]: a call to any absolute URL (a deploy hook, a vault, a Bridge server, GitHub
//!   for Auto-Sync), answering status and body;
//! - the platform adapters' client (`platform.rs`): one API root and token, pagination, and
//!   errors that say which setting to fix.
//!
//! Both keep these rules:
//! - a token goes out as `Authorization: Bearer`, marked sensitive, and appears in no error,
//!   log or `Debug` output; errors never carry a URL's query or userinfo (the platform client
//!   names the API path, [`Client`] only the origin);
//! - 429, 5xx and GitHub's secondary limits are retried with exponential backoff and full
//!   jitter, honouring `Retry-After` and the rate-limit reset headers, a bounded number of
//!   times, never waiting longer than [`HttpOptions::max_wait`] at once nor retrying past
//!   [`HttpOptions::total_timeout`];
//! - a request that may have been acted on is only repeated when repeating it is harmless
//!   (a timeout or a 500 on a POST is final; a 429, a 503 or a refused connection is not);
//! - 4xx other than 429 are final at once;
//! - redirects are not followed (one to another host would carry the token there).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Once, OnceLock};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::aead::OsRng;
use crypto_box::aead::rand_core::RngCore;
use reqwest::header;

mod client;
mod platform;
mod retry;

pub use client::{Client, HttpError, Request, Response, TransportKind};

/// A retry about to wait: what failed and when the next try is, for whoever tells a person
/// (a refused connection is otherwise retried for seconds in silence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrying {
    /// `METHOD host/path`: no query, no userinfo.
    pub request: String,
    /// What went wrong: `could not connect: …`, `HTTP 503`, `rate limited (HTTP 429)`.
    pub reason: String,
    /// How long until the next try.
    pub wait: Duration,
    /// The next try's number, and how many there may be at most.
    pub next_attempt: u32,
    pub max_attempts: u32,
}

static RETRY_REPORT: OnceLock<fn(&Retrying)> = OnceLock::new();

/// Calls `report` before every retry's wait, in this process (set once; later calls are
/// ignored). Without it retries are silent, as a library's should be.
pub fn report_retries(report: fn(&Retrying)) {
    let _ = RETRY_REPORT.set(report);
}

fn report_retry(retrying: impl FnOnce() -> Retrying) {
    if let Some(report) = RETRY_REPORT.get() {
        report(&retrying());
    }
}

/// `METHOD host[:port]/path` of `url`, for a retry report: the query and userinfo stay out.
fn request_label(method: &reqwest::Method, url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{method} {host}:{port}{}", url.path()),
        None => format!("{method} {host}{}", url.path()),
    }
}
pub(crate) use platform::{Call, Endpoint, HttpClient};
/// The types a caller of [`Client`] names, so that it needs no `reqwest` of its own.
pub use reqwest::{Method, StatusCode, header::HeaderMap};

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
    /// The longest one request may take in all, retries and waits included: no retry starts
    /// whose wait would end past it, and each attempt's timeout is cut to what is left.
    pub total_timeout: Duration,
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
            total_timeout: Duration::from_secs(300),
            base_delay: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
            concurrency: 8,
            page_size: None,
        }
    }
}

/// Installs `ring` as rustls' process-wide crypto provider, once; every client of this module
/// calls it before it is built, and anything else in the process that uses TLS (a server,
/// a test's own client) calls it first too. reqwest is built without a provider so that the
/// workspace does not compile aws-lc; another part of the process may have installed one
/// already, which is just as good.
pub fn install_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("bridge-genesisctl/", env!("CARGO_PKG_VERSION"));

/// The reqwest client under every client of this module: rustls on `ring`, the timeouts of
/// `options`, no retries of its own (ours are counted, bounded and aware of rate limits) and
/// no redirects (one to another host would carry the token there).
fn build_client(
    options: &HttpOptions,
    default_headers: HeaderMap,
) -> Result<reqwest::Client, reqwest::Error> {
    install_tls();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(default_headers)
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .retry(reqwest::retry::never())
        .redirect(reqwest::redirect::Policy::none())
        .build()
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
    use reqwest::header::{HeaderName, HeaderValue};

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
