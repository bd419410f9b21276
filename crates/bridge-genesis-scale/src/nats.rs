//! The NATS JetStream event store: the log is one stream, the stream sequence is the event
//! sequence, and several processes can share it.
//!
//! ```text
//! events:     stream <stream>, subjects <prefix>.>   one message per event, on <prefix>.<topic>,
//!             body {"who":…,"ts_us":…,"payload":{…}}, header Nats-Msg-Id (a fresh nuid)
//! consumers:  JetStream durable pull consumers on <stream>, one per bus consumer (same name,
//!             filter <prefix>.<pattern>, AckPolicy::All), so `nats consumer ls <stream>`
//!             shows them, their ack floors and their lag
//! live:       an ordered push consumer on <prefix>.>, started by the first `live()` call
//!             after the last sequence this process knew of, forwarding every message
//!             (whoever published it) into a broadcast
//! ```
//!
//! Written for NATS 2.9, which has neither atomic batch publish nor multi-filter consumers:
//!
//! - single-event appends are pipelined: each takes the append lock only to be stamped and
//!   queued on the connection (so stamps follow sequences), and awaits its PubAck outside it;
//! - a multi-event append holds that lock until its last PubAck, so a batch gets
//!   consecutive sequences against this process's writers;
//!   events 2..k of a batch carry `Nats-Expected-Last-Sequence`, so a writer in another
//!   process slipping in makes the append fail instead of interleaving. Events of that batch
//!   already stored stay stored (the stream denies deletes): across processes a batch is
//!   only all-or-nothing as far as JetStream 2.9 allows;
//! - timestamps are stamped by this process under that lock as `max(now, previous)`, so they
//!   never go backwards within a process; across processes they follow the hosts' clocks;
//! - short reads use direct get (`next_by_subj` with the pattern as a subject filter, which
//!   is the same `*`/`>` syntax), one request per returned event; longer ones stream the
//!   range through a short-lived ordered consumer, which the server pushes without a round
//!   trip per event; newest-first reads walk backwards in growing windows;
//! - a PubAck that is lost (timed out, or the connection broke, so the event may or may not
//!   be stored) is recovered by sending the same message again with the same `Nats-Msg-Id`,
//!   up to [`PUBLISH_ATTEMPTS`] times within the de-duplication window: the server answers a
//!   copy it already has with that copy's sequence instead of storing it twice, so an append
//!   is stored once or fails, never twice;
//! - a durable consumer's events are fetched through its JetStream consumer and acked there
//!   (acking one acks every earlier one, as the bus's acks do). The bus redelivers after its
//!   own `ack_wait` by NAKing what is outstanding, so the server's much longer ack wait
//!   never races it; a consumer reopened while the server still holds deliveries that were
//!   never acked (its last user died) is recreated at its ack floor, so it resumes right
//!   after its last ack instead of waiting for the server to give them up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::stream::{
    Config as StreamConfig, DirectGetErrorKind, StorageType, Stream,
};
use async_nats::jetstream::{self, Context};
use bridge_genesis::bus::{
    BoxFuture, ConsumerState, Event, EventStore, HistoryQuery, NewEvent, Order, Payload,
    StoreError, StoreStats, TopicPattern,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinHandle;

use crate::{backend_error, from_unix_micros, unix_micros};

/// Events the live broadcast holds for a slow receiver before it lags.
const LIVE_CAPACITY: usize = 4096;

/// Reads of up to this many events use one direct get each; longer ones an ordered consumer,
/// whose setup costs a few round trips but which then streams.
const DIRECT_READ_MAX: u64 = 32;

/// How long a streamed read waits for the server's next message before it gives up.
const READ_STALL: Duration = Duration::from_secs(10);

/// How long the live task waits before recreating its consumer after an error.
const LIVE_RETRY: Duration = Duration::from_secs(1);

/// The server's ack wait on durable consumers: far longer than the bus's own (which NAKs
/// for redelivery), so the server does not redeliver behind its back.
const SERVER_ACK_WAIT: Duration = Duration::from_secs(600);

/// The events stream's de-duplication window (JetStream `duplicate_window`).
const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// How many times one event is sent when its PubAck is lost. Every attempt falls within the
/// de-duplication window (see [`NatsOptions::ack_timeout`]), so retries cannot store it twice.
pub const PUBLISH_ATTEMPTS: u32 = 3;

/// The default wait for a PubAck before the event is sent again.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where [`NatsStore::connect`] keeps the bus.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The events stream (created if missing), with the durable consumers on it.
    pub stream: String,
    /// Events are published on `<subject_prefix>.<topic>`; no other stream may bind
    /// `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// How long a publish waits for its PubAck before sending the event again. Capped so
    /// that all [`PUBLISH_ATTEMPTS`] fit in the stream's de-duplication window.
    pub ack_timeout: Duration,
}

