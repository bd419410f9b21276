//! The embedded event store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Writes go through one thread that owns the write connection and commits in groups
//! ([`writer`]); reads run on a small pool of read-only connections on tokio's blocking
//! threads, so readers never wait for the writer (WAL). At most [`MAX_READERS`] reads run at
//! once; the rest queue for a connection rather than each opening the file. Opening the file checks it
//! ([`IntegrityCheck`]) and refuses a damaged one with an error that says what is wrong.

mod checkpointer;
mod history;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, broadcast, oneshot};

use self::checkpointer::Checkpointer;
use self::history::read_events;
pub use self::schema::IntegrityCheck;
use self::schema::{open_reader, open_writer, sqlite_error};
use self::writer::{Job, Writer, WriterCounters};
use super::event::{Event, NewEvent, from_unix_micros, unix_micros};
use super::store::{BoxFuture, ConsumerState, EventStore, HistoryQuery, StoreError, StoreStats};
use super::topic::TopicPattern;
use crate::deliveries::{self, DeliveryClaim, DeliveryStore};
use crate::schedule::{ScheduleStore, ScheduledRun, slot_micros};

/// Read connections open at once, all kept for reuse. A burst of readers (thousands of live
/// streams catching up) queues for one of these instead of opening the file once per blocking
/// thread: each connection costs two descriptors and its page cache, and SQLite's unix VFS
/// keeps a closed connection's descriptors until no connection in the process holds a lock,
/// so opening and closing under load leaks descriptors for as long as the writer is busy.
const MAX_READERS: usize = 8;

/// Tuning for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How many events the live broadcast holds for a slow receiver before it lags (a lagging
    /// subscription catches up from the file, so this trades memory for reads).
    pub live_capacity: usize,
    /// The most events one group commit takes from the queue.
    pub max_batch_events: usize,
    /// The longest the writer holds a group commit open for callers that recent batches
    /// suggest are about to arrive (it never waits more than a quarter of the last commit's
    /// duration, and never when a single caller is publishing). `Duration::ZERO` commits
    /// whatever is queued at once.
    pub max_commit_delay: Duration,
    pub integrity_check: IntegrityCheck,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            live_capacity: 4096,
            max_batch_events: 4096,
            max_commit_delay: Duration::from_millis(2),
            integrity_check: IntegrityCheck::Log,
        }
    }
}

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Committed transactions (each one WAL fsync).
    pub transactions: u64,
    /// Jobs (appends, acks, consumer changes) committed.
    pub jobs: u64,
    /// Events appended.
    pub events: u64,
}

/// The SQLite [`EventStore`]. Cheap to clone; the writer stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection ([`MAX_READERS`]).
    read_permits: Arc<Semaphore>,
    live: broadcast::Sender<Arc<Event>>,
    counters: Arc<WriterCounters>,
    checkpointer: Option<Checkpointer>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers close first so that the writer's connection is the file's last: SQLite then
        // checkpoints the WAL into the file and removes it. Closing the channel ends the
        // writer's loop after its current batch; waiting for it means the file is closed
        // (and can be reopened) once the store is gone.
        if let Ok(mut idle) = self.readers.lock() {
            idle.clear();
        }
        self.checkpointer.take();
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in the file at `path`, with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let name = format!("sqlite:{}", path.display());
        let conn = open_writer(&path, &name, options.integrity_check)?;
        let (live, _) = broadcast::channel(options.live_capacity.max(1));
        let counters = Arc::new(WriterCounters::default());
        let writer = Writer {
            conn,
            store: name.clone(),
            live: live.clone(),
            counters: counters.clone(),
            max_batch_events: options.max_batch_events.max(1),
            max_commit_delay: options.max_commit_delay,
        };
        let checkpointer = Checkpointer::start(&path, &name)?;
        let (jobs, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("genesis-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Io {
                store: name.clone(),
                op: "start the writer thread",
                source: Arc::new(e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                path,
                jobs: Some(jobs),
                writer: Some(handle),
                readers: Mutex::new(Vec::new()),
                read_permits: Arc::new(Semaphore::new(MAX_READERS)),
                live,
                counters,
                checkpointer: Some(checkpointer),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        WriterStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
        }
    }

    /// Hands a job to the writer and waits for its answer.
    fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .inner
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job(reply)).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(self.writer_stopped());
            }
            answer.await.map_err(|_| self.writer_stopped())?
        })
    }

    fn writer_stopped(&self) -> StoreError {
        StoreError::WriterStopped {
            store: self.inner.name.clone(),
        }
    }

    /// Runs `read` on a pooled read-only connection on a blocking thread.
    fn read_with<T: Send + 'static>(
        &self,
        op: &'static str,
        read: impl FnOnce(&Connection, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // The semaphore is never closed, so acquiring only waits.
            let permit = inner
                .read_permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| StoreError::Task {
                    store: self.inner.name.clone(),
                    op,
                    message: e.to_string(),
                })?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let conn = inner.take_reader()?;
                let result = read(&conn, &inner.name);
                inner.return_reader(conn);
                result
            })
            .await
            .map_err(|e| StoreError::Task {
                store: self.inner.name.clone(),
                op,
                message: e.to_string(),
            })?
        })
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path, &self.name),
        }
    }

    fn return_reader(&self, conn: Connection) {
        if let Ok(mut idle) = self.readers.lock()
            && idle.len() < MAX_READERS
        {
            idle.push(conn);
        }
    }
}

