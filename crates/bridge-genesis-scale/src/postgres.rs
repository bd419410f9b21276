//! The PostgreSQL event store: several processes (`genesisctl serve` replicas) append to one
//! database and still get one gap-free sequence.
//!
//! ```text
//! append:  BEGIN
//!          UPDATE genesis_log_head SET last_seq = last_seq + n, last_at_us = greatest(..)
//!            RETURNING ...          -- the row lock serialises appenders until COMMIT
//!          INSERT events, UPSERT per-topic counts, pg_notify(channel, last_seq)
//!          COMMIT                   -- a rollback releases the numbers: no gap
//! live:    one LISTEN connection per store; on a notification (or every second, in case one
//!          was lost) it reads the new rows and broadcasts them, so events appended by other
//!          processes reach this process's subscribers too
//! ```
//!
//! Why a counter row and not a `SEQUENCE`: a sequence hands out numbers outside the
//! transaction, so a rolled-back append leaves a hole, and concurrent appenders may commit out
//! of order (7 visible before 6). The head row's lock is held to COMMIT, so commit order is
//! sequence order and readers only ever see a prefix of the log. The same lock makes the
//! timestamp `greatest(clock, previous)`: timestamps never go backwards, whichever process
//! (and whichever clock) appends.
//!
//! Every table is prefixed `genesis_` and created `IF NOT EXISTS` in the connection's schema
//! ([`PostgresOptions::schema`] picks one), so one database can hold several buses.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bridge_genesis::bus::{
    BoxFuture, ConsumerState, Event, EventStore, HistoryQuery, NewEvent, Order, Payload,
    StoreError, StoreStats, TopicPattern,
};
use bridge_genesis::deliveries::{DeliveryClaim, DeliveryStore};
use bridge_genesis::schedule::{ScheduleStore, ScheduledRun};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Row};

use crate::pg::{Pool, describe, quote_ident, set_search_path};
use crate::{backend_error, from_unix_micros, pattern_regex, to_i64, to_u64};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS genesis_events (
    seq     bigint PRIMARY KEY,
    topic   text COLLATE "C" NOT NULL,
    at_us   bigint NOT NULL,
    who     text NOT NULL,
    payload text NOT NULL
);
CREATE INDEX IF NOT EXISTS genesis_events_by_topic ON genesis_events (topic, seq);
CREATE INDEX IF NOT EXISTS genesis_events_by_time ON genesis_events (at_us);
CREATE TABLE IF NOT EXISTS genesis_log_head (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq   bigint NOT NULL,
    last_at_us bigint NOT NULL
);
INSERT INTO genesis_log_head (id, last_seq, last_at_us)
    VALUES (true, 0, -9223372036854775808) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS genesis_topic_counts (
    topic  text COLLATE "C" PRIMARY KEY,
    events bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS genesis_consumers (
    name      text COLLATE "C" PRIMARY KEY,
    pattern   text NOT NULL,
    acked_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS genesis_schedule_runs (
    job         text COLLATE "C" NOT NULL,
    slot_us     bigint NOT NULL,
    owner       text NOT NULL,
    claimed_us  bigint NOT NULL,
    finished_us bigint,
    outcome     text,
    PRIMARY KEY (job, slot_us)
);
CREATE TABLE IF NOT EXISTS genesis_webhook_deliveries (
    id         text COLLATE "C" PRIMARY KEY,
    owner      text NOT NULL,
    claimed_us bigint NOT NULL,
    published  boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS genesis_webhook_deliveries_by_time
    ON genesis_webhook_deliveries (claimed_us);
"#;

/// The database's present, in microseconds: claims are stamped by one clock, whichever
/// replica makes them.
const NOW_US: &str = "floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// `pg_advisory_xact_lock` key taken around the DDL: concurrent `CREATE TABLE IF NOT EXISTS`
/// of the same table can fail on a catalog unique index, so first starts take turns.
const DDL_LOCK: i64 = 0x0067_656e_6573_6973; // "genesis" in ASCII

/// How often the live reader looks at the log without a notification: notifications are not
/// queued while its connection is down, so this bounds how late a lost one makes events.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// Rows the live reader fetches per query.
const LIVE_PAGE: i64 = 1_000;

/// Tuning for [`PostgresStore::connect_with`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The schema holding the tables (created if missing); `None` uses the connection's
    /// `search_path`.
    pub schema: Option<String>,
    /// Connections used for appends, reads and consumer updates (the live reader has its own).
    pub max_connections: usize,
    /// Events the live broadcast holds for a slow receiver before it lags.
    pub live_capacity: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 8,
            live_capacity: 4096,
        }
    }
}

