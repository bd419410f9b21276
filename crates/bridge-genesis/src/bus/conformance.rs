//! The conformance suite every [`EventStore`] backend must pass (SQLite here; PostgreSQL and
//! NATS JetStream run the same functions when their services are up).
//!
//! A backend provides a [`Backend`]: a way to open a store by name, empty the first time and
//! the same data when opened again after the previous handle was dropped (that is how the
//! suite simulates a restart). Each case uses its own name. Call [`run_all`], or the cases one
//! by one from separate tests for finer reports. Cases panic with the violated property, as
//! test assertions do, and need a tokio runtime with the time driver.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinSet;

use super::bus::{Bus, ConsumerOptions, ConsumerStart};
use super::error::{BusError, PublishError};
use super::event::{Event, NewEvent, Payload};
use super::policy::{Policy, PolicyMode, Refusal, Role};
use super::store::{BoxFuture, EventStore, HistoryQuery, Order, StoreError};
use super::subscription::{StartAt, Subscription};
use super::topic::{Topic, TopicPattern};

/// Opens stores for the suite.
pub trait Backend: Send + Sync {
    /// The store called `name` (`[a-z_]+`): empty on first open, the same events and
    /// consumers when reopened after every handle to it was dropped.
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn EventStore>, StoreError>>;
}

/// Every case, in order.
pub async fn run_all(backend: &dyn Backend) {
    sequences_are_gap_free_under_concurrent_publishers(backend).await;
    events_round_trip(backend).await;
    history_filters(backend).await;
    long_history_reads(backend).await;
    patterns_route_live_events(backend).await;
    subscriptions_catch_up_and_survive_lag(backend).await;
    durable_consumers_resume_after_restart(backend).await;
    durable_consumers_redeliver_and_wait(backend).await;
    stats_and_health(backend).await;
    the_gate_refuses_and_records(backend).await;
    bad_input_is_refused_without_a_trace(backend).await;
}

/// How long a case waits for something that should arrive at once.
const PATIENCE: Duration = Duration::from_secs(20);

async fn open(backend: &dyn Backend, name: &str) -> Arc<dyn EventStore> {
    match backend.open(name).await {
        Ok(store) => store,
        Err(e) => panic!("opening store {name:?}: {e}"),
    }
}

fn bus(store: &Arc<dyn EventStore>) -> Bus {
    Bus::new(store.clone(), Policy::default())
}

async fn publish(bus: &Bus, topic: &str, payload: Value) -> Event {
    match bus.publish(topic, payload, Role::System).await {
        Ok(event) => event,
        Err(e) => panic!("publishing to {topic}: {e}"),
    }
}