impl NatsOptions {
    /// The bus on stream `stream`, subjects `<subject_prefix>.<topic>`, default timeouts.
    pub fn new(stream: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            subject_prefix: subject_prefix.into(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    /// The PubAck wait actually used: every attempt of one event must be sent within the
    /// de-duplication window, or a late retry could store it a second time.
    fn effective_ack_timeout(&self) -> Duration {
        let cap = DUPLICATE_WINDOW / (PUBLISH_ATTEMPTS + 1);
        self.ack_timeout.clamp(Duration::from_millis(1), cap)
    }
}

/// The NATS JetStream [`EventStore`]. Cheap to clone; the live task stops with the last clone.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
    /// Where schedule slots and webhook deliveries are claimed: JetStream keeps no such
    /// tables, so the deployment's store does (see [`NatsStore::with_claims`]).
    claims: Option<Arc<dyn EventStore>>,
}

struct Inner {
    name: String,
    prefix: String,
    client: async_nats::Client,
    js: Context,
    events: Stream,
    /// The last timestamp this process stamped (µs). A single event holds it while it is
    /// stamped and queued on the connection; a batch holds it until its last PubAck.
    append: Mutex<i64>,
    /// This process's side of each durable consumer it opened.
    consumers: Mutex<HashMap<String, Outstanding>>,
    live: broadcast::Sender<Arc<Event>>,
    /// The highest sequence this process knows to be stored (at connect, then each PubAck):
    /// where the live consumer starts.
    known_seq: AtomicU64,
    /// Where the live consumer is spawned (`live()` is not async).
    runtime: tokio::runtime::Handle,
    /// The live consumer, started by the first `live()` call. A process that only publishes
    /// (a CLI command, a benchmark) never has the server push its own events back to it.
    listener: OnceLock<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("store", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// An event's message without its stamp: the body is `head`, the stamp in µs, `tail`.
/// Every attempt to store the event sends it with the same `id`.
struct Prepared {
    subject: String,
    id: String,
    head: String,
    tail: String,
}

/// An event's message body.
#[derive(Serialize, Deserialize)]
struct Body {
    who: String,
    ts_us: i64,
    payload: Payload,
}

/// This process's side of a durable consumer: its JetStream handle, the messages delivered
/// and not yet acked (in order: acking one acks all before it), how far delivery got, and
/// the floor.
struct Outstanding {
    consumer: PullConsumer,
    messages: VecDeque<(u64, async_nats::jetstream::Message)>,
    delivered: u64,
    acked: u64,
}

fn nats_err<E>(store: &str, op: &'static str) -> impl Fn(E) -> StoreError + use<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let store = store.to_owned();
    move |e| backend_error(&store, op, async_nats::Error::from(Box::new(e)))
}

impl NatsStore {
    /// Connects to `url` (`127.0.0.1:4222`, `nats://…`), creating both streams if needed.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Self, StoreError> {
        // Named in every error: never with the password a URL may carry.
        let name = format!(
            "nats:{} (stream {})",
            bridge_core::redact::url_password(url),
            options.stream
        );
        let client = async_nats::connect(url)
            .await
            .map_err(nats_err(&name, "connect"))?;
        let mut js = jetstream::new(client.clone());
        // Also bounds the other JetStream requests; a local or LAN server answers in
        // milliseconds.
        js.set_timeout(options.effective_ack_timeout());
        let prefix = options.subject_prefix.clone();
        let events = js
            .get_or_create_stream(StreamConfig {
                name: options.stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                storage: StorageType::File,
                deny_delete: true,
                deny_purge: true,
                allow_direct: true,
                // How long a `Nats-Msg-Id` is remembered for de-duplication. The default two
                // minutes keeps ~3M ids in the server at 25k events/s; a retried publish comes
                // within seconds, not minutes.
                duplicate_window: DUPLICATE_WINDOW,
                ..StreamConfig::default()
            })
            .await
            .map_err(nats_err(&name, "create the events stream"))?;
        let last_seq = stream_last_seq(&events, &name).await?;
        let last_us = if last_seq == 0 {
            i64::MIN
        } else {
            let message = events
                .direct_get(last_seq)
                .await
                .map_err(nats_err(&name, "read the last event"))?;
            decode(&name, &prefix, &message)?.timestamp_us
        };
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                prefix,
                client,
                js,
                events,
                append: Mutex::new(last_us),
                consumers: Mutex::new(HashMap::new()),
                live,
                known_seq: AtomicU64::new(last_seq),
                runtime: tokio::runtime::Handle::current(),
                listener: OnceLock::new(),
            }),
            claims: None,
        })
    }

    /// Keeps the schedule and delivery claims in `store` (the deployment's `--store`), whose
    /// events are not used: the events go to JetStream, everything else stays in the store.
    pub fn with_claims(mut self, store: Arc<dyn EventStore>) -> Self {
        self.claims = Some(store);
        self
    }

    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn append_now(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        match <[NewEvent; 1]>::try_from(events) {
            Ok([event]) => self.append_one(event).await,
            Err(events) if events.is_empty() => Ok(Vec::new()),
            Err(events) => self.append_batch(events).await,
        }
    }

    /// Stamps the next append under the held append lock: `max(now, previous)`.
    fn stamp(&self, last_us: &mut i64) -> Result<(i64, OffsetDateTime), StoreError> {
        let at_us = unix_micros(OffsetDateTime::now_utc()).max(*last_us);
        let at = from_unix_micros(at_us).ok_or_else(|| StoreError::Corrupt {
            store: self.name().to_owned(),
            what: format!("the last event is stamped {at_us} µs after 1970"),
        })?;
        // Recorded before publishing: an append failing halfway may have stored some events
        // with this stamp, and the next one must not go below it.
        *last_us = at_us;
        Ok((at_us, at))
    }

    /// Everything about one event's message but its stamp, built outside the append lock.
    fn prepare(&self, event: &NewEvent) -> Result<Prepared, StoreError> {
        let who = serde_json::to_string(event.who()).map_err(|e| StoreError::Corrupt {
            store: self.name().to_owned(),
            what: format!("cannot encode the publisher: {e}"),
        })?;
        // A fresh nuid (the inbox's last token): unique to this event, and the same for
        // each of its attempts.
        let inbox = self.inner.client.new_inbox();
        let id = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        Ok(Prepared {
            subject: format!("{}.{}", self.inner.prefix, event.topic().as_str()),
            id,
            head: format!(r#"{{"who":{who},"ts_us":"#),
            tail: format!(r#","payload":{}}}"#, event.payload_json()),
        })
    }

    /// Stamps the message and hands it to the connection (in the order of calls); returns
    /// the future of its PubAck. `previous` fences it behind the event stored at that
    /// sequence.
    async fn send(
        &self,
        prepared: &Prepared,
        at_us: i64,
        previous: Option<u64>,
    ) -> Result<PublishAckFuture, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, prepared.id.as_str());
        if let Some(seq) = previous {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
                seq.to_string().as_str(),
            );
        }
        let stamp = at_us.to_string();
        let mut body =
            String::with_capacity(prepared.head.len() + stamp.len() + prepared.tail.len());
        body.push_str(&prepared.head);
        body.push_str(&stamp);
        body.push_str(&prepared.tail);
        self.inner
            .js
            .publish_with_headers(prepared.subject.clone(), headers, body.into())
            .await
            .map_err(nats_err(self.name(), "publish"))
    }

    /// Whether a failed PubAck leaves the event's fate unknown, so that sending it again
    /// with the same id is the way to find out (a refusal by the server is final).
    fn ack_lost(error: &async_nats::jetstream::context::PublishError) -> bool {
        matches!(
            error.kind(),
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
        )
    }

    /// The stamp of the event stored at `ack`: the one just sent unless the server says the
    /// message was a duplicate, in which case an earlier attempt's copy is the stored one
    /// (with that attempt's stamp), read back.
    async fn stored_stamp(
        &self,
        ack: &async_nats::jetstream::publish::PublishAck,
        sent_us: i64,
    ) -> Result<OffsetDateTime, StoreError> {
        self.inner
            .known_seq
            .fetch_max(ack.sequence, Ordering::Relaxed);
        let at_us = if ack.duplicate {
            let message = self
                .inner
                .events
                .direct_get(ack.sequence)
                .await
                .map_err(nats_err(self.name(), "read back a re-sent event"))?;
            decode(self.name(), &self.inner.prefix, &message)?.timestamp_us
        } else {
            sent_us
        };
        from_unix_micros(at_us).ok_or_else(|| StoreError::Corrupt {
            store: self.name().to_owned(),
            what: format!("event {} is stamped {at_us} µs after 1970", ack.sequence),
        })
    }

    /// One event: pipelined. The lock is held only while the event is stamped and handed to
    /// the connection, not across the PubAck round trip, so appends from many tasks are in
    /// flight together and each learns its sequence from its own PubAck.
    ///
    /// Why the stamps still follow the sequence: `publish_with_headers` resolves once the
    /// message is queued on the client's single command channel, and the connection writes
    /// that channel in order; the server stores the messages of one connection to one stream
    /// in the order it reads them. So the order of the lock is the order of the sequences,
    /// within this process.
    ///
    /// Why a lock and not `Nats-Expected-Last-Sequence` on single events: the header needs the
    /// sequence of the previous event, known only from its PubAck, which would put one round
    /// trip per event back on the critical path (the very cost this removes), and across
    /// processes it would turn every concurrent append into a conflict to retry. A single
    /// event cannot break another batch's run of consecutive sequences except by landing
    /// inside it; within this process the batch holds the lock until its last PubAck, so a
    /// single append waits for it; across processes the batch's own expected-last-sequence
    /// headers catch the intruder (see [`Self::append_batch`]).
    ///
    /// A lost PubAck sends the event again with the same id, stamped anew under the lock
    /// (the first copy may never have arrived, and a retry must not land with an older stamp
    /// than the events queued since).
    async fn append_one(&self, event: NewEvent) -> Result<Vec<Event>, StoreError> {
        let prepared = self.prepare(&event)?;
        let mut attempt = 1;
        loop {
            let (at_us, ack) = {
                let mut last_us = self.inner.append.lock().await;
                let (at_us, _) = self.stamp(&mut last_us)?;
                (at_us, self.send(&prepared, at_us, None).await?)
            };
            match ack.await {
                Ok(ack) => {
                    let at = self.stored_stamp(&ack, at_us).await?;
                    return Ok(vec![event.into_event(ack.sequence, at)]);
                }
                Err(e) if Self::ack_lost(&e) && attempt < PUBLISH_ATTEMPTS => attempt += 1,
                Err(e) => return Err(nats_err(self.name(), "publish")(e)),
            }
        }
    }

    /// Several events: consecutive sequences. The lock is held until the last PubAck, so no
    /// append of this process lands inside the batch; events 2..k carry
    /// `Nats-Expected-Last-Sequence`, so one of another process makes the append fail
    /// instead of interleaving. The events go one round trip at a time: pipelined, an event
    /// after a refused one could still be stored (its expected sequence can happen to match
    /// once the intruder is in), leaving a hole inside the batch.
    async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        let prepared = events
            .iter()
            .map(|event| self.prepare(event))
            .collect::<Result<Vec<_>, _>>()?;
        let mut last_us = self.inner.append.lock().await;
        let (at_us, at) = self.stamp(&mut last_us)?;
        let mut stored = Vec::with_capacity(events.len());
        let mut previous: Option<u64> = None;
        for (event, prepared) in events.into_iter().zip(prepared) {
            // The lock is held, so nothing of this process lands between attempts: the
            // same message (same stamp) is simply sent again.
            let mut attempt = 1;
            let ack = loop {
                match self.send(&prepared, at_us, previous).await?.await {
                    Ok(ack) => break ack,
                    Err(e) if Self::ack_lost(&e) && attempt < PUBLISH_ATTEMPTS => attempt += 1,
                    Err(e) => return Err(nats_err(self.name(), "publish")(e)),
                }
            };
            if previous.is_some_and(|p| ack.sequence != p + 1) {
                return Err(StoreError::Corrupt {
                    store: self.name().to_owned(),
                    what: format!("a batch event got seq {} after {previous:?}", ack.sequence),
                });
            }
            previous = Some(ack.sequence);
            self.inner
                .known_seq
                .fetch_max(ack.sequence, Ordering::Relaxed);
            stored.push(event.into_event(ack.sequence, at));
        }
        Ok(stored)
    }

    /// The subject filter for `pattern` (every event when `None`).
    fn filter(&self, pattern: Option<&TopicPattern>) -> String {
        match pattern {
            Some(p) => format!("{}.{}", self.inner.prefix, p.as_str()),
            None => format!("{}.>", self.inner.prefix),
        }
    }

    /// The next event at or after `seq` on `filter`, if any.
    async fn next_event(&self, filter: &str, seq: u64) -> Result<Option<Decoded>, StoreError> {
        match self
            .inner
            .events
            .direct_get_next_for_subject(filter, Some(seq.max(1)))
            .await
        {
            Ok(message) => Ok(Some(decode(self.name(), &self.inner.prefix, &message)?)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(nats_err(self.name(), "read events")(e)),
        }
    }

    /// Events on `filter` with `from <= seq <= to` that `q` admits, oldest first, at most
    /// `limit` of them.
    async fn scan(
        &self,
        filter: &str,
        from: u64,
        to: u64,
        q: &HistoryQuery,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let span = to.saturating_sub(from).saturating_add(1);
        if to < from || span.min(limit as u64) <= DIRECT_READ_MAX {
            return self.scan_direct(filter, from, to, q, limit).await;
        }
        // The first match by direct get: it says whether there is anything to stream, and
        // where the consumer starts (a sparse topic may match far after `from`).
        let Some(first) = self.next_event(filter, from).await? else {
            return Ok(Vec::new());
        };
        if first.event.seq > to {
            return Ok(Vec::new());
        }
        self.scan_streamed(filter, first.event.seq, to, q, limit)
            .await
    }

    /// [`Self::scan`] by one direct get per event.
    async fn scan_direct(
        &self,
        filter: &str,
        from: u64,
        to: u64,
        q: &HistoryQuery,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        let mut seq = from;
        while seq <= to && out.len() < limit {
            let Some(decoded) = self.next_event(filter, seq).await? else {
                break;
            };
            if decoded.event.seq > to {
                break;
            }
            seq = decoded.event.seq + 1;
            if q.admits(&decoded.event) {
                out.push(decoded.event);
            }
        }
        Ok(out)
    }

    /// [`Self::scan`] through an ordered consumer from `from`, where an event on `filter` is
    /// known to be stored. The server tells with each message how many more match
    /// (`pending`), so the read ends when that reaches zero, past `to`, or at `limit`,
    /// without waiting for events that do not exist yet.
    async fn scan_streamed(
        &self,
        filter: &str,
        from: u64,
        to: u64,
        q: &HistoryQuery,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let consumer = self
            .inner
            .events
            .create_consumer(OrderedConfig {
                deliver_subject: self.inner.client.new_inbox(),
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..OrderedConfig::default()
            })
            .await
            .map_err(nats_err(self.name(), "create a reading consumer"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(nats_err(self.name(), "read events"))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let next = tokio::time::timeout(READ_STALL, messages.next())
                .await
                .map_err(|_| StoreError::Task {
                    store: self.name().to_owned(),
                    op: "read events",
                    message: format!(
                        "the server sent nothing for {READ_STALL:?} while events up to {to} \
                         were still to come"
                    ),
                })?;
            let Some(message) = next else { break };
            let message = message.map_err(nats_err(self.name(), "read events"))?;
            let info = message
                .info()
                .map_err(|e| backend_error(self.name(), "read events", e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > to {
                break;
            }
            let decoded = decode_delivered(self.name(), &self.inner.prefix, &message, seq)?;
            if q.admits(&decoded.event) {
                out.push(decoded.event);
            }
            if pending == 0 || seq == to {
                break;
            }
        }
        Ok(out)
    }

    async fn read_now(&self, q: HistoryQuery) -> Result<Vec<Event>, StoreError> {
        let limit = q.effective_limit();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = self.filter(q.pattern.as_ref());
        let lo = q.after_seq.unwrap_or(0).saturating_add(1);
        let last = stream_last_seq(&self.inner.events, self.name()).await?;
        let hi = q.until_seq.unwrap_or(u64::MAX).min(last);
        match q.order {
            Order::Ascending => self.scan(&filter, lo, hi, &q, limit).await,
            Order::Descending => {
                // Windows of growing size from the end, so a tail does not read the log.
                let mut out = Vec::new();
                let mut top = hi;
                let mut window = (limit as u64).max(16);
                while top >= lo && out.len() < limit {
                    let start = top.saturating_sub(window - 1).max(lo);
                    let mut chunk = self.scan(&filter, start, top, &q, usize::MAX).await?;
                    chunk.reverse();
                    out.extend(chunk);
                    if start <= lo {
                        break;
                    }
                    top = start - 1;
                    window = window.saturating_mul(2);
                }
                out.truncate(limit);
                Ok(out)
            }
        }
    }

    async fn stats_now(&self, recent_since: OffsetDateTime) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats::default();
        let mut subjects = self
            .inner
            .events
            .info_with_subjects(self.filter(None))
            .await
            .map_err(nats_err(self.name(), "read stats"))?;
        while let Some(entry) = subjects.next().await {
            let (subject, n) = entry.map_err(nats_err(self.name(), "read stats"))?;
            let topic = topic_of(&self.inner.prefix, &subject).unwrap_or(&subject);
            let n = n as u64;
            stats.total += n;
            *stats.by_topic.entry(topic.to_owned()).or_default() += n;
        }
        // Backwards from the end until an event is older: exact as long as timestamps follow
        // the sequence (always within one process; across processes, up to clock skew).
        let since = unix_micros(recent_since);
        let mut seq = stream_last_seq(&self.inner.events, self.name()).await?;
        while seq > 0 {
            let message = self
                .inner
                .events
                .direct_get(seq)
                .await
                .map_err(nats_err(self.name(), "read stats"))?;
            if decode(self.name(), &self.inner.prefix, &message)?.timestamp_us < since {
                break;
            }
            stats.recent += 1;
            seq -= 1;
        }
        Ok(stats)
    }

    fn no_such_consumer(&self, name: String) -> StoreError {
        StoreError::ConsumerNotFound {
            store: self.name().to_owned(),
            name,
        }
    }

    /// Creates the durable JetStream consumer `name` with its ack floor at `floor`.
    async fn create_consumer(
        &self,
        name: &str,
        filter: String,
        floor: u64,
    ) -> Result<PullConsumer, StoreError> {
        let deliver_policy = if floor == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        };
        self.inner
            .events
            .create_consumer(PullConfig {
                durable_name: Some(name.to_owned()),
                filter_subject: filter,
                deliver_policy,
                ack_policy: AckPolicy::All,
                ack_wait: SERVER_ACK_WAIT,
                // The bus bounds what it holds itself; the server must not stop delivering
                // to a consumer that reads ahead of its acks.
                max_ack_pending: -1,
                ..PullConfig::default()
            })
            .await
            .map_err(nats_err(self.name(), "create a durable consumer"))
    }

    async fn open_consumer_now(
        &self,
        name: String,
        pattern: TopicPattern,
        start_after: u64,
    ) -> Result<u64, StoreError> {
        let filter = self.filter(Some(&pattern));
        let mut consumers = self.inner.consumers.lock().await;
        let (consumer, floor) = match self.inner.events.consumer_info(&name).await {
            Ok(info) => {
                if info.config.filter_subject != filter {
                    let stored = topic_of(&self.inner.prefix, &info.config.filter_subject)
                        .unwrap_or(&info.config.filter_subject)
                        .to_owned();
                    return Err(StoreError::ConsumerPatternMismatch {
                        store: self.name().to_owned(),
                        name,
                        stored,
                        requested: pattern.as_str().to_owned(),
                    });
                }
                let floor = info.ack_floor.stream_sequence;
                // Deliveries never acked (their reader died, or this process reopens the
                // consumer): the server would hold them back until its ack wait ran out,
                // so the consumer starts again at its floor.
                if info.num_ack_pending > 0 || consumers.contains_key(&name) {
                    self.inner
                        .events
                        .delete_consumer(&name)
                        .await
                        .map_err(nats_err(self.name(), "reset a durable consumer"))?;
                    (self.create_consumer(&name, filter, floor).await?, floor)
                } else {
                    let consumer =
                        self.inner.events.get_consumer(&name).await.map_err(|e| {
                            backend_error(self.name(), "open a durable consumer", e)
                        })?;
                    (consumer, floor)
                }
            }
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                // A floor past the end would ack events that do not exist yet.
                let last = stream_last_seq(&self.inner.events, self.name()).await?;
                let floor = start_after.min(last);
                (self.create_consumer(&name, filter, floor).await?, floor)
            }
            Err(e) => return Err(nats_err(self.name(), "open a durable consumer")(e)),
        };
        consumers.insert(
            name,
            Outstanding {
                consumer,
                messages: VecDeque::new(),
                delivered: floor,
                acked: floor,
            },
        );
        Ok(floor)
    }

    async fn consumer_read_now(
        &self,
        name: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut consumers = self.inner.consumers.lock().await;
        let Some(state) = consumers.get_mut(&name) else {
            return Err(self.no_such_consumer(name));
        };
        if after < state.delivered {
            // Deliver again from `after`: NAK what went out since, oldest first, and the
            // server sends it again, in that order, before anything new. Each NAK waits for
            // the server's confirmation: a plain one can still be queued in the server when
            // the fetch below is served, which then finds nothing to redeliver.
            let keep = state.messages.partition_point(|(seq, _)| *seq <= after);
            let resend: Vec<_> = state.messages.drain(keep..).collect();
            for (_, message) in resend {
                if let Err(e) = message.double_ack_with(AckKind::Nak(None)).await {
                    // A message not NAKed would come back only after the server's ack wait,
                    // behind newer ones: start the consumer again at its floor instead.
                    let filter = state.consumer.cached_info().config.filter_subject.clone();
                    self.inner
                        .events
                        .delete_consumer(&name)
                        .await
                        .map_err(nats_err(self.name(), "reset a durable consumer"))?;
                    state.consumer = self.create_consumer(&name, filter, state.acked).await?;
                    state.messages.clear();
                    state.delivered = state.acked;
                    return Err(backend_error(self.name(), "redeliver", e));
                }
            }
            state.delivered = after.max(state.acked);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut messages = state
            .consumer
            .fetch()
            .max_messages(limit)
            .messages()
            .await
            .map_err(nats_err(self.name(), "fetch for a durable consumer"))?;
        let mut events = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| backend_error(self.name(), "fetch", e))?;
            let seq = message
                .info()
                .map_err(|e| backend_error(self.name(), "fetch", e))?
                .stream_sequence;
            // Already handed out and still outstanding: a late copy, not news.
            if seq <= state.delivered {
                continue;
            }
            let decoded = decode_delivered(self.name(), &self.inner.prefix, &message, seq)?;
            events.push(decoded.event);
            state.delivered = seq;
            state.messages.push_back((seq, message));
        }
        Ok(events)
    }

    async fn ack_now(&self, name: String, seq: u64) -> Result<u64, StoreError> {
        if seq > self.inner.known_seq.load(Ordering::Relaxed) {
            let last_seq = stream_last_seq(&self.inner.events, self.name()).await?;
            if seq > last_seq {
                return Err(StoreError::AckBeyondEnd {
                    store: self.name().to_owned(),
                    name,
                    seq,
                    last_seq,
                });
            }
        }
        let mut consumers = self.inner.consumers.lock().await;
        let Some(state) = consumers.get_mut(&name) else {
            return Err(self.no_such_consumer(name));
        };
        if seq <= state.acked {
            return Ok(state.acked);
        }
        if seq > state.delivered {
            return Err(StoreError::AckNotDelivered {
                store: self.name().to_owned(),
                name,
                seq,
                delivered: state.delivered,
            });
        }
        // Every matching event up to `seq` was delivered here; acking the last of them
        // (AckPolicy::All) acks the rest. The double ack waits for the server to record it.
        let upto = state.messages.partition_point(|(s, _)| *s <= seq);
        if let Some((_, last)) = upto.checked_sub(1).and_then(|i| state.messages.get(i)) {
            last.double_ack()
                .await
                .map_err(|e| backend_error(self.name(), "ack a durable consumer", e))?;
        }
        state.messages.drain(..upto);
        state.acked = seq;
        Ok(seq)
    }

    async fn delete_consumer_now(&self, name: String) -> Result<bool, StoreError> {
        let mut consumers = self.inner.consumers.lock().await;
        consumers.remove(&name);
        match self.inner.events.consumer_info(&name).await {
            Ok(_) => {}
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(nats_err(self.name(), "delete a durable consumer")(e)),
        }
        self.inner
            .events
            .delete_consumer(&name)
            .await
            .map_err(nats_err(self.name(), "delete a durable consumer"))?;
        Ok(true)
    }

    async fn consumers_now(&self) -> Result<Vec<ConsumerState>, StoreError> {
        let local: HashMap<String, u64> = self
            .inner
            .consumers
            .lock()
            .await
            .iter()
            .map(|(name, state)| (name.clone(), state.acked))
            .collect();
        let mut listed = self.inner.events.consumers();
        let mut consumers = Vec::new();
        while let Some(info) = listed.next().await {
            let info = info.map_err(nats_err(self.name(), "list consumers"))?;
            // Durable consumers on our subjects only: reads and the live feed use
            // ephemeral ones.
            let (Some(name), Some(pattern)) = (
                info.config.durable_name.clone(),
                topic_of(&self.inner.prefix, &info.config.filter_subject),
            ) else {
                continue;
            };
            let acked_seq = info
                .ack_floor
                .stream_sequence
                .max(local.get(&name).copied().unwrap_or(0));
            consumers.push(ConsumerState {
                name,
                pattern: pattern.to_owned(),
                acked_seq,
                pending: info.num_pending + info.num_ack_pending as u64,
            });
        }
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(consumers)
    }
}

