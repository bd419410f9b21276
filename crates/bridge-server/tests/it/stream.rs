//! The live stream over a real connection: ordered, resumable with `Last-Event-ID` without
//! losing or repeating an event, filtered by topic, fed by other processes' writes, and
//! carrying `config_update` after each commit.

use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::{Bus, Policy, PolicyMode, Role, SqliteStore};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::harness::Harness;

pub struct Running {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<bridge_server::Drained>>,
}

pub async fn start(h: &Harness) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let state = h.state.clone();
    let drain = Duration::from_secs(10);
    let task = tokio::spawn(bridge_server::serve(
        listener,
        state,
        async move {
            let _ = stopped.await;
        },
        drain,
    ));
    Running {
        url,
        stop: Some(stop),
        task,
    }
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Reads SSE messages from one connection.
struct Client {
    response: reqwest::Response,
    buffer: String,
}

impl Client {
    async fn connect(url: &str, token: &str, last_event_id: Option<u64>) -> Self {
        let mut req = crate::harness::http_client()
            .get(url)
            .header("authorization", format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event as (id, topic, data); keep-alive comments are skipped.
    async fn next(&mut self) -> (u64, String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in message.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Some(event)) = (id, event) {
                    return (id, event, serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("an event within 5 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn publish(h: &Harness, topic: &str, n: u64) -> u64 {
    h.state
        .bus()
        .publish(topic, json!({ "n": n }), Role::System)
        .await
        .unwrap()
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_from_last_event_id_without_loss_or_repeat() {
    let h = Harness::new().await;
    let server = start(&h).await;
    let url = format!("{}/genesis/stream?since=0&topic=deploy.>", server.url);
    for n in 1..=3 {
        publish(&h, "deploy.render", n).await;
    }
    publish(&h, "envsync.drift", 0).await; // filtered out

    let mut client = Client::connect(&url, &h.observer, None).await;
    let mut last = 0;
    for want in 1..=3 {
        let (id, topic, data) = client.next().await;
        assert_eq!(topic, "deploy.render");
        assert_eq!(data["n"], want);
        assert_eq!(data["_genesis_seq"], id);
        last = id;
    }
    // Live events arrive on the open connection.
    let live = publish(&h, "deploy.netlify", 4).await;
    let (id, topic, _) = client.next().await;
    assert_eq!((id, topic.as_str()), (live, "deploy.netlify"));
    last = last.max(id);
    drop(client);

    // Published while nobody listens.
    let mut missed = Vec::new();
    for n in 5..=7 {
        missed.push(publish(&h, "deploy.github", n).await);
    }
    let mut client = Client::connect(&url, &h.observer, Some(last)).await;
    for want in &missed {
        let (id, _, _) = client.next().await;
        assert_eq!(id, *want, "resumed out of order or with a gap");
    }
    let after = publish(&h, "deploy.render", 8).await;
    assert_eq!(client.next().await.0, after);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_by_another_process_reach_the_stream() {
    let h = Harness::new().await;
    let server = start(&h).await;
    let mut client =
        Client::connect(&format!("{}/genesis/stream", server.url), &h.observer, None).await;
    // A second handle on the same file, as another genesisctl would have.
    let other = Bus::new(
        Arc::new(SqliteStore::open(h.dir.path().join("events.db")).unwrap()),
        Policy::new(PolicyMode::Permissive),
    );
    let seq = other
        .publish("deploy.render", json!({"from": "elsewhere"}), Role::System)
        .await
        .unwrap()
        .seq;
    let (id, _, data) = client.next().await;
    assert_eq!(id, seq);
    assert_eq!(data["from"], "elsewhere");
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_commit_is_followed_by_a_config_update() {
    let h = Harness::new().await;
    let server = start(&h).await;
    // The cascade runs beside the server, as in `genesisctl serve`.
    let workers = h.workers();
    let mut client = Client::connect(
        &format!("{}/genesis/stream?topic=config_update", server.url),
        &h.observer,
        None,
    )
    .await;
    let commit = h
        .state
        .bus()
        .publish("envsync.commit", json!({"target": "render"}), Role::System)
        .await
        .unwrap();
    let (_, topic, data) = client.next().await;
    assert_eq!(topic, "config_update");
    assert_eq!(data["type"], "config_update");
    assert_eq!(data["target"], "render");
    assert_eq!(data["commit_seq"], commit.seq);
    drop(client);
    server.stop().await;
    workers.finish(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_history_pages_never_hide_a_new_event() {
    let h = Harness::new().await;
    let server = start(&h).await;
    let client = crate::harness::http_client();
    let url = format!("{}/genesis/events?limit=50", server.url);
    let count = || async {
        let body: Value = client
            .get(&url)
            .bearer_auth(&h.operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["count"].as_u64().unwrap()
    };
    // Let the head tracker read the store once, which turns the cache on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 1..=5 {
        assert_eq!(count().await, n - 1);
        assert_eq!(count().await, n - 1, "a cached page is the same page");
        // Published through this server: visible at once.
        let response = client
            .post(format!("{}/genesis/events", server.url))
            .bearer_auth(&h.operator)
            .json(&json!({"topic": "deploy.render", "payload": {"n": n}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    assert_eq!(count().await, 5);
    // Stored by another process: visible within the tracker's second.
    let other = Bus::new(
        Arc::new(SqliteStore::open(h.dir.path().join("events.db")).unwrap()),
        Policy::new(PolicyMode::Permissive),
    );
    other
        .publish("deploy.render", json!({"n": 6}), Role::System)
        .await
        .unwrap();
    let mut seen = 0;
    for _ in 0..30 {
        seen = count().await;
        if seen == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_of_a_revoked_token_ends_within_a_second_or_two() {
    streams_end_on_revocation(Harness::new().await).await;
}

/// The same through a shared store's poller (as on PostgreSQL), revoked through another
/// handle on the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_on_a_revocation_made_elsewhere_in_a_shared_store() {
    streams_end_on_revocation(Harness::with_polled_tokens().await).await;
}

async fn streams_end_on_revocation(h: Harness) {
    use bridge_server::auth::{TOKENS_FILE, create_token, revoke_token};
    let server = start(&h).await;
    let tokens = h.dir.path().join(TOKENS_FILE);
    let (token, record) = create_token(&tokens, bridge_server::Role::Observer, "now").unwrap();
    // Let the server read the set with the new token in it.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while h.state.tokens().authenticate(&token).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token is never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("{}/genesis/stream", server.url);
    let mut first = Client::connect(&url, &token, None).await;
    let mut second = Client::connect(&url, &token, None).await;
    let mut other = Client::connect(&url, &h.observer, None).await;
    let seq = publish(&h, "deploy.render", 1).await;
    assert_eq!(first.next().await.0, seq);
    assert_eq!(second.next().await.0, seq);
    assert_eq!(other.next().await.0, seq);

    assert!(revoke_token(&tokens, &record.id).unwrap());
    let revoked = std::time::Instant::now();
    for (name, client) in [("first", &mut first), ("second", &mut second)] {
        let ended = tokio::time::timeout(Duration::from_millis(2500), async {
            loop {
                match client.response.chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "the {name} stream of a revoked token is still open after {:?}",
            revoked.elapsed()
        );
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(2),
        "{:?}",
        revoked.elapsed()
    );
    // A token that stands keeps its stream; the revoked one cannot open another.
    let seq = publish(&h, "deploy.render", 2).await;
    assert_eq!(other.next().await.0, seq);
    let again = crate::harness::http_client()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    drop((first, second, other));
    server.stop().await;
}
