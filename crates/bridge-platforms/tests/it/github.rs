//! GitHub specifics: environments, `variables=none`, keys changing class, one public-key
//! fetch per apply, and stamps that match GitHub's `updated_at`.

use crate::support::{Env, Recorder, Which, apply, creates, deletes, map, split, updates};

const PUBLIC_KEY_ROUTE: &str = "GET /repos/{owner}/{repo}/actions/secrets/public-key";

#[tokio::test]
async fn environment_secrets_and_variables() {
    let env = Env::start(Which::Github).await;
    let github = env.emulators.github().expect("github");
    let platform = env.open("github:environment=production");
    apply(
        platform.as_ref(),
        &creates(&[("API_TOKEN", "t"), ("LOG_LEVEL", "warn")]),
        &Recorder::default(),
    )
    .await
    .expect("creates");
    assert_eq!(
        github.secrets(Some("production")),
        map(&[("API_TOKEN", "t")])
    );
    assert_eq!(
        github.variables(Some("production")),
        map(&[("LOG_LEVEL", "warn")])
    );
    assert!(github.secrets(None).is_empty() && github.variables(None).is_empty());
    let stats = github.stats();
    assert_eq!(
        stats
            .by_route
            .get("GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"),
        Some(&1)
    );
}

#[tokio::test]
async fn variables_none_makes_everything_a_secret() {
    let env = Env::start(Which::Github).await;
    let github = env.emulators.github().expect("github");
    let platform = env.open("github:variables=none");
    apply(
        platform.as_ref(),
        &creates(&[("LOG_LEVEL", "warn"), ("PORT", "80")]),
        &Recorder::default(),
    )
    .await
    .expect("creates");
    assert_eq!(
        github.secrets(None),
        map(&[("LOG_LEVEL", "warn"), ("PORT", "80")])
    );
    assert!(github.variables(None).is_empty());
    let (readable, write_only) = split(&platform.read().await.expect("read"));
    assert!(readable.is_empty());
    assert_eq!(write_only, ["LOG_LEVEL", "PORT"]);
}

#[tokio::test]
async fn a_key_that_changes_class_ends_up_in_one_place() {
    let env = Env::start(Which::Github).await;
    let github = env.emulators.github().expect("github");
    let platform = env.open("github");
    apply(
        platform.as_ref(),
        &creates(&[("DATABASE_URL", "postgres://db:5432/app")]),
        &Recorder::default(),
    )
    .await
    .expect("a plain URL is a variable");
    assert_eq!(github.variables(None).len(), 1);
    // Now with a password: a secret, and no longer a variable.
    let progress = Recorder::default();
    apply(
        platform.as_ref(),
        &updates(&[("DATABASE_URL", "postgres://app:pw@db:5432/app")]),
        &progress,
    )
    .await
    .expect("becomes a secret");
    assert_eq!(progress.keys(), ["DATABASE_URL"]);
    assert_eq!(
        github.secrets(None),
        map(&[("DATABASE_URL", "postgres://app:pw@db:5432/app")])
    );
    assert!(github.variables(None).is_empty());
    // And back.
    apply(
        platform.as_ref(),
        &updates(&[("DATABASE_URL", "postgres://db:5432/other")]),
        &Recorder::default(),
    )
    .await
    .expect("becomes a variable");
    assert!(github.secrets(None).is_empty());
    assert_eq!(
        github.variables(None),
        map(&[("DATABASE_URL", "postgres://db:5432/other")])
    );
    // A delete removes it wherever it is.
    apply(
        platform.as_ref(),
        &deletes(&["DATABASE_URL"]),
        &Recorder::default(),
    )
    .await
    .expect("delete");
    assert!(github.variables(None).is_empty() && github.secrets(None).is_empty());
}

#[tokio::test]
async fn the_public_key_is_fetched_once_and_only_for_secrets() {
    let env = Env::start(Which::Github).await;
    let github = env.emulators.github().expect("github");
    let platform = env.open("github");
    apply(
        platform.as_ref(),
        &creates(&[("A_TOKEN", "1"), ("B_TOKEN", "2"), ("C_TOKEN", "3")]),
        &Recorder::default(),
    )
    .await
    .expect("secrets");
    assert_eq!(github.stats().by_route.get(PUBLIC_KEY_ROUTE), Some(&1));
    github.reset_stats();
    let report = apply(
        platform.as_ref(),
        &creates(&[("LOG_LEVEL", "x"), ("PORT", "1")]),
        &Recorder::default(),
    )
    .await
    .expect("variables");
    let stats = github.stats();
    assert_eq!(stats.by_route.get(PUBLIC_KEY_ROUTE), None);
    // No secret written, so no list for stamps either: 2 reads + 2 creates.
    assert_eq!(stats.requests, 4, "{:?}", stats.by_route);
    assert!(report.stamps.is_empty());
}

#[tokio::test]
async fn stamps_are_githubs_updated_at() {
    let env = Env::start(Which::Github).await;
    let github = env.emulators.github().expect("github");
    let platform = env.open("github");
    let report = apply(
        platform.as_ref(),
        &creates(&[("API_TOKEN", "t"), ("LOG_LEVEL", "info")]),
        &Recorder::default(),
    )
    .await
    .expect("creates");
    assert_eq!(report.stamps.len(), 1);
    assert_eq!(
        report.stamps.get("API_TOKEN"),
        github.secret_updated_at(None, "API_TOKEN").as_ref()
    );
}
