//! NATS JetStream: the conformance suite (each case on its own streams and subjects) and two
//! stores, as two processes would be, sharing one stream.

use std::sync::Arc;
use std::time::Duration;

use bridge_genesis::bus::conformance::Backend;
use bridge_genesis::bus::{
    BoxFuture, EventStore, HistoryQuery, NewEvent, Payload, StoreError, Topic,
};
use bridge_genesis_scale::{NatsOptions, NatsStore};
use tokio::task::JoinSet;

use crate::proxy::Proxy;
use crate::services;

/// Stores on streams and subject prefixes unique to this backend: `<run>_<name>`, deleted by
/// [`NatsBackend::cleanup`].
struct NatsBackend {
    url: String,
    run: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl NatsBackend {
    fn new(url: String) -> Self {
        Self {
            url,
            run: services::unique("gtest"),
            names: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Deletes the streams. Only called when the case passed: a failed one keeps its data
    /// for a look.
    async fn cleanup(&self) {
        let names = self.names.lock().unwrap().clone();
        delete_streams(&self.url, &names).await;
    }
}

fn options(name: &str) -> NatsOptions {
    NatsOptions::new(name, name)
}

async fn delete_streams(url: &str, names: &[String]) {
    let client = async_nats::connect(url).await.expect("connect for cleanup");
    let js = async_nats::jetstream::new(client);
    for name in names {
        js.delete_stream(name).await.expect("delete stream");
    }
}

impl Backend for NatsBackend {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn EventStore>, StoreError>> {
        let name = format!("{}_{name}", self.run);
        {
            let mut names = self.names.lock().unwrap();
            if !names.contains(&name) {
                names.push(name.clone());
            }
        }
        Box::pin(async move {
            let store = NatsStore::connect(&self.url, options(&name)).await?;
            Ok(Arc::new(store) as Arc<dyn EventStore>)
        })
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(url) = services::nats().await else { return };
                let backend = NatsBackend::new(url);
                bridge_genesis::bus::conformance::$case(&backend).await;
                backend.cleanup().await;
            }
        )*
    };
}

conformance!(
    sequences_are_gap_free_under_concurrent_publishers,
    events_round_trip,
    history_filters,
    long_history_reads,
    patterns_route_live_events,
    subscriptions_catch_up_and_survive_lag,
    durable_consumers_resume_after_restart,
    durable_consumers_redeliver_and_wait,
    stats_and_health,
    the_gate_refuses_and_records,
    bad_input_is_refused_without_a_trace,
);

fn event(writer: usize, n: usize) -> NewEvent {
    let mut payload = Payload::new();
    payload.insert("writer".into(), writer.into());
    payload.insert("n".into(), n.into());
    NewEvent::new(Topic::new("envsync.drift").unwrap(), "system", payload)
}

/// Two stores (two connections, as two processes would have) on one stream: the union of
/// the sequence numbers is exactly 1..=N, each store's live feed carries the other's events,
/// and a consumer floor written by one is seen by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_share_one_stream() {
    const TASKS: usize = 4;
    const EACH: usize = 50;
    let Some(url) = services::nats().await else {
        return;
    };
    let name = services::unique("gtest_shared");
    let a = Arc::new(NatsStore::connect(&url, options(&name)).await.unwrap());
    let b = Arc::new(NatsStore::connect(&url, options(&name)).await.unwrap());
    let mut live_a = a.live();

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for n in 0..EACH {
                let stored = store.append(vec![event(task, n)]).await.unwrap();
                seqs.push(stored[0].seq);
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(seqs) = tasks.join_next().await {
        let seqs = seqs.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (TASKS * EACH) as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let history = b.read(HistoryQuery::default().limit(10_000)).await.unwrap();
    assert_eq!(history.len() as u64, total);

    for expected in 1..=total {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), live_a.recv())
            .await
            .expect("live event")
            .expect("not lagged");
        assert_eq!(event.seq, expected);
    }

    // A durable consumer is one JetStream consumer, whichever process opens it: acked
    // through one store, its floor is what the other finds.
    let pattern = bridge_genesis::bus::TopicPattern::parse("envsync.*").unwrap();
    assert_eq!(
        a.open_consumer("shared".into(), pattern.clone(), 0)
            .await
            .unwrap(),
        0
    );
    let delivered = a
        .consumer_read("shared".into(), pattern.clone(), 0, 10)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 10);
    let tenth = delivered[9].seq;
    assert!(matches!(
        a.ack("shared".into(), tenth + 1).await,
        Err(StoreError::AckNotDelivered { .. })
    ));
    assert_eq!(a.ack("shared".into(), tenth).await.unwrap(), tenth);
    assert_eq!(
        b.open_consumer("shared".into(), pattern.clone(), 0)
            .await
            .unwrap(),
        tenth
    );
    assert_eq!(
        b.ack("shared".into(), 5).await.unwrap(),
        tenth,
        "never lowered"
    );
    assert!(matches!(
        b.ack("shared".into(), total + 1).await,
        Err(StoreError::AckBeyondEnd { .. })
    ));
    let next = b
        .consumer_read("shared".into(), pattern, tenth, 1)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > tenth);
    let listed = b.consumers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].acked_seq),
        ("shared", tenth)
    );
    assert_eq!(listed[0].pending, total - tenth);

    drop((a, b));
    delete_streams(&url, &[name]).await;
}

