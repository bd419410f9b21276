//! The shared fault layer: rate limiting, write budgets, latency, injected
//! errors and route statistics, on all three platforms.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{client, start_with};

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let emu = start_with(true, true, true, |c| c.rate_limit = Some(2)).await;
    let c = client();
    let targets = [
        (
            format!(
                "{}/services/srv-emulator/env-vars",
                emu.render().unwrap().base_url()
            ),
            "rnd_emulator_token",
            "ratelimit-remaining",
        ),
        (
            format!(
                "{}/sites/site-emulator/env",
                emu.netlify().unwrap().base_url()
            ),
            "nfp_emulator_token",
            "x-ratelimit-remaining",
        ),
        (
            format!(
                "{}/repos/bridge/emulated/actions/variables",
                emu.github().unwrap().base_url()
            ),
            "ghp_emulator_token",
            "x-ratelimit-remaining",
        ),
    ];
    for (url, token, remaining) in &targets {
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let resp = c.get(url).bearer_auth(token).send().await.unwrap();
            statuses.push(resp.status());
            assert!(resp.headers().contains_key(*remaining), "{url}");
            last = Some(resp);
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ],
            "{url}"
        );
        let last = last.unwrap();
        let retry: u64 = last.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_eq!(last.headers()[*remaining], "0");
        let body: Value = last.json().await.unwrap();
        assert!(body["message"].is_string());
    }
    let render = emu.render().unwrap();
    assert_eq!(render.stats().requests, 3, "429s are counted");
    assert_eq!(
        render.stats().by_route["GET /v1/services/{serviceId}/env-vars"],
        3
    );
    // Lifting the limit takes effect at once.
    render.set_rate_limit(None);
    let ok = c
        .get(&targets[0].0)
        .bearer_auth(targets[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["ratelimit-limit"], "400");
    emu.shutdown().await;
}

#[tokio::test]
async fn fail_after_writes_keeps_state() {
    let emu = start_with(true, false, false, |c| c.fail_after_writes = Some(3)).await;
    let render = emu.render().unwrap();
    let c = client();
    let base = format!("{}/services/srv-emulator/env-vars", render.base_url());
    for (i, k) in ["A", "B", "C"].iter().enumerate() {
        let resp = c
            .put(format!("{base}/{k}"))
            .bearer_auth("rnd_emulator_token")
            .json(&json!({"value": format!("v{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let before = render.vars();
    let fourth = c
        .put(format!("{base}/D"))
        .bearer_auth("rnd_emulator_token")
        .json(&json!({"value": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fourth.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let replace = c
        .put(&base)
        .bearer_auth("rnd_emulator_token")
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(replace.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(render.vars(), before);
    // Reads still work.
    let read = c
        .get(&base)
        .bearer_auth("rnd_emulator_token")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let stats = render.stats();
    assert_eq!(stats.writes, 3);
    assert_eq!(stats.requests, 6);
    // Resetting the stats restarts the budget.
    render.reset_stats();
    let again = c
        .put(format!("{base}/D"))
        .bearer_auth("rnd_emulator_token")
        .json(&json!({"value": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_is_applied() {
    let delay = Duration::from_millis(150);
    let emu = start_with(false, true, false, |c| c.latency = delay).await;
    let c = client();
    let url = format!(
        "{}/sites/site-emulator/env",
        emu.netlify().unwrap().base_url()
    );
    let t0 = Instant::now();
    let resp = c
        .get(&url)
        .bearer_auth("nfp_emulator_token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(t0.elapsed() >= delay, "{:?}", t0.elapsed());
    emu.netlify().unwrap().set_latency(Duration::ZERO);
    let t1 = Instant::now();
    c.get(&url)
        .bearer_auth("nfp_emulator_token")
        .send()
        .await
        .unwrap();
    assert!(t1.elapsed() < delay);
    emu.shutdown().await;
}

#[tokio::test]
async fn error_rate_injects_503_without_state_change() {
    let emu = start_with(false, false, true, |c| {
        c.error_rate = 1.0;
        c.seed = 9;
    })
    .await;
    let github = emu.github().unwrap();
    let c = client();
    let url = format!(
        "{}/repos/bridge/emulated/actions/variables",
        github.base_url()
    );
    let resp = c
        .post(&url)
        .bearer_auth("ghp_emulator_token")
        .json(&json!({"name": "X", "value": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.json::<Value>().await.unwrap()["documentation_url"].is_string());
    assert!(github.variables(None).is_empty());
    assert_eq!(github.stats().writes, 0);
    github.set_error_rate(0.0);
    let resp = c
        .post(&url)
        .bearer_auth("ghp_emulator_token")
        .json(&json!({"name": "X", "value": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(github.stats().writes, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn stats_count_routes_by_template() {
    let emu = start_with(true, false, false, |_| {}).await;
    let render = emu.render().unwrap();
    let c = client();
    let base = render.base_url();
    let root = base.trim_end_matches("/v1").to_owned();
    let token = "rnd_emulator_token";
    for k in ["A", "B"] {
        c.put(format!("{base}/services/srv-emulator/env-vars/{k}"))
            .bearer_auth(token)
            .json(&json!({"value": "v"}))
            .send()
            .await
            .unwrap();
    }
    c.get(format!("{base}/services/srv-emulator/env-vars"))
        .send()
        .await
        .unwrap(); // 401, still counted
    c.get(format!("{base}/nowhere"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let stats = render.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.writes, 2);
    assert_eq!(
        stats.by_route["PUT /v1/services/{serviceId}/env-vars/{envVarKey}"],
        2
    );
    assert_eq!(stats.by_route["GET /v1/services/{serviceId}/env-vars"], 1);
    assert_eq!(stats.by_route["GET <unmatched>"], 1);

    // The HTTP view agrees and is itself not counted.
    let over_http: Value = c
        .get(format!("{root}/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, serde_json::to_value(&stats).unwrap());
    let reset = c
        .post(format!("{root}/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(render.stats(), bridge_emulators::Stats::default());
    emu.shutdown().await;
}
