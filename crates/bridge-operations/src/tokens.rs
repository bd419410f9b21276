//! Where the API's token hashes are kept: [`TokenBackend`], a small trait over a set of
//! [`TokenRecord`]s, so that `genesisctl token` and every `genesisctl serve` of a store see
//! one set. The server (`bridge_server::auth`) keeps the file in the state directory
//! (`tokens.json`) for the embedded store; `bridge_genesis_scale` keeps a table in the
//! PostgreSQL store. Both pass [`conformance`].
//!
//! A record holds a SHA-256 of the token, never the token: a high-entropy token needs no
//! slow hash, and a copied table gives nothing to present. The role is kept as its name;
//! the server parses it when it loads the set.

use std::sync::Arc;

use crate::host::BoxFuture;

/// One stored token: its id, role and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// `tok_` and the first 8 hex digits of the hash: names the token in logs and events.
    pub id: String,
    /// `observer`, `operator` or `admiral`.
    pub role: String,
    /// SHA-256 of the whole token, lower-case hex.
    pub sha256: String,
    pub created_at: String,
}

/// Why tokens could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {message}")]
    Write {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{path} is not a token file Bridge wrote: {message}")]
    Malformed {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("no source of randomness for a new token: {0}")]
    Random(String),
    /// The store could not be reached (refused, reset, or no answer in time).
    #[error("{store} is unreachable: {message}")]
    Unavailable { store: String, message: String },
    /// The store answered with an error, or holds a record this build cannot read.
    #[error("{store}: {message}")]
    Store { store: String, message: String },
}

impl TokenError {
    /// Whether the store could not be heard at all (a server then keeps its last set).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// The set of token records of one store, shared by every process using it.
pub trait TokenBackend: Send + Sync {
    /// The store, for messages: a path or `postgres:host:port/db`, never a password.
    fn describe(&self) -> String;

    /// Every record, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, TokenError>>;

    /// Adds `record`; a record with the same hash already there is left as it is.
    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenError>>;

    /// Removes the record(s) with `id`; `false` when there was none.
    fn revoke(&self, id: String) -> BoxFuture<'_, Result<bool, TokenError>>;

    /// A cheap value that changes whenever the set does (a file's identity and time, a
    /// counter row): a server compares it before reading the whole set again.
    fn generation(&self) -> BoxFuture<'_, Result<String, TokenError>>;
}

/// Opens token backends for [`conformance`]: the same name gives handles on the same set
/// (two handles stand for two processes).
pub trait TokenBackends: Send + Sync {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn TokenBackend>, TokenError>>;
}

/// The suite every [`TokenBackend`] passes. Cases panic with the violated property.
pub mod conformance {
    use std::sync::Arc;

    use super::{TokenBackend, TokenBackends, TokenRecord};

    /// Every case, in order.
    pub async fn run_all(backends: &dyn TokenBackends) {
        records_round_trip(backends).await;
        handles_see_each_others_changes(backends).await;
        concurrent_inserts_are_all_kept(backends).await;
    }

    async fn open(backends: &dyn TokenBackends, name: &str) -> Arc<dyn TokenBackend> {
        match backends.open(name).await {
            Ok(b) => b,
            Err(e) => panic!("opening token backend {name:?}: {e}"),
        }
    }

    fn record(n: u8, role: &str) -> TokenRecord {
        let sha256 = format!("{n:02x}").repeat(32);
        TokenRecord {
            id: format!("tok_{}", &sha256[..8]),
            role: role.to_owned(),
            sha256,
            created_at: format!("2026-03-01T10:00:0{}Z", n % 10),
        }
    }

    async fn list(b: &dyn TokenBackend) -> Vec<TokenRecord> {
        match b.list().await {
            Ok(list) => list,
            Err(e) => panic!("listing tokens: {e}"),
        }
    }

    async fn generation(b: &dyn TokenBackend) -> String {
        match b.generation().await {
            Ok(g) => g,
            Err(e) => panic!("reading the generation: {e}"),
        }
    }

    /// Create, list (oldest first, every field kept), revoke (once), and a repeated insert
    /// of one hash is kept once.
    pub async fn records_round_trip(backends: &dyn TokenBackends) {
        let b = open(backends, "records_round_trip").await;
        assert!(list(&*b).await.is_empty(), "a new store has no token");
        let (one, two) = (record(1, "observer"), record(2, "admiral"));
        for r in [&one, &two, &one] {
            if let Err(e) = b.insert(r.clone()).await {
                panic!("inserting {}: {e}", r.id);
            }
        }
        assert_eq!(list(&*b).await, vec![one.clone(), two.clone()]);
        assert_eq!(b.revoke(one.id.clone()).await.ok(), Some(true));
        assert_eq!(b.revoke(one.id.clone()).await.ok(), Some(false));
        assert_eq!(b.revoke("tok_nothere".into()).await.ok(), Some(false));
        assert_eq!(list(&*b).await, vec![two]);
    }

    /// What one handle writes, the other reads, and the generation moves with every change
    /// (and stays put without one).
    pub async fn handles_see_each_others_changes(backends: &dyn TokenBackends) {
        let a = open(backends, "handles_see_each_other").await;
        let b = open(backends, "handles_see_each_other").await;
        let g0 = generation(&*b).await;
        assert_eq!(
            generation(&*a).await,
            g0,
            "both handles read one generation"
        );
        let r = record(3, "operator");
        assert!(a.insert(r.clone()).await.is_ok());
        let g1 = generation(&*b).await;
        assert_ne!(g1, g0, "an insert moves the generation");
        assert_eq!(list(&*b).await, vec![r.clone()]);
        assert_eq!(generation(&*b).await, g1, "nothing changed, nothing moved");
        assert_eq!(b.revoke(r.id.clone()).await.ok(), Some(true));
        let g2 = generation(&*a).await;
        assert_ne!(g2, g1, "a revocation moves the generation");
        assert!(list(&*a).await.is_empty(), "revoked on b, gone on a");
        assert_eq!(a.revoke(r.id.clone()).await.ok(), Some(false));
    }

    /// Eight tokens created at once on two handles are all kept.
    pub async fn concurrent_inserts_are_all_kept(backends: &dyn TokenBackends) {
        let handles = [
            open(backends, "concurrent_inserts").await,
            open(backends, "concurrent_inserts").await,
        ];
        let mut tasks = tokio::task::JoinSet::new();
        for n in 10..18u8 {
            let b = handles[usize::from(n % 2)].clone();
            tasks.spawn(async move { b.insert(record(n, "observer")).await.is_ok() });
        }
        while let Some(done) = tasks.join_next().await {
            assert!(matches!(done, Ok(true)), "an insert failed");
        }
        let mut ids: Vec<String> = list(&*handles[0]).await.into_iter().map(|r| r.id).collect();
        ids.sort();
        let mut want: Vec<String> = (10..18u8).map(|n| record(n, "observer").id).collect();
        want.sort();
        assert_eq!(ids, want);
    }
}
