//! `cargo bench -p bridge-genesis-scale --bench nats`: the NATS JetStream store against the
//! server at `BRIDGE_TEST_NATS_URL` (default `127.0.0.1:4222`); says so and exits when there
//! is none.
//!
//! - 16 concurrent publishers, one event per append, each awaiting its append before the
//!   next: events/s, beside a bare async-nats publish loop of the same shape (single-event
//!   appends are pipelined, so the PubAck round trips overlap as the bare loop's do), the
//!   median of alternating rounds; then once more with a live receiver open;
//! - a second baseline: the same bare loop sending a `Nats-Msg-Id` header as the store must
//!   (the issue requires it, for de-duplication), which shows how much of the gap is the
//!   server's de-duplication rather than the store's code. The target is judged against the
//!   loop without it;
//! - with a live receiver open (as in `serve`), the store beside that loop while a raw
//!   ordered consumer drains the bare stream: the server then delivers every message twice,
//!   and this shows how much of the drop is that rather than the store's decoding;
//! - one publisher: append-to-ack latency p50 / p99;
//! - reads: the first 10,000 events oldest first, and a 100-event tail (one direct get per event).
//!
//! Each run uses fresh streams, deleted at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bridge_genesis::bus::{EventStore, HistoryQuery, NewEvent, Payload, Topic};
use bridge_genesis_scale::{NatsOptions, NatsStore};

const PUBLISHERS: usize = 16;
const EACH: usize = 1_000;
const LATENCY_SAMPLES: usize = 1_000;
const ROUNDS: usize = 5;

/// Unique `Nats-Msg-Id`s for the baseline with the header.
static BARE_IDS: AtomicU64 = AtomicU64::new(0);

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

/// The body the store writes for `event(n)` (same `who`, a current-size `ts_us`), so the
/// baseline publishes the same bytes.
fn bare_body(n: usize) -> String {
    let ts_us = 1_763_852_400_000_000_i64;
    format!(
        r#"{{"who":"system","ts_us":{ts_us},"payload":{}}}"#,
        serde_json::json!({"n": n, "note": "drift in two keys"})
    )
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or_default()
}

/// One round of the store: every publisher appends EACH single events, one at a time.
async fn store_round(
    store: &Arc<NatsStore>,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
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
    Ok((PUBLISHERS * EACH) as f64 / started.elapsed().as_secs_f64())
}

/// One round of the bare loop: the same publishers and bodies straight through async-nats,
/// each awaiting its PubAck before the next; `with_id` adds a unique `Nats-Msg-Id`.
async fn bare_round(
    js: &async_nats::jetstream::Context,
    subject: &str,
    with_id: bool,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let js = js.clone();
        let subject = subject.to_owned();
        tasks.spawn(async move {
            for n in 0..EACH {
                let ack = if with_id {
                    let mut headers = async_nats::HeaderMap::new();
                    let id = format!("bare-{}", BARE_IDS.fetch_add(1, Ordering::Relaxed));
                    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
                    js.publish_with_headers(subject.clone(), headers, bare_body(n).into())
                        .await?
                } else {
                    js.publish(subject.clone(), bare_body(n).into()).await?
                };
                ack.await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok((PUBLISHERS * EACH) as f64 / started.elapsed().as_secs_f64())
}

/// [`bare_round`] with the header while a raw ordered push consumer (no decoding) drains
/// the new messages of the bare stream, as the store's live receiver drains its own.
async fn bare_round_with_consumer(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
    use futures_util::StreamExt;
    let mut bare = js.get_stream(stream).await?;
    let last = bare.info().await?.state.last_sequence;
    let consumer = bare
        .create_consumer(OrderedConfig {
            deliver_subject: format!("_INBOX.bench_{}", std::process::id()),
            filter_subject: format!("{stream}.>"),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            ..OrderedConfig::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = messages.next().await {} });
    let rate = bare_round(js, subject, true).await;
    drain.abort();
    rate
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("BRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let name = format!("gbench_{}", std::process::id());
    let options = NatsOptions::new(name.clone(), name.clone());
    let store = match NatsStore::connect(&url, options).await {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!("skipped: no NATS JetStream at {url}: {e}");
            return Ok(());
        }
    };

    // Baseline in the same run: a bare async-nats JetStream publish loop, same publishers
    // each with one publish in flight awaiting its PubAck, the same body bytes (what the
    // store writes for these events), into a stream of its own with the same storage. The
    // two alternate over ROUNDS rounds, so neither gets the warmer server; the medians count.
    let bare_name = format!("{name}_bare");
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: bare_name.clone(),
        subjects: vec![format!("{bare_name}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let mut store_rates = Vec::with_capacity(ROUNDS);
    let mut bare_rates = Vec::with_capacity(ROUNDS);
    let mut bare_id_rates = Vec::with_capacity(ROUNDS);
    let subject = format!("{bare_name}.envsync.drift");
    let total = PUBLISHERS * EACH;
    for _ in 0..ROUNDS {
        store_rates.push(store_round(&store).await?);
        bare_rates.push(bare_round(&js, &subject, false).await?);
        bare_id_rates.push(bare_round(&js, &subject, true).await?);
    }
    let store_rate = median(&mut store_rates);
    let bare_rate = median(&mut bare_rates);
    let bare_id_rate = median(&mut bare_id_rates);
    let ratio = bare_rate / store_rate;
    println!(
        "{PUBLISHERS} publishers x {EACH} single-event appends, median of {ROUNDS} rounds: \
         store {store_rate:.0} events/s, bare async-nats publish loop {bare_rate:.0} events/s; \
         bare/store {ratio:.2} (target <= 1.3: {})",
        if ratio <= 1.3 { "met" } else { "NOT MET" }
    );
    println!(
        "  bare loop with a Nats-Msg-Id header, as the store sends: {bare_id_rate:.0} events/s; \
         bare-with-id/store {:.2} (the header alone: bare/bare-with-id {:.2})",
        bare_id_rate / store_rate,
        bare_rate / bare_id_rate
    );

    // The same with a live receiver open (as in `serve`): the server then also pushes every
    // event back to this process, which decodes it for the broadcast.
    let mut live = store.live();
    let drain = tokio::spawn(async move { while live.recv().await.is_ok() {} });
    let with_live = store_round(&store).await?;
    drain.abort();
    let bare_live = bare_round_with_consumer(&js, &bare_name, &subject).await?;
    js.delete_stream(&bare_name).await?;
    println!(
        "  the same with a live receiver open: store {with_live:.0} events/s (bare/store {:.2}); \
         bare loop with the header while an ordered consumer drains its stream \
         {bare_live:.0} events/s (that/store {:.2})",
        bare_rate / with_live,
        bare_live / with_live
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

    let all = (ROUNDS + 1) * total + LATENCY_SAMPLES;
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
    Ok(())
}
