//! What bounds a connection, over real sockets: a head that does not arrive in time, a
//! keep-alive connection left idle, connections over the limit, and the answers hyper gives
//! on its own to requests it cannot parse (JSON like every other error).

use std::time::{Duration, Instant};

use bridge_server::ServerOptions;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Harness;
use crate::stream::{Running, start};

async fn server(options: ServerOptions) -> (Harness, Running, String) {
    let h = Harness::with_options(options).await;
    let running = start(&h).await;
    let addr = running.url.trim_start_matches("http://").to_owned();
    (h, running, addr)
}

/// Reads until the server closes the connection or `limit` passes: what was read, and when
/// it closed (`None`: still open).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut read = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (read, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (read, Some(start.elapsed())),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// One whole answer read off a kept-alive connection: status and body.
async fn read_answer(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut read = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a content-length");
            if read.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, read[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before the answer was whole");
        read.extend_from_slice(&buf[..n]);
    }
}

fn status_and_json(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_does_not_arrive_within_the_header_timeout_closes_the_connection() {
    let (_h, running, addr) = server(ServerOptions {
        header_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    })
    .await;
    // A header line every 300 ms: never a whole head.
    let trickle = TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = trickle.into_split();
    writer
        .write_all(b"GET /envsync/health HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickling = tokio::spawn(async move {
        for i in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let line = format!("x-slow-{i}: 1\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a trickled head still holds its connection after 5 s");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_millis(2500),
        "closed after {closed:?}"
    );
    trickling.abort();
    // Nothing at all: closed after the header timeout too.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let (read, closed) = read_until_closed(&mut silent, Duration::from_secs(4)).await;
    let closed = closed.expect("a silent connection is closed");
    assert!(read.is_empty(), "{read:?}");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_millis(2500),
        "closed after {closed:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_and_a_quiet_stream_is_not() {
    let (h, running, addr) = server(ServerOptions {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    })
    .await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /envsync/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut conn).await.0, 200);
    let answered = Instant::now();
    // Past the header timeout, within the idle one: still open, and still served.
    let (_, closed) = read_until_closed(&mut conn, Duration::from_millis(1300)).await;
    assert_eq!(closed, None, "closed before the idle timeout");
    conn.write_all(b"GET /envsync/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut conn).await.0, 200);
    let answered_again = Instant::now();
    let (_, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "an idle connection stays open");
    let idle = answered_again.elapsed();
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_millis(3500),
        "closed {idle:?} after its last answer ({:?} after the first)",
        answered.elapsed()
    );

    // A live stream with nothing to send for longer than the idle timeout stays open.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /genesis/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
                h.observer
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (head, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert_eq!(closed, None, "the stream was cut");
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    h.state
        .bus()
        .publish(
            "deploy.render",
            json!({"n": 1}),
            bridge_genesis::bus::Role::System,
        )
        .await
        .unwrap();
    let (event, _) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(
        String::from_utf8_lossy(&event).contains("deploy.render"),
        "{}",
        String::from_utf8_lossy(&event)
    );
    drop(stream);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_the_limit_are_answered_503_and_not_served() {
    let (_h, running, addr) = server(ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    })
    .await;
    let request = b"GET /envsync/health HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        assert_eq!(read_answer(&mut conn).await.0, 200);
        held.push(conn);
    }
    let mut over = TcpStream::connect(&addr).await.unwrap();
    let _ = over.write_all(request).await;
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(3)).await;
    let closed = closed.expect("the connection over the limit is closed");
    assert!(
        closed < Duration::from_millis(1500),
        "closed after {closed:?}"
    );
    let (status, body) = status_and_json(&answer);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("server.max_connections")
    );
    // Once one closes, a new connection is served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut next = TcpStream::connect(&addr).await.unwrap();
    next.write_all(request).await.unwrap();
    assert_eq!(read_answer(&mut next).await.0, 200);
    drop((held, next));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_are_answered_with_the_json_error_shape() {
    let (_h, running, addr) = server(ServerOptions::default()).await;
    let long_uri = format!(
        "GET /genesis/events?topic={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (long_uri.into_bytes(), 414, "uri_too_long"),
        (
            b"GET /envsync/health HTTP/1.1\r\nbad header\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400, "bad_request"),
    ];
    for (request, want, code) in cases {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(&request).await.unwrap();
        let (answer, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
        assert!(closed.is_some());
        let text = String::from_utf8_lossy(&answer);
        let (status, body) = status_and_json(&answer);
        assert_eq!(status, want, "{text}");
        assert!(
            text.to_lowercase()
                .contains("content-type: application/json"),
            "{text}"
        );
        assert_eq!(body["error"], code, "{text}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    running.stop().await;
}
