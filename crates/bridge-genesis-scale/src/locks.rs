//! [`PgLocks`]: the apply locks of a PostgreSQL store, so that runners on different machines
//! take turns on one place.
//!
//! Each held lock is a session-level advisory lock on a connection of its own, kept for as
//! long as the lock is held. PostgreSQL releases it when that session ends: on release, when
//! the holder's process dies (its socket closes), and when its machine vanishes (TCP
//! keepalives end the session within about a minute). A row in `bridge_locks` says who holds
//! it — owner, host, pid, since — for waiters and `genesisctl state locks`; the advisory lock,
//! not the row, is what excludes, so a row whose lock is no longer held is stale and ignored.
//!
//! `state unlock` ends the holder's lock session with `pg_terminate_backend`, which releases
//! exactly that lock. The holder's process is not stopped by it: break a lock only for a
//! holder that is gone or hung.

use std::sync::Arc;

use bridge_operations::OpsError;
use bridge_operations::locks::{Attempt, BoxFuture, Holder, Lease, LockInfo, LockService, lock_id};
use tokio_postgres::Client;

use crate::pg::{Pool, describe};
use crate::state::{migrate, parse_store_config, state_error};

/// The PostgreSQL [`LockService`].
pub struct PgLocks {
    name: String,
    /// The schema the tables live in: advisory locks are per database, and two schemas are
    /// two stores, so it is part of every lock's key.
    namespace: String,
    pool: Arc<Pool>,
}

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
        };
        let mut client = locks.session().await?;
        migrate(&mut client, schema, &locks.name)
            .await
            .map_err(|e| OpsError::State(e.to_string()))?;
        locks.namespace = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(|e| locks.failed("read the current schema", e))?
            .get(0);
        locks.pool.put_back(client);
        Ok(locks)
    }

    /// A connection for one lock session.
    async fn session(&self) -> Result<Client, OpsError> {
        let pooled = self
            .pool
            .get()
            .await
            .map_err(|e| self.failed("connect", e))?;
        Ok(pooled.detach())
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

/// A held advisory lock and the session holding it.
struct PgLease {
    client: Option<Client>,
    key: i64,
    scope: String,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PgLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLease")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Lease for PgLease {
    fn release(mut self: Box<Self>, after: Box<dyn Send>) {
        let Some(client) = self.client.take() else {
            drop(after);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to unlock on: closing the session releases the lock.
            drop(client);
            drop(after);
            return;
        };
        runtime.spawn(async move {
            let released = client
                .execute(
                    "DELETE FROM bridge_locks WHERE scope = $1 AND backend_pid = pg_backend_pid()",
                    &[&self.scope],
                )
                .await
                .is_ok()
                && client
                    .query_one("SELECT pg_advisory_unlock($1)", &[&self.key])
                    .await
                    .is_ok_and(|r| r.get::<_, bool>(0));
            if released {
                self.pool.put_back(client);
            }
            // Otherwise the connection closes here, and the server releases the lock with
            // the session. Only then does the next task of this process get its turn.
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
            let client = self.session().await?;
            let key = self.key(scope);
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(|e| self.failed("take a lock", e))?
                .get(0);
            if !got {
                let by = self.holder_of(&client, scope).await;
                self.pool.put_back(client);
                return Ok(Attempt::Held(by));
            }
            let noted = client
                .execute(
                    "INSERT INTO bridge_locks (scope, id, lock_key, owner, host, pid, since, backend_pid)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, pg_backend_pid())
                     ON CONFLICT (scope) DO UPDATE SET id = excluded.id,
                       lock_key = excluded.lock_key, owner = excluded.owner, host = excluded.host,
                       pid = excluded.pid, since = excluded.since,
                       backend_pid = excluded.backend_pid",
                    &[
                        &scope,
                        &lock_id(scope),
                        &key,
                        &holder.owner,
                        &holder.host,
                        &i64::from(holder.pid),
                        &holder.since,
                    ],
                )
                .await;
            if let Err(e) = noted {
                // Dropping the session releases the lock just taken.
                return Err(self.failed("note the lock's holder", e));
            }
            Ok(Attempt::Taken(Box::new(PgLease {
                client: Some(client),
                key,
                scope: scope.to_owned(),
                pool: self.pool.clone(),
            })))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LockInfo>, OpsError>> {
        Box::pin(async move { Ok(self.held().await?.into_iter().map(|(l, _)| l).collect()) })
    }

    fn force<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<LockInfo, OpsError>> {
        Box::pin(async move {
            let held = self.held().await?;
            let Some((lock, backend)) = held.into_iter().find(|(l, _)| l.id == id || l.scope == id)
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
            client
                .query_one("SELECT pg_terminate_backend($1)", &[&backend])
                .await
                .map_err(|e| self.failed("end the holder's lock session", e))?;
            client
                .execute(
                    "DELETE FROM bridge_locks WHERE scope = $1 AND backend_pid = $2",
                    &[&lock.scope, &backend],
                )
                .await
                .map_err(|e| self.failed("forget the lock", e))?;
            Ok(lock)
        })
    }
}
