use crate::sandbox::Sandbox;

const SCHEMA: &str = r#"
[schema]
min_keys = 3

[schema.keys.DATABASE_URL]
required = true
format = "url"
description = "primary database"

[schema.keys.PORT]
format = "port"

[schema.keys.LOG_LEVEL]
format = "enum"
values = ["debug", "info", "warn", "error"]

[schema.keys.STRIPE_SECRET_KEY]
format = "regex"
pattern = "sk_(live|test)_[A-Za-z0-9]+"
"#;

#[test]
fn violations_are_listed_without_values_and_exit_1() {
    let s = Sandbox::new();
    s.file("bridge.toml", SCHEMA);
    s.file(
        ".env",
        "PORT=99999\nLOG_LEVEL=verbose\nSTRIPE_SECRET_KEY=pk_live_x\n",
    );
    let r = s.run(&["env", "check"]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!("check_violations", r.stdout);
    assert!(!r.all().contains("pk_live_x"));

    let r = s.run(&["env", "check", "--output", "json"]);
    let json = r.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["violations"].as_array().map(Vec::len), Some(4));
}

#[test]
fn a_conforming_source_passes() {
    let s = Sandbox::new();
    s.file("bridge.toml", SCHEMA);
    s.file(
        "prod.env",
        "DATABASE_URL=postgres://db/x\nPORT=8080\nLOG_LEVEL=info\nSTRIPE_SECRET_KEY=sk_test_abc\n",
    );
    let r = s.run(&["env", "check", "--from", "local:prod.env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("satisfies the schema (4 keys)"),
        "{}",
        r.stdout
    );
}

#[test]
fn missing_or_broken_schema_is_a_config_error() {
    let s = Sandbox::new();
    s.file(".env", "A=1\n");
    let r = s.run(&["env", "check"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("add a [schema] table"), "{}", r.stderr);

    s.file(
        "bridge.toml",
        "[schema.keys.X]\nformat = \"regex\"\npattern = \"(\"\n",
    );
    let r = s.run(&["env", "check"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("schema.keys.X: `pattern` is not a valid regex"),
        "{}",
        r.stderr
    );
}