impl EventStore for SqliteStore {
    fn describe(&self) -> String {
        self.inner.name.clone()
    }

    fn append(&self, events: Vec<NewEvent>) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        self.submit(|reply| Job::Append {
            events,
            reply,
            assigned: None,
        })
    }

    fn read(&self, query: HistoryQuery) -> BoxFuture<'_, Result<Vec<Event>, StoreError>> {
        self.read_with("read history", move |conn, store| {
            read_events(conn, store, &query)
        })
    }

    fn last_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.read_with("read last seq", |conn, store| {
            conn.query_row(
                "SELECT coalesce(max(seq), 0) FROM genesis_events",
                [],
                |row| row.get(0).map(from_sql),
            )
            .map_err(|e| sqlite_error(store, "read last seq", e))
        })
    }

    fn stats(&self, recent_since: OffsetDateTime) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        self.read_with("read stats", move |conn, store| {
            read_stats(conn, recent_since).map_err(|e| sqlite_error(store, "read stats", e))
        })
    }

    fn live(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    fn open_consumer(
        &self,
        name: String,
        pattern: TopicPattern,
        start_after: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.submit(|reply| Job::OpenConsumer {
            name,
            pattern: pattern.as_str().to_owned(),
            start_after,
            reply,
            result: None,
        })
    }

    fn ack(&self, name: String, seq: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.submit(|reply| Job::Ack {
            name,
            seq,
            reply,
            result: None,
        })
    }

    fn delete_consumer(&self, name: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.submit(|reply| Job::DeleteConsumer {
            name,
            reply,
            result: None,
        })
    }

    fn consumers(&self) -> BoxFuture<'_, Result<Vec<ConsumerState>, StoreError>> {
        self.read_with("list consumers", read_consumers)
    }

    fn schedules(&self) -> Option<Arc<dyn ScheduleStore>> {
        Some(Arc::new(self.clone()))
    }

    fn deliveries(&self) -> Option<Arc<dyn DeliveryStore>> {
        Some(Arc::new(self.clone()))
    }
}

impl SqliteStore {
    /// Runs `run` in the writer's transaction: a claim is durable before it is won.
    fn exec(
        &self,
        op: &'static str,
        run: impl FnMut(&Connection) -> rusqlite::Result<u64> + Send + 'static,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.submit(|reply| Job::Exec {
            op,
            run: Box::new(run),
            reply,
            result: None,
        })
    }
}

/// Claims are stamped by this process's clock (a SQLite file is one machine's).
impl DeliveryStore for SqliteStore {
    fn claim(
        &self,
        id: String,
        owner: String,
        lease: Duration,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let claimed = self.exec("claim a delivery", move |conn| {
            let now = deliveries::micros(OffsetDateTime::now_utc());
            let stale = now.saturating_sub(deliveries::duration_micros(lease));
            conn.prepare_cached(
                "INSERT INTO genesis_webhook_deliveries (id, owner, claimed_us, published) \
                 VALUES (?1, ?2, ?3, 0) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                   claimed_us = excluded.claimed_us \
                 WHERE genesis_webhook_deliveries.published = 0 \
                   AND genesis_webhook_deliveries.claimed_us < ?4",
            )?
            .execute(rusqlite::params![id.as_str(), owner.as_str(), now, stale])
            .map(|n| n as u64)
        });
        Box::pin(async move { Ok(claimed.await? > 0) })
    }