/// The PostgreSQL [`EventStore`]. Cheap to clone; the live reader stops with the last clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pool: Pool,
    channel: String,
    live: broadcast::Sender<Arc<Event>>,
    /// The live reader: made at connect, started by the first [`EventStore::live`] call, so
    /// a command that only appends and reads (most CLI runs) opens no LISTEN connection.
    listener: Mutex<Listener>,
}

enum Listener {
    Idle(Box<LiveReader>),
    Running(JoinHandle<()>),
    Stopped,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reader owns its connection; aborting it closes that connection.
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Listener::Running(task) = std::mem::replace(listener, Listener::Stopped) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`host=… user=… dbname=…` or `postgres://…`), creating the tables
    /// if needed, with default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let config: Config = url
            .parse()
            .map_err(|e| backend_error("postgres", "parse url", e))?;
        let name = describe(&config, options.schema.as_deref());
        let pool = Pool::new(config, options.schema.clone(), options.max_connections);
        let mut client = pool
            .get()
            .await
            .map_err(|e| backend_error(&name, "connect", e))?;
        let err = |op| {
            let name = name.clone();
            move |e| backend_error(&name, op, e)
        };
        // Made once per database (schema): a store that has its tables takes no DDL lock,
        // so opening it costs one query.
        let found = client
            .query_typed_one(
                "SELECT to_regclass('genesis_schedule_runs') IS NOT NULL \
                 AND to_regclass('genesis_webhook_deliveries') IS NOT NULL \
                 AND to_regclass('genesis_log_head') IS NOT NULL, current_schema()",
                &[],
            )
            .await
            .map_err(err("look for the tables"))?;
        let ready: bool = found.get(0);
        let mut schema: Option<String> = found.get(1);
        if !ready {
            if let Some(schema) = &options.schema {
                // Serialised like the tables: concurrent CREATE SCHEMA IF NOT EXISTS can collide.
                let tx = client.transaction().await.map_err(err("begin"))?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
                    .await
                    .map_err(err("lock for DDL"))?;
                tx.batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(schema)
                ))
                .await
                .map_err(err("create schema"))?;
                tx.commit().await.map_err(err("create schema"))?;
            }
            let tx = client.transaction().await.map_err(err("begin"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
                .await
                .map_err(err("lock for DDL"))?;
            tx.batch_execute(SCHEMA)
                .await
                .map_err(err("create tables"))?;
            tx.commit().await.map_err(err("create tables"))?;
        }
        if !ready {
            // The schema may have been made just now.
            schema = client
                .query_one("SELECT current_schema()", &[])
                .await
                .map_err(err("read current schema"))?
                .get(0);
        }
        let schema = schema.unwrap_or_else(|| "public".to_owned());
        let last_seq = read_last_seq(&client, &name).await?;
        drop(client);

        // Channels are per database, not per schema: the schema in the name keeps two buses
        // in one database from waking each other.
        let channel = channel_name(&schema);
        let (live, _) = broadcast::channel(options.live_capacity.max(1));
        let reader = LiveReader {
            store: name.clone(),
            config: pool.config.clone(),
            schema: options.schema.clone(),
            channel: channel.clone(),
            live: live.clone(),
            last: last_seq,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                pool,
                channel,
                live,
                listener: Mutex::new(Listener::Idle(Box::new(reader))),
            }),
        })
    }

    fn err(&self, op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| backend_error(&self.inner.name, op, e)
    }

    async fn append_now(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        let tx = client.transaction().await.map_err(self.err("begin"))?;
        let n = events.len() as i64;
        // The head row's lock is the appenders' queue: held until COMMIT.
        let head = tx
            .query_typed_one(
                "UPDATE genesis_log_head SET last_seq = last_seq + $1, \
                 last_at_us = greatest(last_at_us, \
                   floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint) \
                 RETURNING last_seq, last_at_us",
                &[(&n, Type::INT8)],
            )
            .await
            .map_err(self.err("advance the log head"))?;
        let last_seq: i64 = head.get(0);
        let at_us: i64 = head.get(1);
        let at = from_unix_micros(at_us).ok_or_else(|| StoreError::Corrupt {
            store: self.inner.name.clone(),
            what: format!("the log head is stamped {at_us} µs after 1970"),
        })?;
        let first = last_seq - n + 1;
        let seqs: Vec<i64> = (first..=last_seq).collect();
        let topics: Vec<&str> = events.iter().map(|e| e.topic().as_str()).collect();
        let whos: Vec<&str> = events.iter().map(NewEvent::who).collect();
        let payloads: Vec<&str> = events.iter().map(NewEvent::payload_json).collect();
        let last = last_seq.to_string();
        // The three are independent: sent together, they cost one round trip, and the server
        // runs them in the order sent (an error in one aborts the transaction for the rest).
        let insert = async {
            tx.query_typed(
                "INSERT INTO genesis_events (seq, topic, at_us, who, payload) \
                 SELECT s, t, $2, w, p FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[]) \
                 AS u(s, t, w, p)",
                &[
                    (&seqs, Type::INT8_ARRAY),
                    (&at_us, Type::INT8),
                    (&topics, Type::TEXT_ARRAY),
                    (&whos, Type::TEXT_ARRAY),
                    (&payloads, Type::TEXT_ARRAY),
                ],
            )
            .await
            .map_err(self.err("append"))
        };
        let count = async {
            tx.query_typed(
                "INSERT INTO genesis_topic_counts (topic, events) \
                 SELECT t, count(*) FROM unnest($1::text[]) AS u(t) GROUP BY t \
                 ON CONFLICT (topic) DO UPDATE SET events = genesis_topic_counts.events + excluded.events",
                &[(&topics, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(self.err("update topic counts"))
        };
        // Delivered at COMMIT, to every listening process (this one included).
        let notify = async {
            tx.query_typed(
                "SELECT pg_notify($1, $2)",
                &[(&self.inner.channel, Type::TEXT), (&last, Type::TEXT)],
            )
            .await
            .map_err(self.err("notify"))
        };
        tokio::try_join!(insert, count, notify)?;
        tx.commit().await.map_err(self.err("commit"))?;
        Ok(events
            .into_iter()
            .zip(first..)
            .map(|(event, seq)| event.into_event(to_u64(seq), at))
            .collect())
    }

    /// Loads `events` (a whole log, from sequence 1, as another store recorded it) into this
    /// store's empty log, keeping each event's sequence number, time and publisher: what
    /// `genesisctl state migrate` and `state import` move. Refused when the log holds an
    /// event or `events` is not gap-free from 1, so two histories are never mixed.
    pub async fn import_events(&self, events: &[Event]) -> Result<usize, StoreError> {
        for (i, e) in events.iter().enumerate() {
            if e.seq != i as u64 + 1 {
                return Err(StoreError::Corrupt {
                    store: self.inner.name.clone(),
                    what: format!("import: event {} follows {i}: the log has a gap", e.seq),
                });
            }
        }
        let mut client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        let tx = client.transaction().await.map_err(self.err("begin"))?;
        let last: i64 = tx
            .query_one("SELECT last_seq FROM genesis_log_head FOR UPDATE", &[])
            .await
            .map_err(self.err("lock the log head"))?
            .get(0);
        if last != 0 {
            return Err(StoreError::Corrupt {
                store: self.inner.name.clone(),
                what: format!(
                    "import: the log already holds {last} events; import only into an empty store"
                ),
            });
        }
        for chunk in events.chunks(1_000) {
            let seqs: Vec<i64> = chunk.iter().map(|e| to_i64(e.seq)).collect();
            let topics: Vec<&str> = chunk.iter().map(|e| e.topic.as_str()).collect();
            let ats: Vec<i64> = chunk
                .iter()
                .map(|e| crate::unix_micros(e.timestamp))
                .collect();
            let whos: Vec<&str> = chunk.iter().map(|e| e.who.as_str()).collect();
            let payloads: Vec<String> = chunk
                .iter()
                .map(|e| serde_json::Value::Object(e.payload.clone()).to_string())
                .collect();
            tx.execute(
                "INSERT INTO genesis_events (seq, topic, at_us, who, payload) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[])",
                &[&seqs, &topics, &ats, &whos, &payloads],
            )
            .await
            .map_err(self.err("import events"))?;
            tx.execute(
                "INSERT INTO genesis_topic_counts (topic, events) \
                 SELECT t, count(*) FROM unnest($1::text[]) AS u(t) GROUP BY t \
                 ON CONFLICT (topic) DO UPDATE SET events = genesis_topic_counts.events + excluded.events",
                &[&topics],
            )
            .await
            .map_err(self.err("import topic counts"))?;
        }
        if let Some(tail) = events.last() {
            tx.execute(
                "UPDATE genesis_log_head SET last_seq = $1, last_at_us = greatest(last_at_us, $2)",
                &[&to_i64(tail.seq), &crate::unix_micros(tail.timestamp)],
            )
            .await
            .map_err(self.err("advance the log head"))?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&self.inner.channel, &tail.seq.to_string()],
            )
            .await
            .map_err(self.err("notify"))?;
        }
        tx.commit().await.map_err(self.err("commit"))?;
        Ok(events.len())
    }

    async fn read_now(&self, q: HistoryQuery) -> Result<Vec<Event>, StoreError> {
        let limit = q.effective_limit();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql =
            String::from("SELECT seq, topic, at_us, who, payload FROM genesis_events WHERE true");
        // Each bound value with its type, so the read is one round trip (no prepare).
        let mut args: Vec<(Box<dyn ToSql + Sync + Send>, Type)> = Vec::new();
        let mut bound = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            let kind = if clause.contains("topic") {
                Type::TEXT
            } else {
                Type::INT8
            };
            args.push((value, kind));
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(after) = q.after_seq {
            bound(&mut sql, " AND seq > ?", Box::new(to_i64(after)));
        }
        if let Some(until) = q.until_seq {
            bound(&mut sql, " AND seq <= ?", Box::new(to_i64(until)));
        }
        if let Some(from) = q.from_time {
            bound(
                &mut sql,
                " AND at_us >= ?",
                Box::new(crate::unix_micros(from)),
            );
        }
        if let Some(to) = q.to_time {
            bound(&mut sql, " AND at_us < ?", Box::new(crate::unix_micros(to)));
        }
        if let Some(pattern) = &q.pattern {
            if let Some(topic) = pattern.as_literal() {
                bound(&mut sql, " AND topic = ?", Box::new(topic.to_owned()));
            } else if pattern.as_str() != ">" {
                let prefix = pattern.literal_prefix();
                if !prefix.is_empty() {
                    // The topic index's range for the prefix ('/' follows '.' in "C" order),
                    // then the regex for the rest, so LIMIT stays in SQL.
                    let mut upper = prefix.clone();
                    upper.pop();
                    upper.push('/');
                    bound(&mut sql, " AND topic >= ?", Box::new(prefix));
                    bound(&mut sql, " AND topic < ?", Box::new(upper));
                }
                bound(&mut sql, " AND topic ~ ?", Box::new(pattern_regex(pattern)));
            }
        }
        sql.push_str(match q.order {
            Order::Ascending => " ORDER BY seq ASC",
            Order::Descending => " ORDER BY seq DESC",
        });
        bound(&mut sql, " LIMIT ?", Box::new(limit as i64));
        let params: Vec<(&(dyn ToSql + Sync), Type)> = args
            .iter()
            .map(|(a, t)| (a.as_ref() as &(dyn ToSql + Sync), t.clone()))
            .collect();
        let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        let rows = client
            .query_typed(&sql, &params)
            .await
            .map_err(self.err("read history"))?;
        rows.iter()
            .map(|row| decode_event(&self.inner.name, row))
            .collect()
    }

    async fn stats_now(&self, recent_since: OffsetDateTime) -> Result<StoreStats, StoreError> {
        let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        let mut stats = StoreStats::default();
        for row in client
            .query("SELECT topic, events FROM genesis_topic_counts", &[])
            .await
            .map_err(self.err("read stats"))?
        {
            let n = to_u64(row.get(1));
            stats.total += n;
            stats.by_topic.insert(row.get(0), n);
        }
        let recent: i64 = client
            .query_one(
                "SELECT count(*) FROM genesis_events WHERE at_us >= $1",
                &[&crate::unix_micros(recent_since)],
            )
            .await
            .map_err(self.err("read stats"))?
            .get(0);
        stats.recent = to_u64(recent);
        Ok(stats)
    }

    async fn open_consumer_now(
        &self,
        name: String,
        pattern: TopicPattern,
        start_after: u64,
    ) -> Result<u64, StoreError> {
        let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        // A floor past the end would ack events that do not exist yet. Both statements go
        // together; the server runs the insert first.
        let start = to_i64(start_after);
        let pattern_text = pattern.as_str();
        let insert = async {
            client
                .query_typed(
                    "INSERT INTO genesis_consumers (name, pattern, acked_seq) \
                     SELECT $1, $2, least($3, last_seq) FROM genesis_log_head \
                     ON CONFLICT (name) DO NOTHING",
                    &[
                        (&name, Type::TEXT),
                        (&pattern_text, Type::TEXT),
                        (&start, Type::INT8),
                    ],
                )
                .await
                .map_err(self.err("open consumer"))
        };
        let read = async {
            client
                .query_typed_one(
                    "SELECT pattern, acked_seq FROM genesis_consumers WHERE name = $1",
                    &[(&name, Type::TEXT)],
                )
                .await
                .map_err(self.err("open consumer"))
        };
        let (_, row) = tokio::try_join!(insert, read)?;
        let stored: String = row.get(0);
        if stored != pattern.as_str() {
            return Err(StoreError::ConsumerPatternMismatch {
                store: self.inner.name.clone(),
                name,
                stored,
                requested: pattern.as_str().to_owned(),
            });
        }
        Ok(to_u64(row.get(1)))
    }

    async fn ack_now(&self, name: String, seq: u64) -> Result<u64, StoreError> {
        let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        // Forward only, and never past the committed end of the log.
        let floor = client
            .query_typed_opt(
                "UPDATE genesis_consumers SET acked_seq = greatest(acked_seq, $2) \
                 FROM genesis_log_head h WHERE name = $1 AND $2 <= h.last_seq \
                 RETURNING acked_seq",
                &[(&name, Type::TEXT), (&to_i64(seq), Type::INT8)],
            )
            .await
            .map_err(self.err("ack consumer"))?;
        if let Some(row) = floor {
            return Ok(to_u64(row.get(0)));
        }
        let row = client
            .query_one(
                "SELECT (SELECT last_seq FROM genesis_log_head), \
                 EXISTS (SELECT 1 FROM genesis_consumers WHERE name = $1)",
                &[&name],
            )
            .await
            .map_err(self.err("ack consumer"))?;
        let store = self.inner.name.clone();
        if row.get::<_, bool>(1) {
            Err(StoreError::AckBeyondEnd {
                store,
                name,
                seq,
                last_seq: to_u64(row.get(0)),
            })
        } else {
            Err(StoreError::ConsumerNotFound { store, name })
        }
    }

    async fn consumers_now(&self) -> Result<Vec<ConsumerState>, StoreError> {
        let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
        let rows = client
            .query(
                "SELECT name, pattern, acked_seq FROM genesis_consumers ORDER BY name",
                &[],
            )
            .await
            .map_err(self.err("list consumers"))?;
        let mut consumers = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            let pattern: String = row.get(1);
            let acked_seq = to_u64(row.get(2));
            let parsed = TopicPattern::parse(&pattern).map_err(|e| StoreError::Corrupt {
                store: self.inner.name.clone(),
                what: format!("consumer {name:?} has an invalid pattern {pattern:?}: {e}"),
            })?;
            let pending: i64 = client
                .query_one(
                    "SELECT count(*) FROM genesis_events WHERE seq > $1 AND topic ~ $2",
                    &[&to_i64(acked_seq), &pattern_regex(&parsed)],
                )
                .await
                .map_err(self.err("count pending events"))?
                .get(0);
            consumers.push(ConsumerState {
                name,
                pattern,
                acked_seq,
                pending: to_u64(pending),
            });
        }
        Ok(consumers)
    }
}

