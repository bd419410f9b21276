//! The single writer: one thread owns the write connection and commits in groups.
//!
//! Callers send [`Job`]s down a channel and wait on a oneshot. The thread takes the first
//! job, opens a transaction, and writes it and whatever else is queued or arrives while it
//! waits (up to a cap) in that transaction: one commit, one WAL fsync, however many
//! publishers were waiting. Only after
//! the commit succeeds does it fan the new events out to live receivers (in sequence order)
//! and answer the callers. Sequence numbers are read from the table inside the transaction,
//! so a rolled-back batch assigns nothing and leaves no gap.
//!
//! When recent batches were larger than what is queued, the writer waits a moment (at most
//! a quarter of the last commit's duration, at most `max_commit_delay`) for the other
//! callers, see [`Writer::run`].
//!
//! A job whose own statement fails is answered with that error and the rest of the batch is
//! retried without it, in a new transaction; a failure to begin or commit fails the whole
//! batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;
use tokio::sync::{broadcast, oneshot};

use super::schema::sqlite_error;
use super::{from_sql, to_sql};
use crate::bus::event::{Event, NewEvent, from_unix_micros, unix_micros};
use crate::bus::store::StoreError;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// From this many jobs in a batch on, the writer commits at once instead of waiting for more.
const WAIT_BELOW_JOBS: usize = 64;

/// Work for the writer. Each job carries the slot its result goes into, so a result can
/// never be handed to the wrong caller.
pub(super) enum Job {
    Append {
        events: Vec<NewEvent>,
        reply: Reply<Vec<Event>>,
        /// First sequence number and timestamp, once assigned.
        assigned: Option<(u64, OffsetDateTime)>,
    },
    OpenConsumer {
        name: String,
        pattern: String,
        start_after: u64,
        reply: Reply<u64>,
        result: Option<Result<u64, StoreError>>,
    },
    Ack {
        name: String,
        seq: u64,
        reply: Reply<u64>,
        result: Option<Result<u64, StoreError>>,
    },
    DeleteConsumer {
        name: String,
        reply: Reply<bool>,
        result: Option<bool>,
    },
    /// A scheduled slot: inserted unless present; the result says whether it was inserted.
    Claim {
        job: String,
        slot_us: i64,
        owner: String,
        reply: Reply<bool>,
        result: Option<bool>,
    },
    /// A claimed slot's outcome.
    Finish {
        job: String,
        slot_us: i64,
        outcome: String,
        reply: Reply<()>,
        result: Option<()>,
    },
    /// A small write of a table beside the log (delivery claims, imports): runs in the
    /// writer's transaction and answers the rows it changed.
    Exec {
        op: &'static str,
        run: ExecFn,
        reply: Reply<u64>,
        result: Option<u64>,
    },
}

/// What a [`Job::Exec`] runs.
pub(super) type ExecFn = Box<dyn FnMut(&Connection) -> rusqlite::Result<u64> + Send>;

impl Job {
    fn event_count(&self) -> usize {
        match self {
            Job::Append { events, .. } => events.len(),
            // Cursor updates are tiny; count them as one row each for batching purposes.
            _ => 1,
        }
    }

