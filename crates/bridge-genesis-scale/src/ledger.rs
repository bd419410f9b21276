//! [`PostgresLedgerRows`]: the Truth ledger's rows in the shared store, so every runner and
//! every server appends to one log, signed with the one `BRIDGE_LEDGER_KEY`.
//!
//! The ledger is synchronous (it hashes and signs on a blocking thread), the client is not:
//! each handle keeps its connection on a thread of its own with a single-threaded runtime,
//! and every call is a job sent to that thread, bounded by [`CALL_TIMEOUT`]. A call may then
//! come from anywhere, a runtime worker included, without nesting runtimes.
//!
//! The write transaction holds the row lock of the origin row in `bridge_ledger_meta`, so
//! writers on any machine take turns and each sees the tail the previous one committed
//! (READ COMMITTED gives every statement a fresh snapshot).

use std::sync::mpsc;
use std::time::Duration;

use bridge_genesis::ledger::rows::{
    CheckpointRow, Checkpoints, EntryRow, LeafVisitor, LedgerRows, RawRow, RowVisitor,
};
use bridge_genesis::ledger::{Hash, LedgerError, VerifyImage, VerifyReport};
use ed25519_dalek::VerifyingKey;
use tokio::runtime::Runtime;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, Row};

use crate::pg::{connect_client, describe};
use crate::state::{CALL_TIMEOUT, migrate, parse_config};

/// Rows fetched per round trip when scanning entries.
const PAGE: i64 = 1_000;
/// Leaf hashes fetched per round trip (32 bytes each).
const LEAF_PAGE: i64 = 10_000;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The connection and the runtime that drives it, on their own thread.
struct Worker {
    runtime: Runtime,
    client: Client,
    store: String,
    /// A call went unanswered: what the server did with it is unknown (a transaction may
    /// stand open, holding the log's lock), so the connection is not used again; the handle
    /// fails fast and its owner opens another.
    poisoned: bool,
}

impl Worker {
    /// Runs one query within [`CALL_TIMEOUT`].
    fn run<T>(
        &mut self,
        op: &str,
        call: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, LedgerError> {
        let Worker {
            runtime,
            client,
            store,
            poisoned,
        } = self;
        if *poisoned || client.is_closed() {
            return Err(LedgerError::Unavailable {
                store: store.clone(),
                message: format!("{op}: the connection was lost or timed out earlier"),
            });
        }
        let outcome =
            runtime.block_on(async { tokio::time::timeout(CALL_TIMEOUT, call(client)).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ledger_error(store, op, &e)),
            Err(_) => {
                *poisoned = true;
                Err(LedgerError::Unavailable {
                    store: store.clone(),
                    message: format!("{op}: no answer within {} s", CALL_TIMEOUT.as_secs()),
                })
            }
        }
    }
}

/// An answer with an error code is the store refusing; anything else (refused, reset,
/// closed) is the store being unreachable.
fn ledger_error(store: &str, op: &str, e: &tokio_postgres::Error) -> LedgerError {
    // A server's answer says what it refused only in its own Display; the client's says
    // "db error".
    let message = match e.as_db_error() {
        Some(db) => format!("{op}: {db}"),
        None => format!("{op}: {e}"),
    };
    if e.as_db_error().is_some() {
        LedgerError::Backend {
            store: store.to_owned(),
            message,
        }
    } else {
        LedgerError::Unavailable {
            store: store.to_owned(),
            message,
        }
    }
}

/// The ledger's rows in a PostgreSQL store.
pub struct PostgresLedgerRows {
    jobs: mpsc::Sender<Job>,
    store: String,
}

impl std::fmt::Debug for PostgresLedgerRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLedgerRows")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl PostgresLedgerRows {
    /// Connects to the store `url` names (its tables in `schema`, or the search path's
    /// first), bringing its schema up to date as the state store does.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, LedgerError> {
        let config: Config = parse_config(url).map_err(|e| LedgerError::Backend {
            store: "the --store URL".to_owned(),
            message: e.to_string(),
        })?;
        let store = format!("PostgreSQL ledger {}", describe(&config, schema));
        let schema = schema.map(str::to_owned);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel();
        let name = store.clone();
        std::thread::Builder::new()
            .name("ledger-postgres".into())
            .spawn(move || {
                let worker = start(&config, schema.as_deref(), &name);
                let mut worker = match worker {
                    Ok(worker) => {
                        let _ = ready.send(Ok(()));
                        worker
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                // Ends when the handle (the only sender) is dropped; the connection with it.
                for job in queue {
                    job(&mut worker);
                }
            })
            .map_err(|e| LedgerError::Unavailable {
                store: store.clone(),
                message: format!("starting the connection's thread: {e}"),
            })?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self { jobs, store }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(gone(&store)),
        }
    }

