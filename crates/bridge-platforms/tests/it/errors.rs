//! Errors say what to fix — the token variable, the id variable — and never carry a token
//! or a value.

use std::time::Duration;

use bridge_core::SecretValue;
use bridge_platforms::{HttpOptions, OpenContext, PlatformError, PlatformSpec, RemoteSettings};

use crate::support::{Env, Recorder, Which, apply, assert_clean, creates, fast};

const WRONG_TOKEN: &str = "wrong-token-d41d8cd98f00";

fn settings_mut(ctx: &mut OpenContext, which: Which) -> &mut RemoteSettings {
    match which {
        Which::Render => &mut ctx.render,
        Which::Netlify => &mut ctx.netlify,
        Which::Github => &mut ctx.github,
    }
}

async fn wrong_token(which: Which) {
    let mut env = Env::start(which).await;
    let real = settings_mut(&mut env.ctx, which)
        .token
        .replace(SecretValue::new(WRONG_TOKEN))
        .expect("token");
    let platform = env.open(which.spec());
    let err = platform.read().await.expect_err("refused");
    assert!(
        matches!(err, PlatformError::Auth { status: 401, .. }),
        "{which:?}: {err:?}"
    );
    assert!(err.to_string().contains(which.token_variable()), "{err}");
    assert!(err.is_input_error());
    assert_clean(&err, &[WRONG_TOKEN, real.expose()]);
    // Writes are refused the same way, with the value kept out of the message.
    let err = platform
        .apply(
            bridge_platforms::WriteRequest {
                ops: &creates(&[("API_TOKEN", "value-never-shown")]),
                current: &Default::default(),
                restore: None,
            },
            &Recorder::default(),
        )
        .await
        .expect_err("refused");
    assert_clean(&err, &[WRONG_TOKEN, "value-never-shown"]);
}

#[tokio::test]
async fn render_wrong_token() {
    wrong_token(Which::Render).await;
}

#[tokio::test]
async fn netlify_wrong_token() {
    wrong_token(Which::Netlify).await;
}

#[tokio::test]
async fn github_wrong_token() {
    wrong_token(Which::Github).await;
}

