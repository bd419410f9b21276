//! Where state lives, as `--store` says: SQLite files in the state directory by default, or
//! one PostgreSQL database that every runner shares (`postgres://…`). The state directory
//! then keeps only what belongs to one machine: the keys (unless they come from the
//! environment) and the ledger.
//!
//! | `--store`            | events        | sync state, journals | apply locks            |
//! |----------------------|---------------|----------------------|------------------------|
//! | (none)               | `events.db`   | `state.db`           | `locks/*.lock` (flock) |
//! | `sqlite://PATH`      | `PATH`        | `state.db`           | `locks/*.lock` (flock) |
//! | `postgres://…`       | PostgreSQL    | PostgreSQL           | PostgreSQL advisory    |
//!
//! `--bus nats://…` moves only the events.

use std::os::unix::fs::DirBuilderExt as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bridge_operations::locks::{FileLocks, LockService};
use bridge_sync::store::StateStore;

use crate::state::{StateDir, key_id};

/// The lock files, inside the state directory.
pub const LOCKS_DIR: &str = "locks";

/// What `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The state directory's SQLite files (`sqlite://PATH` moves only the events).
    Local,
    /// One PostgreSQL database for everything a deployment shares.
    Postgres(String),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Self {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreUrl::Postgres(url.to_owned())
        } else {
            StoreUrl::Local
        }
    }
}

/// Opens the state store `url` names, checked against this run's fingerprint and state keys.
/// `create: false` answers `None` for a local store that does not exist yet (reads create
/// nothing); a PostgreSQL store always exists once reachable, and opens at most
/// `connections` at once.
pub async fn open_state(
    url: &StoreUrl,
    dir: &StateDir,
    create: bool,
    connections: usize,
) -> Result<Option<StateStore>> {
    let store = match url {
        StoreUrl::Local => {
            if !create && !dir.path().join(crate::state::STORE_FILE).exists() {
                return Ok(None);
            }
            dir.store()?
        }
        StoreUrl::Postgres(url) => {
            let backend = bridge_genesis_scale::PostgresState::connect_with(url, None, connections)
                .await
                .context("opening the --store PostgreSQL state store")?;
            StateStore::new(Arc::new(backend), dir.sealer()?)
        }
    };
    let (key, _) = dir.key()?;
    store.check_keys(&key_id(&key)).await?;
    Ok(Some(store))
}

/// The apply locks of the store `url` names.
pub async fn open_locks(url: &StoreUrl, dir: &StateDir) -> Result<Arc<dyn LockService>> {
    match url {
        StoreUrl::Local => {
            dir.ensure()?;
            let path = dir.path().join(LOCKS_DIR);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            Ok(Arc::new(FileLocks::new(path)))
        }
        StoreUrl::Postgres(url) => Ok(Arc::new(
            bridge_genesis_scale::PgLocks::connect(url, None)
                .await
                .context("opening the --store PostgreSQL apply locks")?,
        )),
    }
}
