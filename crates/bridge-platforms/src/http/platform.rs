//! The client of a platform adapter: one API root, one token, and errors that say which
//! setting to fix.

use std::sync::atomic::{AtomicU64, Ordering};

use bridge_core::SecretValue;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::retry::{self, Outgoing};
use super::{HttpOptions, build_client, error_chain, error_message, next_link, transport_message};
use crate::PlatformError;

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
        let inner = build_client(&options, headers).map_err(|e| PlatformError::Transport {
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
        let accept = |status: StatusCode| {
            status.is_success() || (status == StatusCode::NOT_FOUND && call.allow_404)
        };
        let outcome = retry::send(
            &self.inner,
            &self.options,
            Outgoing {
                method: &call.method,
                url: &call.url,
                headers: &HeaderMap::new(),
                body: call.body.as_deref(),
                idempotent: call.idempotent,
            },
            accept,
            &self.requests,
        )
        .await;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(failure) => {
                return Err(PlatformError::Transport {
                    platform: self.endpoint.platform.clone(),
                    method: method_name,
                    path,
                    message: match failure.attempts {
                        1 => transport_message(&failure.error),
                        n => format!("{} (after {n} attempts)", transport_message(&failure.error)),
                    },
                });
            }
        };
        if accept(answer.status) {
            return Ok(Reply {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
            });
        }
        if let Some(wait) = answer.rate_limited {
            return Err(PlatformError::RateLimited {
                platform: self.endpoint.platform.clone(),
                attempts: answer.attempts,
                retry_after: Some(wait),
            });
        }
        let message = error_message(&answer.body);
        Err(self.failure(&call, method_name, path, answer.status, message))
    }

    /// Sends `call` and parses the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
    ) -> Result<T, PlatformError> {
        let what = call.what.to_string();
        self.send(call).await?.json(&self.endpoint.platform, &what)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