async fn wrong_target(which: Which, variable: &str) {
    let mut env = Env::start(which).await;
    let bogus = match which {
        Which::Github => "nobody/nothing",
        _ => "does-not-exist",
    };
    settings_mut(&mut env.ctx, which).target_id = Some(bogus.into());
    let err = env.open(which.spec()).read().await.expect_err("missing");
    assert!(
        matches!(err, PlatformError::Missing { .. }),
        "{which:?}: {err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(variable) && text.contains(bogus), "{text}");
}

#[tokio::test]
async fn render_wrong_service() {
    wrong_target(Which::Render, "RENDER_SERVICE_ID").await;
}

#[tokio::test]
async fn netlify_wrong_site() {
    wrong_target(Which::Netlify, "NETLIFY_SITE_ID").await;
}

#[tokio::test]
async fn github_wrong_repository() {
    wrong_target(Which::Github, "GITHUB_REPOSITORY").await;
}

#[test]
fn missing_settings_name_the_variable() {
    let full = RemoteSettings {
        api_url: "http://127.0.0.1:9".into(),
        target_id: Some("x/y".into()),
        account_id: Some("team".into()),
        token: Some(SecretValue::new("t")),
    };
    let cases = [
        ("render", "RENDER_API_TOKEN", false),
        ("render", "RENDER_SERVICE_ID", true),
        ("netlify", "NETLIFY_API_TOKEN", false),
        ("netlify", "NETLIFY_SITE_ID", true),
        ("github", "GITHUB_TOKEN", false),
        ("github", "GITHUB_REPOSITORY", true),
    ];
    for (name, variable, token_present) in cases {
        let settings = RemoteSettings {
            target_id: None,
            token: token_present.then(|| SecretValue::new("t")),
            ..full.clone()
        };
        let ctx = OpenContext {
            render: settings.clone(),
            netlify: settings.clone(),
            github: settings,
            ..OpenContext::default()
        };
        let spec: PlatformSpec = name.parse().expect("spec");
        let err = bridge_platforms::open(&spec, &ctx).err().expect("refused");
        assert!(
            matches!(&err, PlatformError::MissingSetting { variable: v, .. } if *v == variable),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(variable));
        assert!(err.is_input_error());
    }
    // Options in the spec stand in for the ids.
    let ctx = OpenContext {
        render: RemoteSettings {
            token: Some(SecretValue::new("t")),
            ..RemoteSettings::default()
        },
        ..OpenContext::default()
    };
    let spec: PlatformSpec = "render:service=srv-1".parse().expect("spec");
    assert!(bridge_platforms::open(&spec, &ctx).is_ok());
}

#[tokio::test]
async fn netlify_writes_need_the_account() {
    let mut env = Env::start(Which::Netlify).await;
    env.ctx.netlify.account_id = None;
    let platform = env.open("netlify");
    // Reading works through the site route…
    assert!(platform.read().await.expect("read").is_empty());
    let stats = env.stats(Which::Netlify);
    assert_eq!(
        stats.by_route.get("GET /api/v1/sites/{site_id}/env"),
        Some(&1)
    );
    // …writing says what is missing.
    let err = apply(
        platform.as_ref(),
        &creates(&[("A", "1")]),
        &Recorder::default(),
    )
    .await
    .expect_err("no account");
    assert!(matches!(
        err,
        PlatformError::MissingSetting {
            variable: "NETLIFY_ACCOUNT_ID",
            ..
        }
    ));
}

/// A limit that outlasts the retries ends in `RateLimited`, with the wait asked for.
#[tokio::test]
async fn rate_limits_that_outlast_the_retries() {
    let env = Env::start(Which::Github).await;
    env.set_rate_limit(Which::Github, Some(1));
    let options = HttpOptions {
        max_attempts: 2,
        max_wait: Duration::from_millis(10),
        ..fast()
    };
    let platform = env.open_with("github", &options);
    // Two lists at once against one request a second: one of them is refused twice.
    let err = platform.read().await.expect_err("rate limited");
    assert!(
        matches!(
            err,
            PlatformError::RateLimited {
                attempts: 2,
                retry_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_input_error());
}

/// Injected 503s on reads are retried until they pass.
#[tokio::test]
async fn transient_errors_are_retried() {
    let env = Env::with(
        Which::Render,
        bridge_emulators::EmulatorConfig {
            error_rate: 0.5,
            seed: 7,
            ..Default::default()
        },
    )
    .await;
    let options = HttpOptions {
        max_attempts: 12,
        ..fast()
    };
    let platform = env.open_with("render", &options);
    for _ in 0..5 {
        platform.read().await.expect("read despite 503s");
    }
    assert!(env.stats(Which::Render).requests > 5);
}

/// Nothing listens: a transport error naming method and path, without the token.
#[tokio::test]
async fn unreachable_platforms_are_transport_errors() {
    let settings = RemoteSettings {
        // Port 9 (discard) is closed on test machines.
        api_url: "http://127.0.0.1:9/v1".into(),
        target_id: Some("srv-1".into()),
        account_id: None,
        token: Some(SecretValue::new("rnd_secret_token")),
    };
    let ctx = OpenContext {
        render: settings,
        ..OpenContext::default()
    };
    let options = HttpOptions {
        max_attempts: 2,
        ..fast()
    };
    let spec: PlatformSpec = "render".parse().expect("spec");
    let platform = bridge_platforms::open_with(&spec, &ctx, &options).expect("opens");
    let err = platform.read().await.expect_err("nothing listens");
    assert!(matches!(err, PlatformError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string().contains("GET /v1/services/srv-1/env-vars"),
        "{err}"
    );
    assert_clean(&err, &["rnd_secret_token", "limit="]);
}