impl EventStore for PostgresStore {
    fn describe(&self) -> String {
        self.inner.name.clone()
    }

    fn append(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(self.append_now(events))
    }

    fn read(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(self.read_now(query))
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            read_last_seq(&client, &self.inner.name).await
        })
    }

    fn stats(&self, recent_since: OffsetDateTime) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        Box::pin(self.stats_now(recent_since))
    }

    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        // Subscribe first: nothing the reader broadcasts once started is missed.
        let receiver = self.inner.live.subscribe();
        let mut listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(*listener, Listener::Idle(_))
            && let Listener::Idle(reader) = std::mem::replace(&mut *listener, Listener::Stopped)
        {
            *listener = Listener::Running(tokio::spawn(reader.run()));
        }
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

    fn ack(&self, name: String, seq: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.ack_now(name, seq))
    }

    fn delete_consumer(&self, name: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let deleted = client
                .execute("DELETE FROM genesis_consumers WHERE name = $1", &[&name])
                .await
                .map_err(self.err("delete consumer"))?;
            Ok(deleted > 0)
        })
    }

    fn consumers(&self) -> BoxFuture<'_, Result<Vec<ConsumerState>, StoreError>> {
        Box::pin(self.consumers_now())
    }

    fn schedules(&self) -> Option<Arc<dyn ScheduleStore>> {
        Some(Arc::new(self.clone()))
    }

    fn deliveries(&self) -> Option<Arc<dyn DeliveryStore>> {
        Some(Arc::new(self.clone()))
    }
}

