//! The real binary against the Render, Netlify and GitHub emulators: the sync engine's whole
//! path through the real HTTP clients.

use std::collections::BTreeMap;

use bridge_emulators::{EmulatorConfig, Emulators};

use crate::sandbox::{Run, Sandbox};

const SECRET_VALUES: &[&str] = &["sk_live_abc123", "db-pass-987", "whsec_555"];

fn source_env() -> String {
    "# canonical\nLOG_LEVEL=info\nPORT=8080\nPUBLIC_URL=https://shop.example.com\n\
     STRIPE_SECRET_KEY=sk_live_abc123\nDB_PASSWORD=db-pass-987\nWEBHOOK_SECRET=whsec_555\n"
        .to_string()
}

async fn emulators(config: EmulatorConfig) -> Emulators {
    bridge_emulators::start(config)
        .await
        .expect("emulators start")
}

fn sandbox(emu: &Emulators) -> Sandbox {
    let mut s = Sandbox::new();
    s.file(".env", &source_env());
    for (k, v) in emu.exports() {
        s.env(&k, &v);
    }
    s
}

fn no_secret_in(run: &Run) {
    for secret in SECRET_VALUES {
        assert!(
            !run.all().contains(secret),
            "printed {secret}:\n{}",
            run.all()
        );
    }
}