    fn published(&self, id: String) -> BoxFuture<'_, Result<(), StoreError>> {
        let done = self.exec("mark a delivery published", move |conn| {
            conn.prepare_cached(
                "UPDATE genesis_webhook_deliveries SET published = 1 WHERE id = ?1",
            )?
            .execute([id.as_str()])
            .map(|n| n as u64)
        });
        Box::pin(async move { done.await.map(drop) })
    }

    fn release(&self, id: String, owner: String) -> BoxFuture<'_, Result<(), StoreError>> {
        let done = self.exec("release a delivery", move |conn| {
            conn.prepare_cached(
                "DELETE FROM genesis_webhook_deliveries \
                 WHERE id = ?1 AND owner = ?2 AND published = 0",
            )?
            .execute([id.as_str(), owner.as_str()])
            .map(|n| n as u64)
        });
        Box::pin(async move { done.await.map(drop) })
    }

    fn prune(&self, age: Duration) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.exec("prune deliveries", move |conn| {
            let cutoff = deliveries::micros(OffsetDateTime::now_utc())
                .saturating_sub(deliveries::duration_micros(age));
            conn.prepare_cached("DELETE FROM genesis_webhook_deliveries WHERE claimed_us < ?1")?
                .execute([cutoff])
                .map(|n| n as u64)
        })
    }

    fn claims(&self) -> BoxFuture<'_, Result<Vec<DeliveryClaim>, StoreError>> {
        self.read_with("read delivery claims", move |conn, store| {
            let err = |e| sqlite_error(store, "read delivery claims", e);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, owner, claimed_us, published FROM genesis_webhook_deliveries \
                     ORDER BY claimed_us, id",
                )
                .map_err(err)?;
            let rows: Vec<(String, String, i64, i64)> = stmt
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(id, owner, claimed, published)| {
                    Ok(DeliveryClaim {
                        id,
                        owner,
                        claimed_at: stamp(store, claimed)?,
                        published: published != 0,
                    })
                })
                .collect()
        })
    }

    fn import(&self, claims: Vec<DeliveryClaim>) -> BoxFuture<'_, Result<(), StoreError>> {
        let done = self.exec("import delivery claims", move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO genesis_webhook_deliveries (id, owner, claimed_us, published) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
            )?;
            let mut added = 0u64;
            for c in &claims {
                added += insert.execute(rusqlite::params![
                    c.id.as_str(),
                    c.owner.as_str(),
                    deliveries::micros(c.claimed_at),
                    i64::from(c.published)
                ])? as u64;
            }
            Ok(added)
        });
        Box::pin(async move { done.await.map(drop) })
    }
}

/// Claims and outcomes go through the writer, like appends (so a claim is durable before it
/// is won); reads use the pooled readers.
impl ScheduleStore for SqliteStore {
    fn claim(
        &self,
        job: String,
        slot: OffsetDateTime,
        owner: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.submit(|reply| Job::Claim {
            job,
            slot_us: slot_micros(slot),
            owner,
            reply,
            result: None,
        })
    }

    fn finish(
        &self,
        job: String,
        slot: OffsetDateTime,
        outcome: String,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.submit(|reply| Job::Finish {
            job,
            slot_us: slot_micros(slot),
            outcome,
            reply,
            result: None,
        })
    }

    fn last_slot(&self, job: String) -> BoxFuture<'_, Result<Option<OffsetDateTime>, StoreError>> {
        self.read_with("read the last scheduled slot", move |conn, store| {
            let slot: Option<i64> = conn
                .prepare_cached("SELECT max(slot_us) FROM genesis_schedule_runs WHERE job = ?1")
                .and_then(|mut stmt| stmt.query_row([job.as_str()], |row| row.get(0)))
                .map_err(|e| sqlite_error(store, "read the last scheduled slot", e))?;
            slot.map(|us| stamp(store, us)).transpose()
        })
    }

    fn runs(
        &self,
        job: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>> {
        self.read_with("read scheduled runs", move |conn, store| {
            let err = |e| sqlite_error(store, "read scheduled runs", e);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT slot_us, owner, claimed_us, finished_us, outcome \
                     FROM genesis_schedule_runs WHERE job = ?1 ORDER BY slot_us DESC LIMIT ?2",
                )
                .map_err(err)?;
            let rows: Vec<RunRow> = stmt
                .query_map(
                    rusqlite::params![job.as_str(), to_sql(limit as u64)],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    },
                )
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(slot, owner, claimed, finished, outcome)| {
                    Ok(ScheduledRun {
                        job: job.clone(),
                        slot: stamp(store, slot)?,
                        owner,
                        claimed_at: stamp(store, claimed)?,
                        finished_at: finished.map(|us| stamp(store, us)).transpose()?,
                        outcome,
                    })
                })
                .collect()
        })
    }

    fn all_runs(&self) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>> {
        self.all_runs_now()
    }

    fn import_runs(&self, runs: Vec<ScheduledRun>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.import_runs_now(runs)
    }
}

