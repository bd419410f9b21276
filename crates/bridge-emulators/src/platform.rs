//! Per-platform conventions the shared layer needs without knowing any route:
//! tokens, how `Authorization` is accepted, error-body shapes and the names
//! and meaning of rate-limit headers.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::RateInfo;

/// Render's API key of the emulated account.
pub(crate) const RENDER_TOKEN: &str = "rnd_emulator_token";
/// Netlify's personal access token of the emulated user.
pub(crate) const NETLIFY_TOKEN: &str = "nfp_emulator_token";
/// GitHub token of the emulated user.
pub(crate) const GITHUB_TOKEN: &str = "ghp_emulator_token";

/// Documentation link GitHub puts in every error body.
pub(crate) const GITHUB_DOCS: &str = "https://docs.github.com/rest";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    Render,
    Netlify,
    Github,
}

impl Platform {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Platform::Render => "render",
            Platform::Netlify => "netlify",
            Platform::Github => "github",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Platform::Render => RENDER_TOKEN,
            Platform::Netlify => NETLIFY_TOKEN,
            Platform::Github => GITHUB_TOKEN,
        }
    }

    /// The limit the real platform advertises, reported in headers when a
    /// test configured no limit (Render: 400 GETs/min observed; Netlify:
    /// 500/min; GitHub: 5000/h for a PAT).
    pub(crate) fn nominal_limit(self) -> (u32, Duration) {
        match self {
            Platform::Render => (400, Duration::from_secs(60)),
            Platform::Netlify => (500, Duration::from_secs(60)),
            Platform::Github => (5000, Duration::from_secs(3600)),
        }
    }

    /// `Bearer <token>` everywhere; GitHub also takes the older
    /// `token <token>`. Schemes compare case-insensitively as in RFC 9110.
    pub(crate) fn authorized(self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, credential)) = value.trim().split_once(' ') else {
            return false;
        };
        let scheme_ok = scheme.eq_ignore_ascii_case("bearer")
            || (self == Platform::Github && scheme.eq_ignore_ascii_case("token"));
        scheme_ok && credential.trim() == self.token()
    }

    /// An error in the platform's own body shape.
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            // Render's observed 404 carries only `message`; other errors use
            // the documented `{id, message}` pair.
            Platform::Render if status == StatusCode::NOT_FOUND => json!({ "message": message }),
            Platform::Render => json!({ "id": render_error_id(status), "message": message }),
            Platform::Netlify => json!({ "code": status.as_u16(), "message": message }),
            Platform::Github => json!({
                "message": message,
                "documentation_url": GITHUB_DOCS,
                "status": status.as_u16().to_string(),
            }),
        };
        (status, Json(body)).into_response()
    }

    /// The platform's canonical message for the statuses the layer produces.
    pub(crate) fn message(self, status: StatusCode) -> &'static str {
        match (self, status.as_u16()) {
            (Platform::Render, 401) => "unauthorized",
            (Platform::Netlify, 401) => "Access Denied",
            (Platform::Github, 401) => "Bad credentials",
            (Platform::Github, 429) => {
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            }
            (_, 429) => "Rate limit exceeded",
            (Platform::Github, 404) => "Not Found",
            (_, 404) => "not found",
            (_, 500) => "Internal Server Error (injected by the emulator)",
            (_, 503) => "Service Unavailable (injected by the emulator)",
            _ => "error",
        }
    }

    /// Adds the rate-limit headers the platform sends on every response.
    /// `render_reset_epoch` switches Render's `Ratelimit-Reset` from the
    /// observed "seconds until reset" to the documented epoch seconds.
    pub(crate) fn rate_headers(self, info: &RateInfo, render_reset_epoch: bool, h: &mut HeaderMap) {
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        match self {
            Platform::Render => {
                put("ratelimit-limit", info.limit.to_string());
                put("ratelimit-remaining", info.remaining.to_string());
                let reset = if render_reset_epoch {
                    info.reset_epoch
                } else {
                    info.reset_after_secs
                };
                put("ratelimit-reset", reset.to_string());
            }
            Platform::Netlify => {
                put("x-ratelimit-limit", info.limit.to_string());
                put("x-ratelimit-remaining", info.remaining.to_string());
                put("x-ratelimit-reset", info.reset_epoch.to_string());
            }
            Platform::Github => {
                put("x-ratelimit-limit", info.limit.to_string());
                put("x-ratelimit-remaining", info.remaining.to_string());
                put("x-ratelimit-used", info.used.to_string());
                put("x-ratelimit-reset", info.reset_epoch.to_string());
                put("x-ratelimit-resource", "core".to_owned());
            }
        }
        if info.exceeded {
            put("retry-after", info.reset_after_secs.to_string());
        }
    }
}

fn render_error_id(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        409 => "conflict",
        429 => "too_many_requests",
        500 => "internal_server_error",
        503 => "service_unavailable",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_and_token_schemes() {
        assert!(Platform::Render.authorized(&auth("Bearer rnd_emulator_token")));
        assert!(Platform::Render.authorized(&auth("bearer rnd_emulator_token")));
        assert!(!Platform::Render.authorized(&auth("token rnd_emulator_token")));
        assert!(Platform::Github.authorized(&auth("token ghp_emulator_token")));
        assert!(!Platform::Github.authorized(&auth("Bearer nfp_emulator_token")));
        assert!(!Platform::Netlify.authorized(&HeaderMap::new()));
    }
}
