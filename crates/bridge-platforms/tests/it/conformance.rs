//! One suite, every HTTP platform: read empty → create → read back → update → delete;
//! call counts of a no-op read and of a first sync; pagination; a 429 storm; a failure
//! part-way; stamps for write-only values.

use std::time::Duration;

use bridge_emulators::EmulatorConfig;
use bridge_platforms::{HttpOptions, PlatformError};

use crate::support::{Env, Recorder, Which, apply, creates, deletes, fast, map, split, updates};

/// Public and secret-looking keys, so GitHub and Netlify exercise both kinds.
const FIRST: [(&str, &str); 6] = [
    ("API_TOKEN", "tok-1"),
    ("DATABASE_URL", "postgres://app:pw@db:5432/app"),
    ("LOG_LEVEL", "info"),
    ("PORT", "8080"),
    ("SESSION_SECRET", "s3ss10n"),
    ("SITE_NAME", "Bridge shop"),
];

async fn full_cycle(which: Which) {
    let env = Env::start(which).await;
    let platform = env.open(which.spec());
    assert!(platform.read().await.expect("read").is_empty());

    // Create.
    let progress = Recorder::default();
    let report = apply(platform.as_ref(), &creates(&FIRST), &progress)
        .await
        .expect("creates");
    assert_eq!(report.writes, FIRST.len());
    let mut reported = progress.keys();
    reported.sort();
    assert_eq!(reported, FIRST.map(|(k, _)| k.to_string()));
    assert_eq!(env.held(which), map(&FIRST), "{which:?} holds the values");

    // Read back: readable values equal, write-only ones present.
    let read = platform.read().await.expect("read back");
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        FIRST.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let (readable, write_only) = split(&read);
    for (k, v) in &readable {
        assert_eq!(map(&FIRST).get(k), Some(v), "{which:?}: {k}");
    }
    match which {
        Which::Render => assert!(write_only.is_empty()),
        // Secret-looking keys became secrets; the others read back.
        Which::Netlify | Which::Github => {
            assert_eq!(write_only, ["API_TOKEN", "DATABASE_URL", "SESSION_SECRET"]);
            assert_eq!(readable.len(), 3);
            // Stamps for exactly the write-only values written.
            let mut stamped: Vec<&String> = report.stamps.keys().collect();
            stamped.sort();
            assert_eq!(stamped, ["API_TOKEN", "DATABASE_URL", "SESSION_SECRET"]);
        }
    }

    // Update.
    let changed = [("API_TOKEN", "tok-2"), ("LOG_LEVEL", "debug")];
    let progress = Recorder::default();
    let report = apply(platform.as_ref(), &updates(&changed), &progress)
        .await
        .expect("updates");
    assert_eq!(report.writes, 2);
    assert_eq!(progress.keys().len(), 2);
    let mut expected = map(&FIRST);
    expected.extend(map(&changed));
    assert_eq!(env.held(which), expected);

    // Delete.
    let progress = Recorder::default();
    let report = apply(
        platform.as_ref(),
        &deletes(&["PORT", "SESSION_SECRET"]),
        &progress,
    )
    .await
    .expect("deletes");
    assert_eq!(report.writes, 2);
    expected.remove("PORT");
    expected.remove("SESSION_SECRET");
    assert_eq!(env.held(which), expected);
    let read = platform.read().await.expect("read after deletes");
    assert_eq!(
        read.keys().cloned().collect::<Vec<_>>(),
        expected.keys().cloned().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn render_full_cycle() {
    full_cycle(Which::Render).await;
}

#[tokio::test]
async fn netlify_full_cycle() {
    full_cycle(Which::Netlify).await;
}

#[tokio::test]
async fn github_full_cycle() {
    full_cycle(Which::Github).await;
}

/// A no-op read costs one list per platform (GitHub: secrets and variables); a first sync
/// of N keys costs the read plus the writes the module docs promise.
async fn call_counts(which: Which) {
    let env = Env::start(which).await;
    let platform = env.open(which.spec());
    env.reset_stats(which);
    let progress = Recorder::default();
    apply(platform.as_ref(), &creates(&FIRST), &progress)
        .await
        .expect("first sync");
    let stats = env.stats(which);
    let n = FIRST.len() as u64;
    let expected = match which {
        // Read + one per-key PUT each (few keys; a bulk replace beyond PER_KEY_MAX).
        Which::Render if FIRST.len() <= bridge_platforms::render::PER_KEY_MAX => 1 + n,
        Which::Render => 2,
        // Read, the apply's own read under the site's lock (another context of the site may
        // have been written since), one bulk create.
        Which::Netlify => 3,
        // Two lists + public key + N serial writes + one list for the stamps.
        Which::Github => 2 + 1 + n + 1,
    };
    assert_eq!(stats.requests, expected, "{which:?}: {:?}", stats.by_route);

    env.reset_stats(which);
    platform.read().await.expect("no-op read");
    let expected = if which == Which::Github { 2 } else { 1 };
    assert_eq!(env.stats(which).requests, expected, "{which:?}");
    assert_eq!(env.stats(which).writes, 0);
}

#[tokio::test]
async fn render_call_counts() {
    call_counts(Which::Render).await;
}

#[tokio::test]
async fn netlify_call_counts() {
    call_counts(Which::Netlify).await;
}

#[tokio::test]
async fn github_call_counts() {
    call_counts(Which::Github).await;
}

/// Pages of two: every key is still read, with one call per page.
async fn pagination(which: Which) {
    let env = Env::with(
        which,
        EmulatorConfig {
            page_size: Some(2),
            ..EmulatorConfig::default()
        },
    )
    .await;
    let options = HttpOptions {
        page_size: Some(2),
        ..fast()
    };
    let platform = env.open_with(which.spec(), &options);
    let progress = Recorder::default();
    apply(platform.as_ref(), &creates(&FIRST), &progress)
        .await
        .expect("creates");
    env.reset_stats(which);
    let read = platform.read().await.expect("paged read");
    assert_eq!(read.len(), FIRST.len());
    let requests = env.stats(which).requests;
    match which {
        // 6 keys in pages of 2: three full pages, then an empty one says the end.
        Which::Render => assert_eq!(requests, 4),
        // Netlify's env routes are not paginated: one call whatever the size.
        Which::Netlify => assert_eq!(requests, 1),
        // Three secrets (two pages) and three variables (two pages).
        Which::Github => assert_eq!(requests, 4),
    }
}

#[tokio::test]
async fn render_pagination() {
    pagination(Which::Render).await;
}

#[tokio::test]
async fn netlify_pagination() {
    pagination(Which::Netlify).await;
}

#[tokio::test]
async fn github_pagination() {
    pagination(Which::Github).await;
}

/// `n` public keys (one value each per platform, one write each per update).
fn many(n: usize, prefix: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("SETTING_{i:02}"), format!("{prefix}-{i}")))
        .collect()
}

