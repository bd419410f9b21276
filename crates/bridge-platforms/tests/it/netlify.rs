//! Netlify specifics: deploy contexts, secrets spread over the deploy contexts, deletes
//! that touch only the context's value, and keys that exist in another context.

use bridge_core::diff::{Change, SyncPlan};
use bridge_emulators::SecretValueMode;
use bridge_platforms::RemoteValue;

use crate::support::{Env, Recorder, Which, apply, creates, deletes, map, op, split, updates};

#[tokio::test]
async fn a_context_spec_reads_and_writes_that_context_only() {
    let env = Env::start(Which::Netlify).await;
    let netlify = env.emulators.netlify().expect("netlify");
    netlify.set_var("API_URL", "all", "https://api", false);
    netlify.set_var("MODE", "all", "shared", false);
    netlify.set_var("MODE", "production", "prod", false);

    let production = env.open("netlify:context=production");
    let (readable, _) = split(&production.read().await.expect("read"));
    assert_eq!(
        readable,
        map(&[("API_URL", "https://api"), ("MODE", "prod")])
    );
    let all = env.open("netlify");
    let (readable, _) = split(&all.read().await.expect("read"));
    assert_eq!(
        readable,
        map(&[("API_URL", "https://api"), ("MODE", "shared")])
    );

    // An update in production adds a production value; the `all` value stays.
    apply(
        production.as_ref(),
        &updates(&[("API_URL", "https://prod-api")]),
        &Recorder::default(),
    )
    .await
    .expect("update");
    assert_eq!(
        netlify
            .vars("production")
            .get("API_URL")
            .map(String::as_str),
        Some("https://prod-api")
    );
    assert_eq!(
        netlify
            .vars("deploy-preview")
            .get("API_URL")
            .map(String::as_str),
        Some("https://api")
    );

    // A delete in production removes only production's value.
    apply(
        production.as_ref(),
        &deletes(&["MODE"]),
        &Recorder::default(),
    )
    .await
    .expect("delete");
    assert_eq!(
        netlify.vars("production").get("MODE").map(String::as_str),
        Some("shared")
    );
    assert_eq!(
        netlify.vars("all").get("MODE").map(String::as_str),
        Some("shared")
    );
}

#[tokio::test]
async fn a_key_in_another_context_gets_a_value_not_a_second_variable() {
    let env = Env::start(Which::Netlify).await;
    let netlify = env.emulators.netlify().expect("netlify");
    netlify.set_var("REGION", "production", "eu", false);
    let all = env.open("netlify");
    // Reading `all` does not see a production-only value, so the plan creates it…
    assert!(all.read().await.expect("read").is_empty());
    let progress = Recorder::default();
    apply(
        all.as_ref(),
        &creates(&[("REGION", "us"), ("NEW", "n")]),
        &progress,
    )
    .await
    .expect("no duplicate-key error");
    assert_eq!(progress.keys().len(), 2);
    assert_eq!(
        netlify.vars("dev").get("REGION").map(String::as_str),
        Some("us")
    );
    assert_eq!(
        netlify.vars("production").get("REGION").map(String::as_str),
        Some("eu")
    );
}

#[tokio::test]
async fn secrets_for_all_contexts_are_spread_and_read_write_only() {
    let env = Env::start(Which::Netlify).await;
    let netlify = env.emulators.netlify().expect("netlify");
    let platform = env.open("netlify");
    let report = apply(
        platform.as_ref(),
        &creates(&[("API_TOKEN", "t0k")]),
        &Recorder::default(),
    )
    .await
    .expect("secret create (the emulator refuses secrets in `all`)");
    assert_eq!(netlify.is_secret("API_TOKEN"), Some(true));
    for context in ["production", "deploy-preview", "branch-deploy"] {
        assert_eq!(
            netlify.vars(context).get("API_TOKEN").map(String::as_str),
            Some("t0k")
        );
    }
    assert_eq!(netlify.vars("dev").get("API_TOKEN"), None);
    let read = platform.read().await.expect("read");
    let Some(RemoteValue::WriteOnly {
        updated_at: Some(stamp),
    }) = read.get("API_TOKEN")
    else {
        panic!("a secret reads write-only: {read:?}");
    };
    assert_eq!(report.stamps.get("API_TOKEN"), Some(stamp));

    // An update sets every deploy context; the stamp moves with it.
    let report = apply(
        platform.as_ref(),
        &updates(&[("API_TOKEN", "t1k")]),
        &Recorder::default(),
    )
    .await
    .expect("secret update");
    for context in ["production", "deploy-preview", "branch-deploy"] {
        assert_eq!(
            netlify.vars(context).get("API_TOKEN").map(String::as_str),
            Some("t1k")
        );
    }
    assert!(report.stamps.contains_key("API_TOKEN"));

    // Hidden values may also come without a `value` field.
    netlify.set_secret_value_mode(SecretValueMode::Omitted);
    let read = platform.read().await.expect("read");
    assert!(matches!(
        read.get("API_TOKEN"),
        Some(RemoteValue::WriteOnly { .. })
    ));

    apply(
        platform.as_ref(),
        &deletes(&["API_TOKEN"]),
        &Recorder::default(),
    )
    .await
    .expect("delete");
    assert_eq!(netlify.is_secret("API_TOKEN"), None);
}

#[tokio::test]
async fn secrets_are_refused_in_the_dev_context() {
    let env = Env::start(Which::Netlify).await;
    let platform = env.open("netlify:context=dev");
    let plan = SyncPlan {
        ops: vec![
            op("API_TOKEN", Change::Create, Some("t")),
            op("LOG_LEVEL", Change::Create, Some("debug")),
        ],
        ..SyncPlan::default()
    };
    let violations = platform.check_rules(&plan);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].key, "API_TOKEN");
    assert!(violations[0].rule.contains("dev"));
}
