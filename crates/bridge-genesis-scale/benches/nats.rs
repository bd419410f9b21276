//! `cargo bench -p bridge-genesis-scale --bench nats`: the NATS JetStream store against the
//! server at `BRIDGE_TEST_NATS_URL` (default `127.0.0.1:4222`); says so and exits when there
//! is none.
//!
//! - 16 concurrent publishers, one event per append: events/s (appends take turns on the
//!   process lock, so this is one PubAck round trip per event);
//! - one publisher: append-to-ack latency p50 / p99;
//! - reads: the whole log oldest first, and a 100-event tail (one direct get per event).
//!
//! Each run uses fresh streams, deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_genesis::bus::{EventStore, HistoryQuery, NewEvent, Payload, Topic};
use bridge_genesis_scale::{NatsOptions, NatsStore};

const PUBLISHERS: usize = 16;
const EACH: usize = 250;
const LATENCY_SAMPLES: usize = 1_000;

fn event(n: usize) -> Result<NewEvent, Box<dyn std::error::Error + Send + Sync>> {
    let mut payload = Payload::new();
    payload.insert("n".into(), n.into());
    payload.insert("note".into(), "drift in two keys".into());
    Ok(NewEvent::new(
        Topic::new("envsync.drift")?,
        "system",
        payload,
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("BRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let name = format!("gbench_{}", std::process::id());
    let options = NatsOptions {
        stream: name.clone(),
        subject_prefix: name.clone(),
    };
    let store = match NatsStore::connect(&url, options).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!("skipped: no NATS JetStream at {url}: {e}");
            return Ok(());
        }
    };

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let store = store.clone();
        tasks.spawn(async move {
            for n in 0..EACH {
                store.append(vec![event(n)?]).await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let total = PUBLISHERS * EACH;
    let elapsed = started.elapsed();
    println!(
        "{PUBLISHERS} publishers, {total} appends: {:.0} events/s",
        total as f64 / elapsed.as_secs_f64()
    );

    // Baseline in the same run: a bare async-nats JetStream publish loop, same publishers,
    // same payload size, each awaiting its PubAck, into a stream of its own.
    let bare_name = format!("{name}_bare");
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: bare_name.clone(),
        subjects: vec![format!("{bare_name}.>")],
        ..Default::default()
    })
    .await?;
    let body = serde_json::json!({"who": "system", "ts_us": 0, "payload": {"n": 0, "note": "drift in two keys"}})
        .to_string();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let js = js.clone();
        let subject = format!("{bare_name}.envsync.drift");
        let body = body.clone();
        tasks.spawn(async move {
            for _ in 0..EACH {
                js.publish(subject.clone(), body.clone().into())
                    .await?
                    .await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let bare = started.elapsed();
    js.delete_stream(&bare_name).await?;
    println!(
        "bare async-nats publish loop, same shape: {:.0} events/s; store/bare time ratio {:.2} (target <= 1.3: {})",
        total as f64 / bare.as_secs_f64(),
        elapsed.as_secs_f64() / bare.as_secs_f64(),
        if elapsed.as_secs_f64() / bare.as_secs_f64() <= 1.3 {
            "met"
        } else {
            "NOT MET"
        }
    );

    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let at = Instant::now();
        store.append(vec![event(n)?]).await?;
        latencies.push(at.elapsed());
    }
    latencies.sort_unstable();
    println!(
        "1 publisher: append latency p50 {:?}, p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    let all = total + LATENCY_SAMPLES;
    let at = Instant::now();
    let read = store.read(HistoryQuery::default().limit(all)).await?;
    println!(
        "read {} events oldest first: {:?} ({:.0} events/s)",
        read.len(),
        at.elapsed(),
        read.len() as f64 / at.elapsed().as_secs_f64()
    );
    let at = Instant::now();
    let tail = store
        .read(HistoryQuery::default().newest_first().limit(100))
        .await?;
    println!("tail of {}: {:?}", tail.len(), at.elapsed());

    drop(store);
    let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
    js.delete_stream(&name).await?;
    js.delete_stream(format!("{name}_consumers")).await?;
    Ok(())
}