async fn history(store: &Arc<dyn EventStore>, query: HistoryQuery) -> Vec<Event> {
    match store.read(query.clone()).await {
        Ok(events) => events,
        Err(e) => panic!("reading {query:?}: {e}"),
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn pattern(text: &str) -> TopicPattern {
    TopicPattern::parse(text).unwrap_or_else(|e| panic!("pattern {text:?}: {e}"))
}

async fn next_event(sub: &mut Subscription) -> Event {
    match tokio::time::timeout(PATIENCE, sub.next()).await {
        Ok(Ok(Some(event))) => (*event).clone(),
        Ok(Ok(None)) => panic!("subscription {:?} ended", sub.pattern().as_str()),
        Ok(Err(e)) => panic!("subscription {:?}: {e}", sub.pattern().as_str()),
        Err(_) => panic!(
            "subscription {:?}: nothing within {PATIENCE:?}",
            sub.pattern().as_str()
        ),
    }
}

/// 16 publishers at once: sequence numbers 1..=N, each used once, increasing per publisher,
/// history in the same order with non-decreasing timestamps; an atomic multi-event append
/// gets consecutive numbers.
pub async fn sequences_are_gap_free_under_concurrent_publishers(backend: &dyn Backend) {
    const PUBLISHERS: u64 = 16;
    const EACH: u64 = 25;
    let store = open(backend, "sequences").await;
    let bus = bus(&store);
    let mut tasks = JoinSet::new();
    for publisher in 0..PUBLISHERS {
        let bus = bus.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..EACH {
                let payload = json!({"publisher": publisher, "n": n});
                seqs.push(publish(&bus, "envsync.drift", payload).await.seq);
            }
            (publisher, seqs)
        });
    }
    let mut all = Vec::new();
    let mut owner = std::collections::HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (publisher, seqs) = joined.expect("publisher task panicked");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "publisher {publisher} saw its seqs go backwards: {seqs:?}"
        );
        for (n, seq) in seqs.iter().enumerate() {
            owner.insert(*seq, (publisher, n as u64));
        }
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = PUBLISHERS * EACH;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "seqs must be 1..={total}, each once"
    );

    let stored = history(&store, HistoryQuery::default().limit(10_000)).await;
    assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
    for event in &stored {
        let (publisher, n) = owner[&event.seq];
        assert_eq!(
            event.payload.get("publisher"),
            Some(&json!(publisher)),
            "seq {}",
            event.seq
        );
        assert_eq!(event.payload.get("n"), Some(&json!(n)), "seq {}", event.seq);
    }
    assert!(
        stored.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "timestamps must not decrease along the sequence"
    );

    let batch: Vec<NewEvent> = (0..3)
        .map(|i| {
            let mut payload = Payload::new();
            payload.insert("i".into(), i.into());
            NewEvent::new(
                Topic::new("deploy.render").expect("topic"),
                "system",
                payload,
            )
        })
        .collect();
    let appended = store.append(batch).await.expect("batch append");
    assert_eq!(seqs(&appended), vec![total + 1, total + 2, total + 3]);
    assert_eq!(store.last_seq().await.expect("last seq"), total + 3);
}

/// What `publish` returns is what history returns, and the envelope has the three fields.
pub async fn events_round_trip(backend: &dyn Backend) {
    let store = open(backend, "round_trip").await;
    let bus = bus(&store);
    let before = OffsetDateTime::now_utc();
    let payload = json!({
        "verified_at": "2025-10-11T22:43:00Z",
        "has_drift": true,
        "missing_in_github": ["AUTO_DIAGNOSE", "CORS_ALLOW_ALL"],
        "conflicts": {"DEBUG": {"render": "false", "github": "<secret>"}},
        "summary": {"total_keys": 45, "drift_count": 5},
        "ratio": 0.5,
        "note": "ünïcödé \"quoted\"\n",
    });
    let published = publish(&bus, "envsync.drift", payload.clone()).await;
    let stored = history(&store, HistoryQuery::default()).await;
    assert_eq!(stored, vec![published.clone()]);
    assert_eq!(published.who, "system");
    assert_eq!(Value::Object(published.payload.clone()), payload);

    let envelope = published.envelope();
    assert_eq!(envelope["_genesis_topic"], "envsync.drift");
    assert_eq!(envelope["_genesis_seq"], published.seq);
    let stamp = envelope["_genesis_timestamp"]
        .as_str()
        .expect("timestamp is a string");
    assert!(stamp.ends_with('Z'), "UTC: {stamp}");
    let parsed = OffsetDateTime::parse(stamp, &Rfc3339).expect("RFC 3339");
    assert_eq!(parsed, published.timestamp);
    let slack = time::Duration::seconds(5);
    assert!(
        parsed >= before - slack && parsed <= OffsetDateTime::now_utc() + slack,
        "timestamp {stamp} is not now"
    );
    assert_eq!(envelope["summary"]["total_keys"], 45);
}

