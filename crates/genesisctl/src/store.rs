//! Where state lives, as `--store` says: SQLite files in the state directory by default, or
//! one PostgreSQL database that every runner shares (`postgres://…`). The state directory
//! then keeps only what belongs to one machine: the keys (unless they come from the
//! environment) and the ledger.
//!
//! | `--store`            | events        | sync state, journals | apply locks            | ledger       |
//! |----------------------|---------------|----------------------|------------------------|--------------|
//! | (none)               | `events.db`   | `state.db`           | `locks/*.lock` (flock) | `ledger.db`  |
//! | `sqlite://PATH`      | `PATH`        | `state.db`           | `locks/*.lock` (flock) | `ledger.db`  |
//! | `postgres://…`       | PostgreSQL    | PostgreSQL           | PostgreSQL advisory    | PostgreSQL   |
//!
//! The API's token hashes follow the sync state: `tokens.json` in the state directory, or
//! the store's `bridge_tokens` table (the file is then not read). `--bus nats://…` moves
//! only the events.

use std::os::unix::fs::DirBuilderExt as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bridge_genesis::ledger::{LedgerAccess, LedgerRows};
use bridge_operations::locks::{FileLocks, LockService};
use bridge_operations::tokens::TokenBackend;
use bridge_server::auth::{FileTokens, TOKENS_FILE};
use bridge_sync::store::StateStore;

use crate::state::{LEDGER_ORIGIN, StateDir, key_id};

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
    /// Empty or `sqlite://…` is the local store, `postgres://` or `postgresql://` (any case)
    /// a shared one; anything else is refused rather than quietly kept local.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            None if url.is_empty() => Ok(StoreUrl::Local),
            Some("sqlite") => Ok(StoreUrl::Local),
            Some("postgres" | "postgresql") => Ok(StoreUrl::Postgres(url.to_owned())),
            _ => anyhow::bail!(
                "--store {}: expected sqlite://PATH (the default is SQLite in the state \
                 directory) or postgres://USER@HOST/DB",
                redact_url(url)
            ),
        }
    }
}

/// `url` with its password, if any, replaced by `***`: for messages and `config show`.
pub fn redact_url(url: &str) -> String {
    bridge_core::redact::url_password(url)
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

/// The token hashes of the store `url` names: `tokens.json` in the state directory, or the
/// PostgreSQL store's table.
pub async fn open_tokens(url: &StoreUrl, dir: &StateDir) -> Result<Arc<dyn TokenBackend>> {
    match url {
        StoreUrl::Local => Ok(Arc::new(FileTokens::new(dir.path().join(TOKENS_FILE)))),
        StoreUrl::Postgres(url) => Ok(Arc::new(
            bridge_genesis_scale::PgTokens::connect(url, None)
                .await
                .context("opening the --store PostgreSQL token store")?,
        )),
    }
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

/// The Truth ledger of the store `url` names, signing with this run's ledger key:
/// `ledger.db` in the state directory, or the store's own tables, which every runner
/// sharing it appends to (and signs with the same `BRIDGE_LEDGER_KEY`).
pub fn ledger_access(url: &StoreUrl, dir: &StateDir) -> Result<LedgerAccess> {
    let key = dir.ledger_key()?;
    Ok(match url {
        StoreUrl::Local => LedgerAccess::sqlite(dir.ledger_path(), LEDGER_ORIGIN, key),
        StoreUrl::Postgres(url) => {
            let describe = format!("the --store ledger {}", redact_url(url));
            let url = url.clone();
            let public = bridge_core::hex::encode(key.verifying_key().as_bytes());
            let rows = move || {
                let rows = bridge_genesis_scale::PostgresLedgerRows::connect(&url, None)?;
                // The first signer's key is the log's (set BRIDGE_LEDGER_KEY alike on every
                // runner); another is refused before it appends or signs.
                rows.claim_key(&public)?;
                Ok(Box::new(rows) as Box<dyn LedgerRows>)
            };
            LedgerAccess::new(describe, LEDGER_ORIGIN, key, Arc::new(rows))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            (
                "postgres://bridge:hunter2@db.internal:5432/bridge",
                "postgres://bridge:***@db.internal:5432/bridge",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=require",
                "postgresql://u:***@h/db?sslmode=require",
            ),
            (
                "postgres://u@h/db?password=hunter2&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            (
                "host=db user=u password=hunter2 dbname=b",
                "host=db user=u password=*** dbname=b",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn store_urls_are_chosen_strictly() {
        assert_eq!(StoreUrl::parse("").unwrap(), StoreUrl::Local);
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/e.db").unwrap(),
            StoreUrl::Local
        );
        assert!(matches!(
            StoreUrl::parse("POSTGRES://u@h/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        let err = StoreUrl::parse("mysql://u:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://u:***@h/db"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(StoreUrl::parse("db.internal").is_err());
    }
}
