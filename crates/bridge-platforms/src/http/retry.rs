//! The one retry loop behind every outbound HTTP call: every client of this module sends
//! through [`send`].
//!
//! Rules, in order:
//! - an answer `accept` takes (a success, an allowed 404) ends the loop;
//! - 429 and GitHub's 403 forms of a rate limit are retried whatever the method (the server did
//!   not act), waiting what `Retry-After` or the reset headers ask for;
//! - other 5xx are retried when repeating the request is harmless, and a 503 always (it says
//!   the server did not act), waiting `Retry-After` if given, else jittered backoff;
//! - a connection that could not be opened is retried whatever the method (nothing was
//!   sent); any other transport error only when repeating is harmless;
//! - any other answer (a 4xx) is final at once;
//! - at most [`HttpOptions::max_attempts`] requests are sent, no single wait is longer than
//!   [`HttpOptions::max_wait`], and no retry is started that would wait past
//!   [`HttpOptions::total_timeout`] (each attempt's own timeout is also cut to what is left).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::{
    HttpOptions, Retrying, Verdict, backoff, classify, epoch_now, error_message, rate_limit_wait,
    report_retry, request_label, transport_message,
};

/// One request to send, perhaps several times.
pub(super) struct Outgoing<'a> {
    pub(super) method: &'a Method,
    pub(super) url: &'a Url,
    /// Headers of this request, on top of the client's defaults.
    pub(super) headers: &'a HeaderMap,
    /// A JSON body, already serialized.
    pub(super) body: Option<&'a [u8]>,
    /// Whether sending it twice does no harm (see the module documentation).
    pub(super) idempotent: bool,
}

/// The last answer received, read in full.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    /// Requests sent, this one included.
    pub(super) attempts: u32,
    /// Set when the answer is a rate limit that the retries did not outlast: what the server
    /// last asked to wait (uncapped, for the message).
    pub(super) rate_limited: Option<Duration>,
}

/// No answer at all: the last transport error, and how many requests were sent.
pub(super) struct NoAnswer {
    pub(super) error: reqwest::Error,
    pub(super) attempts: u32,
}

/// Sends `out` through `client` until an answer is final or the bounds are reached; counts
/// each request sent in `requests`.
pub(super) async fn send(
    client: &reqwest::Client,
    options: &HttpOptions,
    out: Outgoing<'_>,
    accept: impl Fn(StatusCode) -> bool,
    requests: &AtomicU64,
) -> Result<Answer, NoAnswer> {
    let started = Instant::now();
    let max_attempts = options.max_attempts.max(1);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let last = attempt >= max_attempts;
        let left = options.total_timeout.saturating_sub(started.elapsed());
        let mut request = client
            .request(out.method.clone(), out.url.clone())
            .headers(out.headers.clone())
            .timeout(options.request_timeout.min(left));
        if let Some(body) = out.body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let (status, headers, body) = match read(request).await {
            Ok(answer) => answer,
            Err(error) => {
                // A refused or unreachable connection carried nothing to the server.
                let harmless = out.idempotent || error.is_connect();
                let wait = backoff(attempt, options);
                if harmless && !last && fits(started, wait, options) {
                    report_retry(|| Retrying {
                        request: request_label(out.method, out.url),
                        reason: transport_message(&error),
                        wait: wait.min(options.max_wait),
                        next_attempt: attempt + 1,
                        max_attempts,
                    });
                    pause(wait, options).await;
                    continue;
                }
                return Err(NoAnswer {
                    error,
                    attempts: attempt,
                });
            }
        };
        if accept(status) {
            return Ok(Answer {
                status,
                headers,
                body,
                attempts: attempt,
                rate_limited: None,
            });
        }
        let now = epoch_now();
        let (wait, rate_limited) = match classify(status, &headers, &error_message(&body)) {
            Verdict::RateLimited => {
                let wait = rate_limit_wait(status, &headers, now, attempt, options);
                (Some(wait), Some(wait))
            }
            Verdict::Unavailable if out.idempotent || status == StatusCode::SERVICE_UNAVAILABLE => {
                let wait =
                    super::retry_after(&headers, now).unwrap_or_else(|| backoff(attempt, options));
                (Some(wait), None)
            }
            Verdict::Unavailable | Verdict::Fail => (None, None),
        };
        match wait {
            Some(wait) if !last && fits(started, wait, options) => {
                report_retry(|| Retrying {
                    request: request_label(out.method, out.url),
                    reason: match rate_limited {
                        Some(_) => format!("rate limited (HTTP {})", status.as_u16()),
                        None => format!("HTTP {}", status.as_u16()),
                    },
                    wait: wait.min(options.max_wait),
                    next_attempt: attempt + 1,
                    max_attempts,
                });
                pause(wait, options).await
            }
            _ => {
                return Ok(Answer {
                    status,
                    headers,
                    body,
                    attempts: attempt,
                    rate_limited,
                });
            }
        }
    }
}

/// Sends one request and reads its answer in full.
async fn read(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok((status, headers, body.to_vec()))
}

/// Whether waiting `wait` (as capped) still leaves the retry inside the total time bound.
fn fits(started: Instant, wait: Duration, options: &HttpOptions) -> bool {
    started.elapsed() + wait.min(options.max_wait) < options.total_timeout
}

async fn pause(wait: Duration, options: &HttpOptions) {
    tokio::time::sleep(wait.min(options.max_wait)).await;
}
