//! The real binary against a fake built only from GitHub's and Netlify's API documentation
//! (`docs_fake`): write-only GitHub secrets (names and stamps only), Netlify's one
//! `updated_at` per variable, `PATCH` setting one context and `PUT` wiping the others.
//! Failures name keys, never values, and every run is checked for leaked secret values.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::docs_fake::DocsFake;
use crate::sandbox::{Run, Sandbox};

const SECRETS: &[&str] = &[
    "sk_live_docs_1",
    "docs-pass-1",
    "whsec_docs_1",
    "whsec_docs_2",
];
const NETLIFY_SOURCE: &str = "LOG_LEVEL=info\nPUBLIC_URL=https://shop.example.com\n\
     STRIPE_SECRET_KEY=sk_live_docs_1\nWEBHOOK_SECRET=whsec_docs_1\n";
const BOTH: &str = "netlify:context=production,stg=netlify:context=deploy-preview";
const CHECKED: &str = "local:.env,netlify:context=production,stg=netlify:context=deploy-preview";
const PRODUCTION: &str = "netlify:context=production";

/// Two secrets and 32 plain keys: more than the 30 variables GitHub returns at most per
/// page, so the variables list takes two pages.
fn github_source() -> String {
    let mut text = String::from("STRIPE_SECRET_KEY=sk_live_docs_1\nDB_PASSWORD=docs-pass-1\n");
    for i in 1..=32 {
        text.push_str(&format!("FEATURE_{i:02}=on-{i}\n"));
    }
    text
}

fn sandbox(fake: &DocsFake, source: &str) -> Sandbox {
    let mut s = Sandbox::new();
    s.file(".env", source);
    for (k, v) in fake.exports() {
        s.env(k, &v);
    }
    s
}

/// Runs the binary and checks that nothing it printed holds a secret value.
fn run(s: &Sandbox, args: &[&str]) -> Run {
    let run = s.run(args);
    for secret in SECRETS {
        assert!(
            !run.all().contains(secret),
            "{args:?} printed a secret value"
        );
    }
    run
}

fn verify(s: &Sandbox, places: &str) -> (Run, Value) {
    let run = run(
        s,
        &["env", "verify", "--platforms", places, "--output", "json"],
    );
    let json = run.json();
    (run, json)
}

/// The source as a map, parsed the simple way these fixtures allow.
fn parse(source: &str) -> BTreeMap<String, String> {
    let pairs = source.lines().filter_map(|l| l.split_once('='));
    pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Keys whose values differ, so a failure names keys and never prints a secret value.
fn differing(actual: &BTreeMap<String, String>, source: &str) -> Vec<String> {
    let expected = parse(source);
    let mut keys: Vec<String> = actual.keys().chain(expected.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| actual.get(k) != expected.get(k));
    keys
}

const NONE: Vec<String> = Vec::new();

/// `(key, op)` for every planned change of every target in a `--output json` run.
fn changes(run: &Run) -> Vec<(String, String)> {
    let json = run.json();
    let mut out = Vec::new();
    for t in json["targets"].as_array().into_iter().flatten() {
        for c in t["changes"].as_array().into_iter().flatten() {
            let key = c["key"].as_str().unwrap_or_default().to_string();
            out.push((key, c["op"].as_str().unwrap_or_default().to_string()));
        }
    }
    out
}

/// docs: GitHub secrets are write-only; the list shows names and stamps. Bridge proves parity
/// from its own record, sees a change made in the UI by its moved stamp, and from a fresh
/// state can only call the secret unknown (and writes it unless told to skip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_write_only_secrets_are_judged_by_record_and_stamp() {
    let fake = DocsFake::start().await;
    let source = github_source();
    let s = sandbox(&fake, &source);

    let sync = run(
        &s,
        &["env", "sync", "--target", "github", "--output", "json"],
    );
    assert_eq!(sync.code, 0, "{sync:?}\n{:#?}", fake.requests());
    let secrets = ["DB_PASSWORD", "STRIPE_SECRET_KEY"].map(String::from);
    let mut plain = fake.variables();
    assert_eq!(plain.len(), 32);
    plain.extend(
        secrets
            .iter()
            .map(|k| (k.clone(), parse(&source)[k].clone())),
    );
    assert_eq!(differing(&plain, &source), NONE);
    let on_github: Vec<String> = fake.secret_stamps().into_keys().collect();
    assert_eq!(on_github, secrets);

    let (verified, report) = verify(&s, "local:.env,github");
    assert_eq!(verified.code, 0, "{verified:?}");
    assert_eq!(report["proven"], true, "{report}");

    // Changed in GitHub's UI: a new sealed box under a later stamp.
    let stamp = fake.github_ui_change_secret("DB_PASSWORD");
    let (verified, report) = verify(&s, "local:.env,github");
    assert_eq!(verified.code, 1, "{verified:?}");
    let outside = &report["changed_outside"];
    assert_eq!(outside["DB_PASSWORD"]["github"], stamp.as_str(), "{report}");
    assert!(outside.get("STRIPE_SECRET_KEY").is_none(), "{report}");

    // A fresh state directory (a new CI runner): nothing on record, so both secrets are
    // unknown and parity is unproven.
    let fresh = sandbox(&fake, &source);
    let (verified, report) = verify(&fresh, "local:.env,github");
    assert_eq!(verified.code, 1, "{verified:?}");
    assert_eq!(report["proven"], false, "{report}");
    for key in &secrets {
        assert!(report["unknown"].get(key).is_some(), "{key}: {report}");
    }

    fake.clear_log();
    let skip = [
        "env",
        "sync",
        "--target",
        "github",
        "--unknown",
        "skip",
        "--output",
        "json",
    ];
    let skipped = run(&fresh, &skip);
    assert_eq!(fake.writes(), NONE, "{skipped:?}");

    let sync = run(
        &fresh,
        &["env", "sync", "--target", "github", "--output", "json"],
    );
    assert_eq!(sync.code, 0, "{sync:?}");
    let mut written = changes(&sync);
    written.retain(|(_, op)| op == "write_unknown");
    let expected: Vec<(String, String)> = secrets
        .iter()
        .map(|k| (k.clone(), "write_unknown".into()))
        .collect();
    assert_eq!(written, expected, "{}", sync.stdout);
    let mut puts = fake.writes();
    puts.retain(|w| w.starts_with("PUT "));
    assert_eq!(puts.len(), 2, "{puts:?}");
    let (verified, report) = verify(&fresh, "local:.env,github");
    assert_eq!(verified.code, 0, "{verified:?}");
    assert_eq!(report["proven"], true, "{report}");
}

