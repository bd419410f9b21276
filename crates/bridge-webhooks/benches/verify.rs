//! `cargo bench -p bridge-autonomy --bench verify`: deliveries per second through
//! `WebhookVerifier::receive` (size check, signature, timestamp, JSON parse, normalisation)
//! for one real-looking payload of each platform, beside a baseline measured in the same
//! run: a bare HMAC-SHA256 of the same body, which is the least any verification costs, and
//! that HMAC plus parsing the body into a `serde_json::Value`, the least any receiver that
//! reads the payload costs.
//! Each figure is the median of 5 rounds.

use std::hint::black_box;
use std::time::Instant;

use bridge_webhooks::webhook::{github, netlify, render, sign_github, sign_netlify, sign_render};
use bridge_webhooks::{Platform, VerifyOptions, WebhookSecrets, WebhookVerifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

const ROUNDS: usize = 5;
const ITERATIONS: usize = 20_000;

const GITHUB_SECRET: &str = "gh-hook-secret-9f8e7d";
const NETLIFY_SECRET: &str = "netlify-jws-secret-3c2b1a";
const RENDER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A platform, a body, the headers it is delivered with, and a key for the bare HMAC.
type Case<'a> = (Platform, &'a [u8], Vec<(String, String)>, &'a [u8]);

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Runs `f` ITERATIONS times per round; the median rate in calls/s.
fn rate(mut f: impl FnMut()) -> f64 {
    let rates = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..ITERATIONS {
                f();
            }
            ITERATIONS as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    median(rates)
}

fn main() {
    let now = OffsetDateTime::now_utc();
    let secrets = WebhookSecrets::new()
        .with_github(GITHUB_SECRET)
        .with_netlify(NETLIFY_SECRET)
        .with_render(RENDER_SECRET)
        .expect("render secret");
    let verifier = WebhookVerifier::new(secrets, VerifyOptions::default());

    let github_body: &[u8] =
        include_bytes!("../tests/fixtures/github/deployment_status_success.json");
    let netlify_body: &[u8] = include_bytes!("../tests/fixtures/netlify/deploy_created.json");
    let render_body: &[u8] = include_bytes!("../tests/fixtures/render/deploy_ended_failed.json");
    let ts = now.unix_timestamp();
    let id = "evt-cv1p4b2ti7dc73eg2c1g";
    let cases: [Case; 3] = [
        (
            Platform::Github,
            github_body,
            vec![
                (github::EVENT_HEADER.into(), "deployment_status".into()),
                (github::DELIVERY_HEADER.into(), "9a3c1e70-f6d2".into()),
                (
                    github::SIGNATURE_HEADER.into(),
                    sign_github(GITHUB_SECRET, github_body),
                ),
            ],
            GITHUB_SECRET.as_bytes(),
        ),
        (
            Platform::Netlify,
            netlify_body,
            vec![
                (netlify::EVENT_HEADER.into(), "deploy_created".into()),
                (
                    netlify::SIGNATURE_HEADER.into(),
                    sign_netlify(NETLIFY_SECRET, netlify_body, now),
                ),
            ],
            NETLIFY_SECRET.as_bytes(),
        ),
        (
            Platform::Render,
            render_body,
            vec![
                (render::ID_HEADER.into(), id.into()),
                (render::TIMESTAMP_HEADER.into(), ts.to_string()),
                (
                    render::SIGNATURE_HEADER.into(),
                    sign_render(RENDER_SECRET, id, ts, render_body).expect("sign"),
                ),
            ],
            b"a 24-byte key, as Render",
        ),
    ];

    println!(
        "verify + normalise one delivery, median of {ROUNDS} rounds x {ITERATIONS} \
         (baselines: bare HMAC-SHA256 of the same body; that plus a JSON parse)"
    );
    for (platform, body, headers, key) in &cases {
        verifier
            .receive(*platform, headers, body, now)
            .expect("the delivery verifies");
        let full = rate(|| {
            let receipt = verifier.receive(*platform, black_box(headers), black_box(body), now);
            black_box(receipt.is_ok());
        });
        let bare = rate(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(black_box(body));
            black_box(mac.finalize().into_bytes());
        });
        let parsed = rate(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(black_box(body));
            black_box(mac.finalize().into_bytes());
            let value: serde_json::Value =
                serde_json::from_slice(black_box(body)).expect("fixture is JSON");
            black_box(value);
        });
        println!(
            "  {platform:<8} {:>5} B body: {full:>8.0} deliveries/s ({:.1} µs)   \
             bare HMAC {bare:>8.0}/s (bare/full {:.1}x)   \
             HMAC + serde_json::Value parse {parsed:>8.0}/s (that/full {:.2}x)",
            body.len(),
            1e6 / full,
            bare / full,
            parsed / full,
        );
    }
}
