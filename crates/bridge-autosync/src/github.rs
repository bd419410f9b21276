//! The few GitHub REST calls Auto-Sync makes: find an open pull request for the
//! integration branch, open one, and add labels, through the shared retrying client of
//! `bridge-platforms`. Creating is not idempotent, so after a failure GitHub may have acted
//! on (a timeout, a 500) we look for the pull request before trying again.

use std::time::Duration;

use bridge_core::SecretValue;
use bridge_platforms::HttpOptions;
use bridge_platforms::http::{Client, HttpError, Request, TransportKind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{AutosyncError, Result};
use crate::redact::Redactor;

/// Requests sent at most for one call (first try included), and create attempts at most.
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

/// GitHub's REST API over the shared retrying client of `bridge-platforms`: GETs and label
/// additions are repeated there on 429, 5xx and transport errors, a create only where GitHub
/// cannot have acted (429, 503, a refused connection).
pub(crate) struct GithubClient {
    http: Client,
    token: SecretValue,
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

/// A failed call, and whether GitHub may have acted on it anyway (a create that timed out or
/// got a 500 may have opened the pull request).
struct Failed {
    error: AutosyncError,
    maybe_acted: bool,
}

impl GithubClient {
    pub(crate) fn new(
        api: &str,
        token: &SecretValue,
        repository: &str,
        redactor: Redactor,
        backoff: Duration,
    ) -> Result<Self> {
        let fail = |message: String| AutosyncError::Github {
            op: "set up the client".into(),
            message,
            transient: false,
        };
        // What an HTTP header value may hold (visible ASCII, spaces, tabs, bytes above 127).
        if token
            .expose()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(fail(
                "GITHUB_TOKEN holds characters that cannot go in a header".into(),
            ));
        }
        let options = HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_attempts: ATTEMPTS,
            base_delay: backoff,
            ..HttpOptions::default()
        };
        let http =
            Client::new(options).map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
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
            token: token.clone(),
            api,
            repository: repository.to_owned(),
            redactor,
            backoff,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/repos/{}/{tail}", self.api, self.repository)
    }

    /// `request` with GitHub's headers and the token.
    fn github(&self, request: Request) -> Request {
        request
            .bearer(&self.token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(
                "user-agent",
                concat!("bridge-autosync/", env!("CARGO_PKG_VERSION")),
            )
    }

    async fn send(&self, op: &str, request: Request) -> Result<serde_json::Value> {
        self.call(op, request).await.map_err(|f| f.error)
    }

    async fn call(
        &self,
        op: &str,
        request: Request,
    ) -> std::result::Result<serde_json::Value, Failed> {
        let response = match self.http.send(self.github(request)).await {
            Ok(response) => response,
            Err(e) => {
                let maybe_acted = matches!(
                    e,
                    HttpError::Transport { kind, .. } if kind != TransportKind::Connect
                );
                return Err(Failed {
                    error: AutosyncError::Github {
                        op: op.to_owned(),
                        message: self.redactor.redact(&format!("request failed: {e}")),
                        transient: e.is_transient(),
                    },
                    maybe_acted,
                });
            }
        };
        let status = response.status;
        let text = response.text();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| Failed {
                error: AutosyncError::Github {
                    op: op.to_owned(),
                    message: format!("the answer is not the documented JSON: {e}"),
                    transient: false,
                },
                maybe_acted: false,
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
        Err(Failed {
            error: AutosyncError::Github {
                op: op.to_owned(),
                message: self
                    .redactor
                    .redact(&format!("HTTP {}: {detail}{hint}", status.as_u16())),
                transient: status.is_server_error() || status.as_u16() == 429,
            },
            // 503 and 429 say GitHub did not act; another 5xx leaves it open.
            maybe_acted: status.is_server_error() && status.as_u16() != 503,
        })
    }

    /// The open pull request whose head is `branch` of this repository, if any.
    pub(crate) async fn find_open(&self, branch: &str) -> Result<Option<PullRequest>> {
        let owner = self.repository.split('/').next().unwrap_or_default();
        let head = format!("{owner}:{branch}");
        let op = format!("list pull requests for {branch}");
        let request = Request::get(&self.url("pulls")).query(&[
            ("state", "open"),
            ("head", head.as_str()),
            ("per_page", "100"),
        ]);
        let value = self.send(&op, request).await?;
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
            let request = Request::post(&self.url("pulls")).json(&body);
            match self.call("create pull request", request).await {
                Ok(v) => {
                    let pr: PullRequest =
                        serde_json::from_value(v).map_err(|e| AutosyncError::Github {
                            op: "create pull request".into(),
                            message: format!("the answer is not a pull request: {e}"),
                            transient: false,
                        })?;
                    return Ok((pr, true));
                }
                // The create may have succeeded: give GitHub a moment to list it, and look
                // for it before trying again. Failures GitHub did not act on were already
                // retried by the client.
                Err(Failed {
                    maybe_acted: true, ..
                }) if attempt < ATTEMPTS => {
                    tokio::time::sleep(self.backoff * attempt).await;
                    attempt += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// Adds labels to an issue or pull request (idempotent on GitHub's side).
    pub(crate) async fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        let op = format!("add labels to #{number}");
        let url = self.url(&format!("issues/{number}/labels"));
        // Adding a label twice leaves one: the client may repeat the call.
        let request = Request::post(&url)
            .json(&json!({ "labels": labels }))
            .idempotent(true);
        self.send(&op, request).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on loopback that answers the `i`th request with `script[i]` (status, body) and
    /// records each request line.
    async fn scripted(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            for (status, body) in script {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as much body as content-length says.
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if data.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&data);
                record
                    .lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    fn client(base: &str) -> GithubClient {
        GithubClient::new(
            base,
            &SecretValue::new("ghp_test"),
            "o/r",
            Redactor::new(),
            Duration::from_millis(1),
        )
        .unwrap()
    }

    fn new_pr() -> NewPullRequest<'static> {
        NewPullRequest {
            title: "t",
            head: "autosync/web",
            base: "main",
            body: "b",
            draft: false,
        }
    }

    const PR: &str = r#"[{"number":7,"html_url":"https://gh/o/r/pull/7","state":"open"}]"#;

    #[tokio::test]
    async fn a_create_that_may_have_succeeded_is_looked_for_before_it_is_sent_again() {
        let (base, seen) =
            scripted(vec![(200, "[]"), (500, r#"{"message":"oops"}"#), (200, PR)]).await;
        let (pr, created) = client(&base).open(&new_pr()).await.unwrap();
        assert_eq!((pr.number, created), (7, false));
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("GET /repos/o/r/pulls?state=open&head=o%3Aautosync%2Fweb"));
        assert!(seen[1].starts_with("POST /repos/o/r/pulls "), "{seen:?}");
        assert!(seen[2].starts_with("GET /repos/o/r/pulls?"), "{seen:?}");
        assert_eq!(seen.len(), 3);
    }

    #[tokio::test]
    async fn a_refused_create_is_final_and_says_what_to_check() {
        let (base, seen) = scripted(vec![
            (200, "[]"),
            (
                422,
                r#"{"message":"Validation Failed","errors":[{"field":"head","code":"invalid"}]}"#,
            ),
        ])
        .await;
        let err = client(&base).open(&new_pr()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("HTTP 422: Validation Failed; head: invalid"),
            "{text}"
        );
        assert!(!text.contains("ghp_test"), "{text}");
        assert!(matches!(
            err,
            AutosyncError::Github {
                transient: false,
                ..
            }
        ));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