/// The primary key decides a claim: of concurrent inserts one commits, and the others wait
/// for it and then find a claim too young (or published) to take over. Stamps are the
/// database's clock, so replicas with skewed clocks agree on a lease.
impl DeliveryStore for PostgresStore {
    fn claim(
        &self,
        id: String,
        owner: String,
        lease: Duration,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let lease_us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
            let claimed = client
                .execute(
                    &format!(
                        "INSERT INTO genesis_webhook_deliveries (id, owner, claimed_us) \
                         VALUES ($1, $2, {NOW_US}) \
                         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                           claimed_us = excluded.claimed_us \
                         WHERE NOT genesis_webhook_deliveries.published \
                           AND genesis_webhook_deliveries.claimed_us < {NOW_US} - $3"
                    ),
                    &[&id, &owner, &lease_us],
                )
                .await
                .map_err(self.err("claim a delivery"))?;
            Ok(claimed > 0)
        })
    }

    fn published(&self, id: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            client
                .execute(
                    "UPDATE genesis_webhook_deliveries SET published = true WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(self.err("mark a delivery published"))?;
            Ok(())
        })
    }

    fn release(&self, id: String, owner: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            client
                .execute(
                    "DELETE FROM genesis_webhook_deliveries \
                     WHERE id = $1 AND owner = $2 AND NOT published",
                    &[&id, &owner],
                )
                .await
                .map_err(self.err("release a delivery"))?;
            Ok(())
        })
    }

    fn prune(&self, age: Duration) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let age_us = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            client
                .execute(
                    &format!(
                        "DELETE FROM genesis_webhook_deliveries WHERE claimed_us < {NOW_US} - $1"
                    ),
                    &[&age_us],
                )
                .await
                .map_err(self.err("prune deliveries"))
        })
    }

    fn claims(&self) -> BoxFuture<'_, Result<Vec<DeliveryClaim>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let rows = client
                .query(
                    "SELECT id, owner, claimed_us, published FROM genesis_webhook_deliveries \
                     ORDER BY claimed_us, id",
                    &[],
                )
                .await
                .map_err(self.err("read delivery claims"))?;
            rows.iter()
                .map(|row| {
                    Ok(DeliveryClaim {
                        id: row.get(0),
                        owner: row.get(1),
                        claimed_at: self.stamp(row.get(2))?,
                        published: row.get(3),
                    })
                })
                .collect()
        })
    }

    fn import(&self, claims: Vec<DeliveryClaim>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(());
            }
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let ids: Vec<&str> = claims.iter().map(|c| c.id.as_str()).collect();
            let owners: Vec<&str> = claims.iter().map(|c| c.owner.as_str()).collect();
            let at: Vec<i64> = claims
                .iter()
                .map(|c| crate::unix_micros(c.claimed_at))
                .collect();
            let published: Vec<bool> = claims.iter().map(|c| c.published).collect();
            client
                .execute(
                    "INSERT INTO genesis_webhook_deliveries (id, owner, claimed_us, published) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[]) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&ids, &owners, &at, &published],
                )
                .await
                .map_err(self.err("import delivery claims"))?;
            Ok(())
        })
    }
}