/// 5 requests a second and more writes than that: retries honouring `Retry-After` carry
/// the sync through.
async fn rate_limit_storm(which: Which) {
    let env = Env::start(which).await;
    let options = HttpOptions {
        max_attempts: 10,
        base_delay: Duration::from_millis(20),
        max_wait: Duration::from_millis(1_500),
        ..HttpOptions::default()
    };
    let platform = env.open_with(which.spec(), &options);
    let first = many(12, "a");
    let pairs: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    apply(platform.as_ref(), &creates(&pairs), &Recorder::default())
        .await
        .expect("creates");
    env.set_rate_limit(which, Some(5));
    env.reset_stats(which);
    let progress = Recorder::default();
    let second = many(12, "b");
    let pairs: Vec<(&str, &str)> = second
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match which {
        // Render writes many keys in one call; a storm needs many single writes.
        Which::Render => {
            for pair in &pairs {
                apply(platform.as_ref(), &updates(&[*pair]), &progress)
                    .await
                    .expect("single update under the limit");
            }
        }
        _ => {
            apply(platform.as_ref(), &updates(&pairs), &progress)
                .await
                .expect("updates under the limit");
        }
    }
    assert_eq!(progress.keys().len(), pairs.len());
    let held = env.held(which);
    for (k, v) in &second {
        assert_eq!(held.get(k), Some(v), "{which:?}: {k}");
    }
    let stats = env.stats(which);
    // More requests than the minimum means some were refused and retried.
    let minimum = match which {
        Which::Render => 24,
        Which::Netlify => 13,
        Which::Github => 14,
    };
    assert!(
        stats.requests > minimum,
        "{which:?}: {} requests",
        stats.requests
    );
}

#[tokio::test]
async fn render_rate_limit_storm() {
    rate_limit_storm(Which::Render).await;
}

#[tokio::test]
async fn netlify_rate_limit_storm() {
    rate_limit_storm(Which::Netlify).await;
}

#[tokio::test]
async fn github_rate_limit_storm() {
    rate_limit_storm(Which::Github).await;
}

/// After k successful writes the platform fails every write: exactly k ops are reported,
/// and the error says what happened without values.
async fn fail_after_writes(which: Which, k: u64, concurrency: usize) {
    let env = Env::start(which).await;
    let platform = env.open_with(
        which.spec(),
        &HttpOptions {
            concurrency,
            ..fast()
        },
    );
    let first = many(6, "a");
    let pairs: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    apply(platform.as_ref(), &creates(&pairs), &Recorder::default())
        .await
        .expect("creates");
    env.reset_stats(which);
    env.set_fail_after_writes(which, Some(k));
    let second = many(6, "b");
    let pairs: Vec<(&str, &str)> = second
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let progress = Recorder::default();
    let err = match which {
        // Render's bulk write is one call: make single writes so that k of them can pass.
        Which::Render => {
            let mut result = Ok(());
            for pair in &pairs {
                if let Err(e) = apply(platform.as_ref(), &updates(&[*pair]), &progress).await {
                    result = Err(e);
                    break;
                }
            }
            result.expect_err("a write fails")
        }
        _ => apply(platform.as_ref(), &updates(&pairs), &progress)
            .await
            .expect_err("a write fails"),
    };
    assert!(
        matches!(err, PlatformError::Status { status: 500, .. }),
        "{which:?}: {err:?}"
    );
    // Exactly the writes the platform confirmed were reported.
    let held = env.held(which);
    let mut updated: Vec<String> = second
        .iter()
        .filter(|(k, v)| held.get(k) == Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    let mut reported = progress.keys();
    reported.sort();
    updated.sort();
    assert_eq!(reported, updated, "{which:?}");
    if concurrency == 1 {
        assert_eq!(reported.len() as u64, k, "{which:?}: {reported:?}");
    }
    let values: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|(_, v)| v.as_str())
        .collect();
    crate::support::assert_clean(&err, &values);
}

#[tokio::test]
async fn render_fail_after_writes() {
    fail_after_writes(Which::Render, 2, 1).await;
}

#[tokio::test]
async fn netlify_fail_after_writes() {
    fail_after_writes(Which::Netlify, 3, 1).await;
}

/// Concurrent writes: the emulator's budget is not atomic across requests in flight, so
/// the count may pass k; what must hold is that the reported ops are the applied ones.
#[tokio::test]
async fn netlify_fail_after_writes_concurrently() {
    fail_after_writes(Which::Netlify, 3, 8).await;
}

#[tokio::test]
async fn github_fail_after_writes() {
    fail_after_writes(Which::Github, 3, 1).await;
}