impl EventStore for NatsStore {
    fn describe(&self) -> String {
        self.inner.name.clone()
    }

    fn schedules(&self) -> Option<Arc<dyn bridge_genesis::schedule::ScheduleStore>> {
        self.claims.as_ref()?.schedules()
    }

    fn deliveries(&self) -> Option<Arc<dyn bridge_genesis::deliveries::DeliveryStore>> {
        self.claims.as_ref()?.deliveries()
    }

    fn append(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(self.append_now(events))
    }

    fn read(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(self.read_now(query))
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(stream_last_seq(&self.inner.events, &self.inner.name))
    }

    fn stats(&self, recent_since: OffsetDateTime) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        Box::pin(self.stats_now(recent_since))
    }

    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        let receiver = self.inner.live.subscribe();
        // Started after the last sequence known here, which every append that completed
        // before this call is at or below: whatever is committed from now on has a higher
        // sequence, so it is forwarded (a few older ones may be too; receivers skip them).
        self.inner.listener.get_or_init(|| {
            let inner = &self.inner;
            let reader = LiveReader {
                store: inner.name.clone(),
                prefix: inner.prefix.clone(),
                client: inner.client.clone(),
                events: inner.events.clone(),
                live: inner.live.clone(),
                last: inner.known_seq.load(Ordering::Relaxed),
            };
            inner.runtime.spawn(reader.run())
        });
        receiver
    }

    fn open_consumer(
        &self,
        name: String,
        pattern: TopicPattern,
        start_after: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.open_consumer_now(name, pattern, start_after))
    }

    fn consumer_read(
        &self,
        name: String,
        _pattern: TopicPattern,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(self.consumer_read_now(name, after, limit))
    }

    fn ack(&self, name: String, seq: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.ack_now(name, seq))
    }

    fn delete_consumer(&self, name: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.delete_consumer_now(name))
    }

    fn consumers(&self) -> BoxFuture<'_, Result<Vec<ConsumerState>, StoreError>> {
        Box::pin(self.consumers_now())
    }
}