/// docs: GitHub secret and variable names are case-insensitive and stored uppercase. Sent as
/// `lower_var`, a key came back as `LOWER_VAR`: the sync ended `unverified`, verify reported
/// each key missing and its upper-case twin extra, and every later sync wrote them again. Now
/// the plan refuses such a key, naming the name GitHub keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_names_are_case_insensitive_and_stored_uppercase() {
    let fake = DocsFake::start().await;
    // Stored upper case, a lower-case key could never be judged equal: refused at plan
    // time, naming the name GitHub would show, with nothing written.
    let s = sandbox(&fake, "lower_var=x\nmy_api_token=tok-1\n");
    let sync = run(&s, &["env", "sync", "--target", "github"]);
    assert_eq!(sync.code, 1, "{sync:?}");
    assert!(
        sync.stdout.contains("LOWER_VAR") && sync.stdout.contains("MY_API_TOKEN"),
        "{sync:?}"
    );
    assert_eq!(fake.writes(), NONE);
    // Upper case, as GitHub keeps it: in parity, and a repeat writes nothing.
    let s = sandbox(&fake, "LOWER_VAR=x\nMY_API_TOKEN=tok-1\n");
    let sync = run(&s, &["env", "sync", "--target", "github"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    let (verified, report) = verify(&s, "local:.env,github");
    assert_eq!(verified.code, 0, "{report}");
    fake.clear_log();
    let again = run(&s, &["env", "sync", "--target", "github"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(fake.writes(), NONE);
}

/// docs: one `updated_at` per variable for all its contexts; `PATCH` sets one context's
/// value and moves that stamp. Two contexts of one site synced together and apart: both
/// hold every value, verify is clean, a repeat writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlify_two_contexts_share_one_stamp_without_fighting() {
    let fake = DocsFake::start().await;
    let s = sandbox(&fake, NETLIFY_SOURCE);

    let sync = run(&s, &["env", "sync", "--target", BOTH, "--output", "json"]);
    assert_eq!(sync.code, 0, "{sync:?}\n{:#?}", fake.requests());
    for context in ["production", "deploy-preview"] {
        let held = fake.netlify_values(context);
        assert_eq!(differing(&held, NETLIFY_SOURCE), NONE, "{context}");
    }
    assert_eq!(
        fake.netlify_secret_keys(),
        ["STRIPE_SECRET_KEY", "WEBHOOK_SECRET"]
    );

    let (verified, report) = verify(&s, CHECKED);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert_eq!(report["proven"], true, "{report}");

    fake.clear_log();
    let again = run(&s, &["env", "sync", "--target", BOTH, "--output", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(fake.writes(), NONE);

    // A rotated secret, to production and then to staging in two commands: each PATCH moves
    // the variable's one stamp, which must not read as a change outside Bridge.
    let rotated = NETLIFY_SOURCE.replace("whsec_docs_1", "whsec_docs_2");
    s.file(".env", &rotated);
    let prod = run(&s, &["env", "sync", "--target", PRODUCTION]);
    assert_eq!(prod.code, 0, "{prod:?}");
    let stg = run(
        &s,
        &[
            "env",
            "sync",
            "--target",
            "stg=netlify:context=deploy-preview",
        ],
    );
    assert_eq!(stg.code, 0, "{stg:?}");
    for context in ["production", "deploy-preview"] {
        let held = fake.netlify_values(context);
        assert_eq!(differing(&held, &rotated), NONE, "{context}");
    }
    let (verified, report) = verify(&s, CHECKED);
    assert_eq!(report["changed_outside"], json!({}), "{report}");
    assert_eq!(verified.code, 0, "{verified:?}");
    fake.clear_log();
    let again = run(&s, &["env", "sync", "--target", BOTH]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(fake.writes(), NONE);
}

/// docs: `PUT` replaces every value of a variable; `PATCH` sets one context. A value set only
/// in deploy-preview (on a key the source also has, and on one whose production value it
/// changes) survives a sync to production, and so does it when production's is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlify_sync_to_one_context_leaves_the_others() {
    let fake = DocsFake::start().await;
    fake.netlify_ui_set("FEATURE_X", "deploy-preview", "preview-only");
    fake.netlify_ui_set("LOG_LEVEL", "production", "debug");
    fake.netlify_ui_set("LOG_LEVEL", "deploy-preview", "preview-debug");
    let source = format!("{NETLIFY_SOURCE}FEATURE_X=on\n");
    let s = sandbox(&fake, &source);

    let sync = run(&s, &["env", "sync", "--target", PRODUCTION]);
    assert_eq!(sync.code, 0, "{sync:?}\n{:#?}", fake.requests());
    assert_eq!(differing(&fake.netlify_values("production"), &source), NONE);
    let preview = fake.netlify_values("deploy-preview");
    assert_eq!(preview["FEATURE_X"], "preview-only");
    assert_eq!(preview["LOG_LEVEL"], "preview-debug");
    let writes = fake.writes();
    assert!(writes.iter().all(|w| !w.starts_with("PUT ")), "{writes:#?}");

    // Gone from the source: deleted from production only (one key of five, within the
    // deletion guard), and deploy-preview keeps its own value.
    s.file(".env", NETLIFY_SOURCE);
    let deleted = run(
        &s,
        &["env", "sync", "--target", PRODUCTION, "--allow-deletions"],
    );
    assert_eq!(deleted.code, 0, "{deleted:?}\n{:#?}", fake.requests());
    assert_eq!(
        differing(&fake.netlify_values("production"), NETLIFY_SOURCE),
        NONE
    );
    assert_eq!(
        fake.netlify_values("deploy-preview")["FEATURE_X"],
        "preview-only"
    );
}

/// docs: Netlify returns a secret's values only for dev contexts, so Bridge judges them from
/// its record and the variable's stamp: a change in the UI is `changed_outside`, and from a
/// fresh state the secrets are `unknown`, never equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlify_secret_values_are_write_only() {
    let fake = DocsFake::start().await;
    let s = sandbox(&fake, NETLIFY_SOURCE);
    assert_eq!(run(&s, &["env", "sync", "--target", PRODUCTION]).code, 0);

    let fresh = sandbox(&fake, NETLIFY_SOURCE);
    let (verified, report) = verify(&fresh, "local:.env,netlify:context=production");
    assert_eq!(verified.code, 1, "{verified:?}");
    assert_eq!(report["proven"], false, "{report}");
    let unknown: Vec<&String> = report["unknown"].as_object().unwrap().keys().collect();
    assert_eq!(unknown, ["STRIPE_SECRET_KEY", "WEBHOOK_SECRET"], "{report}");

    fake.netlify_ui_set("WEBHOOK_SECRET", "production", "whsec_docs_2");
    let (verified, report) = verify(&s, "local:.env,netlify:context=production");
    assert_eq!(verified.code, 1, "{verified:?}");
    let outside = &report["changed_outside"];
    assert!(outside["WEBHOOK_SECRET"]["netlify"].is_string(), "{report}");
    assert!(outside.get("STRIPE_SECRET_KEY").is_none(), "{report}");
}