/// Pattern, sequence bounds, time range, limit and order, alone and combined.
pub async fn history_filters(backend: &dyn Backend) {
    let store = open(backend, "history").await;
    let bus = bus(&store);
    let topics = [
        "envsync.init",
        "envsync.drift",
        "deploy.render",
        "deploy.platform.start",
        "envsync.drift",
        "config_update",
        "genesis.intent",
        "envsync.complete",
    ];
    let mut events = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        events.push(publish(&bus, topic, json!({"i": i})).await);
        // Distinct timestamps, so that time ranges have exact answers.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(seqs(&events), (1..=8).collect::<Vec<_>>());

    let q = HistoryQuery::default;
    let cases: Vec<(HistoryQuery, Vec<u64>)> = vec![
        (q(), vec![1, 2, 3, 4, 5, 6, 7, 8]),
        (q().pattern(pattern("envsync.*")), vec![1, 2, 5, 8]),
        (q().pattern(pattern("deploy.>")), vec![3, 4]),
        (q().pattern(pattern("deploy.*")), vec![3]),
        (q().pattern(pattern("*.drift")), vec![2, 5]),
        (q().pattern(pattern("envsync.drift")), vec![2, 5]),
        (q().pattern(pattern(">")), vec![1, 2, 3, 4, 5, 6, 7, 8]),
        (q().pattern(pattern("nothing.here")), vec![]),
        (q().after_seq(4), vec![5, 6, 7, 8]),
        (q().until_seq(3), vec![1, 2, 3]),
        (
            q().pattern(pattern("envsync.*")).after_seq(2).until_seq(5),
            vec![5],
        ),
        (q().limit(3), vec![1, 2, 3]),
        (q().limit(0), vec![]),
        (q().newest_first().limit(3), vec![8, 7, 6]),
        (
            q().pattern(pattern("envsync.*")).newest_first().limit(2),
            vec![8, 5],
        ),
        (
            q().pattern(pattern("*.drift")).after_seq(2).limit(1),
            vec![5],
        ),
        (
            q().time_range(Some(events[3].timestamp), Some(events[6].timestamp)),
            vec![4, 5, 6],
        ),
        (q().time_range(Some(events[7].timestamp), None), vec![8]),
        (q().time_range(None, Some(events[0].timestamp)), vec![]),
        (
            q().pattern(pattern("envsync.*"))
                .time_range(Some(events[1].timestamp), None)
                .newest_first(),
            vec![8, 5, 2],
        ),
    ];
    for (query, want) in cases {
        let got = history(&store, query.clone()).await;
        assert_eq!(seqs(&got), want, "{query:?}");
        assert!(got.iter().all(|e| query.admits(e)), "{query:?}");
    }
}

/// Reads long enough for a backend to stream them rather than fetch event by event, over a
/// dense topic, a sparse one and a missing one, answered exactly as a model of the log says.
pub async fn long_history_reads(backend: &dyn Backend) {
    const EVENTS: u64 = 300;
    let store = open(backend, "long_history").await;
    let bus = bus(&store);
    // Dense `envsync.drift` and `deploy.render`; `genesis.heal` only at 5 and 290, so a
    // read of it has long stretches with nothing to return.
    let topic_of = |n: u64| match n {
        5 | 290 => "genesis.heal",
        n if n % 3 == 0 => "deploy.render",
        _ => "envsync.drift",
    };
    let mut log = Vec::new();
    for chunk in (1..=EVENTS).collect::<Vec<_>>().chunks(50) {
        let batch = chunk
            .iter()
            .map(|&n| (topic_of(n), json!({"n": n})))
            .collect();
        match bus.publish_all(batch, Role::System).await {
            Ok(events) => log.extend(events),
            Err(e) => panic!("publishing a batch: {e}"),
        }
    }
    assert_eq!(seqs(&log), (1..=EVENTS).collect::<Vec<_>>());

    let q = HistoryQuery::default;
    let mut queries = Vec::new();
    for text in [
        None,
        Some("envsync.*"),
        Some("genesis.heal"),
        Some("nothing.here"),
    ] {
        for limit in [1, 33, 100, 1_000] {
            for (after, until) in [(None, None), (Some(40), Some(260)), (Some(6), None)] {
                let mut query = q().limit(limit);
                if let Some(text) = text {
                    query = query.pattern(pattern(text));
                }
                if let Some(after) = after {
                    query = query.after_seq(after);
                }
                if let Some(until) = until {
                    query = query.until_seq(until);
                }
                queries.push(query.clone());
                queries.push(query.newest_first());
            }
        }
    }
    for query in queries {
        let mut want: Vec<u64> = log
            .iter()
            .filter(|e| query.admits(e))
            .map(|e| e.seq)
            .collect();
        if query.order == Order::Descending {
            want.reverse();
        }
        want.truncate(query.effective_limit());
        let got = history(&store, query.clone()).await;
        assert_eq!(seqs(&got), want, "{query:?}");
        for event in &got {
            let stored = &log[(event.seq - 1) as usize];
            assert_eq!(event, stored, "{query:?}");
        }
    }
}

