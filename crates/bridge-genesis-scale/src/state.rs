//! [`PostgresState`]: the sync state on PostgreSQL, shared by every runner that names the
//! same `--store` — CI runners that start empty, laptops and servers see one history of
//! write records, ownership and journals, so none of them rewrites what another wrote or
//! reads it as changed outside Bridge.
//!
//! Tables are prefixed `bridge_` and live beside the bus's in the store's schema. The
//! schema is versioned in `bridge_state_meta` and migrated on open under an advisory
//! transaction lock, so two first starts take turns; a version above this build's is
//! refused. Each method is one transaction. A failure to reach the server (refused, reset,
//! closed, or no answer within [`CALL_TIMEOUT`]) is [`StoreError::Unavailable`], so callers
//! can say the store is down rather than that it answered wrong.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bridge_sync::store::{
    JournalRow, JournalState, LandedRow, OpRow, RecordHead, RecordRow, StateBackend, StateDump,
    StoreError, TargetRow,
};
use tokio_postgres::types::Type;
use tokio_postgres::{Config, GenericClient, Row};

use crate::pg::{Pool, describe, quote_ident};

/// How long one call may take before the store counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `pg_advisory_xact_lock` key held while migrating: "bridgest" in ASCII.
const MIGRATE_LOCK: i64 = 0x6272_6964_6765_7374;

/// The migrations, in order: `(version, SQL)`. Never edit one that has shipped; add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE bridge_write_records (
    target      text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    fingerprint text NOT NULL,
    updated_at  text,
    sealed      bytea NOT NULL,
    written_at  text NOT NULL,
    PRIMARY KEY (target, key)
);
CREATE INDEX bridge_write_records_by_stamp ON bridge_write_records (key, updated_at);
CREATE TABLE bridge_journals (
    id         bigserial PRIMARY KEY,
    created_at text NOT NULL,
    source     text NOT NULL,
    state      text NOT NULL
);
CREATE TABLE bridge_journal_targets (
    journal_id bigint NOT NULL REFERENCES bridge_journals (id),
    ord        integer NOT NULL,
    target     text COLLATE "C" NOT NULL,
    spec       text NOT NULL,
    label      text NOT NULL,
    state      text NOT NULL,
    error      text,
    untouched  text,
    PRIMARY KEY (journal_id, target)
);
CREATE INDEX bridge_journal_targets_by_target ON bridge_journal_targets (target, journal_id);
CREATE TABLE bridge_journal_ops (
    journal_id   bigint NOT NULL,
    target       text COLLATE "C" NOT NULL,
    seq          integer NOT NULL,
    key          text COLLATE "C" NOT NULL,
    change       text NOT NULL,
    after        bytea,
    before_kind  text NOT NULL,
    before       bytea,
    before_stamp text,
    done         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (journal_id, target, seq)
);
CREATE TABLE bridge_locks (
    scope       text COLLATE "C" PRIMARY KEY,
    id          text NOT NULL,
    lock_key    bigint NOT NULL,
    owner       text NOT NULL,
    host        text NOT NULL,
    pid         bigint NOT NULL,
    since       text NOT NULL,
    backend_pid integer NOT NULL
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE bridge_ledger_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE bridge_ledger_entries (
    idx       bigint PRIMARY KEY,
    timestamp text NOT NULL,
    topic     text NOT NULL,
    seq       bigint,
    payload   text NOT NULL,
    leaf_hash bytea NOT NULL
);
CREATE INDEX bridge_ledger_entries_by_seq ON bridge_ledger_entries (seq) WHERE seq IS NOT NULL;
CREATE TABLE bridge_ledger_checkpoints (
    id         bigserial PRIMARY KEY,
    size       bigint NOT NULL,
    root       bytea NOT NULL,
    note       text NOT NULL,
    created_at text NOT NULL
);
CREATE INDEX bridge_ledger_checkpoints_by_size ON bridge_ledger_checkpoints (size);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE bridge_tokens (
    sha256     text COLLATE "C" PRIMARY KEY,
    id         text COLLATE "C" NOT NULL,
    role       text NOT NULL,
    created_at text NOT NULL,
    ord        bigserial NOT NULL
);
CREATE INDEX bridge_tokens_by_id ON bridge_tokens (id);
CREATE TABLE bridge_token_generation (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation bigint NOT NULL
);
INSERT INTO bridge_token_generation (id, generation) VALUES (true, 0);
"#,
    ),
    (
        4,
        r#"
ALTER TABLE bridge_journal_targets ADD COLUMN image_before bytea, ADD COLUMN image_after bytea;
"#,
    ),
];

