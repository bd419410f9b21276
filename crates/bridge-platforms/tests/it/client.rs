//! The general-purpose client (`bridge_platforms::http::Client`) against a scripted HTTP
//! server on loopback: what it retries, how long it waits, when it gives up, and that its
//! errors hold neither a URL's secret query nor the token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::SecretValue;
use bridge_platforms::HttpOptions;
use bridge_platforms::http::{Client, HttpError, Request, StatusCode, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const TOKEN: &str = "tok_secret_123";
const HOOK_PATH: &str = "/deploy/srv-1?key=hook-secret";
const SECRETS: &[&str] = &[TOKEN, "hook-secret", "srv-1", "?key"];

/// What the server answers to one request.
#[derive(Clone)]
enum Answer {
    /// Status, extra headers, body.
    Send(u16, &'static [(&'static str, &'static str)], &'static str),
    /// Read the request, then say nothing for a while.
    Hang,
}

/// One request as the server received it.
struct Seen {
    head: String,
    body: Vec<u8>,
    at: Instant,
}

/// A server on 127.0.0.1 that answers request `i` with `script[i]` (the last one again once
/// the script runs out), one request a connection, and records what it received.
struct Scripted {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut count = 0usize;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let answer = script[count.min(script.len() - 1)].clone();
                count += 1;
                tokio::spawn(answer_one(stream, answer, Arc::clone(&record)));
            }
        });
        Self { base, seen, task }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}{tail}", self.base)
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_one(mut stream: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock().expect("lock").push(Seen {
        head,
        body: data[head_end..].to_vec(),
        at: Instant::now(),
    });
    match answer {
        Answer::Hang => tokio::time::sleep(Duration::from_secs(5)).await,
        Answer::Send(status, headers, body) => {
            let mut reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                reply.push_str(&format!("{name}: {value}\r\n"));
            }
            reply.push_str("\r\n");
            reply.push_str(body);
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Short waits, three attempts.
fn fast() -> HttpOptions {
    HttpOptions {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_wait: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(30),
        ..HttpOptions::default()
    }
}

fn hook(server: &Scripted) -> Request {
    Request::post(&server.url(HOOK_PATH))
        .bearer(&SecretValue::new(TOKEN))
        .json(&serde_json::json!({"event": "deploy"}))
}

fn assert_no_secret(error: &HttpError) {
    let text = format!("{error} {error:?}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// The test fails rather than hangs if a bound is lost.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the call ends within its bounds")
}

#[tokio::test]
async fn a_503_is_retried_then_the_answer_is_returned() {
    let server = Scripted::start(vec![
        Answer::Send(503, &[], "busy"),
        Answer::Send(200, &[], r#"{"ok":true}"#),
    ])
    .await;
    let client = Client::new(fast()).unwrap();
    // A POST: 503 says the server did not act, so even a non-idempotent call is repeated.
    let response = bounded(client.send(hook(&server))).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.attempts, 2);
    assert_eq!(
        response.json::<serde_json::Value>().unwrap(),
        serde_json::json!({"ok": true})
    );
    assert_eq!(server.count(), 2);
    assert_eq!(client.requests(), 2);
    // Every attempt carried the same request.
    for seen in server.seen.lock().unwrap().iter() {
        assert!(
            seen.head.starts_with(&format!("POST {HOOK_PATH} ")),
            "{}",
            seen.head
        );
        let lower = seen.head.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("authorization: bearer {TOKEN}")),
            "{}",
            seen.head
        );
        assert!(lower.contains("content-type: application/json"));
        assert_eq!(seen.body, br#"{"event":"deploy"}"#);
    }
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_asks() {
    let server = Scripted::start(vec![
        Answer::Send(429, &[("retry-after", "1")], "slow down"),
        Answer::Send(204, &[], ""),
    ])
    .await;
    let options = HttpOptions {
        // Backoff alone would wait at most a millisecond.
        base_delay: Duration::from_millis(1),
        max_wait: Duration::from_secs(5),
        ..fast()
    };
    let client = Client::new(options).unwrap();
    let response = bounded(client.send(Request::get(&server.url("/x"))))
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(response.attempts, 2);
    let seen = server.seen.lock().unwrap();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    assert!(gap < Duration::from_secs(4), "waited {gap:?}");
}

#[tokio::test]
async fn it_gives_up_after_the_attempt_bound_without_leaking_secrets() {
    // The server even echoes the query in its answer; nothing of the body reaches the error.
    let server = Scripted::start(vec![Answer::Send(503, &[], "bad key=hook-secret")]).await;
    let client = Client::new(fast()).unwrap();
    let response = bounded(client.send(hook(&server))).await.unwrap();
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.attempts, 3);
    assert_eq!(server.count(), 3);
    let error = response.error_for_status().expect_err("503");
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.status(), Some(503));
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("503") && text.contains("after 3 attempts"),
        "{text}"
    );
    assert!(text.contains(&server.base), "{text}");
    assert_no_secret(&error);

    // Nothing listens: refused connections are retried (even for a POST: nothing was sent),
    // then reported without the URL.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let request =
        Request::post(&format!("http://{address}{HOOK_PATH}")).bearer(&SecretValue::new(TOKEN));
    let error = bounded(client.send(request)).await.expect_err("refused");
    assert!(
        matches!(
            error,
            HttpError::Transport {
                kind: TransportKind::Connect,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn a_4xx_other_than_429_is_not_retried() {
    for status in [400u16, 401, 403, 404, 409, 422] {
        let server = Scripted::start(vec![
            Answer::Send(status, &[], r#"{"message":"no"}"#),
            Answer::Send(200, &[], "{}"),
        ])
        .await;
        let client = Client::new(fast()).unwrap();
        // A GET, which could be repeated safely: a 4xx is still final.
        let response = bounded(client.send(Request::get(&server.url("/x"))))
            .await
            .unwrap();
        assert_eq!(response.status.as_u16(), status);
        assert_eq!(response.attempts, 1, "{status}");
        assert_eq!(server.count(), 1, "{status}");
        assert_eq!(response.message(), "no");
        let error = response.error_for_status().expect_err("4xx");
        assert!(!error.is_transient());
    }
}

#[tokio::test]
async fn the_total_time_bound_ends_the_retries() {
    let server = Scripted::start(vec![Answer::Send(503, &[], "")]).await;
    let options = HttpOptions {
        max_attempts: 50,
        base_delay: Duration::from_millis(40),
        max_wait: Duration::from_millis(80),
        total_timeout: Duration::from_millis(300),
        ..fast()
    };
    let client = Client::new(options).unwrap();
    let started = Instant::now();
    // The bound ends the retries either with the last answer (the 503) or, when it falls
    // during the last attempt (a loaded machine), with that attempt timed out: both are
    // the bound at work, after several attempts and far fewer than allowed.
    let attempts = match bounded(client.send(Request::get(&server.url("/x")))).await {
        Ok(response) => {
            assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
            response.attempts
        }
        Err(HttpError::Transport {
            kind: TransportKind::Timeout,
            attempts,
            ..
        }) => attempts,
        Err(other) => panic!("ended otherwise than by the time bound: {other:?}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(attempts > 1 && attempts < 50, "{attempts}");
}

#[tokio::test]
async fn a_timed_out_post_is_not_repeated_but_a_get_is() {
    let server = Scripted::start(vec![Answer::Hang]).await;
    let options = HttpOptions {
        request_timeout: Duration::from_millis(200),
        ..fast()
    };
    let client = Client::new(options).unwrap();
    // The server may have acted on the POST: it is not sent again.
    let error = bounded(client.send(hook(&server)))
        .await
        .expect_err("timed out");
    assert!(
        matches!(
            error,
            HttpError::Transport {
                kind: TransportKind::Timeout,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_secret(&error);
    assert_eq!(server.count(), 1);
    let error = bounded(client.send(Request::get(&server.url("/x"))))
        .await
        .expect_err("timed out");
    assert_eq!(error.attempts(), 3, "{error:?}");
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn bad_requests_fail_before_sending() {
    let client = Client::new(fast()).unwrap();
    let error = client
        .send(Request::get("ftp://h.example/x?key=hook-secret"))
        .await
        .expect_err("not http");
    assert!(matches!(error, HttpError::Invalid(_)), "{error:?}");
    assert_eq!(client.requests(), 0);
    assert_no_secret(&error);
}
