//! [`PgLocks`]: the apply locks of a PostgreSQL store, so that runners on different machines
//! take turns on one place.
//!
//! A held lock is a session-level advisory lock. A process keeps one lock session (a
//! connection of its own) for every lock it holds — the process's own turn-taking already
//! gives each scope to one task at a time — so a sync of three places opens one connection
//! for its locks, not three. PostgreSQL releases the locks when that session ends: on release,
//! when the holder's process dies (its socket closes), and when its machine vanishes (TCP
//! keepalives end the session within about a minute). A row in `bridge_locks` says who holds
//! each — owner, host, pid, since — for waiters and `genesisctl state locks`; the advisory
//! lock, not the row, is what excludes, so a row whose lock is no longer held is stale.
//!
//! `state unlock` ends the holder's lock session with `pg_terminate_backend`, which releases
//! every lock that process held (and says which). A holder still applying finds its session
//! gone at the check after each confirmed write ([`LeaseFence`]) and stops before the next.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bridge_operations::OpsError;
use bridge_operations::locks::{Attempt, BoxFuture, Holder, Lease, LockInfo, LockService, lock_id};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::pg::{Pool, describe};
use crate::state::{migrate, parse_store_config, state_error};

/// The PostgreSQL [`LockService`].
pub struct PgLocks {
    name: String,
    /// The schema the tables live in: advisory locks are per database, and two schemas are
    /// two stores, so it is part of every lock's key.
    namespace: String,
    pool: Arc<Pool>,
    session: Arc<Session>,
}

/// The process's lock session, opened on first use and again after it was lost. Each
/// opening has a generation: a lease taken on an earlier one died with it and must never
/// touch the session that replaced it.
#[derive(Default)]
struct Session {
    current: tokio::sync::Mutex<Option<(u64, Client)>>,
    opened: std::sync::atomic::AtomicU64,
}

/// Server-side keepalives for the lock session: a machine that vanishes without closing its
/// connection is noticed within about a minute (30 s idle, then 3 probes 10 s apart), and its
/// session ends with its locks. `idle_session_timeout` is off for the session, which is idle
/// for as long as it holds a lock. Each is best effort (an older server lacks the last, so it
/// goes alone: one failing statement undoes the others of its batch).
const SESSION_SETTINGS: [&str; 2] = [
    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3",
    "SET idle_session_timeout = 0",
];

impl std::fmt::Debug for PgLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLocks")
            .field("store", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgLocks {
    /// The locks of the store at `url` (`schema` as for [`crate::PostgresState::connect`]).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, OpsError> {
        let config = parse_store_config(url).map_err(|e| OpsError::Input(e.to_string()))?;
        let name = format!("PostgreSQL store {}", describe(&config, schema));
        // Lock sessions are held apart from the pool's count; the pool only reuses them.
        let pool = Arc::new(Pool::new(config, schema.map(str::to_owned), 64));
        let mut locks = Self {
            name,
            namespace: String::new(),
            pool,
            session: Arc::default(),
        };
        let mut client = locks.connect_session().await?;
        migrate(&mut client, schema, &locks.name)
            .await
            .map_err(|e| OpsError::State(e.to_string()))?;
        locks.namespace = client
            .query_typed_one("SELECT current_schema()", &[])
            .await
            .map_err(|e| locks.failed("read the current schema", e))?
            .get(0);
        let generation = locks.session.opened.fetch_add(1, Ordering::SeqCst) + 1;
        *locks.session.current.lock().await = Some((generation, client));
        Ok(locks)
    }

    /// A connection of its own, kept out of the pool, for the lock session.
    async fn connect_session(&self) -> Result<Client, OpsError> {
        let pooled = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connect", e))?;
        let client = pooled.detach();
        for setting in SESSION_SETTINGS {
            let _ = client.batch_execute(setting).await;
        }
        Ok(client)
    }

    fn failed(&self, op: &'static str, e: tokio_postgres::Error) -> OpsError {
        OpsError::State(format!(
            "the apply locks: {}",
            state_error(&self.name, op, e)
        ))
    }

    /// The advisory lock key of `scope`: the [`lock_id`] of the schema and the scope, since
    /// advisory locks are per database and two schemas are two stores.
    fn key(&self, scope: &str) -> i64 {
        let id = lock_id(&format!("{}\0{scope}", self.namespace));
        u64::from_str_radix(&id, 16).unwrap_or(0).cast_signed()
    }

    async fn holder_of(&self, client: &Client, scope: &str) -> Option<Holder> {
        let row = client
            .query_opt(
                "SELECT owner, host, pid, since FROM bridge_locks WHERE scope = $1",
                &[&scope],
            )
            .await
            .ok()??;
        Some(Holder {
            owner: row.get(0),
            host: row.get(1),
            pid: u32::try_from(row.get::<_, i64>(2)).unwrap_or(0),
            since: row.get(3),
        })
    }

    async fn held(&self) -> Result<Vec<(LockInfo, i32)>, OpsError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connect", e))?;
        // Rows whose advisory lock no session holds are what dead holders left: forgotten.
        client
            .execute(
                "DELETE FROM bridge_locks l WHERE NOT EXISTS (
                   SELECT 1 FROM pg_locks p
                   WHERE p.locktype = 'advisory' AND p.granted AND p.pid = l.backend_pid
                     AND p.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                     AND p.classid::bigint = (l.lock_key >> 32) & 4294967295
                     AND p.objid::bigint = l.lock_key & 4294967295
                     AND p.objsubid = 1)",
                &[],
            )
            .await
            .map_err(|e| self.failed("forget stale locks", e))?;
        let rows = client
            .query(
                "SELECT scope, id, owner, host, pid, since, backend_pid FROM bridge_locks
                 ORDER BY scope",
                &[],
            )
            .await
            .map_err(|e| self.failed("list locks", e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    LockInfo {
                        scope: r.get(0),
                        id: r.get(1),
                        holder: Some(Holder {
                            owner: r.get(2),
                            host: r.get(3),
                            pid: u32::try_from(r.get::<_, i64>(4)).unwrap_or(0),
                            since: r.get(5),
                        }),
                    },
                    r.get(6),
                )
            })
            .collect())
    }
}

