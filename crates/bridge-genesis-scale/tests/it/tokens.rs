//! The API's token hashes on PostgreSQL: the token backend's conformance suite, each name a
//! schema, each handle a store with its own pool (as two runners would have).

use std::sync::{Arc, Mutex};

use bridge_genesis_scale::PgTokens;
use bridge_operations::host::BoxFuture;
use bridge_operations::tokens::{TokenBackend, TokenBackends, TokenError, conformance};

use crate::postgres::drop_schemas;
use crate::services;

struct PgTokenBackends {
    url: String,
    run: String,
    schemas: Mutex<Vec<String>>,
}

impl TokenBackends for PgTokenBackends {
    fn open(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn TokenBackend>, TokenError>> {
        let schema = format!("{}_{name}", self.run);
        {
            let mut schemas = self.schemas.lock().unwrap();
            if !schemas.contains(&schema) {
                schemas.push(schema.clone());
            }
        }
        Box::pin(async move {
            Ok(Arc::new(PgTokens::connect(&self.url, Some(&schema)).await?)
                as Arc<dyn TokenBackend>)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tokens_pass_the_conformance_suite() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let backends = PgTokenBackends {
        url: url.clone(),
        run: services::unique("tokens"),
        schemas: Mutex::new(Vec::new()),
    };
    conformance::run_all(&backends).await;
    let schemas = backends.schemas.lock().unwrap().clone();
    drop_schemas(&url, &schemas).await;
}

/// An unreachable store is `Unavailable`, naming the store and not the password.
#[tokio::test]
async fn an_unreachable_store_says_so() {
    let err = PgTokens::connect(
        "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=2",
        None,
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
