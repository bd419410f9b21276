//! [`PgTokens`]: the API's token hashes in the PostgreSQL store (`bridge_tokens`), so that a
//! token made by `genesisctl token create` on any runner works on every `genesisctl serve`
//! of the store, and a revocation stops it on all of them.
//!
//! The table comes with the state's versioned migrations ([`crate::schema_version`] 2).
//! Every change also bumps the one row of `bridge_token_generation` in its transaction, so
//! a server's once-a-second poll reads one integer and the whole set only when it moved.

use std::future::Future;

use bridge_operations::host::BoxFuture;
use bridge_operations::tokens::{TokenBackend, TokenError, TokenRecord};

use crate::pg::{Pool, describe};
use crate::state::{CALL_TIMEOUT, migrate, parse_store_config};

/// The PostgreSQL [`TokenBackend`].
pub struct PgTokens {
    name: String,
    pool: Pool,
}

impl std::fmt::Debug for PgTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokens")
            .field("store", &self.name)
            .finish_non_exhaustive()
    }
}

/// A connection failure is the store being unreachable; an answer with an error code is the
/// store refusing.
fn token_error(store: &str, op: &str, e: &tokio_postgres::Error) -> TokenError {
    if e.as_db_error().is_some() {
        TokenError::Store {
            store: store.to_owned(),
            message: format!("{op}: {e}"),
        }
    } else {
        TokenError::Unavailable {
            store: store.to_owned(),
            message: format!("{op}: {e}"),
        }
    }
}

impl PgTokens {
    /// Connects to `url`, migrating the store's schema; `schema` as for
    /// [`crate::PostgresState::connect`].
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, TokenError> {
        let config = parse_store_config(url).map_err(|e| TokenError::Store {
            store: "the --store URL".to_owned(),
            message: e.to_string(),
        })?;
        let name = format!("PostgreSQL token store {}", describe(&config, schema));
        let pool = Pool::new(config, schema.map(str::to_owned), 2);
        let store = Self { name, pool };
        store
            .timed("connect", async {
                let mut client = store.pool.get().await.map_err(store.err("connect"))?;
                migrate(&mut client, schema, &store.name)
                    .await
                    .map_err(|e| match e {
                        bridge_sync::store::StoreError::Unavailable { .. } => {
                            TokenError::Unavailable {
                                store: store.name.clone(),
                                message: e.to_string(),
                            }
                        }
                        e => TokenError::Store {
                            store: store.name.clone(),
                            message: e.to_string(),
                        },
                    })
            })
            .await?;
        Ok(store)
    }

    fn err(&self, op: &'static str) -> impl Fn(tokio_postgres::Error) -> TokenError + '_ {
        move |e| token_error(&self.name, op, &e)
    }

    async fn timed<T>(
        &self,
        op: &str,
        call: impl Future<Output = Result<T, TokenError>>,
    ) -> Result<T, TokenError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Unavailable {
                store: self.name.clone(),
                message: format!("{op}: no answer within {} s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }
}

const BUMP: &str = "UPDATE bridge_token_generation SET generation = generation + 1";

impl TokenBackend for PgTokens {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, TokenError>> {
        Box::pin(self.timed("list tokens", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            let rows = client
                .query(
                    "SELECT id, role, sha256, created_at FROM bridge_tokens ORDER BY ord",
                    &[],
                )
                .await
                .map_err(self.err("list tokens"))?;
            Ok(rows
                .iter()
                .map(|r| TokenRecord {
                    id: r.get(0),
                    role: r.get(1),
                    sha256: r.get(2),
                    created_at: r.get(3),
                })
                .collect())
        }))
    }

    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenError>> {
        Box::pin(self.timed("add a token", async move {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            let added = tx
                .execute(
                    "INSERT INTO bridge_tokens (sha256, id, role, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                    &[&record.sha256, &record.id, &record.role, &record.created_at],
                )
                .await
                .map_err(self.err("add a token"))?;
            if added > 0 {
                tx.execute(BUMP, &[])
                    .await
                    .map_err(self.err("bump the token generation"))?;
            }
            tx.commit().await.map_err(self.err("commit"))
        }))
    }

    fn revoke(&self, id: String) -> BoxFuture<'_, Result<bool, TokenError>> {
        Box::pin(self.timed("revoke a token", async move {
            let mut client = self.pool.get().await.map_err(self.err("connect"))?;
            let tx = client.transaction().await.map_err(self.err("begin"))?;
            let removed = tx
                .execute("DELETE FROM bridge_tokens WHERE id = $1", &[&id])
                .await
                .map_err(self.err("revoke a token"))?;
            if removed > 0 {
                tx.execute(BUMP, &[])
                    .await
                    .map_err(self.err("bump the token generation"))?;
            }
            tx.commit().await.map_err(self.err("commit"))?;
            Ok(removed > 0)
        }))
    }

    fn generation(&self) -> BoxFuture<'_, Result<String, TokenError>> {
        Box::pin(self.timed("read the token generation", async {
            let client = self.pool.get().await.map_err(self.err("connect"))?;
            let generation: i64 = client
                .query_one("SELECT generation FROM bridge_token_generation", &[])
                .await
                .map_err(self.err("read the token generation"))?
                .get(0);
            Ok(generation.to_string())
        }))
    }
}
