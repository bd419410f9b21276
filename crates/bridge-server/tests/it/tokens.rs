//! The token file as a [`TokenBackend`]: the shared conformance suite, and a server's
//! [`TokenStore`] over a backend polled in the background.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bridge_operations::host::BoxFuture;
use bridge_operations::tokens::{TokenBackend, TokenBackends, TokenError, conformance};
use bridge_server::auth::{FileTokens, TOKENS_FILE, create_token_in};
use bridge_server::{Logger, Role, TokenStore};

struct Files(tempfile::TempDir);

impl TokenBackends for Files {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn TokenBackend>, TokenError>> {
        let path: PathBuf = self.0.path().join(format!("{name}.{TOKENS_FILE}"));
        Box::pin(async move { Ok(Arc::new(FileTokens::new(path)) as Arc<dyn TokenBackend>) })
    }
}

#[tokio::test]
async fn the_token_file_passes_the_conformance_suite() {
    conformance::run_all(&Files(tempfile::tempdir().unwrap())).await;
}

/// A store over a backend (as for PostgreSQL) sees a token created and revoked through
/// another handle within about a second, without a request waiting on it.
#[tokio::test]
async fn a_shared_store_follows_changes_made_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKENS_FILE);
    let served: Arc<dyn TokenBackend> = Arc::new(FileTokens::new(&path));
    let store = TokenStore::shared(served, Logger::off()).await.unwrap();
    assert!(store.is_empty());
    let other = FileTokens::new(&path);
    let (token, record) = create_token_in(&other, Role::Operator, "now")
        .await
        .unwrap();
    let until = |want: bool| {
        let store = &store;
        let token = token.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while store.authenticate(&token).is_some() != want {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "not seen within 3 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until(true).await;
    assert_eq!(store.authenticate(&token).unwrap().role, Role::Operator);
    assert!(other.revoke(record.id.clone()).await.unwrap());
    until(false).await;
}