impl SqliteStore {
    fn all_runs_now(&self) -> BoxFuture<'_, Result<Vec<ScheduledRun>, StoreError>> {
        self.read_with("read scheduled runs", move |conn, store| {
            let err = |e| sqlite_error(store, "read scheduled runs", e);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT job, slot_us, owner, claimed_us, finished_us, outcome \
                     FROM genesis_schedule_runs ORDER BY job, slot_us",
                )
                .map_err(err)?;
            let rows: Vec<(String, RunRow)> = stmt
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        (
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                        ),
                    ))
                })
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(job, (slot, owner, claimed, finished, outcome))| {
                    Ok(ScheduledRun {
                        job,
                        slot: stamp(store, slot)?,
                        owner,
                        claimed_at: stamp(store, claimed)?,
                        finished_at: finished.map(|us| stamp(store, us)).transpose()?,
                        outcome,
                    })
                })
                .collect()
        })
    }

    fn import_runs_now(&self, runs: Vec<ScheduledRun>) -> BoxFuture<'_, Result<(), StoreError>> {
        let done = self.exec("import scheduled runs", move |conn| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO genesis_schedule_runs \
                   (job, slot_us, owner, claimed_us, finished_us, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            )?;
            let mut added = 0u64;
            for r in &runs {
                added += insert.execute(rusqlite::params![
                    r.job.as_str(),
                    slot_micros(r.slot),
                    r.owner.as_str(),
                    slot_micros(r.claimed_at),
                    r.finished_at.map(slot_micros),
                    r.outcome.as_deref()
                ])? as u64;
            }
            Ok(added)
        });
        Box::pin(async move { done.await.map(drop) })
    }
}

/// A row of `genesis_schedule_runs`: slot, owner, claimed, finished (µs), outcome.
type RunRow = (i64, String, i64, Option<i64>, Option<String>);

/// A stored microsecond stamp of the schedule table as a time.
fn stamp(store: &str, micros: i64) -> Result<OffsetDateTime, StoreError> {
    from_unix_micros(micros).ok_or_else(|| StoreError::Corrupt {
        store: store.to_owned(),
        what: format!("a scheduled run is stamped {micros} µs after 1970"),
    })
}

fn read_stats(conn: &Connection, recent_since: OffsetDateTime) -> rusqlite::Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut stmt = conn.prepare_cached("SELECT topic, events FROM genesis_topic_counts")?;
    for row in stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, from_sql(row.get(1)?)))
    })? {
        let (topic, n) = row?;
        stats.total += n;
        stats.by_topic.insert(topic, n);
    }
    stats.recent = conn
        .prepare_cached("SELECT count(*) FROM genesis_events WHERE at_us >= ?1")?
        .query_row([unix_micros(recent_since)], |row| row.get(0).map(from_sql))?;
    Ok(stats)
}

fn read_consumers(conn: &Connection, store: &str) -> Result<Vec<ConsumerState>, StoreError> {
    let err = |e| sqlite_error(store, "list consumers", e);
    let topics: Vec<String> = conn
        .prepare_cached("SELECT topic FROM genesis_topic_counts")
        .map_err(err)?
        .query_map([], |row| row.get(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let stored: Vec<(String, String, u64)> = conn
        .prepare_cached("SELECT name, pattern, acked_seq FROM genesis_consumers ORDER BY name")
        .map_err(err)?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, from_sql(row.get(2)?)))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut pending_in = conn
        .prepare_cached("SELECT count(*) FROM genesis_events WHERE topic = ?1 AND seq > ?2")
        .map_err(err)?;
    let mut consumers = Vec::with_capacity(stored.len());
    for (name, pattern, acked_seq) in stored {
        let parsed = TopicPattern::parse(&pattern).map_err(|e| StoreError::Corrupt {
            store: store.to_owned(),
            what: format!("consumer {name:?} has an invalid pattern {pattern:?}: {e}"),
        })?;
        // Lag counted per matching topic on the topic index: work in proportion to what the
        // consumer has left to read, not to the size of the log.
        let mut pending = 0u64;
        for topic in topics.iter().filter(|t| parsed.matches(t)) {
            pending += pending_in
                .query_row(rusqlite::params![topic, to_sql(acked_seq)], |row| {
                    row.get(0).map(from_sql)
                })
                .map_err(err)?;
        }
        consumers.push(ConsumerState {
            name,
            pattern,
            acked_seq,
            pending,
        });
    }
    Ok(consumers)
}

/// Sequence numbers and counts are `u64` in the API and `INTEGER` (i64) in SQLite; neither
/// gets anywhere near the edge of the other's range.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// See [`to_sql`]; a negative value (only a hand-edited file has one) reads as 0.
fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