/// Pipelined single appends racing multi-event appends in one process: every batch still
/// gets consecutive sequences, the union is 1..=N, and stamps never go back along the
/// sequence (single appends are queued on the connection in stamp order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_consecutive_among_pipelined_singles() {
    const SINGLES: usize = 8;
    const BATCHERS: usize = 2;
    const EACH: usize = 40;
    const BATCH: usize = 3;
    let Some(url) = services::nats().await else {
        return;
    };
    let name = services::unique("gtest_pipelined");
    let store = Arc::new(NatsStore::connect(&url, options(&name)).await.unwrap());

    let mut tasks = JoinSet::new();
    for task in 0..SINGLES + BATCHERS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut batches = Vec::new();
            for n in 0..EACH {
                let events = if task < SINGLES {
                    vec![event(task, n)]
                } else {
                    (0..BATCH).map(|i| event(task, n * BATCH + i)).collect()
                };
                let stored = store.append(events).await.unwrap();
                batches.push(stored.iter().map(|e| e.seq).collect::<Vec<_>>());
            }
            batches
        });
    }
    let mut all = Vec::new();
    while let Some(batches) = tasks.join_next().await {
        for seqs in batches.unwrap() {
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "a batch got {seqs:?}"
            );
            all.extend(seqs);
        }
    }
    all.sort_unstable();
    let total = (SINGLES * EACH + BATCHERS * EACH * BATCH) as u64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let history = store
        .read(HistoryQuery::default().limit(10_000))
        .await
        .unwrap();
    assert_eq!(history.len() as u64, total);
    assert!(
        history.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "stamps must not go back along the sequence"
    );

    drop(store);
    delete_streams(&url, &[name]).await;
}

/// The live feed starts with the first `live()` call, after events this store appended
/// earlier, and carries everything appended from then on, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_starts_at_the_first_receiver() {
    let Some(url) = services::nats().await else {
        return;
    };
    let name = services::unique("gtest_lazy_live");
    let store = NatsStore::connect(&url, options(&name)).await.unwrap();
    for n in 0..5 {
        store.append(vec![event(0, n)]).await.unwrap();
    }
    let mut live = store.live();
    for n in 5..10 {
        store.append(vec![event(0, n)]).await.unwrap();
    }
    for expected in 6..=10 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), live.recv())
            .await
            .expect("live event")
            .expect("not lagged");
        assert_eq!(event.seq, expected);
    }

    drop((live, store));
    delete_streams(&url, &[name]).await;
}

/// A PubAck held up past the ack timeout: the store sends the event again with the same
/// `Nats-Msg-Id`, the server recognises the copy, and the append returns the one stored
/// event (with its stored stamp) instead of failing or storing it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_puback_is_recovered_without_a_duplicate() {
    let Some(url) = services::nats().await else {
        return;
    };
    let name = services::unique("gtest_lost_ack");
    let proxy = Proxy::start(&url).await;
    let mut options = options(&name);
    options.ack_timeout = Duration::from_millis(300);
    let store = Arc::new(NatsStore::connect(&proxy.addr, options).await.unwrap());
    let first = store.append(vec![event(0, 0)]).await.unwrap();
    assert_eq!(first[0].seq, 1);

    // The server stores the event but its answer is held past one ack timeout; the retry's
    // answer (a duplicate, naming the stored copy) gets through once released.
    proxy.hold_replies();
    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(vec![event(0, 1)]).await }
    });
    tokio::time::sleep(Duration::from_millis(450)).await;
    proxy.release_replies();
    let second = append.await.unwrap().expect("recovered by a retry");
    assert_eq!(second[0].seq, 2);

    // The same inside a multi-event append, whose events 2..k also carry the expected last
    // sequence: the server answers the duplicate before it checks that.
    proxy.hold_replies();
    let append = tokio::spawn({
        let store = store.clone();
        async move { store.append(vec![event(0, 2), event(0, 3)]).await }
    });
    tokio::time::sleep(Duration::from_millis(450)).await;
    proxy.release_replies();
    let batch = append.await.unwrap().expect("recovered by a retry");
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);

    let single = store.append(vec![event(0, 4)]).await.unwrap();
    assert_eq!(single[0].seq, 5, "each event was stored once, not twice");
    let history = store
        .read(HistoryQuery::default().limit(100))
        .await
        .unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(
        history[1], second[0],
        "the stored stamp is the one returned"
    );
    assert_eq!(history[2..4], batch[..]);
    assert!(history.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    drop(store);
    delete_streams(&url, &[name]).await;
}

/// What a batch's retry relies on: the server answers a re-sent `Nats-Msg-Id` as a duplicate
/// before it checks `Nats-Expected-Last-Sequence` (which the stored copy has made stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_a_duplicate_before_the_expected_sequence() {
    use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
    let Some(url) = services::nats().await else {
        return;
    };
    let name = services::unique("gtest_dedup_order");
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        duplicate_window: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let subject = format!("{name}.x");
    let send = |id: &str, expected: Option<u64>| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        if let Some(seq) = expected {
            headers.insert(NATS_EXPECTED_LAST_SEQUENCE, seq.to_string().as_str());
        }
        let js = js.clone();
        let subject = subject.clone();
        async move {
            js.publish_with_headers(subject, headers, "{}".into())
                .await
                .unwrap()
                .await
        }
    };
    assert_eq!(send("a", None).await.unwrap().sequence, 1);
    let b = send("b", Some(1)).await.unwrap();
    assert_eq!((b.sequence, b.duplicate), (2, false));
    let again = send("b", Some(1)).await.unwrap();
    assert_eq!((again.sequence, again.duplicate), (2, true));
    assert!(
        send("c", Some(1)).await.is_err(),
        "a stale expectation still fails"
    );
    drop(js);
    delete_raw_stream(&url, &name).await;
}

async fn delete_raw_stream(url: &str, name: &str) {
    let client = async_nats::connect(url).await.expect("connect for cleanup");
    let js = async_nats::jetstream::new(client);
    js.delete_stream(name).await.expect("delete stream");
}