/// The primary key `(job, slot_us)` decides a claim: of concurrent inserts, one commits and
/// the others find the conflict (and wait for the winner's transaction to decide it).
impl ScheduleStore for PostgresStore {
    fn claim(
        &self,
        job: String,
        slot: OffsetDateTime,
        owner: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let inserted = client
                .execute(
                    &format!(
                        "INSERT INTO genesis_schedule_runs (job, slot_us, owner, claimed_us) \
                         VALUES ($1, $2, $3, {NOW_US}) ON CONFLICT DO NOTHING"
                    ),
                    &[&job, &crate::unix_micros(slot), &owner],
                )
                .await
                .map_err(self.err("claim a scheduled slot"))?;
            Ok(inserted > 0)
        })
    }

    fn finish(
        &self,
        job: String,
        slot: OffsetDateTime,
        outcome: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            client
                .execute(
                    &format!(
                        "UPDATE genesis_schedule_runs SET finished_us = {NOW_US}, outcome = $3 \
                         WHERE job = $1 AND slot_us = $2"
                    ),
                    &[&job, &crate::unix_micros(slot), &outcome],
                )
                .await
                .map_err(self.err("finish a scheduled slot"))?;
            Ok(())
        })
    }

    fn last_slot(&self, job: String) -> BoxFuture<'_, Result<Option<OffsetDateTime>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let slot: Option<i64> = client
                .query_one(
                    "SELECT max(slot_us) FROM genesis_schedule_runs WHERE job = $1",
                    &[&job],
                )
                .await
                .map_err(self.err("read the last scheduled slot"))?
                .get(0);
            slot.map(|us| self.stamp(us)).transpose()
        })
    }

    fn runs(
        &self,
        job: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let rows = client
                .query(
                    "SELECT slot_us, owner, claimed_us, finished_us, outcome \
                     FROM genesis_schedule_runs WHERE job = $1 ORDER BY slot_us DESC LIMIT $2",
                    &[&job, &to_i64(limit as u64)],
                )
                .await
                .map_err(self.err("read scheduled runs"))?;
            rows.iter()
                .map(|row| {
                    Ok(ScheduledRun {
                        job: job.clone(),
                        slot: self.stamp(row.get(0))?,
                        owner: row.get(1),
                        claimed_at: self.stamp(row.get(2))?,
                        finished_at: row
                            .get::<_, Option<i64>>(3)
                            .map(|us| self.stamp(us))
                            .transpose()?,
                        outcome: row.get(4),
                    })
                })
                .collect()
        })
    }

    fn all_runs(&self) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>> {
        Box::pin(async move {
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let rows = client
                .query(
                    "SELECT job, slot_us, owner, claimed_us, finished_us, outcome \
                     FROM genesis_schedule_runs ORDER BY job, slot_us",
                    &[],
                )
                .await
                .map_err(self.err("read scheduled runs"))?;
            rows.iter()
                .map(|row| {
                    Ok(ScheduledRun {
                        job: row.get(0),
                        slot: self.stamp(row.get(1))?,
                        owner: row.get(2),
                        claimed_at: self.stamp(row.get(3))?,
                        finished_at: row
                            .get::<_, Option<i64>>(4)
                            .map(|us| self.stamp(us))
                            .transpose()?,
                        outcome: row.get(5),
                    })
                })
                .collect()
        })
    }

    fn import_runs(&self, runs: Vec<ScheduledRun>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if runs.is_empty() {
                return Ok(());
            }
            let client = self.inner.pool.get().await.map_err(self.err("connect"))?;
            let jobs: Vec<&str> = runs.iter().map(|r| r.job.as_str()).collect();
            let slots: Vec<i64> = runs.iter().map(|r| crate::unix_micros(r.slot)).collect();
            let owners: Vec<&str> = runs.iter().map(|r| r.owner.as_str()).collect();
            let claimed: Vec<i64> = runs
                .iter()
                .map(|r| crate::unix_micros(r.claimed_at))
                .collect();
            let finished: Vec<Option<i64>> = runs
                .iter()
                .map(|r| r.finished_at.map(crate::unix_micros))
                .collect();
            let outcomes: Vec<Option<&str>> = runs.iter().map(|r| r.outcome.as_deref()).collect();
            client
                .execute(
                    "INSERT INTO genesis_schedule_runs \
                       (job, slot_us, owner, claimed_us, finished_us, outcome) \
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], \
                                          $5::bigint[], $6::text[]) \
                     ON CONFLICT DO NOTHING",
                    &[&jobs, &slots, &owners, &claimed, &finished, &outcomes],
                )
                .await
                .map_err(self.err("import scheduled runs"))?;
            Ok(())
        })
    }
}

