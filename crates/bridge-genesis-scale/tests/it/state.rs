//! The sync state and the apply locks on PostgreSQL: the state store's conformance suite
//! (each case in a schema of its own), two handles on one schema, schema versions, and locks
//! that exclude across connections and die with their session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_genesis_scale::{PgLocks, PostgresState};
use bridge_operations::OpsError;
use bridge_operations::locks::{self, LockService};
use bridge_sync::store::{StateBackend, StoreError, conformance};

use crate::postgres::drop_schemas;
use crate::services;

#[tokio::test]
async fn postgres_state_passes_the_conformance_suite() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let run = services::unique("state_test");
    let made = std::sync::Mutex::new(Vec::new());
    conformance::run_all(|| {
        let schema = format!("{run}_{}", made.lock().unwrap().len());
        made.lock().unwrap().push(schema.clone());
        let url = url.clone();
        async move {
            Arc::new(PostgresState::connect(&url, Some(&schema)).await.unwrap())
                as Arc<dyn StateBackend>
        }
    })
    .await;
    let shared = format!("{run}_shared");
    let a = PostgresState::connect(&url, Some(&shared)).await.unwrap();
    let b = PostgresState::connect(&url, Some(&shared)).await.unwrap();
    conformance::two_handles_share_one_history(Arc::new(a), Arc::new(b)).await;
    let mut schemas = made.into_inner().unwrap();
    schemas.push(shared);
    drop_schemas(&url, &schemas).await;
}