async fn stream_last_seq(stream: &Stream, store: &str) -> Result<u64, StoreError> {
    let info = stream
        .get_info()
        .await
        .map_err(nats_err(store, "read the last seq"))?;
    Ok(info.state.last_sequence)
}

fn topic_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject.strip_prefix(prefix)?.strip_prefix('.')
}

/// An event and its timestamp in µs (what the next append must not go below).
struct Decoded {
    event: Event,
    timestamp_us: i64,
}

fn decode(
    store: &str,
    prefix: &str,
    message: &async_nats::jetstream::message::StreamMessage,
) -> Result<Decoded, StoreError> {
    decode_parts(
        store,
        prefix,
        &message.subject,
        message.sequence,
        &message.payload,
    )
}

/// A message a consumer delivered, whose stream sequence `seq` the caller read from its
/// reply subject.
fn decode_delivered(
    store: &str,
    prefix: &str,
    message: &async_nats::jetstream::Message,
    seq: u64,
) -> Result<Decoded, StoreError> {
    decode_parts(
        store,
        prefix,
        message.subject.as_str(),
        seq,
        &message.payload,
    )
}

fn decode_parts(
    store: &str,
    prefix: &str,
    subject: &str,
    seq: u64,
    payload: &[u8],
) -> Result<Decoded, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        store: store.to_owned(),
        what,
    };
    let topic = topic_of(prefix, subject)
        .ok_or_else(|| corrupt(format!("event {seq} has a foreign subject {subject:?}")))?;
    let body: Body = serde_json::from_slice(payload)
        .map_err(|e| corrupt(format!("event {seq} is not a Genesis event: {e}")))?;
    let timestamp = from_unix_micros(body.ts_us).ok_or_else(|| {
        corrupt(format!(
            "event {seq} has an impossible timestamp ({} µs)",
            body.ts_us
        ))
    })?;
    Ok(Decoded {
        event: Event {
            seq,
            topic: topic.to_owned(),
            timestamp,
            who: body.who,
            payload: body.payload,
        },
        timestamp_us: body.ts_us,
    })
}