impl PostgresStore {
    fn stamp(&self, micros: i64) -> Result<OffsetDateTime, StoreError> {
        from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt {
            store: self.inner.name.clone(),
            what: format!("a claim is stamped {micros} µs after 1970"),
        })
    }
}

async fn read_last_seq(client: &Client, store: &str) -> Result<u64, StoreError> {
    let row = client
        .query_typed_one("SELECT last_seq FROM genesis_log_head", &[])
        .await
        .map_err(|e| backend_error(store, "read last seq", e))?;
    Ok(to_u64(row.get(0)))
}

fn decode_event(store: &str, row: &Row) -> Result<Event, StoreError> {
    let seq = to_u64(row.get(0));
    let at_us: i64 = row.get(2);
    let payload: &str = row.get(4);
    let corrupt = |what: String| StoreError::Corrupt {
        store: store.to_owned(),
        what,
    };
    let timestamp = from_unix_micros(at_us).ok_or_else(|| {
        corrupt(format!(
            "event {seq} has an impossible timestamp ({at_us} µs)"
        ))
    })?;
    let payload: Payload = serde_json::from_str(payload).map_err(|e| {
        corrupt(format!(
            "event {seq} has a payload that is not a JSON object: {e}"
        ))
    })?;
    Ok(Event {
        seq,
        topic: row.get(1),
        timestamp,
        who: row.get(3),
        payload,
    })
}