    fn fail(self, error: StoreError) {
        // A caller that gave up waiting has dropped its receiver; nothing to tell it.
        match self {
            Job::Append { reply, .. } => drop(reply.send(Err(error))),
            Job::OpenConsumer { reply, .. } | Job::Ack { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Job::DeleteConsumer { reply, .. } | Job::Claim { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            Job::Finish { reply, .. } => drop(reply.send(Err(error))),
            Job::Exec { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// How much the writer has done: transactions committed, jobs and events in them.
#[derive(Debug, Default)]
pub(super) struct WriterCounters {
    pub(super) transactions: AtomicU64,
    pub(super) jobs: AtomicU64,
    pub(super) events: AtomicU64,
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) store: String,
    pub(super) live: broadcast::Sender<Arc<Event>>,
    pub(super) counters: Arc<WriterCounters>,
    pub(super) max_batch_events: usize,
    pub(super) max_commit_delay: Duration,
}

/// Where the open transaction's log ends: the last sequence assigned so far and the stamp
/// every event of the batch gets.
struct Tail {
    last_seq: u64,
    at_us: i64,
    at: OffsetDateTime,
}

/// A batch that did not commit: which job caused it, if one did.
struct Failure {
    job: Option<usize>,
    error: StoreError,
}

impl Writer {
    /// Runs until every sender is gone (the store was dropped).
    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        // Publishers that await their acks fall into step with the commits: those answered
        // by one commit send again while the next is being fsynced, so batches alternate
        // between two halves of the publishers and every fsync serves only half of them.
        // Like PostgreSQL's commit_delay, the writer therefore waits briefly for stragglers,
        // but only while recent batches show there are more callers to wait for (`usual`,
        // a slowly decaying maximum of jobs per batch), and never longer than a fraction of
        // what a commit costs, so a lone publisher never waits at all. A batch of
        // WAIT_BELOW_JOBS or more already spreads its fsync thin; waiting would cost more.
        //
        // The transaction opens with the first job and each job is written as it arrives,
        // so the inserts overlap the wait for the next callers instead of following it.
        let mut usual = 1usize;
        let mut last_commit = Duration::ZERO;
        while let Ok(first) = jobs.recv() {
            let deadline = Instant::now() + (last_commit / 4).min(self.max_commit_delay);
            let mut open = self.begin();
            let mut events = 0;
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(mut job) = next.take() {
                events += job.event_count();
                if let Some(tail) = &mut open
                    && self.apply_job(tail, batch.len(), &mut job).is_err()
                {
                    // The batch is retried job by job below, in a new transaction.
                    let _ = self.run_cached("ROLLBACK");
                    open = None;
                }
                batch.push(job);
                if events >= self.max_batch_events {
                    break;
                }
                next = match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(mpsc::TryRecvError::Empty)
                        if batch.len() < usual && batch.len() < WAIT_BELOW_JOBS =>
                    {
                        jobs.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                            .ok()
                    }
                    Err(_) => None,
                };
            }
            usual = next_usual(usual, batch.len());
            let committing = Instant::now();
            match open {
                Some(_) if self.finish(&batch).is_ok() => self.deliver(batch),
                Some(_) => {
                    let _ = self.run_cached("ROLLBACK");
                    self.commit(batch);
                }
                None => self.commit(batch),
            }
            last_commit = committing.elapsed();
        }
    }

    /// Opens the transaction of a batch applied as its jobs arrive; `None` if that failed,
    /// and the batch then goes through [`Self::commit`] as a whole.
    fn begin(&mut self) -> Option<Tail> {
        if self.run_cached("BEGIN IMMEDIATE").is_err() {
            return None;
        }
        match self.read_tail() {
            Ok(tail) => Some(tail),
            Err(_) => {
                let _ = self.run_cached("ROLLBACK");
                None
            }
        }
    }

    /// Ends a batch applied as its jobs arrived: topic counts, then COMMIT. On error the
    /// caller rolls back.
    fn finish(&mut self, batch: &[Job]) -> Result<(), Failure> {
        self.count_topics(batch)?;
        self.run_cached("COMMIT").map_err(|e| Failure {
            job: None,
            error: sqlite_error(&self.store, "commit", e),
        })
    }

    fn commit(&mut self, mut batch: Vec<Job>) {
        loop {
            match self.apply(&mut batch) {
                Ok(()) => return self.deliver(batch),
                Err(Failure {
                    job: Some(index),
                    error,
                }) => {
                    batch.remove(index).fail(error);
                    if batch.is_empty() {
                        return;
                    }
                }
                Err(Failure { job: None, error }) => {
                    for job in batch {
                        job.fail(error.clone());
                    }
                    return;
                }
            }
        }
    }

    /// Runs the batch in one transaction. On error the transaction is rolled back.
    fn apply(&mut self, batch: &mut [Job]) -> Result<(), Failure> {
        let systemic = |store: &str, op, e| Failure {
            job: None,
            error: sqlite_error(store, op, e),
        };
        // Cached statements: parsing BEGIN and COMMIT anew for every batch showed up in
        // profiles of the writer.
        self.run_cached("BEGIN IMMEDIATE")
            .map_err(|e| systemic(&self.store, "begin", e))?;
        let result = self.apply_in_transaction(batch).and_then(|()| {
            self.run_cached("COMMIT")
                .map_err(|e| systemic(&self.store, "commit", e))
        });
        if result.is_err() {
            // Fails harmlessly when SQLite already rolled back on its own.
            let _ = self.run_cached("ROLLBACK");
        }
        result
    }

    fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn apply_in_transaction(&self, batch: &mut [Job]) -> Result<(), Failure> {
        let mut tail = self.read_tail()?;
        for (index, job) in batch.iter_mut().enumerate() {
            self.apply_job(&mut tail, index, job)?;
        }
        self.count_topics(batch)
    }

    /// The log's last sequence and this batch's timestamp, read inside its transaction.
    fn read_tail(&self) -> Result<Tail, Failure> {
        let store = self.store.as_str();
        let (last_seq, last_at_us) = self
            .conn
            .prepare_cached("SELECT seq, at_us FROM genesis_events ORDER BY seq DESC LIMIT 1")
            .and_then(|mut stmt| {
                stmt.query_row([], |row| Ok((from_sql(row.get(0)?), row.get::<_, i64>(1)?)))
                    .optional()
            })
            .map_err(|e| Failure {
                job: None,
                error: sqlite_error(store, "read the log's tail", e),
            })?
            .unwrap_or((0, i64::MIN));
        // Timestamps never go backwards, even if the wall clock does: time order stays
        // sequence order, which history's time ranges rely on.
        let at_us = unix_micros(OffsetDateTime::now_utc()).max(last_at_us);
        let at = from_unix_micros(at_us).ok_or_else(|| Failure {
            job: None,
            error: StoreError::Corrupt {
                store: store.to_owned(),
                what: format!("the newest event is stamped {last_at_us} µs after 1970"),
            },
        })?;
        Ok(Tail {
            last_seq,
            at_us,
            at,
        })
    }

    /// Writes one job (the `index`th of its batch) in the open transaction.
    fn apply_job(&self, tail: &mut Tail, index: usize, job: &mut Job) -> Result<(), Failure> {
        let store = self.store.as_str();
        let systemic = |op, e| Failure {
            job: None,
            error: sqlite_error(store, op, e),
        };
        let job_failed = |op, e| Failure {
            job: Some(index),
            error: sqlite_error(store, op, e),
        };
        let last_seq = tail.last_seq;
        match job {
            Job::Append {
                events, assigned, ..
            } => {
                let mut insert = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO genesis_events (seq, topic, at_us, who, payload) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(|e| systemic("prepare insert", e))?;
                *assigned = Some((tail.last_seq + 1, tail.at));
                for event in events.iter() {
                    tail.last_seq += 1;
                    insert
                        .execute(params![
                            to_sql(tail.last_seq),
                            event.topic().as_str(),
                            tail.at_us,
                            event.who(),
                            event.payload_json()
                        ])
                        .map_err(|e| job_failed("append", e))?;
                }
            }
            Job::OpenConsumer {
                name,
                pattern,
                start_after,
                result,
                ..
            } => {
                *result = Some(
                    self.open_consumer(name, pattern, (*start_after).min(last_seq))
                        .map_err(|e| job_failed("open consumer", e))?,
                );
            }
            Job::Ack {
                name, seq, result, ..
            } => {
                *result = Some(if *seq > last_seq {
                    Err(StoreError::AckBeyondEnd {
                        store: store.to_owned(),
                        name: name.clone(),
                        seq: *seq,
                        last_seq,
                    })
                } else {
                    self.ack(name, *seq)
                        .map_err(|e| job_failed("ack consumer", e))?
                });
            }
            Job::DeleteConsumer { name, result, .. } => {
                let deleted = self
                    .conn
                    .prepare_cached("DELETE FROM genesis_consumers WHERE name = ?1")
                    .and_then(|mut stmt| stmt.execute([name.as_str()]))
                    .map_err(|e| job_failed("delete consumer", e))?;
                *result = Some(deleted > 0);
            }
            Job::Claim {
                job,
                slot_us,
                owner,
                result,
                ..
            } => {
                let inserted = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO genesis_schedule_runs (job, slot_us, owner, claimed_us) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            job.as_str(),
                            *slot_us,
                            owner.as_str(),
                            unix_micros(OffsetDateTime::now_utc())
                        ])
                    })
                    .map_err(|e| job_failed("claim a scheduled slot", e))?;
                *result = Some(inserted > 0);
            }
            Job::Finish {
                job,
                slot_us,
                outcome,
                result,
                ..
            } => {
                self.conn
                    .prepare_cached(
                        "UPDATE genesis_schedule_runs SET finished_us = ?3, outcome = ?4 \
                         WHERE job = ?1 AND slot_us = ?2",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            job.as_str(),
                            *slot_us,
                            unix_micros(OffsetDateTime::now_utc()),
                            outcome.as_str()
                        ])
                    })
                    .map_err(|e| job_failed("finish a scheduled slot", e))?;
                *result = Some(());
            }
            Job::Exec {
                op, run, result, ..
            } => {
                let op: &'static str = op;
                *result = Some(run(&self.conn).map_err(|e| job_failed(op, e))?);
            }
        }
        Ok(())
    }

    /// Adds the batch's events to the per-topic counts.
    fn count_topics(&self, batch: &[Job]) -> Result<(), Failure> {
        let systemic = |op, e| Failure {
            job: None,
            error: sqlite_error(&self.store, op, e),
        };
        // Batches usually hold few topics: a short list beats hashing each event's topic.
        let mut counts: Vec<(&str, i64)> = Vec::new();
        for job in batch.iter() {
            if let Job::Append { events, .. } = job {
                for event in events {
                    let topic = event.topic().as_str();
                    match counts.iter_mut().find(|(t, _)| *t == topic) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((topic, 1)),
                    }
                }
            }
        }
        let mut upsert = self
            .conn
            .prepare_cached(
                "INSERT INTO genesis_topic_counts (topic, events) VALUES (?1, ?2) \
                 ON CONFLICT (topic) DO UPDATE SET events = events + excluded.events",
            )
            .map_err(|e| systemic("prepare count update", e))?;
        for (topic, n) in &counts {
            upsert
                .execute(params![topic, n])
                .map_err(|e| systemic("update topic counts", e))?;
        }
        Ok(())
    }

    fn open_consumer(
        &self,
        name: &str,
        pattern: &str,
        start_after: u64,
    ) -> rusqlite::Result<Result<u64, StoreError>> {
        let existing: Option<(String, u64)> = self
            .conn
            .prepare_cached("SELECT pattern, acked_seq FROM genesis_consumers WHERE name = ?1")?
            .query_row([name], |row| Ok((row.get(0)?, from_sql(row.get(1)?))))
            .optional()?;
        Ok(match existing {
            Some((stored, acked)) if stored == pattern => Ok(acked),
            Some((stored, _)) => Err(StoreError::ConsumerPatternMismatch {
                store: self.store.clone(),
                name: name.to_owned(),
                stored,
                requested: pattern.to_owned(),
            }),
            None => {
                self.conn
                    .prepare_cached(
                        "INSERT INTO genesis_consumers (name, pattern, acked_seq) \
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![name, pattern, to_sql(start_after)])?;
                Ok(start_after)
            }
        })
    }

    fn ack(&self, name: &str, seq: u64) -> rusqlite::Result<Result<u64, StoreError>> {
        let floor: Option<u64> = self
            .conn
            .prepare_cached(
                "UPDATE genesis_consumers SET acked_seq = max(acked_seq, ?2) WHERE name = ?1 \
                 RETURNING acked_seq",
            )?
            .query_row(params![name, to_sql(seq)], |row| row.get(0).map(from_sql))
            .optional()?;
        Ok(floor.ok_or_else(|| StoreError::ConsumerNotFound {
            store: self.store.clone(),
            name: name.to_owned(),
        }))
    }

    /// After a commit: fan the events out in sequence order, then answer every caller.
    fn deliver(&self, batch: Vec<Job>) {
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let broadcast = self.live.receiver_count() > 0;
        for job in batch {
            match job {
                Job::Append {
                    events,
                    reply,
                    assigned,
                } => {
                    let Some((first_seq, at)) = assigned else {
                        drop(reply.send(Err(self.lost_result())));
                        continue;
                    };
                    let events: Vec<Event> = events
                        .into_iter()
                        .zip(first_seq..)
                        .map(|(event, seq)| event.into_event(seq, at))
                        .collect();
                    self.counters
                        .events
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    if broadcast {
                        for event in &events {
                            // No receiver left is not an error: the event is stored.
                            let _ = self.live.send(Arc::new(event.clone()));
                        }
                    }
                    drop(reply.send(Ok(events)));
                }
                Job::OpenConsumer { reply, result, .. } | Job::Ack { reply, result, .. } => {
                    drop(reply.send(result.unwrap_or_else(|| Err(self.lost_result()))));
                }
                Job::DeleteConsumer { reply, result, .. } | Job::Claim { reply, result, .. } => {
                    drop(reply.send(result.ok_or_else(|| self.lost_result())));
                }
                Job::Finish { reply, result, .. } => {
                    drop(reply.send(result.ok_or_else(|| self.lost_result())));
                }
                Job::Exec { reply, result, .. } => {
                    drop(reply.send(result.ok_or_else(|| self.lost_result())));
                }
            }
        }
    }

    fn lost_result(&self) -> StoreError {
        StoreError::Task {
            store: self.store.clone(),
            op: "group commit",
            message: "a job committed without a result (writer bug)".to_owned(),
        }
    }
}

/// The writer's idea of how many jobs a batch usually has: the new batch's size, or the old
/// value less an eighth (and at least one), so that a burst's memory fades and a lone
/// publisher soon stops waiting for company.
fn next_usual(usual: usize, batch: usize) -> usize {
    batch.max(usual - usual.div_ceil(8)).max(1)
}

#[cfg(test)]
mod tests {
    use super::next_usual;

    #[test]
    fn the_usual_batch_size_follows_bursts_and_fades() {
        assert_eq!(next_usual(1, 16), 16);
        let mut usual = 64;
        let mut steps = 0;
        while usual > 1 {
            usual = next_usual(usual, 1);
            steps += 1;
        }
        assert!(
            steps <= 30,
            "took {steps} single-job batches to forget a burst of 64"
        );
        assert_eq!(next_usual(1, 0), 1);
    }
}