/// A held advisory lock, on the process's lock session of generation `generation`.
struct PgLease {
    key: i64,
    scope: String,
    generation: u64,
    session: Arc<Session>,
    /// The store as errors name it.
    store: String,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Whether a [`PgLease`] still stands: its lock session is the one it was taken on, and
/// open. `state unlock` ends the session (`pg_terminate_backend`), and so does a dropped
/// connection; either way the advisory lock is gone and another runner may hold it.
#[derive(Debug)]
struct LeaseFence {
    scope: String,
    generation: u64,
    session: Arc<Session>,
    store: String,
    /// When the server last answered on the session: a connection the network dropped
    /// silently looks open here, so the session is asked again at most every
    /// [`CONFIRM_EVERY`].
    confirmed: std::sync::Mutex<Option<Instant>>,
}

/// How often a fence asks the server whether its lock session still stands.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// How long a fence waits for the session (another task may be using it) and its answer.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait::async_trait]
impl bridge_sync::Fence for LeaseFence {
    async fn check(&self) -> Result<(), String> {
        let broken = || {
            format!(
                "the apply lock on {} in the {} was broken (`state unlock`, or its lock \
                 session ended)",
                self.scope, self.store
            )
        };
        let checked = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            let session = self.session.current.lock().await;
            let Some((generation, client)) = session.as_ref() else {
                return Err(broken());
            };
            if *generation != self.generation || client.is_closed() {
                return Err(broken());
            }
            let recent = self
                .confirmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() < CONFIRM_EVERY);
            if !recent {
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|_| broken())?;
                *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            Ok(())
        })
        .await;
        checked.unwrap_or_else(|_| {
            Err(format!(
                "the apply lock on {} in the {} could not be confirmed within {} s",
                self.scope,
                self.store,
                CONFIRM_TIMEOUT.as_secs()
            ))
        })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Lease for PgLease {
    fn fence(&self) -> Option<Arc<dyn bridge_sync::Fence>> {
        Some(Arc::new(LeaseFence {
            scope: self.scope.clone(),
            generation: self.generation,
            session: self.session.clone(),
            store: self.store.clone(),
            confirmed: std::sync::Mutex::new(None),
        }))
    }

    fn release(self: Box<Self>, after: Box<dyn Send>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to unlock on: the session closes with the process, and the server
            // releases the lock with it.
            drop(after);
            return;
        };
        runtime.spawn(async move {
            let mut session = self.session.current.lock().await;
            let released = match session.as_ref() {
                // Taken on a session that has since been replaced: it died with that session.
                Some((generation, _)) if *generation != self.generation => true,
                Some((_, client)) => client
                    .query_typed_one(
                        // A data-modifying WITH runs whether or not it is read.
                        "WITH forgotten AS (
                           DELETE FROM bridge_locks
                           WHERE scope = $1 AND backend_pid = pg_backend_pid())
                         SELECT pg_advisory_unlock($2)",
                        &[(&self.scope, Type::TEXT), (&self.key, Type::INT8)],
                    )
                    .await
                    .is_ok_and(|r| r.get::<_, bool>(0)),
                None => true,
            };
            if !released && session.as_ref().is_some_and(|(_, c)| c.is_closed()) {
                // The session died: its locks went with it, and the next lock opens a new one.
                *session = None;
            }
            drop(session);
            // Only now does the next task of this process get its turn.
            drop(after);
        });
    }
}

