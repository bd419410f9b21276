//! The few GitHub REST calls Auto-Sync makes: find an open pull request for the
//! integration branch, open one, and add labels. Creating is not idempotent, so after a
//! transient failure we look for the pull request before trying again (a timed-out create
//! may have succeeded).

use std::sync::Once;
use std::time::Duration;

use bridge_core::SecretValue;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{AutosyncError, Result};
use crate::redact::Redactor;

const ATTEMPTS: u32 = 3;

/// A pull request as GitHub returns it (the fields we use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Its page.
    pub html_url: String,
    /// `open` / `closed`.
    #[serde(default)]
    pub state: String,
}

pub(crate) struct GithubClient {
    http: reqwest::Client,
    api: String,
    repository: String,
    redactor: Redactor,
    backoff: Duration,
}

/// What a new pull request carries.
pub(crate) struct NewPullRequest<'a> {
    pub(crate) title: &'a str,
    pub(crate) head: &'a str,
    pub(crate) base: &'a str,
    pub(crate) body: &'a str,
    pub(crate) draft: bool,
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when another part of the process installed one, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl GithubClient {
    pub(crate) fn new(
        api: &str,
        token: &SecretValue,
        repository: &str,
        redactor: Redactor,
        backoff: Duration,
    ) -> Result<Self> {
        install_crypto_provider();
        let fail = |message: String| AutosyncError::Github {
            op: "set up the client".into(),
            message,
            transient: false,
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| fail("GITHUB_TOKEN holds characters that cannot go in a header".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("bridge-autosync/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .retry(reqwest::retry::never())
            // A redirect to another host would carry the token there.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let api = api.trim_end_matches('/').to_owned();
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            return Err(AutosyncError::Github {
                op: "set up the client".into(),
                message: format!(
                    "GITHUB_API_URL `{}` is not an http(s) URL",
                    redactor.redact(&api)
                ),
                transient: false,
            });
        }
        Ok(Self {
            http,
            api,
            repository: repository.to_owned(),
            redactor,
            backoff,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/repos/{}/{tail}", self.api, self.repository)
    }

    async fn send(&self, op: &str, request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
        let response = request.send().await.map_err(|e| AutosyncError::Github {
            op: op.to_owned(),
            message: self.redactor.redact(&format!("request failed: {e}")),
            transient: true,
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| AutosyncError::Github {
                op: op.to_owned(),
                message: format!("the answer is not the documented JSON: {e}"),
                transient: false,
            });
        }
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|v| {
                let mut msg = v["message"].as_str().unwrap_or_default().to_owned();
                if let Some(errors) = v["errors"].as_array() {
                    for e in errors {
                        let field = e["field"].as_str().unwrap_or_default();
                        let m = e["message"]
                            .as_str()
                            .or(e["code"].as_str())
                            .unwrap_or_default();
                        msg.push_str(&format!("; {field}: {m}"));
                    }
                }
                msg
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        let hint = match status.as_u16() {
            401 => " (check GITHUB_TOKEN)",
            403 | 404 => {
                " (check [github] repository and that GITHUB_TOKEN may write pull requests)"
            }
            _ => "",
        };
        Err(AutosyncError::Github {
            op: op.to_owned(),
            message: self
                .redactor
                .redact(&format!("HTTP {}: {detail}{hint}", status.as_u16())),
            transient: status.is_server_error() || status.as_u16() == 429,
        })
    }

    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(AutosyncError::Github {
                    transient: true, ..
                }) if attempt < ATTEMPTS => {
                    tokio::time::sleep(self.backoff * attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    pub(crate) async fn find_open(&self, branch: &str) -> Result<Option<PullRequest>> {
        let owner = self.repository.split('/').next().unwrap_or_default();
        let head = format!("{owner}:{branch}");
        let op = format!("list pull requests for {branch}");
        let value = self
            .with_retries(|| {
                let req = self.http.get(self.url("pulls")).query(&[
                    ("state", "open"),
                    ("head", head.as_str()),
                    ("per_page", "100"),
                ]);
                self.send(&op, req)
            })
            .await?;
        let pulls: Vec<PullRequest> =
            serde_json::from_value(value).map_err(|e| AutosyncError::Github {
                op,
                message: format!("the answer is not a list of pull requests: {e}"),
                transient: false,
            })?;
        Ok(pulls.into_iter().next())
    }

    /// Opens a pull request (or returns the open one for the same head).
    pub(crate) async fn open(&self, new: &NewPullRequest<'_>) -> Result<(PullRequest, bool)> {
        let body = json!({
            "title": new.title,
            "head": new.head,
            "base": new.base,
            "body": new.body,
            "draft": new.draft,
            "maintainer_can_modify": true,
        });
        let mut attempt = 1;
        loop {
            if let Some(existing) = self.find_open(new.head).await? {
                return Ok((existing, false));
            }
            let req = self.http.post(self.url("pulls")).json(&body);
            match self.send("create pull request", req).await {
                Ok(v) => {
                    let pr: PullRequest =
                        serde_json::from_value(v).map_err(|e| AutosyncError::Github {
                            op: "create pull request".into(),
                            message: format!("the answer is not a pull request: {e}"),
                            transient: false,
                        })?;
                    return Ok((pr, true));
                }
                Err(AutosyncError::Github {
                    transient: true, ..
                }) if attempt < ATTEMPTS => {
                    tokio::time::sleep(self.backoff * attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Adds labels to an issue or pull request (idempotent on GitHub's side).
    pub(crate) async fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        let op = format!("add labels to #{number}");
        let url = self.url(&format!("issues/{number}/labels"));
        self.with_retries(|| {
            let req = self.http.post(&url).json(&json!({ "labels": labels }));
            self.send(&op, req)
        })
        .await
        .map(|_| ())
    }
}