/// `genesis_<schema>`, hashed when it would pass PostgreSQL's 63-byte identifier limit.
fn channel_name(schema: &str) -> String {
    let name = format!("genesis_{schema}");
    if name.len() <= 63 {
        return name;
    }
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("genesis_{hash:016x}")
}

/// Reads what other transactions (in any process) committed and broadcasts it in order.
struct LiveReader {
    store: String,
    config: Config,
    schema: Option<String>,
    channel: String,
    live: broadcast::Sender<Arc<Event>>,
    /// The last sequence number accounted for.
    last: u64,
}

impl LiveReader {
    async fn run(mut self) {
        loop {
            // Errors end one connection; the next one starts from `last`, so nothing is
            // skipped. Subscribers read the store themselves for anything that came late.
            let _ = self.listen().await;
            tokio::time::sleep(LIVE_POLL).await;
        }
    }

    async fn listen(&mut self) -> Result<(), StoreError> {
        let (client, mut connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| backend_error(&self.store, "connect the live reader", e))?;
        let (wake, mut woken) = mpsc::unbounded_channel();
        // Notifications only arrive through `poll_message`, so this task drives the
        // connection instead of the usual `connection.await`.
        let driver = tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(n) = message
                    && wake.send(n.payload().parse::<u64>().unwrap_or(0)).is_err()
                {
                    break;
                }
            }
        });
        let result = async {
            set_search_path(&client, self.schema.as_deref())
                .await
                .map_err(|e| backend_error(&self.store, "set search_path", e))?;
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(&self.channel)))
                .await
                .map_err(|e| backend_error(&self.store, "listen", e))?;
            let mut notified = None;
            loop {
                self.catch_up(&client, notified).await?;
                notified = tokio::select! {
                    seq = woken.recv() => match seq {
                        Some(seq) => Some(seq),
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep(LIVE_POLL) => None,
                };
            }
        }
        .await;
        driver.abort();
        result
    }

    async fn catch_up(&mut self, client: &Client, notified: Option<u64>) -> Result<(), StoreError> {
        if self.live.receiver_count() == 0 {
            // Nobody listens: just keep up, so a later subscriber is not sent old events.
            self.last = match notified {
                Some(seq) => self.last.max(seq),
                None => self.last.max(read_last_seq(client, &self.store).await?),
            };
            return Ok(());
        }
        loop {
            let rows = client
                .query(
                    "SELECT seq, topic, at_us, who, payload FROM genesis_events \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&to_i64(self.last), &LIVE_PAGE],
                )
                .await
                .map_err(|e| backend_error(&self.store, "read new events", e))?;
            let full = rows.len() as i64 == LIVE_PAGE;
            for row in &rows {
                let event = decode_event(&self.store, row)?;
                self.last = event.seq;
                // No receiver left is not an error: the event is stored.
                let _ = self.live.send(Arc::new(event));
            }
            if !full {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_identifiers() {
        assert_eq!(channel_name("public"), "genesis_public");
        let long = channel_name(&"s".repeat(80));
        assert!(long.len() <= 63, "{long}");
        assert_eq!(long, channel_name(&"s".repeat(80)));
    }
}