/// Live subscriptions see exactly the events their pattern matches, in order.
pub async fn patterns_route_live_events(backend: &dyn Backend) {
    let store = open(backend, "patterns").await;
    let bus = bus(&store);
    publish(&bus, "envsync.init", json!({})).await; // before anyone listens
    let patterns = ["envsync.*", "deploy.>", ">", "*.drift", "deploy.platform.*"];
    let mut subs = Vec::new();
    for p in patterns {
        subs.push(bus.subscribe(p, StartAt::Now).await.expect("subscribe"));
    }
    let topics = [
        "envsync.drift",
        "deploy.render",
        "deploy.platform.failure",
        "config_update",
        "envsync.commit",
        "autosync.drift",
    ];
    let mut published = Vec::new();
    for topic in topics {
        published.push(publish(&bus, topic, json!({"t": topic})).await);
    }
    for (p, sub) in patterns.iter().zip(subs.iter_mut()) {
        let matcher = pattern(p);
        let want: Vec<u64> = published
            .iter()
            .filter(|e| matcher.matches(&e.topic))
            .map(|e| e.seq)
            .collect();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            got.push(next_event(sub).await.seq);
        }
        assert_eq!(got, want, "subscription {p}");
    }
    assert!(
        matches!(
            bus.subscribe("deploy.>.x", StartAt::Now).await,
            Err(BusError::InvalidPattern(_))
        ),
        "a `>` before the end is refused"
    );
}

/// A subscription started in the past replays from the store, then goes live; one that
/// falls far behind the live feed still gets every event, in order.
pub async fn subscriptions_catch_up_and_survive_lag(backend: &dyn Backend) {
    const BURST: u64 = 5_000;
    const BATCH: u64 = 250;
    let store = open(backend, "lag").await;
    let bus = bus(&store);
    for i in 1..=5 {
        publish(&bus, "envsync.drift", json!({"i": i})).await;
    }
    let mut replay = bus
        .subscribe("envsync.*", StartAt::After(2))
        .await
        .expect("subscribe");
    for want in 3..=5 {
        assert_eq!(next_event(&mut replay).await.seq, want);
    }
    let live = publish(&bus, "envsync.commit", json!({})).await;
    assert_eq!(next_event(&mut replay).await.seq, live.seq);

    // A subscriber that does not read while thousands of events go by.
    let mut slow = bus.subscribe(">", StartAt::Now).await.expect("subscribe");
    let first = store.last_seq().await.expect("last seq") + 1;
    for b in 0..BURST / BATCH {
        let batch = (0..BATCH)
            .map(|i| {
                let mut payload = Payload::new();
                payload.insert("i".into(), (b * BATCH + i).into());
                NewEvent::new(
                    Topic::new("deploy.render").expect("topic"),
                    "system",
                    payload,
                )
            })
            .collect();
        store.append(batch).await.expect("append burst");
    }
    for want in first..first + BURST {
        let event = next_event(&mut slow).await;
        assert_eq!(event.seq, want, "a lagging subscription must stay gap-free");
    }
    let after = publish(&bus, "config_update", json!({})).await;
    assert_eq!(next_event(&mut slow).await.seq, after.seq);
}