/// Follows the stream with an ordered consumer and broadcasts every event in order.
struct LiveReader {
    store: String,
    prefix: String,
    client: async_nats::Client,
    events: Stream,
    live: broadcast::Sender<Arc<Event>>,
    /// The last sequence forwarded (or present at connect).
    last: u64,
}

impl LiveReader {
    async fn run(mut self) {
        loop {
            // An error ends one consumer; the next starts after `last`, so nothing is
            // skipped. Subscribers read the store for anything that came late.
            let _ = self.follow().await;
            tokio::time::sleep(LIVE_RETRY).await;
        }
    }

    async fn follow(&mut self) -> Result<(), StoreError> {
        let consumer = self
            .events
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("{}.>", self.prefix),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.last + 1,
                },
                ..OrderedConfig::default()
            })
            .await
            .map_err(nats_err(&self.store, "create the live consumer"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(nats_err(&self.store, "follow the stream"))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(nats_err(&self.store, "follow the stream"))?;
            let seq = message
                .info()
                .map_err(|e| backend_error(&self.store, "follow the stream", e))?
                .stream_sequence;
            if seq <= self.last {
                continue;
            }
            self.last = seq;
            // Nobody listening: skip the decoding (the sequence is still followed, so a
            // receiver that subscribes later gets events from there on).
            if self.live.receiver_count() == 0 {
                continue;
            }
            // A message that is not an event (published by something else) is skipped here,
            // not retried forever: history reads report it as corrupt.
            if let Ok(decoded) = decode_delivered(&self.store, &self.prefix, &message, seq) {
                // No receiver left is not an error: the event is stored.
                let _ = self.live.send(Arc::new(decoded.event));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_come_from_subjects() {
        assert_eq!(topic_of("bus", "bus.envsync.drift"), Some("envsync.drift"));
        assert_eq!(topic_of("bus", "busy.x"), None);
        assert_eq!(topic_of("bus", "other.x"), None);
    }

    #[test]
    fn bodies_decode_to_events() {
        let body = br#"{"who":"system","ts_us":1760222580123456,"payload":{"a":1}}"#;
        let decoded = decode_parts("s", "p", "p.deploy.render", 7, body).unwrap();
        assert_eq!(decoded.event.seq, 7);
        assert_eq!(decoded.event.topic, "deploy.render");
        assert_eq!(decoded.event.who, "system");
        assert_eq!(decoded.timestamp_us, 1_760_222_580_123_456);
        assert!(decode_parts("s", "p", "p.x", 1, b"[]").is_err());
    }
}