    /// Records `public_key` (hex) as the key the log is signed with, unless one is recorded,
    /// and refuses another: every writer of a shared ledger signs with the same key, and
    /// the first to sign must not lock the others out with a key of its own.
    pub fn claim_key(&self, public_key: &str) -> Result<(), LedgerError> {
        let given = public_key.to_owned();
        let claimed = given.clone();
        let stored: String = self.call(move |w| {
            w.run("record the signing key", async |c| {
                let rows = c
                    .query_typed(
                        "WITH put AS (
                           INSERT INTO bridge_ledger_meta (key, value) VALUES ('public_key', $1)
                           ON CONFLICT (key) DO NOTHING RETURNING value)
                         SELECT value FROM put
                         UNION ALL
                         SELECT value FROM bridge_ledger_meta WHERE key = 'public_key'
                         LIMIT 1",
                        &[(&claimed, Type::TEXT)],
                    )
                    .await?;
                if let Some(row) = rows.first() {
                    return Ok(row.get::<_, String>(0));
                }
                Ok(c.query_typed_one(
                    "SELECT value FROM bridge_ledger_meta WHERE key = 'public_key'",
                    &[],
                )
                .await?
                .get(0))
            })
        })?;
        if stored == given {
            Ok(())
        } else {
            Err(LedgerError::KeyMismatch {
                store: self.store.clone(),
                stored,
                given,
            })
        }
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker| {
            let _ = answer.send(f(worker));
        });
        self.jobs.send(job).map_err(|_| gone(&self.store))?;
        answered.recv().map_err(|_| gone(&self.store))?
    }

    /// Pages through `start..end`, handing each page's rows to `visit` on this thread.
    fn pages(
        &self,
        sql: &'static str,
        page: i64,
        start: u64,
        end: u64,
        mut visit: impl FnMut(&[Row]) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut from = to_i64(start);
        let end = to_i64(end);
        while from < end {
            let rows = self.call(move |w| {
                w.run("read the ledger", async |c| {
                    c.query_typed(
                        sql,
                        &[(&from, Type::INT8), (&end, Type::INT8), (&page, Type::INT8)],
                    )
                    .await
                })
            })?;
            let Some(last) = rows.last() else { break };
            let last: i64 = last.try_get(0).map_err(|e| column_error(&self.store, &e))?;
            visit(&rows)?;
            if (rows.len() as i64) < page {
                break;
            }
            from = last.saturating_add(1);
        }
        Ok(())
    }
}

/// A stored value of a type the ledger never writes: the table was altered.
fn column_error(store: &str, e: &tokio_postgres::Error) -> LedgerError {
    LedgerError::Damaged(format!("{store}: a ledger column was altered: {e}"))
}

fn gone(store: &str) -> LedgerError {
    LedgerError::Unavailable {
        store: store.to_owned(),
        message: "the connection's thread has stopped".to_owned(),
    }
}

