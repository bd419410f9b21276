//! The OpenAPI document: valid, complete (every route, no more), and true — every JSON answer
//! the server gives validates against the schema the document declares for it.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use bridge_server::api::{Answer, routes};
use serde_json::Value;

use crate::harness::{Harness, concrete};

fn document() -> Value {
    bridge_server::openapi::document(bridge_server::api::routes(), "test")
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.strip_prefix('#').expect("only local references");
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

fn walk_refs(doc: &Value, value: &Value, seen: &mut usize) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                resolve(doc, r);
                *seen += 1;
            }
            for v in map.values() {
                walk_refs(doc, v, seen);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk_refs(doc, v, seen)),
        _ => {}
    }
}

#[test]
fn the_document_is_structurally_valid_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(["get", "post", "put", "delete", "patch"].contains(&method.as_str()));
            let id = op["operationId"].as_str().unwrap();
            assert!(
                operation_ids.insert(id.to_owned()),
                "duplicate operationId {id}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for (code, response) in responses {
                assert!(code.parse::<u16>().is_ok(), "{code}");
                assert!(response["description"].is_string());
            }
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| {
                            assert_eq!(p["required"], true, "path params are required");
                            p["name"].as_str().unwrap()
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(templated, declared, "{method} {path}: path parameters");
            let security = op["security"].as_array().unwrap();
            for requirement in security {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(doc["components"]["securitySchemes"][scheme].is_object());
                }
            }
        }
    }
    let mut refs = 0;
    walk_refs(&doc, &doc, &mut refs);
    assert!(refs > 10, "schemas are shared through $ref ({refs})");
}

#[test]
fn the_document_lists_every_route_and_no_other() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, served);
    for path in [
        "/envsync/health",
        "/envsync/dry-run/{provider}",
        "/envsync/apply/{provider}",
        "/envsync/apply-all",
        "/vault/secret",
        "/genesis/introspection/health",
        "/genesis/events",
        "/genesis/stream",
        "/genesis/stats",
        "/parity",
        "/metrics",
        "/openapi.json",
        "/",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "the OpenAPI document lacks {path}"
        );
    }
}

/// A small JSON Schema 2020-12 checker: enough for the schemas schemars writes.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(Value::String(r)) = schema.get("$ref") {
        return check(doc, resolve(doc, r), value, at);
    }
    if schema == &Value::Bool(true) || schema.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            if options.iter().any(|s| check(doc, s, value, at).is_ok()) {
                return Ok(());
            }
            return Err(format!("{at}: matches none of {key}"));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !ok {
            return Err(format!("{at}: {actual} where the schema says {types:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Value::Object(map) = value {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap();
            if !map.contains_key(name) {
                return Err(format!("{at}: missing required {name}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            match properties.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, v, &format!("{at}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{at}: {k} is not in the schema"));
                    }
                    Some(s) if s.is_object() => check(doc, s, v, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            check(doc, item, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_json_answer_matches_its_documented_schema() {
    let h = Harness::new().await;
    h.seed_ledger().await;
    let doc = document();
    let mut checked = 0;
    for route in routes() {
        if !matches!(route.answer, Answer::Json(_)) {
            continue;
        }
        let (status, body) = h
            .call(concrete(route.method, route.path, Some(&h.admiral)))
            .await;
        let code = status.as_u16().to_string();
        let op = &doc["paths"][route.path][route.method.to_lowercase()];
        let schema = &op["responses"][&code]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{} {} answered {code}, which the document does not declare",
            route.method,
            route.path
        );
        check(&doc, schema, &body, "$")
            .unwrap_or_else(|e| panic!("{} {}: {e}\n{body}", route.method, route.path));
        checked += 1;
    }
    // Error answers match the error schema too.
    let (status, body) = h
        .call(concrete("POST", "/envsync/apply/{provider}", None))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let schema = &doc["paths"]["/envsync/apply/{provider}"]["post"]["responses"]["401"]["content"]
        ["application/json"]["schema"];
    check(&doc, schema, &body, "$").unwrap();
    assert!(checked >= 15, "{checked}");
}

#[tokio::test]
async fn the_server_serves_the_document() {
    let h = Harness::new().await;
    let (status, body) = h
        .call(concrete("GET", "/openapi.json", Some(&h.observer)))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The served document lists the providers this server has.
    let providers = ["render".to_owned(), "netlify".to_owned()];
    let served = bridge_server::openapi::document_for(routes(), "test", &providers);
    assert_eq!(body["paths"], served["paths"]);
    let provider = &body["paths"]["/envsync/apply/{provider}"]["post"]["parameters"][0]["schema"];
    assert_eq!(provider["enum"], serde_json::json!(["render", "netlify"]));
}

/// The reference validator (Python's `openapi-spec-validator`, which `.ci/run` installs) must
/// accept the document. Skipped where it is missing, unless `BRIDGE_REQUIRE_SERVICES=1`.
#[test]
fn the_reference_validator_accepts_the_document() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "python3 with openapi-spec-validator is required (pip install openapi-spec-validator)"
        );
        eprintln!("skipped: python3 with openapi-spec-validator is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, document().to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_document_is_snapshotted() {
    insta::assert_json_snapshot!("openapi", document());
}