impl LockService for PgLocks {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn try_lock<'a>(
        &'a self,
        scope: &'a str,
        holder: &'a Holder,
    ) -> BoxFuture<'a, Result<Attempt, OpsError>> {
        Box::pin(async move {
            let mut session = self.session.current.lock().await;
            if session.as_ref().is_none_or(|(_, c)| c.is_closed()) {
                let client = self.connect_session().await?;
                let generation = self.session.opened.fetch_add(1, Ordering::SeqCst) + 1;
                *session = Some((generation, client));
            }
            let Some((generation, client)) = session.as_ref() else {
                unreachable!("set just above")
            };
            let generation = *generation;
            let key = self.key(scope);
            let (id, pid) = (lock_id(scope), i64::from(holder.pid));
            // One statement: try the lock and, when it is had, say who has it.
            let taken = client
                .query_typed_opt(
                    "WITH tried AS (SELECT pg_try_advisory_lock($3) AS got)
                     INSERT INTO bridge_locks (scope, id, lock_key, owner, host, pid, since, backend_pid)
                     SELECT $1, $2, $3, $4, $5, $6, $7, pg_backend_pid() FROM tried WHERE got
                     ON CONFLICT (scope) DO UPDATE SET id = excluded.id,
                       lock_key = excluded.lock_key, owner = excluded.owner, host = excluded.host,
                       pid = excluded.pid, since = excluded.since,
                       backend_pid = excluded.backend_pid
                     RETURNING true",
                    &[
                        (&scope, Type::TEXT),
                        (&id, Type::TEXT),
                        (&key, Type::INT8),
                        (&holder.owner, Type::TEXT),
                        (&holder.host, Type::TEXT),
                        (&pid, Type::INT8),
                        (&holder.since, Type::TEXT),
                    ],
                )
                .await;
            match taken {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Attempt::Held(self.holder_of(client, scope).await)),
                Err(e) => {
                    // The statement may have taken the lock before it failed (a session-level
                    // lock outlives its statement): give this one back, and only this one,
                    // since other tasks' locks live on the same session.
                    if !client.is_closed() {
                        let _ = client
                            .query_typed("SELECT pg_advisory_unlock($1)", &[(&key, Type::INT8)])
                            .await;
                    } else {
                        *session = None;
                    }
                    return Err(self.failed("take a lock", e));
                }
            }
            Ok(Attempt::Taken(Box::new(PgLease {
                key,
                scope: scope.to_owned(),
                generation,
                session: self.session.clone(),
                store: self.name.clone(),
            })))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LockInfo>, OpsError>> {
        Box::pin(async move { Ok(self.held().await?.into_iter().map(|(l, _)| l).collect()) })
    }

    fn force<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Vec<LockInfo>, OpsError>> {
        Box::pin(async move {
            let held = self.held().await?;
            let Some(backend) = held
                .iter()
                .find(|(l, _)| l.id == id || l.scope == id)
                .map(|(_, b)| *b)
            else {
                return Err(OpsError::NotFound(format!(
                    "no lock {id} is held in the {}: see `genesisctl state locks`",
                    self.name
                )));
            };
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| self.failed("connect", e))?;
            let ended: bool = client
                .query_one("SELECT pg_terminate_backend($1)", &[&backend])
                .await
                .map_err(|e| self.failed("end the holder's lock session", e))?
                .get(0);
            if !ended {
                return Err(OpsError::State(format!(
                    "the {} did not end the holder's lock session (backend {backend}): the \
                     lock is still held; ending it needs the role that opened it, or a \
                     superuser",
                    self.name
                )));
            }
            // Every lock of that session went with it.
            client
                .execute(
                    "DELETE FROM bridge_locks WHERE backend_pid = $1",
                    &[&backend],
                )
                .await
                .map_err(|e| self.failed("forget the locks", e))?;
            Ok(held
                .into_iter()
                .filter(|(_, b)| *b == backend)
                .map(|(l, _)| l)
                .collect())
        })
    }
}