/// A durable consumer resumes after its last ack when the store is reopened (at least once:
/// delivered but unacked events come again); its pattern is fixed; acks only move forward.
pub async fn durable_consumers_resume_after_restart(backend: &dyn Backend) {
    let store = open(backend, "consumers").await;
    let bus = bus(&store);
    let mut drifts = Vec::new();
    for i in 0..6 {
        drifts.push(publish(&bus, "envsync.drift", json!({"i": i})).await.seq);
        publish(&bus, "deploy.render", json!({"i": i})).await;
    }
    let mut consumer = bus
        .consumer("autonomy", "envsync.*")
        .await
        .expect("consumer");
    assert_eq!(consumer.acked_seq(), 0);
    let batch = consumer.next_batch(4).await.expect("batch");
    assert_eq!(seqs(&batch), drifts[..4]);
    consumer.ack(batch[1].seq).await.expect("ack");
    let ahead = batch[3].seq + 1;
    assert!(
        matches!(
            consumer.ack(ahead).await,
            Err(BusError::AckNotDelivered { .. })
        ),
        "acking past what was delivered is refused"
    );
    consumer
        .ack(batch[0].seq)
        .await
        .expect("an old ack is a no-op");
    assert_eq!(consumer.acked_seq(), batch[1].seq);

    drop((consumer, bus, store));
    let store = open(backend, "consumers").await;
    let bus = self::bus(&store);
    let mut consumer = bus
        .consumer("autonomy", "envsync.*")
        .await
        .expect("reopened consumer");
    assert_eq!(
        consumer.acked_seq(),
        drifts[1],
        "the floor survives a restart"
    );
    let again = consumer.next_batch(10).await.expect("batch");
    assert_eq!(
        seqs(&again),
        drifts[2..],
        "resumes right after the last ack, redelivering what was not acked"
    );
    consumer.ack(drifts[5]).await.expect("ack all");
    assert!(
        matches!(
            bus.consumer("autonomy", "deploy.>").await,
            Err(BusError::Store(StoreError::ConsumerPatternMismatch { .. }))
        ),
        "a consumer's pattern cannot change under it"
    );

    drop((consumer, bus, store));
    let store = open(backend, "consumers").await;
    let bus = self::bus(&store);
    let mut consumer = bus
        .consumer("autonomy", "envsync.*")
        .await
        .expect("consumer");
    assert!(consumer.next_batch(10).await.expect("batch").is_empty());
    let next = publish(&bus, "envsync.commit", json!({})).await;
    assert_eq!(
        seqs(&consumer.next_batch(10).await.expect("batch")),
        vec![next.seq]
    );

    let options = ConsumerOptions {
        start: ConsumerStart::New,
        ..ConsumerOptions::default()
    };
    let mut late = bus
        .consumer_with("latecomer", ">", options)
        .await
        .expect("consumer");
    assert!(late.next_batch(10).await.expect("batch").is_empty());
    let fresh = publish(&bus, "config_update", json!({})).await;
    assert_eq!(
        seqs(&late.next_batch(10).await.expect("batch")),
        vec![fresh.seq]
    );

    for bad in ["", "a.b", "has space", "x>"] {
        assert!(
            matches!(
                bus.consumer(bad, ">").await,
                Err(BusError::InvalidConsumerName { .. })
            ),
            "consumer name {bad:?}"
        );
    }
    assert!(bus.delete_consumer("latecomer").await.expect("delete"));
    assert!(!bus.delete_consumer("latecomer").await.expect("delete"));
}

/// Unacked events come back after `ack_wait`; `wait_batch` wakes for a new event.
pub async fn durable_consumers_redeliver_and_wait(backend: &dyn Backend) {
    let store = open(backend, "redelivery").await;
    let bus = bus(&store);
    for i in 0..4 {
        publish(&bus, "envsync.drift", json!({"i": i})).await;
    }
    let options = ConsumerOptions {
        // Long enough that the second batch below comes well within it on a busy machine.
        ack_wait: Duration::from_millis(500),
        ..ConsumerOptions::default()
    };
    let mut consumer = bus
        .consumer_with("retry", "envsync.*", options)
        .await
        .expect("consumer");
    assert_eq!(
        seqs(&consumer.next_batch(2).await.expect("batch")),
        vec![1, 2]
    );
    assert_eq!(
        seqs(&consumer.next_batch(2).await.expect("batch")),
        vec![3, 4]
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        seqs(&consumer.next_batch(2).await.expect("batch")),
        vec![1, 2],
        "unacked events are delivered again after ack_wait"
    );
    consumer.ack(2).await.expect("ack");
    consumer.redeliver();
    assert_eq!(
        seqs(&consumer.next_batch(5).await.expect("batch")),
        vec![3, 4]
    );
    consumer.ack(4).await.expect("ack");

    let quiet = consumer
        .wait_batch(5, Duration::from_millis(50))
        .await
        .expect("wait");
    assert!(quiet.is_empty());
    let publisher = bus.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publish(&publisher, "deploy.render", json!({})).await; // does not match: keeps waiting
        publish(&publisher, "envsync.commit", json!({})).await.seq
    });
    let woke = consumer.wait_batch(5, PATIENCE).await.expect("wait");
    let want = later.await.expect("publisher task");
    assert_eq!(seqs(&woke), vec![want]);
}

