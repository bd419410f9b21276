use crate::sandbox::{Sandbox, mode, with_examples};

#[test]
fn snapshot_has_the_seed_shape_with_secrets_redacted() {
    let s = with_examples();
    let r = s.run(&[
        "env",
        "export",
        "--source",
        "local:.env",
        "--target",
        "github",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let json = r.json();
    assert_eq!(json["provider"], "github");
    assert_eq!(json["source"], "local:.env");
    assert!(json["synced_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let vars = &json["variables"];
    assert_eq!(vars["LOG_LEVEL"], "info");
    assert_eq!(vars["API_BASE"], "https://shop.example.com/api");
    for secret in ["STRIPE_SECRET_KEY", "SESSION_SECRET", "DATABASE_URL"] {
        let shown = vars[secret].as_str().unwrap_or("");
        assert!(
            shown.starts_with("<redacted:") && shown.len() == 23,
            "{secret}: {shown}"
        );
    }
    assert!(!r.stdout.contains("sk_live"));
    assert!(!r.stdout.contains("s3cr3t-db-pass"));
}

#[test]
fn reveal_and_out_file() {
    let s = Sandbox::new();
    s.file(".env", "API_TOKEN=tok\n");
    let r = s.run(&["env", "export", "--out", "snap.json", "--reveal"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "", "with --out nothing goes to stdout");
    assert_eq!(mode(&s.path("snap.json")), 0o600);
    let snap: serde_json::Value = serde_json::from_str(&s.read("snap.json")).expect("JSON");
    assert_eq!(snap["variables"]["API_TOKEN"], "tok");
    assert_eq!(snap["provider"], "local");
}

#[test]
fn fingerprints_are_stable_across_runs_and_keyed() {
    let s = Sandbox::new();
    s.file(".env", "API_TOKEN=tok\n");
    let a = s.run(&["env", "export"]).json()["variables"]["API_TOKEN"].clone();
    let b = s.run(&["env", "export"]).json()["variables"]["API_TOKEN"].clone();
    assert_eq!(a, b);
    let other = Sandbox::bare();
    other.file(".env", "API_TOKEN=tok\n");
    let c = other.run(&["env", "export"]).json()["variables"]["API_TOKEN"].clone();
    assert_ne!(a, c, "another state dir has another key");
}

/// `--out /dev/stdout` writes into the caller's stdout, a pipe or a file, instead of
/// renaming a new file over whatever stands behind it.
#[test]
fn out_to_dev_stdout_writes_through() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    let r = s.run(&["env", "export", "--out", "/dev/stdout"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\"provider\": \"local\""), "{r:?}");

    let script = format!(
        "exec > out.txt; echo before; {} env export --out /dev/stdout; echo after",
        env!("CARGO_BIN_EXE_genesisctl")
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(s.path("."))
        .status()
        .unwrap();
    assert!(status.success());
    let text = s.read("out.txt");
    assert!(text.starts_with("before\n{"), "{text}");
    assert!(text.trim_end().ends_with("}\nafter"), "{text}");
}