/// Many first starts at once migrate once, and a schema from a newer Bridge is refused.
#[tokio::test]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("state_migrate");
    let opens = (0..6).map(|_| PostgresState::connect(&url, Some(&schema)));
    for opened in futures_util::future::join_all(opens).await {
        opened.unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let version: String = client
        .query_one(
            &format!(
                "SELECT value FROM \"{schema}\".bridge_state_meta WHERE key = 'schema_version'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, bridge_genesis_scale::schema_version().to_string());
    client
        .execute(
            &format!("UPDATE \"{schema}\".bridge_state_meta SET value = '99' WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .unwrap();
    let err = PostgresState::connect(&url, Some(&schema))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade genesisctl"), "{err}");
    drop_schemas(&url, &[schema]).await;
}

/// A schema at version 3 keeps no images of `.env` targets: after the migration its
/// journals read as without one (a rollback of them restores values, as before), and new
/// journals keep theirs.
#[tokio::test]
async fn journals_from_before_images_read_after_the_migration() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("state_images");
    PostgresState::connect(&url, Some(&schema)).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Back to version 3, with a journal written then.
    client
        .batch_execute(&format!(
            r#"SET search_path TO "{schema}";
               ALTER TABLE bridge_journal_targets DROP COLUMN image_before, DROP COLUMN image_after;
               UPDATE bridge_state_meta SET value = '3' WHERE key = 'schema_version';
               INSERT INTO bridge_journals (id, created_at, source, state)
                   VALUES (7, 't0', 'local:.env', 'done');
               INSERT INTO bridge_journal_targets
                   (journal_id, ord, target, spec, label, state, untouched)
                   VALUES (7, 0, 'local:/x/.env', 'local:/x/.env', 'x', 'done', 'digest');
               INSERT INTO bridge_journal_ops
                   (journal_id, target, seq, key, change, before_kind, done)
                   VALUES (7, 'local:/x/.env', 0, 'K', 'delete', 'absent', true);"#
        ))
        .await
        .unwrap();
    let backend = PostgresState::connect(&url, Some(&schema)).await.unwrap();
    let store = bridge_sync::store::StateStore::new(
        Arc::new(backend),
        bridge_sync::sealing::Sealer::from_secret_bytes([7; 32]),
    );
    let j = store
        .journal(bridge_sync::store::JournalId(7))
        .await
        .unwrap();
    assert_eq!(j.targets[0].image, None);
    assert_eq!(j.targets[0].ops[0].key, "K");
    let image = bridge_platforms::Image {
        before: bridge_core::SecretValue::new("K=1\n"),
        after: bridge_core::SecretValue::new(""),
    };
    let entry = bridge_sync::store::JournalTarget {
        image: Some(image.clone()),
        ..j.targets[0].clone()
    };
    let id = store.begin("src", "t1", &[entry]).await.unwrap();
    assert_eq!(
        store.journal(id).await.unwrap().targets[0].image,
        Some(image)
    );
    drop_schemas(&url, &[schema]).await;
}

/// First starts at once record one pair of key ids: every runner with the same keys is let
/// in, and none sees a missing row (a claim that lost the race still answers the winner's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_key_checks_agree() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("state_keys");
    let sealer = bridge_sync::sealing::Sealer::from_secret_bytes([7; 32]);
    let checks = (0..8).map(|_| {
        let (url, schema, sealer) = (url.clone(), schema.clone(), sealer.clone());
        tokio::spawn(async move {
            let backend = PostgresState::connect(&url, Some(&schema)).await?;
            let store = bridge_sync::store::StateStore::new(Arc::new(backend), sealer);
            store.check_keys("same-key-id").await
        })
    });
    for check in futures_util::future::join_all(checks).await {
        check.unwrap().unwrap();
    }
    // The race made certain: another runner's claim is in flight (inserted, not committed)
    // when this one claims; it waits, and must then answer the other's row.
    let raced = services::unique("state_keys_race");
    let backend = PostgresState::connect(&url, Some(&raced)).await.unwrap();
    let store = bridge_sync::store::StateStore::new(Arc::new(backend), sealer.clone());
    let (mut other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tx = other.transaction().await.unwrap();
    tx.execute(
        &format!(
            "INSERT INTO \"{raced}\".bridge_state_meta (key, value) VALUES ($1, $2), ($3, $4)"
        ),
        &[
            &"fingerprint_key_id",
            &"same-key-id",
            &"state_key_id",
            &sealer.key_id(),
        ],
    )
    .await
    .unwrap();
    let claim = tokio::spawn(async move { store.check_keys("same-key-id").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    claim.await.unwrap().unwrap();
    drop_schemas(&url, &[raced]).await;
    let backend = PostgresState::connect(&url, Some(&schema)).await.unwrap();
    let other = bridge_sync::store::StateStore::new(Arc::new(backend), sealer);
    assert!(matches!(
        other.check_keys("another-key-id").await,
        Err(StoreError::FingerprintKeyMismatch { .. })
    ));
    drop_schemas(&url, &[schema]).await;
}

/// An unreachable server is `Unavailable`, naming the store and not its password.
#[tokio::test]
async fn an_unreachable_store_says_so_without_its_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("postgres://bridge:hunter2@127.0.0.1:{port}/state");
    let err = PostgresState::connect(&url, None).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}/state")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// Tries `service` until it gives the lock, for up to `within`.
async fn take(service: &PgLocks, scope: &str, within: Duration) -> Option<Box<dyn locks::Lease>> {
    let me = locks::Holder::this_process("test");
    let deadline = Instant::now() + within;
    loop {
        match service.try_lock(scope, &me).await.unwrap() {
            locks::Attempt::Taken(lease) => return Some(lease),
            locks::Attempt::Held(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            locks::Attempt::Held(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_exclude_across_stores_and_die_with_their_session() {
    let Some(url) = services::postgres().await else {
        return;
    };
    let schema = services::unique("locks_test");
    // Two handles, as two machines sharing the store: their tries bypass this process's
    // own turn-taking, so only PostgreSQL decides.
    let a = PgLocks::connect(&url, Some(&schema)).await.unwrap();
    let b = PgLocks::connect(&url, Some(&schema)).await.unwrap();
    let scope = "render:srv-locks-1".to_owned();
    let held = locks::acquire(&a, [scope.clone()], "genesisctl", Duration::from_secs(1))
        .await
        .unwrap();
    let me = locks::Holder::this_process("test");
    match b.try_lock(&scope, &me).await.unwrap() {
        locks::Attempt::Held(Some(holder)) => {
            assert_eq!(holder.pid, std::process::id());
            assert_eq!(holder.host, locks::host_name());
            assert_eq!(holder.owner, "genesisctl");
        }
        other => panic!("expected the lock held, with its holder: {other:?}"),
    }
    let listed = b.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].scope, scope);
    assert_eq!(listed[0].id, locks::lock_id(&scope));

    // Released: the other takes it, promptly.
    drop(held);
    let again = take(&b, &scope, Duration::from_secs(1))
        .await
        .expect("released");

    // Broken by hand: the holder's session ends, and the lock with it.
    let broken = a.force(&locks::lock_id(&scope)).await.unwrap();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].scope, scope);
    let after = take(&a, &scope, Duration::from_secs(2))
        .await
        .expect("broken");
    assert!(matches!(
        b.force("0000000000000000").await,
        Err(OpsError::NotFound(_))
    ));
    // b's next lock opens a new session; releasing the lease that died with the old one
    // must leave the new session, and the lock on it, alone.
    let other = "render:srv-locks-2";
    let on_new_session = take(&b, other, Duration::from_secs(2))
        .await
        .expect("new session");
    again.release(Box::new(()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = PgLocks::connect(&url, Some(&schema)).await.unwrap();
    assert!(
        take(&c, other, Duration::from_millis(100)).await.is_none(),
        "releasing a dead session's lease freed a lock held on its successor"
    );
    on_new_session.release(Box::new(()));
    after.release(Box::new(()));
    assert!(take(&c, other, Duration::from_secs(2)).await.is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop_schemas(&url, &[schema]).await;
}