/// The newest schema version this build knows.
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// A connection failure, a reset or a closed connection is the store being unreachable; an
/// answer with an error code is the store refusing.
pub(crate) fn state_error(store: &str, op: &str, e: tokio_postgres::Error) -> StoreError {
    // A server's answer says what it refused only in its own Display.
    let message = match e.as_db_error() {
        Some(db) => format!("{op}: {db}"),
        None => format!("{op}: {e}"),
    };
    let source = Box::new(std::io::Error::other(message));
    if e.as_db_error().is_some() {
        StoreError::Backend {
            store: store.to_owned(),
            source,
        }
    } else {
        StoreError::Unavailable {
            store: store.to_owned(),
            source,
        }
    }
}

/// Creates the schema and the tables, or brings them up to [`schema_version`].
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: Option<&str>,
    store: &str,
) -> Result<(), StoreError> {
    let err = |op: &'static str| move |e| state_error(store, op, e);
    let known = schema_version();
    // The common case, a store already at this version, costs one query and no lock.
    let current = client
        .query_typed_opt(
            "SELECT value FROM bridge_state_meta WHERE key = 'schema_version'",
            &[],
        )
        .await;
    match current {
        Ok(row) => {
            let found: i64 = row
                .and_then(|row| row.get::<_, String>(0).parse().ok())
                .unwrap_or(0);
            if found == known {
                return Ok(());
            }
        }
        // No table yet (undefined_table): migrate below. Anything else is a real failure.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
        Err(e) => return Err(err("read the schema version")(e)),
    }
    let tx = client.transaction().await.map_err(err("begin"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(err("lock for migration"))?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .await
        .map_err(err("create schema"))?;
    }
    tx.batch_execute(
        r#"CREATE TABLE IF NOT EXISTS bridge_state_meta (
               key   text COLLATE "C" PRIMARY KEY,
               value text NOT NULL
           )"#,
    )
    .await
    .map_err(err("create bridge_state_meta"))?;
    let found: i64 = tx
        .query_opt(
            "SELECT value FROM bridge_state_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(err("read the schema version"))?
        .and_then(|row| row.get::<_, String>(0).parse().ok())
        .unwrap_or(0);
    if found > known {
        return Err(StoreError::SchemaTooNew {
            store: store.to_owned(),
            found,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(err("migrate"))?;
        tx.execute(
            "INSERT INTO bridge_state_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&version.to_string()],
        )
        .await
        .map_err(err("record the schema version"))?;
    }
    tx.commit().await.map_err(err("commit the migration"))
}

/// The PostgreSQL [`StateBackend`].
pub struct PostgresState {
    name: String,
    pool: Pool,
}

impl std::fmt::Debug for PostgresState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresState")
            .field("store", &self.name)
            .finish_non_exhaustive()
    }
}

impl PostgresState {
    /// Connects to `url` (`postgres://…` or `host=… dbname=…`), migrating the schema.
    /// `schema` picks a PostgreSQL schema of its own (tests); `None` uses the search path.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        Self::connect_with(url, schema, 4).await
    }

    /// [`PostgresState::connect`] with at most `connections` open at once. A command
    /// wants one (its queries are short; opening another costs more than waiting), a server
    /// a few.
    pub async fn connect_with(
        url: &str,
        schema: Option<&str>,
        connections: usize,
    ) -> Result<Self, StoreError> {
        let config = parse_config(url)?;
        let name = format!("PostgreSQL state store {}", describe(&config, schema));
        let pool = Pool::new(config, schema.map(str::to_owned), connections);
        let store = Self { name, pool };
        store
            .timed("connect", async {
                let client = store.pool.get().await.map_err(store.err("connect"))?;
                let mut client = client;
                migrate(&mut client, schema, &store.name).await
            })
            .await?;
        Ok(store)
    }

    fn err(&self, op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| state_error(&self.name, op, e)
    }

    /// Runs one call within [`CALL_TIMEOUT`]. A call cut short may have committed (its
    /// COMMIT sent, the answer lost): `Unavailable` then says the store could not be heard,
    /// and what was written is for the journal to tell, as after a crash.
    async fn timed<T>(
        &self,
        op: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable {
                store: self.name.clone(),
                source: Box::new(std::io::Error::other(format!(
                    "{op}: no answer within {} s",
                    CALL_TIMEOUT.as_secs()
                ))),
            }),
        }
    }

    async fn journal_row(
        &self,
        client: &impl GenericClient,
        id: i64,
    ) -> Result<Option<JournalRow>, StoreError> {
        let Some(head) = client
            .query_opt(
                "SELECT created_at, source, state FROM bridge_journals WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(self.err("read a journal"))?
        else {
            return Ok(None);
        };
        let mut targets: Vec<TargetRow> = client
            .query(
                "SELECT target, spec, label, state, error, untouched, image_before, image_after
                 FROM bridge_journal_targets WHERE journal_id = $1 ORDER BY ord",
                &[&id],
            )
            .await
            .map_err(self.err("read a journal's targets"))?
            .iter()
            .map(|r| TargetRow {
                identity: r.get(0),
                spec: r.get(1),
                label: r.get(2),
                state: r.get(3),
                error: r.get(4),
                untouched: r.get(5),
                image_before: r.get(6),
                image_after: r.get(7),
                ops: Vec::new(),
            })
            .collect();
        let ops = client
            .query(
                "SELECT target, key, change, after, before_kind, before, done, before_stamp
                 FROM bridge_journal_ops WHERE journal_id = $1 ORDER BY target, seq",
                &[&id],
            )
            .await
            .map_err(self.err("read a journal's ops"))?;
        for r in &ops {
            let target: String = r.get(0);
            if let Some(t) = targets.iter_mut().find(|t| t.identity == target) {
                t.ops.push(OpRow {
                    key: r.get(1),
                    change: r.get(2),
                    after: r.get(3),
                    before_kind: r.get(4),
                    before: r.get(5),
                    done: r.get(6),
                    before_stamp: r.get(7),
                });
            }
        }
        Ok(Some(JournalRow {
            id,
            created_at: head.get(0),
            source: head.get(1),
            state: head.get(2),
            targets,
        }))
    }

    async fn insert_journal(
        &self,
        tx: &impl GenericClient,
        id: Option<i64>,
        j: &JournalRow,
    ) -> Result<i64, StoreError> {
        let row = match id {
            Some(id) => {
                tx.query_one(
                    "INSERT INTO bridge_journals (id, created_at, source, state)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&id, &j.created_at, &j.source, &j.state],
                )
                .await
            }
            None => {
                tx.query_one(
                    "INSERT INTO bridge_journals (created_at, source, state)
                     VALUES ($1, $2, $3) RETURNING id",
                    &[&j.created_at, &j.source, &j.state],
                )
                .await
            }
        }
        .map_err(self.err("journal an apply"))?;
        let id: i64 = row.get(0);
        for (ord, t) in j.targets.iter().enumerate() {
            tx.execute(
                "INSERT INTO bridge_journal_targets
                   (journal_id, ord, target, spec, label, state, error, untouched,
                    image_before, image_after)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &id,
                    &(ord as i32),
                    &t.identity,
                    &t.spec,
                    &t.label,
                    &t.state,
                    &t.error,
                    &t.untouched,
                    &t.image_before,
                    &t.image_after,
                ],
            )
            .await
            .map_err(self.err("journal a target"))?;
            if t.ops.is_empty() {
                continue;
            }
            // One statement for every op of the target, however many.
            let seqs: Vec<i32> = (0..t.ops.len() as i32).collect();
            let keys: Vec<&str> = t.ops.iter().map(|o| o.key.as_str()).collect();
            let changes: Vec<&str> = t.ops.iter().map(|o| o.change.as_str()).collect();
            let afters: Vec<Option<&[u8]>> = t.ops.iter().map(|o| o.after.as_deref()).collect();
            let kinds: Vec<&str> = t.ops.iter().map(|o| o.before_kind.as_str()).collect();
            let befores: Vec<Option<&[u8]>> = t.ops.iter().map(|o| o.before.as_deref()).collect();
            let stamps: Vec<Option<&str>> =
                t.ops.iter().map(|o| o.before_stamp.as_deref()).collect();
            let dones: Vec<bool> = t.ops.iter().map(|o| o.done).collect();
            tx.execute(
                "INSERT INTO bridge_journal_ops
                   (journal_id, target, seq, key, change, after, before_kind, before, before_stamp, done)
                 SELECT $1, $2, s, k, c, a, bk, b, bs, d
                 FROM unnest($3::int[], $4::text[], $5::text[], $6::bytea[], $7::text[],
                             $8::bytea[], $9::text[], $10::bool[])
                   AS u(s, k, c, a, bk, b, bs, d)",
                &[
                    &id, &t.identity, &seqs, &keys, &changes, &afters, &kinds, &befores, &stamps,
                    &dones,
                ],
            )
            .await
            .map_err(self.err("journal the ops"))?;
        }
        Ok(id)
    }

    async fn upsert_records(
        &self,
        tx: &impl GenericClient,
        rows: &[RecordRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let targets: Vec<&str> = rows.iter().map(|r| r.target.as_str()).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let fps: Vec<&str> = rows.iter().map(|r| r.fingerprint.as_str()).collect();
        let stamps: Vec<Option<&str>> = rows.iter().map(|r| r.updated_at.as_deref()).collect();
        let sealed: Vec<&[u8]> = rows.iter().map(|r| r.sealed.as_slice()).collect();
        let at: Vec<&str> = rows.iter().map(|r| r.written_at.as_str()).collect();
        tx.query_typed(
            "INSERT INTO bridge_write_records (target, key, fingerprint, updated_at, sealed, written_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[])
             ON CONFLICT (target, key) DO UPDATE SET fingerprint = excluded.fingerprint,
               updated_at = excluded.updated_at, sealed = excluded.sealed,
               written_at = excluded.written_at",
            &[
                (&targets, Type::TEXT_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&fps, Type::TEXT_ARRAY),
                (&stamps, Type::TEXT_ARRAY),
                (&sealed, Type::BYTEA_ARRAY),
                (&at, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(self.err("record writes"))?;
        Ok(())
    }
}

pub(crate) fn parse_config(url: &str) -> Result<Config, StoreError> {
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        // The parser's message quotes no part of the URL, so no password leaks here.
        StoreError::Backend {
            store: "the --store URL".to_owned(),
            source: Box::new(std::io::Error::other(format!("not a PostgreSQL URL: {e}"))),
        }
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // A machine that vanishes is noticed by the server within about a minute, which then
    // ends its session (and releases the apply locks it held).
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    // And this side notices a connection the network dropped as fast: a lock session that
    // died silently must not look alive to its holder for the kernel's default ten minutes.
    config.keepalives_interval(Duration::from_secs(10));
    config.keepalives_retries(3);
    Ok(config)
}

pub(crate) fn parse_store_config(url: &str) -> Result<Config, StoreError> {
    parse_config(url)
}

fn record_row(r: &Row) -> RecordRow {
    RecordRow {
        target: r.get(0),
        key: r.get(1),
        fingerprint: r.get(2),
        updated_at: r.get(3),
        sealed: r.get(4),
        written_at: r.get(5),
    }
}

#[async_trait::async_trait]
impl StateBackend for PostgresState {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn records(&self, target: &str) -> Result<Vec<RecordHead>, StoreError> {
        self.timed("read records", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            let rows = client
                .query_typed(
                    "SELECT key, fingerprint, updated_at FROM bridge_write_records
                     WHERE target = $1",
                    &[(&target, Type::TEXT)],
                )
                .await
                .map_err(self.err("read records"))?;
            Ok(rows
                .iter()
                .map(|r| RecordHead {
                    key: r.get(0),
                    fingerprint: r.get(1),
                    updated_at: r.get(2),
                })
                .collect())
        })
        .await
    }

    async fn sealed_value(&self, target: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("read a record", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            Ok(client
                .query_opt(
                    "SELECT sealed FROM bridge_write_records WHERE target = $1 AND key = $2",
                    &[&target, &key],
                )
                .await
                .map_err(self.err("read a record"))?
                .map(|r| r.get(0)))
        })
        .await
    }

    async fn record(
        &self,
        target: &str,
        written: Vec<RecordRow>,
        deleted: Vec<String>,
    ) -> Result<(), StoreError> {
        self.timed("record writes", async {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            self.upsert_records(&tx, &written).await?;
            if !deleted.is_empty() {
                tx.execute(
                    "DELETE FROM bridge_write_records WHERE target = $1 AND key = ANY($2)",
                    &[&target, &deleted],
                )
                .await
                .map_err(self.err("forget deleted keys"))?;
            }
            tx.commit().await.map_err(self.err("commit"))
        })
        .await
    }

    async fn holding_stamp(&self, key: &str, stamp: &str) -> Result<Vec<String>, StoreError> {
        self.timed("read stamps", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            Ok(client
                .query(
                    "SELECT target FROM bridge_write_records WHERE key = $1 AND updated_at = $2",
                    &[&key, &stamp],
                )
                .await
                .map_err(self.err("read stamps"))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
        .await
    }

    async fn move_stamp(
        &self,
        key: &str,
        from: &str,
        to: &str,
        targets: Vec<String>,
    ) -> Result<usize, StoreError> {
        self.timed("move a stamp", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            let moved = client
                .execute(
                    "UPDATE bridge_write_records SET updated_at = $3
                     WHERE target = ANY($4) AND key = $1 AND updated_at = $2",
                    &[&key, &from, &to, &targets],
                )
                .await
                .map_err(self.err("move a stamp"))?;
            Ok(moved as usize)
        })
        .await
    }

    async fn begin(
        &self,
        created_at: &str,
        source: &str,
        targets: Vec<TargetRow>,
    ) -> Result<i64, StoreError> {
        let journal = JournalRow {
            id: 0,
            created_at: created_at.to_owned(),
            source: source.to_owned(),
            state: JournalState::Applying.as_str().to_owned(),
            targets,
        };
        self.timed("journal an apply", async {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            let id = self.insert_journal(&tx, None, &journal).await?;
            tx.commit().await.map_err(self.err("commit"))?;
            Ok(id)
        })
        .await
    }

    async fn mark_done(
        &self,
        journal: i64,
        target: &str,
        landed: Vec<LandedRow>,
        now: &str,
    ) -> Result<(), StoreError> {
        self.timed("mark ops done", async {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            let keys: Vec<&str> = landed.iter().map(LandedRow::key).collect();
            let mut written = Vec::new();
            let mut deleted = Vec::new();
            for l in &landed {
                match l {
                    LandedRow::Written {
                        key,
                        fingerprint,
                        sealed,
                    } => written.push(RecordRow {
                        target: target.to_owned(),
                        key: key.clone(),
                        fingerprint: fingerprint.clone(),
                        updated_at: None,
                        sealed: sealed.clone(),
                        written_at: now.to_owned(),
                    }),
                    LandedRow::Deleted { key } => deleted.push(key.as_str()),
                }
            }
            // Sent together, run in order, committed as one: an op is never done without its
            // record, nor recorded without being done.
            let done = async {
                tx.query_typed(
                    "UPDATE bridge_journal_ops SET done = true
                     WHERE journal_id = $1 AND target = $2 AND key = ANY($3)",
                    &[
                        (&journal, Type::INT8),
                        (&target, Type::TEXT),
                        (&keys, Type::TEXT_ARRAY),
                    ],
                )
                .await
                .map_err(self.err("mark ops done"))
            };
            let recorded = self.upsert_records(&tx, &written);
            let forgotten = async {
                if deleted.is_empty() {
                    return Ok(Vec::new());
                }
                tx.query_typed(
                    "DELETE FROM bridge_write_records WHERE target = $1 AND key = ANY($2)",
                    &[(&target, Type::TEXT), (&deleted, Type::TEXT_ARRAY)],
                )
                .await
                .map_err(self.err("forget deleted keys"))
            };
            tokio::try_join!(done, recorded, forgotten)?;
            tx.commit().await.map_err(self.err("commit"))
        })
        .await
    }

    async fn set_stamps(
        &self,
        target: &str,
        stamps: BTreeMap<String, String>,
        only_unset: bool,
    ) -> Result<(), StoreError> {
        self.timed("set stamps", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            let keys: Vec<&str> = stamps.keys().map(String::as_str).collect();
            let values: Vec<&str> = stamps.values().map(String::as_str).collect();
            let sql = if only_unset {
                "UPDATE bridge_write_records r SET updated_at = u.stamp
                 FROM unnest($2::text[], $3::text[]) AS u(key, stamp)
                 WHERE r.target = $1 AND r.key = u.key AND r.updated_at IS NULL"
            } else {
                "UPDATE bridge_write_records r SET updated_at = u.stamp
                 FROM unnest($2::text[], $3::text[]) AS u(key, stamp)
                 WHERE r.target = $1 AND r.key = u.key"
            };
            client
                .execute(sql, &[&target, &keys, &values])
                .await
                .map_err(self.err("set stamps"))?;
            Ok(())
        })
        .await
    }

    async fn unfinished_on(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.timed("find unfinished journals", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            Ok(client
                .query_typed_opt(
                    "SELECT j.id FROM bridge_journals j
                     JOIN bridge_journal_targets t ON t.journal_id = j.id
                     WHERE t.target = $1 AND j.state IN ('applying', 'failed')
                       AND t.state IN ('applying', 'failed')
                       AND EXISTS (SELECT 1 FROM bridge_journal_ops o
                                   WHERE o.journal_id = j.id AND o.target = t.target
                                     AND NOT o.done
                                     AND o.change IN ('create', 'update', 'delete'))
                     ORDER BY j.id DESC LIMIT 1",
                    &[(&target, Type::TEXT)],
                )
                .await
                .map_err(self.err("find unfinished journals"))?
                .map(|r| r.get(0)))
        })
        .await
    }

    async fn finish_target(
        &self,
        journal: i64,
        target: &str,
        state: JournalState,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.timed("finish a target", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            client
                .execute(
                    "UPDATE bridge_journal_targets SET state = $3, error = $4
                     WHERE journal_id = $1 AND target = $2",
                    &[&journal, &target, &state.as_str(), &error],
                )
                .await
                .map_err(self.err("finish a target"))?;
            Ok(())
        })
        .await
    }

    async fn finish(&self, journal: i64, state: JournalState) -> Result<(), StoreError> {
        self.timed("finish a journal", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            client
                .execute(
                    "UPDATE bridge_journals SET state = $2 WHERE id = $1",
                    &[&journal, &state.as_str()],
                )
                .await
                .map_err(self.err("finish a journal"))?;
            Ok(())
        })
        .await
    }

    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.timed("read the store's keys", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            // One statement, which answers a row whoever got there first: a conflicting insert
            // waits for the other claimer, then "updates" the row to itself and returns it.
            Ok(client
                .query_one(
                    "INSERT INTO bridge_state_meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = bridge_state_meta.value
                     RETURNING value",
                    &[&key, &value],
                )
                .await
                .map_err(self.err("claim a setting"))?
                .get(0))
        })
        .await
    }

    async fn claim_meta_all(&self, pairs: &[(&str, &str)]) -> Result<Vec<String>, StoreError> {
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        let values: Vec<&str> = pairs.iter().map(|(_, v)| *v).collect();
        self.timed("read the store's keys", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            // One statement, which answers every key whoever claimed it first: a conflicting
            // insert waits for the other claimer, then "updates" the row to itself and
            // returns it (a DO NOTHING would return nothing, and a plain read could not see a
            // row committed after the statement began).
            let rows = client
                .query_typed(
                    "INSERT INTO bridge_state_meta (key, value)
                     SELECT * FROM unnest($1::text[], $2::text[])
                     ON CONFLICT (key) DO UPDATE SET value = bridge_state_meta.value
                     RETURNING key, value",
                    &[(&keys, Type::TEXT_ARRAY), (&values, Type::TEXT_ARRAY)],
                )
                .await
                .map_err(self.err("claim settings"))?;
            keys.iter()
                .map(|k| {
                    rows.iter()
                        .find(|r| r.try_get::<_, &str>(0).is_ok_and(|key| key == *k))
                        .and_then(|r| r.try_get::<_, String>(1).ok())
                        .ok_or_else(|| StoreError::Corrupt(format!("setting {k} vanished")))
                })
                .collect()
        })
        .await
    }

    async fn latest_unfinished(&self) -> Result<Option<i64>, StoreError> {
        self.timed("find unfinished journals", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            Ok(client
                .query_opt(
                    "SELECT id FROM bridge_journals WHERE state IN ('applying', 'failed')
                     ORDER BY id DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(self.err("find unfinished journals"))?
                .map(|r| r.get(0)))
        })
        .await
    }

    async fn latest_for_target(&self, target: &str) -> Result<Option<i64>, StoreError> {
        self.timed("find the latest journal", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            Ok(client
                .query_opt(
                    "SELECT j.id FROM bridge_journals j
                     JOIN bridge_journal_targets t ON t.journal_id = j.id
                     WHERE t.target = $1 AND j.state != 'rolled_back' AND t.state != 'rolled_back'
                     ORDER BY j.id DESC LIMIT 1",
                    &[&target],
                )
                .await
                .map_err(self.err("find the latest journal"))?
                .map(|r| r.get(0)))
        })
        .await
    }

    async fn journal(&self, id: i64) -> Result<Option<JournalRow>, StoreError> {
        self.timed("read a journal", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            self.journal_row(&*client, id).await
        })
        .await
    }

    async fn export(&self) -> Result<StateDump, StoreError> {
        self.timed("export", async {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            // One snapshot: a consistent picture while others write.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(self.err("begin"))?;
            let meta = tx
                .query("SELECT key, value FROM bridge_state_meta", &[])
                .await
                .map_err(self.err("export settings"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let records = tx
                .query(
                    "SELECT target, key, fingerprint, updated_at, sealed, written_at
                     FROM bridge_write_records ORDER BY target, key",
                    &[],
                )
                .await
                .map_err(self.err("export records"))?
                .iter()
                .map(record_row)
                .collect();
            let ids: Vec<i64> = tx
                .query("SELECT id FROM bridge_journals ORDER BY id", &[])
                .await
                .map_err(self.err("export journals"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut journals = Vec::with_capacity(ids.len());
            for id in ids {
                journals.extend(self.journal_row(&tx, id).await?);
            }
            tx.commit().await.map_err(self.err("commit"))?;
            Ok(StateDump {
                meta,
                records,
                journals,
            })
        })
        .await
    }

    async fn import(&self, dump: StateDump) -> Result<(), StoreError> {
        self.timed("import", async {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            // Two imports at once take turns; the second then finds the first's rows.
            tx.execute(
                "LOCK TABLE bridge_journals, bridge_write_records IN EXCLUSIVE MODE",
                &[],
            )
            .await
            .map_err(self.err("lock for import"))?;
            let held: i64 = tx
                .query_one(
                    "SELECT (SELECT count(*) FROM bridge_journals)
                          + (SELECT count(*) FROM bridge_write_records)",
                    &[],
                )
                .await
                .map_err(self.err("count rows"))?
                .get(0);
            if held > 0 {
                return Err(StoreError::NotEmpty {
                    store: self.name.clone(),
                });
            }
            for (key, value) in dump.meta.iter().filter(|(k, _)| *k != "schema_version") {
                tx.execute(
                    "INSERT INTO bridge_state_meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[key, value],
                )
                .await
                .map_err(self.err("import settings"))?;
            }
            self.upsert_records(&tx, &dump.records).await?;
            for j in &dump.journals {
                self.insert_journal(&tx, Some(j.id), j).await?;
            }
            // New journals continue after the imported ids.
            tx.execute(
                "SELECT setval(pg_get_serial_sequence('bridge_journals', 'id'),
                               greatest((SELECT max(id) FROM bridge_journals), 1))",
                &[],
            )
            .await
            .map_err(self.err("advance the journal ids"))?;
            tx.commit().await.map_err(self.err("commit"))
        })
        .await
    }
}