/// Counts per topic and in the last hour; health shows the store, last seq and consumer lag.
pub async fn stats_and_health(backend: &dyn Backend) {
    let store = open(backend, "stats").await;
    let bus = bus(&store);
    for _ in 0..3 {
        publish(&bus, "envsync.drift", json!({})).await;
    }
    for _ in 0..2 {
        publish(&bus, "deploy.render", json!({})).await;
    }
    let refused = bus.publish("genesis.heal", json!({}), Role::Operator).await;
    assert!(refused.is_err());
    let stats = bus.stats().await.expect("stats");
    assert_eq!(stats.total, 6);
    assert_eq!(stats.last_seq, 6);
    assert_eq!(stats.last_hour, 6);
    assert!(
        (stats.per_minute - 0.1).abs() < 1e-9,
        "{}",
        stats.per_minute
    );
    let by_topic: Vec<(&str, u64)> = stats
        .by_topic
        .iter()
        .map(|(t, n)| (t.as_str(), *n))
        .collect();
    assert_eq!(
        by_topic,
        vec![
            ("deploy.render", 2),
            ("envsync.drift", 3),
            ("genesis.blocked", 1)
        ]
    );
    let old = store
        .stats(OffsetDateTime::now_utc() + time::Duration::HOUR)
        .await
        .expect("stats");
    assert_eq!(old.recent, 0, "nothing is stamped in the future");

    let mut consumer = bus
        .consumer("watcher", "envsync.*")
        .await
        .expect("consumer");
    let batch = consumer.next_batch(1).await.expect("batch");
    consumer.ack(batch[0].seq).await.expect("ack");
    bus.consumer("idle", ">").await.expect("consumer");
    let health = bus.health().await;
    assert!(health.reachable, "{:?}", health.error);
    assert_eq!(health.last_seq, Some(6));
    assert!(!health.store.is_empty());
    let lags: Vec<(&str, u64, u64)> = health
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.acked_seq, c.pending))
        .collect();
    assert_eq!(lags, vec![("idle", 0, 6), ("watcher", 1, 2)]);
}