fn expected() -> BTreeMap<String, String> {
    [
        ("LOG_LEVEL", "info"),
        ("PORT", "8080"),
        ("PUBLIC_URL", "https://shop.example.com"),
        ("STRIPE_SECRET_KEY", "sk_live_abc123"),
        ("DB_PASSWORD", "db-pass-987"),
        ("WEBHOOK_SECRET", "whsec_555"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const ALL: &str = "render,netlify,github";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_then_repeat_writes_nothing() {
    let emu = emulators(EmulatorConfig {
        page_size: Some(2),
        ..EmulatorConfig::default()
    })
    .await;
    let s = sandbox(&emu);
    let (render, netlify, github) = (
        emu.render().unwrap(),
        emu.netlify().unwrap(),
        emu.github().unwrap(),
    );

    let diff = s.run(&["env", "diff", "--target", ALL]);
    assert_eq!(diff.code, 1, "{diff:?}");
    no_secret_in(&diff);
    assert_eq!(
        render.stats().writes + netlify.stats().writes + github.stats().writes,
        0
    );

    let sync = s.run(&["env", "sync", "--target", ALL, "--output", "json"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    no_secret_in(&sync);
    let json = sync.json();
    for t in json["targets"].as_array().unwrap() {
        assert_eq!(t["status"], "applied", "{t}");
    }
    assert_eq!(render.vars(), expected());
    assert_eq!(netlify.vars("production"), expected());
    // GitHub: secrets as sealed boxes the emulator decrypts, the rest as variables.
    let mut on_github = github.secrets(None);
    on_github.extend(github.variables(None));
    assert_eq!(on_github, expected());
    assert!(github.secrets(None).contains_key("STRIPE_SECRET_KEY"));
    assert!(github.variables(None).contains_key("LOG_LEVEL"));

    // A repeat costs reads only: no write anywhere, and no public-key fetch on GitHub.
    render.reset_stats();
    netlify.reset_stats();
    github.reset_stats();
    let again = s.run(&["env", "sync", "--target", ALL, "--output", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    for t in again.json()["targets"].as_array().unwrap() {
        assert_eq!(t["status"], "in_sync", "{t}");
    }
    assert_eq!(render.stats().writes, 0);
    assert_eq!(netlify.stats().writes, 0);
    assert_eq!(github.stats().writes, 0);
    // Page size 2: render lists 6 keys in 3 pages (+1 empty page at most).
    assert!(render.stats().requests <= 4, "{:?}", render.stats());
    assert!(
        !github
            .stats()
            .by_route
            .keys()
            .any(|r| r.contains("public-key")),
        "{:?}",
        github.stats()
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_every_platform_is_found_and_healed() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    assert_eq!(s.run(&["env", "sync", "--target", ALL]).code, 0);
    let (render, netlify, github) = (
        emu.render().unwrap(),
        emu.netlify().unwrap(),
        emu.github().unwrap(),
    );

    render.set_var("LOG_LEVEL", "debug");
    netlify.remove_var("PORT");
    // GitHub stamps `updated_at` to the second: a change in the same second as our own write
    // would carry the same stamp and go unseen, so let the clock move on first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    github.set_secret(None, "DB_PASSWORD", "changed-by-hand");

    let verify = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,render,netlify,github",
        "--output",
        "json",
    ]);
    assert_eq!(verify.code, 1, "{verify:?}");
    no_secret_in(&verify);
    let report = verify.json();
    assert_eq!(report["conflicts"]["LOG_LEVEL"]["render"], "debug");
    assert_eq!(report["missing_in_netlify"], serde_json::json!(["PORT"]));
    // The GitHub secret changed out of band: its stamp moved, so it is drift, changed
    // outside Bridge at that stamp (neither "in parity" nor merely unknown).
    assert!(
        report["changed_outside"]["DB_PASSWORD"]["github"]
            .as_str()
            .is_some_and(|stamp| !stamp.is_empty()),
        "{report}"
    );
    assert!(report["unknown"].get("DB_PASSWORD").is_none(), "{report}");
    assert_eq!(report["has_drift"], true);

    let diff = s.run(&["env", "diff", "--target", ALL, "--output", "json"]);
    assert_eq!(diff.code, 1);
    let changes = |label: &str| -> Vec<String> {
        diff.json()["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["label"] == label)
            .unwrap()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}:{}",
                    c["key"].as_str().unwrap(),
                    c["op"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(changes("render"), ["LOG_LEVEL:update"]);
    assert_eq!(changes("netlify"), ["PORT:create"]);
    assert_eq!(changes("github"), ["DB_PASSWORD:update"]);

    assert_eq!(s.run(&["env", "sync", "--target", ALL]).code, 0);
    assert_eq!(render.vars(), expected());
    assert_eq!(netlify.vars("production"), expected());
    assert_eq!(github.secrets(None)["DB_PASSWORD"], "db-pass-987");
    assert_eq!(s.run(&["env", "diff", "--target", ALL]).code, 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_k_writes_then_resume_and_rollback() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    let github = emu.github().unwrap();
    github.set_variable(None, "LOG_LEVEL", "warn");
    let before_vars = github.variables(None);

    github.set_fail_after_writes(Some(2));
    let r = s.run(&["env", "sync", "--target", "github", "--output", "json"]);
    assert_eq!(r.code, 3, "a platform failure: {r:?}");
    no_secret_in(&r);
    assert_eq!(github.stats().writes, 2);

    // Rollback restores exactly what was there. It deletes the 2 keys the failed sync
    // created, of 3 there: over the deletion guard, so it needs --force, like a sync.
    github.set_fail_after_writes(None);
    // Without a terminal to ask on, a rollback needs --yes.
    let unasked = s.run(&["env", "rollback", "--target", "github"]);
    assert_eq!(unasked.code, 2, "{unasked:?}");
    assert!(unasked.stderr.contains("--yes"), "{}", unasked.stderr);
    assert_eq!(github.stats().writes, 2, "an unconfirmed rollback wrote");
    let refused = s.run(&["env", "rollback", "--target", "github", "--yes"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stdout.contains("--force"), "{}", refused.stdout);
    assert_eq!(github.stats().writes, 2, "a refused rollback wrote");
    let back = s.run(&[
        "env", "rollback", "--target", "github", "--force", "--yes", "--output", "json",
    ]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(github.variables(None), before_vars);
    assert!(
        github.secrets(None).is_empty(),
        "{:?}",
        github.secrets(None).keys()
    );

    // Fail again after 2, then resume: the remaining writes happen once each.
    github.reset_stats();
    github.set_fail_after_writes(Some(2));
    assert_eq!(s.run(&["env", "sync", "--target", "github"]).code, 3);
    github.set_fail_after_writes(None);
    let resumed = s.run(&["env", "resume", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let json = resumed.json();
    assert_eq!(json["targets"][0]["already_done"], 2);
    // 6 keys in all, LOG_LEVEL an update: 6 writes, none repeated.
    assert_eq!(github.stats().writes, 6, "{:?}", github.stats());
    let mut on_github = github.secrets(None);
    on_github.extend(github.variables(None));
    assert_eq!(on_github, expected());
    assert_eq!(s.run(&["env", "diff", "--target", "github"]).code, 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storms_are_ridden_out() {
    let emu = emulators(EmulatorConfig {
        rate_limit: Some(5),
        page_size: Some(2),
        ..EmulatorConfig::default()
    })
    .await;
    let s = sandbox(&emu);
    let r = s.run(&["env", "sync", "--target", ALL, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let limited: u64 = [
        emu.render().unwrap().stats(),
        emu.netlify().unwrap().stats(),
        emu.github().unwrap().stats(),
    ]
    .iter()
    .map(|s| s.requests)
    .sum();
    assert!(limited > 0);
    assert_eq!(emu.render().unwrap().vars(), expected());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_settings_and_bad_tokens_say_what_to_fix() {
    let emu = emulators(EmulatorConfig::default()).await;
    let mut s = sandbox(&emu);
    s.env("RENDER_API_TOKEN", "rnd_wrong");
    let r = s.run(&["env", "diff", "--target", "render"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.all().contains("RENDER_API_TOKEN"), "{}", r.all());
    assert!(!r.all().contains("rnd_wrong"));

    let bare = Sandbox::new();
    bare.file(".env", "A=1\n");
    let r = bare.run(&["env", "diff", "--target", "github"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.all().contains("GITHUB_TOKEN"), "{}", r.all());

    let doctor = s.run(&["platforms", "doctor", "--output", "json"]);
    let json = doctor.json();
    let by = |name: &str| {
        json["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("render")["api"], "failed");
    assert_eq!(by("netlify")["api"], "ok");
    assert_eq!(
        by("github")["token_source"],
        "environment variable GITHUB_TOKEN"
    );
    assert!(!doctor.all().contains("ghp_emulator_token"));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_files_apply_exactly_or_refuse_when_stale() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    const PLAN: [&str; 6] = ["env", "plan", "--target", "render", "--out", "plan.json"];
    const DETAILED: [&str; 7] = [
        "env",
        "plan",
        "--target",
        "render",
        "--out",
        "plan.json",
        "--detailed-exitcode",
    ];
    // Writing a plan succeeds, changes or not, so `env plan --out p && env apply p` works.
    let plan = s.run(&PLAN);
    assert_eq!(plan.code, 0, "{plan:?}");
    // `--detailed-exitcode`: 1 when it has changes.
    let detailed = s.run(&DETAILED);
    assert_eq!(detailed.code, 1, "{detailed:?}");
    let text = s.read("plan.json");
    for secret in SECRET_VALUES {
        assert!(!text.contains(secret), "plan file holds {secret}");
    }
    // Someone changes Render after the plan: the plan is refused.
    emu.render().unwrap().set_var("EXTRA", "x");
    let stale = s.run(&["env", "apply", "plan.json"]);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(stale.stderr.contains("stale"), "{}", stale.stderr);
    assert_eq!(emu.render().unwrap().stats().writes, 0);
    // A fresh plan applies.
    assert_eq!(s.run(&PLAN).code, 0);
    let applied = s.run(&["env", "apply", "plan.json"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    // Nothing left to change: 0 with `--detailed-exitcode` too.
    let none = s.run(&DETAILED);
    assert_eq!(none.code, 0, "{none:?}");
    let mut want = expected();
    want.insert("EXTRA".into(), "x".into());
    assert_eq!(emu.render().unwrap().vars(), want);
    emu.shutdown().await;
}

/// A plan the platform's rules reject is "not applied", as a guard's refusal is: exit 1,
/// naming the key and the rule, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_rule_rejection_exits_1_and_names_the_rule() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    s.file(".env", &format!("{}GITHUB_DEPLOY_KEY=abc\n", source_env()));
    let run = s.run(&["env", "sync", "--target", "github"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.all().contains("GITHUB_DEPLOY_KEY"), "{}", run.all());
    assert_eq!(emu.github().unwrap().stats().writes, 0);
    emu.shutdown().await;
}

/// `env rollback` twice on Render returns to where it started (the second undoes the
/// first), never past the first sync to an empty service; each names the apply it undoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_twice_on_render_returns_to_where_it_started() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    let render = emu.render().unwrap();
    assert_eq!(s.run(&["env", "sync", "--target", "render"]).code, 0);
    s.file(
        ".env",
        &source_env().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"),
    );
    assert_eq!(s.run(&["env", "sync", "--target", "render"]).code, 0);
    let after_both = render.vars();

    // A dry run shows what it would write, and writes nothing.
    let writes = render.stats().writes;
    let dry = s.run(&["env", "rollback", "--target", "render", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("update LOG_LEVEL"), "{}", dry.stdout);
    assert!(dry.stdout.contains("undoing journal"), "{}", dry.stdout);
    assert_eq!(render.stats().writes, writes);
    let first = s.run(&[
        "env", "rollback", "--target", "render", "--yes", "--output", "json",
    ]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(render.vars()["LOG_LEVEL"], "info");
    let undone = first.json()["journal"].as_i64().unwrap();

    let second = s.run(&[
        "env", "rollback", "--target", "render", "--yes", "--output", "json",
    ]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(
        render.vars(),
        after_both,
        "the second rollback went past the first"
    );
    assert_eq!(second.json()["journal"], first.json()["written_as"]);
    assert_ne!(second.json()["journal"].as_i64().unwrap(), undone);
    emu.shutdown().await;
}

/// A write-only value Bridge never wrote cannot be compared: parity is unproven, exit 1,
/// naming the key, unless `--allow-unknown` accepts it. Before, this said "in parity", exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_values_leave_parity_unproven() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    s.file(".env", "DB_PASSWORD=db-pass-987\n");
    // Set on GitHub by hand: never written by Bridge, so no fingerprint is on record.
    emu.github()
        .unwrap()
        .set_secret(None, "DB_PASSWORD", "db-pass-987");
    let verify = s.run(&["env", "verify", "--platforms", "local:.env,github"]);
    assert_eq!(verify.code, 1, "{verify:?}");
    assert!(
        verify.stdout.contains("parity unproven"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("unknown: DB_PASSWORD"),
        "{}",
        verify.stdout
    );
    no_secret_in(&verify);
    let json = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,github",
        "--output",
        "json",
    ]);
    assert_eq!(json.json()["proven"], false);
    assert_eq!(json.json()["has_drift"], false);
    let accepted = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,github",
        "--allow-unknown",
    ]);
    assert_eq!(accepted.code, 0, "{accepted:?}");
    emu.shutdown().await;
}

/// From a fresh state directory (a CI runner), a rotated secret that GitHub cannot show back
/// is written anyway (`write_unknown`, "cannot compare: writing"), and then is on record;
/// `--unknown=skip` leaves it and reports it unknown. Before, it stayed unwritten, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_runner_writes_secrets_it_cannot_compare() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    s.file(".env", "DB_PASSWORD=rotated-pass-2\n");
    let github = emu.github().unwrap();
    github.set_secret(None, "DB_PASSWORD", "old-pass-1");

    let skipped = s.run(&[
        "env",
        "sync",
        "--target",
        "github",
        "--unknown",
        "skip",
        "--output",
        "json",
    ]);
    assert_eq!(github.stats().writes, 0, "{skipped:?}");
    assert!(skipped.stdout.contains("\"unknown\""), "{}", skipped.stdout);

    let plan = s.run(&["env", "diff", "--target", "github", "--output", "json"]);
    assert!(plan.stdout.contains("\"write_unknown\""), "{}", plan.stdout);
    let text = s.run(&["env", "diff", "--target", "github"]);
    assert!(
        text.stdout.contains("cannot compare: writing"),
        "{}",
        text.stdout
    );

    let sync = s.run(&["env", "sync", "--target", "github"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(!sync.all().contains("rotated-pass-2") && !text.all().contains("rotated-pass-2"));
    assert_eq!(github.secrets(None)["DB_PASSWORD"], "rotated-pass-2");
    // Now on record: a repeat writes nothing, and parity is proven.
    let writes = github.stats().writes;
    assert_eq!(s.run(&["env", "sync", "--target", "github"]).code, 0);
    assert_eq!(github.stats().writes, writes);
    let verify = s.run(&["env", "verify", "--platforms", "local:.env,github"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    emu.shutdown().await;
}

/// Two deploy contexts of one Netlify site, in one command and in two: no `409`, no
/// context's record spoilt by the other's write (the variable's one `updated_at` moves on
/// either), both verify clean, and a repeat writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_netlify_contexts_of_one_site_live_side_by_side() {
    const BOTH: &str = "netlify:context=production,stg=netlify:context=deploy-preview";
    const CHECKED: &str =
        "local:.env,netlify:context=production,stg=netlify:context=deploy-preview";
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    let netlify = emu.netlify().unwrap();

    let sync = s.run(&["env", "sync", "--target", BOTH, "--output", "json"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    no_secret_in(&sync);
    assert_eq!(netlify.vars("production"), expected());
    assert_eq!(netlify.vars("deploy-preview"), expected());
    let verify = s.run(&["env", "verify", "--platforms", CHECKED, "--output", "json"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert_eq!(verify.json()["proven"], true, "{verify:?}");

    netlify.reset_stats();
    let again = s.run(&["env", "sync", "--target", BOTH, "--output", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    for t in again.json()["targets"].as_array().unwrap() {
        assert_eq!(t["status"], "in_sync", "{t}");
    }
    assert_eq!(netlify.stats().writes, 0);

    // One context at a time: a rotated secret reaches production, then staging, and
    // neither write makes the other context's record look changed outside Bridge.
    s.file(".env", &source_env().replace("whsec_555", "whsec_666"));
    let prod = s.run(&["env", "sync", "--target", "netlify:context=production"]);
    assert_eq!(prod.code, 0, "{prod:?}");
    let stg_only = "stg=netlify:context=deploy-preview";
    let plan = s.run(&["env", "diff", "--target", stg_only, "--output", "json"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    let stg = s.run(&["env", "sync", "--target", stg_only]);
    assert_eq!(stg.code, 0, "{stg:?}");
    let verify = s.run(&["env", "verify", "--platforms", CHECKED, "--output", "json"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    let report = verify.json();
    assert_eq!(report["changed_outside"], serde_json::json!({}), "{report}");
    assert_eq!(report["unknown"], serde_json::json!({}), "{report}");
    netlify.reset_stats();
    let again = s.run(&["env", "sync", "--target", BOTH]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(netlify.stats().writes, 0);
    emu.shutdown().await;
}

/// An apply that failed half-way leaves an unfinished journal: a later sync to that target
/// refuses (exit 1) and names the two ways out; `env resume --discard` gives the journal up,
/// announced and kept in the ledger, and the next sync goes ahead. `env resume` instead
/// finishes it without repeating a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_journal_stops_later_syncs_until_resumed_or_discarded() {
    let emu = emulators(EmulatorConfig::default()).await;
    let s = sandbox(&emu);
    let github = emu.github().unwrap();
    for way_out in ["discard", "resume"] {
        github.reset_stats();
        github.set_fail_after_writes(Some(2));
        let failed = s.run(&["env", "sync", "--target", "github"]);
        assert_eq!(failed.code, 3, "{failed:?}");
        github.set_fail_after_writes(None);
        // Journal 2 is the sync after the discard.
        let journal = if way_out == "discard" { "1" } else { "3" };
        let refused = s.run(&["env", "sync", "--target", "github"]);
        assert_eq!(refused.code, 1, "{refused:?}");
        assert!(
            refused
                .stderr
                .contains(&format!("journal {journal} left unfinished"))
                && refused.stderr.contains("genesisctl env resume")
                && refused.stderr.contains(&format!("--discard {journal}")),
            "{refused:?}"
        );
        if way_out == "discard" {
            let discard = s.run(&["env", "resume", "--discard", journal]);
            assert_eq!(discard.code, 0, "{discard:?}");
            assert!(discard.stdout.contains("will never be made"), "{discard:?}");
            let again = s.run(&["env", "resume", "--discard", journal]);
            assert_eq!(again.code, 2, "{again:?}");
            let events = s.run(&[
                "events",
                "tail",
                "--topic",
                "envsync.complete",
                "--output",
                "json",
            ]);
            assert!(
                events
                    .stdout
                    .lines()
                    .any(|l| l.contains("\"action\":\"discard\"") && l.contains("\"journal\":1")),
                "{events:?}"
            );
            let ledger = s.run(&["ledger", "verify"]);
            assert_eq!(ledger.code, 0, "{ledger:?}");
            // The discard left the platform half-written: a sync brings it to the source.
            let sync = s.run(&["env", "sync", "--target", "github"]);
            assert_eq!(sync.code, 0, "{sync:?}");
            // Wipe GitHub for the second round.
            for k in expected().keys() {
                github.remove_secret(None, k);
                github.remove_variable(None, k);
            }
        } else {
            github.reset_stats();
            let resumed = s.run(&["env", "resume", "--yes"]);
            assert_eq!(resumed.code, 0, "{resumed:?}");
            // Four of six were left; none of the two done is sent again.
            assert_eq!(github.stats().writes, 4, "{:?}", github.stats());
            let verify = s.run(&["env", "verify", "--platforms", "local:.env,github"]);
            assert_eq!(verify.code, 0, "{verify:?}");
        }
    }
    emu.shutdown().await;
}

/// Two `env sync` on one state directory at once: the second waits for the first's lock,
/// saying for whom, then finds nothing left to write; neither reports `unverified`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_on_one_state_directory_take_turns() {
    let emu = emulators(EmulatorConfig {
        latency: std::time::Duration::from_millis(30),
        ..EmulatorConfig::default()
    })
    .await;
    let s = sandbox(&emu);
    let spawn = || {
        s.command(&["env", "sync", "--target", "github"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawns")
    };
    let first = spawn();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let second = spawn();
    let outputs: Vec<_> = [first, second]
        .into_iter()
        .map(|c| c.wait_with_output().expect("waits"))
        .collect();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
        assert!(!text(o).contains("unverified"), "{}", text(o));
    }
    let waited = text(&outputs[1]);
    assert!(
        waited.contains("waiting for github:") && waited.contains("is applying to it"),
        "{waited}"
    );
    assert!(waited.contains("in sync"), "{waited}");
    emu.shutdown().await;
}

/// `--lock-timeout` bounds the wait for another apply's lock: past it, exit 3, naming the
/// holder and the flag; nothing written by the waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_the_lock_timeout_exits_3_naming_the_holder() {
    let emu = emulators(EmulatorConfig {
        latency: std::time::Duration::from_millis(40),
        ..EmulatorConfig::default()
    })
    .await;
    let s = sandbox(&emu);
    let first = s
        .command(&["env", "sync", "--target", "github"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawns");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let second = s.run(&[
        "--lock-timeout",
        "100ms",
        "env",
        "sync",
        "--target",
        "github",
    ]);
    assert_eq!(second.code, 3, "{second:?}");
    assert!(
        second
            .stderr
            .contains("is being applied by another process")
            && second.stderr.contains("waited 100ms")
            && second.stderr.contains("--lock-timeout"),
        "{second:?}"
    );
    let first = first.wait_with_output().expect("waits");
    assert_eq!(first.status.code(), Some(0));
    let bad = s.run(&[
        "--lock-timeout",
        "soon",
        "env",
        "diff",
        "--target",
        "github",
    ]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("expected a duration"), "{bad:?}");
    emu.shutdown().await;
}

/// One source to two Render services, two Netlify sites and two environments of each of
/// two GitHub repositories, all held by the same emulators: each place ends up with every
/// key, and nothing written to one shows up in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_to_two_services_and_two_repositories_environments() {
    let emu = emulators(EmulatorConfig {
        netlify_sites: vec!["site-prod".into(), "site-stg".into()],
        render_services: vec!["srv-prod".into(), "srv-stg".into()],
        github_repositories: vec!["org/app".into(), "org/api".into()],
        ..EmulatorConfig::default()
    })
    .await;
    let s = sandbox(&emu);
    let targets = "prod=render:service=srv-prod,stg=render:service=srv-stg,\
        web_prod=netlify:site=site-prod,web_stg=netlify:site=site-stg,\
        app_prod=github:repository=org/app:environment=production,\
        app_stg=github:repository=org/app:environment=staging,\
        api_prod=github:repository=org/api:environment=production,\
        api_stg=github:repository=org/api:environment=staging";
    let sync = s.run(&["env", "sync", "--target", targets, "--output", "json"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    no_secret_in(&sync);
    let json = sync.json();
    let reported = json["targets"].as_array().unwrap();
    assert_eq!(reported.len(), 8, "{json}");
    for t in reported {
        assert_eq!(t["status"], "applied", "{t}");
    }

    let (render, github) = (emu.render().unwrap(), emu.github().unwrap());
    for id in ["srv-prod", "srv-stg"] {
        assert_eq!(render.service(id).unwrap().vars(), expected(), "{id}");
    }
    assert!(
        render.vars().is_empty(),
        "the default service was not a target"
    );
    let netlify = emu.netlify().unwrap();
    for id in ["site-prod", "site-stg"] {
        assert_eq!(
            netlify.site(id).unwrap().vars("production"),
            expected(),
            "{id}"
        );
    }
    assert!(netlify.vars("production").is_empty());
    for repo in ["org/app", "org/api"] {
        let repo = github.repository(repo).unwrap();
        for env in ["production", "staging"] {
            let mut held = repo.secrets(Some(env));
            held.extend(repo.variables(Some(env)));
            assert_eq!(held, expected(), "{} {env}", repo.full_name());
            assert!(repo.secrets(Some(env)).contains_key("STRIPE_SECRET_KEY"));
        }
        assert!(repo.secrets(None).is_empty() && repo.variables(None).is_empty());
    }
    assert!(github.secrets(None).is_empty() && github.variables(None).is_empty());
    let written: Vec<String> = render.write_log().into_iter().map(|w| w.path).collect();
    assert!(
        written.iter().any(|p| p.contains("/srv-prod/"))
            && written.iter().any(|p| p.contains("/srv-stg/")),
        "{written:?}"
    );

    // A value changed on one service only is drift there only.
    render
        .service("srv-stg")
        .unwrap()
        .set_var("LOG_LEVEL", "debug");
    render.reset_stats();
    github.reset_stats();
    let again = s.run(&["env", "sync", "--target", targets, "--output", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let json = again.json();
    for t in json["targets"].as_array().unwrap() {
        let want = if t["label"] == "stg" {
            "applied"
        } else {
            "in_sync"
        };
        assert_eq!(t["status"], want, "{t}");
    }
    assert_eq!(render.service("srv-stg").unwrap().vars(), expected());
    assert_eq!(render.stats().writes, 1);
    assert_eq!(github.stats().writes, 0);
    emu.shutdown().await;
}

/// `emulate`'s instance flags: an emulator that is not started cannot hold instances, and
/// an id that cannot be a path segment is refused before anything is served.
#[test]
fn emulate_refuses_instances_it_cannot_serve() {
    let s = Sandbox::new();
    let not_started = s.run(&["emulate", "--platforms", "render", "--netlify-sites", "s"]);
    assert_eq!(not_started.code, 2, "{not_started:?}");
    assert!(
        not_started.stderr.contains("--netlify-sites")
            && not_started.stderr.contains("--platforms"),
        "{not_started:?}"
    );
    let bad = s.run(&["emulate", "--github-repositories", "no-slash"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("owner/repo"), "{bad:?}");
    assert!(!bad.stdout.contains("ready"), "{bad:?}");
}