fn start(config: &Config, schema: Option<&str>, store: &str) -> Result<Worker, LedgerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LedgerError::Unavailable {
            store: store.to_owned(),
            message: format!("starting a runtime: {e}"),
        })?;
    let connected = runtime.block_on(async {
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10))
            + CALL_TIMEOUT;
        let connect = async {
            let mut client = connect_client(config, schema)
                .await
                .map_err(|e| ledger_error(store, "connect", &e))?;
            migrate(&mut client, schema, store)
                .await
                .map_err(|e| LedgerError::Backend {
                    store: store.to_owned(),
                    message: e.to_string(),
                })?;
            Ok(client)
        };
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(LedgerError::Unavailable {
                    store: store.to_owned(),
                    message: "connect: no answer in time".to_owned(),
                })
            })
    })?;
    Ok(Worker {
        runtime,
        client: connected,
        store: store.to_owned(),
        poisoned: false,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

const SCAN_ENTRIES: &str = "SELECT idx, timestamp, topic, seq, payload, leaf_hash
     FROM bridge_ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3";
const SCAN_LEAVES: &str = "SELECT idx, leaf_hash FROM bridge_ledger_entries
     WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3";

impl LedgerRows for PostgresLedgerRows {
    fn describe(&self) -> String {
        self.store.clone()
    }

    fn setup(&self, origin: &str) -> Result<String, LedgerError> {
        let origin = origin.to_owned();
        self.call(move |w| {
            w.run("record the origin", async |c| {
                // Recorded unless one is, and read back, in one statement.
                let rows = c
                    .query_typed(
                        "WITH put AS (
                           INSERT INTO bridge_ledger_meta (key, value) VALUES ('origin', $1)
                           ON CONFLICT (key) DO NOTHING RETURNING value)
                         SELECT value FROM put
                         UNION ALL
                         SELECT value FROM bridge_ledger_meta WHERE key = 'origin'
                         LIMIT 1",
                        &[(&origin, Type::TEXT)],
                    )
                    .await?;
                if let Some(row) = rows.first() {
                    return Ok(row.get::<_, String>(0));
                }
                // A first open racing another: theirs committed after this statement's
                // snapshot was taken; a fresh statement sees it.
                let row = c
                    .query_typed_one(
                        "SELECT value FROM bridge_ledger_meta WHERE key = 'origin'",
                        &[],
                    )
                    .await?;
                Ok(row.get::<_, String>(0))
            })
        })
    }

    fn begin_write(&self) -> Result<(), LedgerError> {
        self.call(|w| {
            w.run("begin", async |c| {
                // Every writer of this log, on any machine, waits here for the one before;
                // one round trip for both. The lock is the origin row's: without that row
                // nothing would be locked, so its absence is refused.
                let answer = c
                    .simple_query(
                        "BEGIN; SELECT 1 FROM bridge_ledger_meta WHERE key = 'origin' FOR UPDATE",
                    )
                    .await?;
                Ok(answer
                    .iter()
                    .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))))
            })
        })
        .and_then(|locked| match locked {
            true => Ok(()),
            false => Err(LedgerError::Damaged(format!(
                "{}: the ledger's origin row is missing, so no write can be made exclusive",
                self.store
            ))),
        })
    }

    fn commit(&self) -> Result<(), LedgerError> {
        self.call(|w| w.run("commit", async |c| c.batch_execute("COMMIT").await))
    }

    fn rollback(&self) {
        let _ = self.call(|w| w.run("rollback", async |c| c.batch_execute("ROLLBACK").await));
    }

    fn stored_len(&self) -> Result<u64, LedgerError> {
        let last: Option<i64> = self.call(|w| {
            w.run("read the tail", async |c| {
                Ok(
                    c.query_typed_one("SELECT max(idx) FROM bridge_ledger_entries", &[])
                        .await?
                        .get(0),
                )
            })
        })?;
        match last {
            None => Ok(0),
            Some(i) if i < 0 => Err(LedgerError::Damaged("an entry has a negative index".into())),
            Some(i) => Ok(to_u64(i).saturating_add(1)),
        }
    }

    fn leaf_hashes(
        &self,
        start: u64,
        end: u64,
        visit: &mut LeafVisitor<'_>,
    ) -> Result<(), LedgerError> {
        self.pages(SCAN_LEAVES, LEAF_PAGE, start, end, |rows| {
            for row in rows {
                // A column altered to another type is a malformed leaf, not a panic.
                let idx: i64 = row.try_get(0).map_err(|e| column_error(&self.store, &e))?;
                let leaf = row.try_get::<_, &[u8]>(1).ok();
                visit(idx, leaf.and_then(|l| Hash::try_from(l).ok()))?;
            }
            Ok(())
        })
    }

    fn recorded_seqs(&self, lo: u64, hi: u64) -> Result<Vec<u64>, LedgerError> {
        let (lo, hi) = (to_i64(lo), to_i64(hi));
        let rows = self.call(move |w| {
            w.run("read recorded events", async |c| {
                c.query_typed(
                    "SELECT seq FROM bridge_ledger_entries WHERE seq >= $1 AND seq <= $2",
                    &[(&lo, Type::INT8), (&hi, Type::INT8)],
                )
                .await
            })
        })?;
        Ok(rows.iter().map(|r| to_u64(r.get(0))).collect())
    }

    fn index_of_seq(&self, seq: u64) -> Result<Option<u64>, LedgerError> {
        let seq = to_i64(seq);
        let idx: Option<i64> = self.call(move |w| {
            w.run("find a recorded event", async |c| {
                Ok(c.query_typed_one(
                    "SELECT min(idx) FROM bridge_ledger_entries WHERE seq = $1",
                    &[(&seq, Type::INT8)],
                )
                .await?
                .get(0))
            })
        })?;
        Ok(idx.map(to_u64))
    }

    fn insert_entries(&self, rows: &[EntryRow<'_>]) -> Result<(), LedgerError> {
        if rows.is_empty() {
            return Ok(());
        }
        // One statement per batch: the columns as arrays, unnested server-side.
        let mut idx = Vec::with_capacity(rows.len());
        let mut ts = Vec::with_capacity(rows.len());
        let mut topic = Vec::with_capacity(rows.len());
        let mut seq = Vec::with_capacity(rows.len());
        let mut payload = Vec::with_capacity(rows.len());
        let mut leaf = Vec::with_capacity(rows.len());
        for r in rows {
            idx.push(i64::try_from(r.index).map_err(|_| LedgerError::OutOfRange {
                what: "index",
                value: r.index,
                size: i64::MAX as u64,
            })?);
            ts.push(r.timestamp.to_owned());
            topic.push(r.topic.to_owned());
            // Refused rather than clamped, as SQLite refuses it: a clamped value would no
            // longer match the leaf hash computed from the real one.
            seq.push(
                r.seq
                    .map(|v| {
                        i64::try_from(v).map_err(|_| LedgerError::OutOfRange {
                            what: "bus sequence",
                            value: v,
                            size: i64::MAX as u64,
                        })
                    })
                    .transpose()?,
            );
            payload.push(r.payload.to_owned());
            leaf.push(r.leaf_hash.to_vec());
        }
        self.call(move |w| {
            w.run("append", async |c| {
                c.query_typed(
                    "INSERT INTO bridge_ledger_entries (idx, timestamp, topic, seq, payload, leaf_hash)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                                          $5::text[], $6::bytea[])",
                    &[
                        (&idx, Type::INT8_ARRAY),
                        (&ts, Type::TEXT_ARRAY),
                        (&topic, Type::TEXT_ARRAY),
                        (&seq, Type::INT8_ARRAY),
                        (&payload, Type::TEXT_ARRAY),
                        (&leaf, Type::BYTEA_ARRAY),
                    ],
                )
                .await
            })
        })?;
        Ok(())
    }

    fn scan_entries(
        &self,
        start: u64,
        end: u64,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), LedgerError> {
        self.pages(SCAN_ENTRIES, PAGE, start, end, |rows| {
            for row in rows {
                let index: i64 = row.try_get(0).map_err(|e| column_error(&self.store, &e))?;
                let index = to_u64(index);
                // A column altered to another type (or to NULL) is a row the ledger did not
                // write: reported as such, as the SQLite backend reports it.
                let columns = (
                    row.try_get::<_, &str>(1),
                    row.try_get::<_, &str>(2),
                    row.try_get::<_, Option<i64>>(3),
                    row.try_get::<_, &str>(4),
                    row.try_get::<_, &[u8]>(5),
                );
                let (Ok(timestamp), Ok(topic), Ok(seq), Ok(payload), Ok(stored)) = columns else {
                    visit(Err((Some(index), "a column is not what the ledger writes")))?;
                    continue;
                };
                let Ok(stored) = Hash::try_from(stored) else {
                    visit(Err((Some(index), "its stored leaf hash is not 32 bytes")))?;
                    continue;
                };
                if seq.is_some_and(|s| s < 0) {
                    visit(Err((Some(index), "its bus sequence is negative")))?;
                    continue;
                }
                visit(Ok(RawRow {
                    index,
                    timestamp: timestamp.as_bytes(),
                    topic: topic.as_bytes(),
                    seq: seq.map(to_u64),
                    payload: payload.as_bytes(),
                    stored,
                }))?;
            }
            Ok(())
        })
    }

    fn checkpoints(&self, which: Checkpoints) -> Result<Vec<CheckpointRow>, LedgerError> {
        let rows = self.call(move |w| {
            w.run("read checkpoints", async |c| match which {
                Checkpoints::All => {
                    c.query_typed(
                        "SELECT id, created_at, note FROM bridge_ledger_checkpoints ORDER BY id",
                        &[],
                    )
                    .await
                }
                Checkpoints::Latest => {
                    c.query_typed(
                        "SELECT id, created_at, note FROM bridge_ledger_checkpoints
                         ORDER BY id DESC LIMIT 1",
                        &[],
                    )
                    .await
                }
                Checkpoints::LatestOfSize(size) => {
                    c.query_typed(
                        "SELECT id, created_at, note FROM bridge_ledger_checkpoints
                         WHERE size = $1 ORDER BY id DESC LIMIT 1",
                        &[(&to_i64(size), Type::INT8)],
                    )
                    .await
                }
            })
        })?;
        Ok(rows
            .iter()
            .map(|r| CheckpointRow {
                id: to_u64(r.get(0)),
                created_at: r.get(1),
                note: r.get(2),
            })
            .collect())
    }

    fn insert_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
        created_at: &str,
    ) -> Result<u64, LedgerError> {
        let (size, root, note, created_at) = (
            to_i64(size),
            root.to_vec(),
            note.to_owned(),
            created_at.to_owned(),
        );
        let id: i64 = self.call(move |w| {
            w.run("store a checkpoint", async |c| {
                Ok(c.query_typed_one(
                    "INSERT INTO bridge_ledger_checkpoints (size, root, note, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[
                        (&size, Type::INT8),
                        (&root, Type::BYTEA),
                        (&note, Type::TEXT),
                        (&created_at, Type::TEXT),
                    ],
                )
                .await?
                .get(0))
            })
        })?;
        Ok(to_u64(id))
    }

    fn verify(&self, origin: &str, key: &VerifyingKey) -> Result<VerifyReport, LedgerError> {
        // Everything is copied as stored and checked by the verifier the SQLite ledger uses;
        // one snapshot (REPEATABLE READ) so a writer appending meanwhile changes nothing.
        let image = VerifyImage::new()?;
        if let Err(e) = self.call(|w| {
            w.run("begin", async |c| {
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            })
        }) {
            self.rollback();
            return Err(e);
        }
        let copied: Result<(), LedgerError> = (|| {
            // Rows no page reaches (a negative index, or the largest) are someone's doing:
            // copied too, so the verifier names them.
            let outside = self.call(|w| {
                w.run("read the ledger", async |c| {
                    c.query_typed(
                        "SELECT idx, timestamp, topic, seq, payload, leaf_hash
                         FROM bridge_ledger_entries WHERE idx < 0 OR idx = 9223372036854775807",
                        &[],
                    )
                    .await
                })
            })?;
            let copy = |rows: &[Row]| -> Result<(), LedgerError> {
                let bad = |e: tokio_postgres::Error| column_error(&self.store, &e);
                for row in rows {
                    image.entry(
                        row.try_get(0).map_err(bad)?,
                        row.try_get(1).ok().flatten(),
                        row.try_get(2).ok().flatten(),
                        row.try_get(3).ok().flatten(),
                        row.try_get(4).ok().flatten(),
                        row.try_get(5).ok().flatten(),
                    )?;
                }
                Ok(())
            };
            copy(&outside)?;
            self.pages(SCAN_ENTRIES, PAGE, 0, u64::MAX, copy)?;
            let checkpoints = self.call(|w| {
                w.run("read checkpoints", async |c| {
                    c.query_typed(
                        "SELECT id, size, root, note, created_at FROM bridge_ledger_checkpoints
                         ORDER BY id",
                        &[],
                    )
                    .await
                })
            })?;
            for row in &checkpoints {
                let bad = |e: tokio_postgres::Error| column_error(&self.store, &e);
                image.checkpoint(
                    row.try_get(0).map_err(bad)?,
                    row.try_get(1).map_err(bad)?,
                    row.try_get(2).map_err(bad)?,
                    row.try_get(3).map_err(bad)?,
                    row.try_get(4).map_err(bad)?,
                )?;
            }
            Ok(())
        })();
        self.rollback();
        copied?;
        image.verify(origin, key)
    }
}