/// Refusals by role and by strict mode; each is recorded as `genesis.blocked` with exactly
/// `{topic, who, reason}`, published as `system`, without the refused payload.
pub async fn the_gate_refuses_and_records(backend: &dyn Backend) {
    let store = open(backend, "gate").await;
    let bus = bus(&store);
    let marker = "PAYLOAD-MUST-NOT-LEAK";
    let allowed = bus
        .publish(
            "deploy.platform.start",
            json!({"by": "operator"}),
            Role::Operator,
        )
        .await
        .expect("operators may publish deploy.>");
    assert_eq!(allowed.who, "operator");

    let cases = [
        ("genesis.heal", Role::Operator),
        ("envsync.drift", Role::Observer),
        ("config_update", Role::Operator),
    ];
    for (topic, role) in cases {
        let err = bus
            .publish(topic, json!({"secret_note": marker}), role)
            .await
            .expect_err("must be refused");
        let PublishError::Refused {
            refusal: Refusal::NotGranted { .. },
            blocked_seq,
        } = err
        else {
            panic!("{topic} as {role}: expected a recorded NotGranted refusal, got {err:?}");
        };
        let blocked = history(
            &store,
            HistoryQuery::default().after_seq(blocked_seq - 1).limit(1),
        )
        .await;
        assert_eq!(blocked.len(), 1);
        let event = &blocked[0];
        assert_eq!(event.topic, "genesis.blocked");
        assert_eq!(event.who, "system");
        let keys: BTreeSet<&str> = event.payload.keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["reason", "topic", "who"]));
        assert_eq!(event.payload["topic"], topic);
        assert_eq!(event.payload["who"], role.as_str());
        assert!(!event.envelope().to_string().contains(marker));
    }
    let everything = history(&store, HistoryQuery::default()).await;
    assert_eq!(
        everything.len(),
        1 + cases.len(),
        "refused payloads are not stored"
    );

    let strict = Bus::new(store.clone(), Policy::new(PolicyMode::Strict));
    strict
        .publish("deploy.platform.success", json!({}), Role::Admiral)
        .await
        .expect("known topic");
    strict
        .publish("autosync.plan", json!({}), Role::System)
        .await
        .expect("autosync.* is known");
    let err = strict
        .publish("envsync.typo", json!({}), Role::System)
        .await
        .expect_err("unknown topic in strict mode");
    assert!(
        matches!(
            err,
            PublishError::Refused {
                refusal: Refusal::UnknownTopic { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let loose = bus.publish("envsync.typo", json!({}), Role::System).await;
    assert!(loose.is_ok(), "permissive mode accepts unknown topics");
}

/// Malformed input gets a typed error and stores nothing, not even `genesis.blocked`.
pub async fn bad_input_is_refused_without_a_trace(backend: &dyn Backend) {
    let store = open(backend, "bad_input").await;
    let bus = bus(&store);
    let small = bus.clone().with_max_payload_bytes(64);
    let cases: Vec<(&Bus, &str, Value, Role)> = vec![
        (&bus, "Bad Topic", json!({}), Role::System),
        (&bus, "envsync..drift", json!({}), Role::System),
        (&bus, "envsync.*", json!({}), Role::System),
        (&bus, "", json!({}), Role::Observer),
        (&bus, "envsync.drift", json!([1, 2]), Role::System),
        (&bus, "envsync.drift", json!("text"), Role::System),
        (&bus, "envsync.drift", Value::Null, Role::System),
        (
            &bus,
            "envsync.drift",
            json!({"_genesis_seq": 1}),
            Role::System,
        ),
        (
            &bus,
            "envsync.drift",
            json!({"ok": 1, "_genesis_topic": "x"}),
            Role::Observer,
        ),
        (
            &small,
            "envsync.drift",
            json!({"blob": "x".repeat(64)}),
            Role::System,
        ),
    ];
    for (bus, topic, payload, role) in cases {
        let err = bus
            .publish(topic, payload.clone(), role)
            .await
            .expect_err("bad input must be refused");
        assert!(err.is_bad_input(), "{topic:?} {payload}: {err:?}");
        assert!(err.refusal().is_none());
    }
    assert_eq!(
        store.last_seq().await.expect("last seq"),
        0,
        "nothing stored"
    );

    // The size limit is inclusive and counts compact JSON: {"blob":"…"} is 11 bytes + body.
    small
        .publish(
            "envsync.drift",
            json!({"blob": "x".repeat(53)}),
            Role::System,
        )
        .await
        .expect("exactly at the limit");
    let default_limit = super::bus::DEFAULT_MAX_PAYLOAD_BYTES;
    let too_big = json!({"blob": "x".repeat(default_limit)});
    assert!(matches!(
        bus.publish("envsync.drift", too_big, Role::System).await,
        Err(PublishError::PayloadTooLarge { limit, .. }) if limit == default_limit
    ));
    // Nested keys are the payload's own business.
    bus.publish(
        "envsync.drift",
        json!({"inner": {"_genesis_seq": 1}}),
        Role::System,
    )
    .await
    .expect("only top-level keys are reserved");
}

/// The durable consumer (on `envsync.*`) the kill -9 workload acks.
pub const KILL9_CONSUMER: &str = "kill9";

/// The child's half of a kill -9 test, run in a process of its own on `bus`: 4 publishers
/// print `ACK <seq>` on stdout for every acknowledged publish, while the durable consumer
/// [`KILL9_CONSUMER`] prints `CONSUMED <seq>` after each of its acks. Runs until killed (or
/// for 60 s, so that a parent that died without killing it does not leave it running).
pub async fn kill9_workload(bus: Bus) {
    use std::io::Write as _;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        // A parent that stopped reading is about to kill us anyway.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let mut consumer = bus
        .consumer(KILL9_CONSUMER, "envsync.*")
        .await
        .expect("consumer");
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while std::time::Instant::now() < give_up {
            let batch = consumer
                .wait_batch(16, Duration::from_millis(100))
                .await
                .expect("consumer batch");
            if let Some(last) = batch.last() {
                consumer.ack(last.seq).await.expect("consumer ack");
                say(format!("CONSUMED {}", last.seq));
            }
        }
    });
    for p in 0..4 {
        let bus = bus.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            while std::time::Instant::now() < give_up {
                let topic = if n % 5 == 4 {
                    "deploy.render"
                } else {
                    "envsync.drift"
                };
                let event = bus
                    .publish(topic, json!({"publisher": p, "n": n}), Role::System)
                    .await
                    .expect("publish");
                say(format!("ACK {}", event.seq));
                n += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("kill -9 workload task");
    }
}

/// The parent's half: starts `child` (a process running [`kill9_workload`]) with its stdout
/// piped, SIGKILLs it mid-burst once it has acknowledged `min_acks` publishes and its
/// consumer has acked at least `min_consumed`, and returns every acknowledged sequence and
/// the highest consumer ack, counting the lines already in the pipe at the kill.
pub fn kill9_run(
    mut child: std::process::Command,
    min_acks: usize,
    min_consumed: u64,
) -> (Vec<u64>, u64) {
    use std::io::BufRead as _;
    let mut child = child
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the kill -9 child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let mut consumed = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let record = |line: &str, acked: &mut Vec<u64>, consumed: &mut u64| {
        if let Some(seq) = line.strip_prefix("ACK ") {
            acked.push(seq.parse().expect("ACK <seq>"));
        } else if let Some(seq) = line.strip_prefix("CONSUMED ") {
            *consumed = (*consumed).max(seq.parse().expect("CONSUMED <seq>"));
        }
    };
    for line in lines.by_ref() {
        record(&line.expect("child output"), &mut acked, &mut consumed);
        if acked.len() >= min_acks && consumed >= min_consumed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child is too slow: {} acks",
            acked.len()
        );
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    for line in lines {
        record(&line.expect("child output"), &mut acked, &mut consumed);
    }
    assert!(
        acked.len() >= min_acks,
        "the child died early: {} acks",
        acked.len()
    );
    (acked, consumed)
}

/// After the kill, on the reopened store: every acknowledged event is there, the log is
/// `1..=last` without a gap, the consumer's floor is at least its last confirmed ack and it
/// resumes right after it, and the next publish gets `last + 1`.
pub async fn kill9_check(store: &Arc<dyn EventStore>, mut acked: Vec<u64>, consumed: u64) {
    let max_acked = acked.iter().copied().max().unwrap_or(0);
    let last = store.last_seq().await.expect("last seq");
    assert!(
        last >= max_acked,
        "acked up to {max_acked}, stored up to {last}"
    );
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = history(
            store,
            HistoryQuery::default().after_seq(after).limit(10_000),
        )
        .await;
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        stored.extend(page.into_iter().map(|e| e.seq));
    }
    assert_eq!(
        stored,
        (1..=last).collect::<Vec<_>>(),
        "in order, without gaps"
    );
    acked.sort_unstable();
    acked.dedup();
    assert!(
        acked.iter().all(|seq| *seq <= last),
        "every acknowledged seq is stored"
    );

    let bus = bus(store);
    let mut consumer = bus
        .consumer(KILL9_CONSUMER, "envsync.*")
        .await
        .expect("reopened consumer");
    assert!(
        consumer.acked_seq() >= consumed,
        "the consumer's floor {} is behind its last confirmed ack {consumed}",
        consumer.acked_seq()
    );
    let resumed = consumer.next_batch(1).await.expect("batch");
    let expected = history(
        store,
        HistoryQuery::default()
            .pattern(pattern("envsync.*"))
            .after_seq(consumer.acked_seq())
            .limit(1),
    )
    .await;
    assert_eq!(resumed, expected, "resumes right after its last ack");
    let next = publish(&bus, "envsync.drift", json!({"after": "kill"})).await;
    assert_eq!(next.seq, last + 1, "the log goes on right after its end");
}
