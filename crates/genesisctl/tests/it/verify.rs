use crate::sandbox::{Sandbox, with_examples};

#[test]
fn report_has_the_seed_shape_and_exit_1_on_drift() {
    let s = with_examples();
    let r = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:.env,production=local:.env.production",
        "--report",
        "parity.json",
        "--audit-md",
        "AUDIT.md",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!("verify_text", r.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&s.read("parity.json")).expect("report is JSON");
    for field in ["verified_at", "has_drift", "conflicts", "summary"] {
        assert!(report.get(field).is_some(), "missing {field}");
    }
    assert_eq!(report["has_drift"], true);
    // Only in production: extra there, not missing from the source.
    assert_eq!(report["missing_in_local"], serde_json::json!([]));
    assert_eq!(
        report["extra_in_production"],
        serde_json::json!(["LEGACY_QUEUE_URL"])
    );
    assert_eq!(report["proven"], true);
    assert_eq!(
        report["missing_in_production"],
        serde_json::json!(["FEATURE_FLAGS", "SENTRY_DSN"])
    );
    assert_eq!(report["conflicts"]["LOG_LEVEL"]["local"], "info");
    assert_eq!(report["conflicts"]["LOG_LEVEL"]["production"], "debug");
    assert_eq!(
        report["conflicts"]["STRIPE_SECRET_KEY"]["production"],
        "<secret>"
    );
    assert_eq!(report["summary"]["total_keys"], 12);
    assert_eq!(report["summary"]["local_count"], 11);
    assert_eq!(report["summary"]["production_count"], 10);
    assert_eq!(report["summary"]["drift_count"], 5);
    let audit = s.read("AUDIT.md");
    assert!(
        audit.contains("| `STRIPE_SECRET_KEY` | equal | different |"),
        "{audit}"
    );
    assert!(!audit.contains("sk_live"), "{audit}");
    assert!(audit.contains("| production | 10 | 2 | 1 |"), "{audit}");
}

#[test]
fn parity_exits_0_and_json_is_the_report() {
    let s = Sandbox::new();
    s.file("a.env", "X=1\nDB_PASSWORD=p\n");
    s.file("b.env", "DB_PASSWORD=p\nX=1\n");
    s.file("c.env", "export X=1\nDB_PASSWORD='p'\n");
    let r = s.run(&[
        "env",
        "verify",
        "--platforms",
        "local:a.env,local:b.env,local:c.env",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let json = r.json();
    assert_eq!(json["has_drift"], false);
    assert_eq!(
        json["platforms"],
        serde_json::json!(["a_env", "b_env", "c_env"])
    );
    assert_eq!(json["summary"]["drift_count"], 0);
}

#[test]
fn places_default_to_source_and_targets_from_config() {
    let mut s = Sandbox::new();
    s.file(".env", "X=1\n");
    s.file("p.env", "X=2\n");
    s.env("ENVSYNC_TARGETS", "prod=local:p.env");
    let r = s.run(&["env", "verify", "--output", "json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["conflicts"]["X"]["prod"], "2");

    let lone = Sandbox::new();
    lone.file(".env", "X=1\n");
    let r = lone.run(&["env", "verify"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("at least two places"), "{}", r.stderr);
}

/// A key a platform manages (`sync.protect`) is `protected` wherever it is: a sync never
/// writes it, so its value there is neither drift nor unproven.
#[test]
fn protected_keys_are_reported_as_such_and_are_not_drift() {
    let s = Sandbox::new();
    s.file(".env", "A=1\nDATABASE_URL=postgres://local\n");
    s.file(
        ".env.prod",
        "A=1\nDATABASE_URL=postgres://managed-by-render\n",
    );
    let places = "local:.env,prod=local:.env.prod";
    let drift = s.run(&["env", "verify", "--platforms", places]);
    assert_eq!(drift.code, 1, "{drift:?}");
    s.file("bridge.toml", "[sync]\nprotect = [\"DATABASE_URL\"]\n");
    let r = s.run(&["env", "verify", "--platforms", places, "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let report = r.json();
    assert_eq!(report["protected"], serde_json::json!(["DATABASE_URL"]));
    assert_eq!(report["has_drift"], false);
    assert_eq!(report["conflicts"], serde_json::json!({}));
    let text = s.run(&["env", "verify", "--platforms", places]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("protected: DATABASE_URL"), "{text:?}");
    assert!(!text.all().contains("managed-by-render"), "{text:?}");
}
