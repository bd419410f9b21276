//! The document says what the server checks, in the spirit of schemathesis and without a
//! network: for every documented parameter and body field, values the document calls valid
//! (each boundary, each `enum` word, and for a bare type whatever that type allows) are not
//! refused as malformed (400/422), and values it calls invalid (just past each bound, a word
//! not in the `enum`, a string against the `pattern` or `format`, a missing required field,
//! an unknown field where `additionalProperties` is false) are refused with 400 or 422 (404
//! for a path segment that names nothing) and the `{error, detail}` shape. Every status
//! answered is one the operation documents.
//!
//! The values come from the document itself, so a constraint added to the server and not to
//! the document fails here (the server refuses a value the document allows), and so does a
//! constraint stated in the document that the server does not keep.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use crate::harness::{Harness, concrete};

/// Examples for each `pattern` the document uses: (matching, not matching). A pattern that
/// is not here fails the test, so that every pattern is exercised.
fn pattern_examples(pattern: &str) -> (Vec<String>, Vec<String>) {
    let long = "a".repeat(255);
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // The patterns as written here, not imported: a changed pattern needs new examples.
    let topic_pattern = r"^(((\*|[a-z0-9_]+)\.)*(\*|>|[a-z0-9_]+))?$";
    let topic = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$";
    if pattern == topic_pattern {
        let mut good = strings(&["", ">", "*", "envsync.*", "deploy.>", "a.*.b_2", "x"]);
        good.push(long);
        (
            good,
            strings(&["Deploy", "a..b", ">.a", "a.>.b", ".a", "a.", "a b", "é"]),
        )
    } else if pattern == topic {
        let mut good = strings(&["deploy.render", "x", "a_1.b2.c"]);
        good.push(long);
        (
            good,
            strings(&["", "Deploy", "a..b", "a.*", "deploy.>", ".a", "a b"]),
        )
    } else if pattern == "^_genesis_" {
        // A `propertyNames: {not: {pattern}}`: names it matches are the refused ones.
        (
            strings(&["_genesis_seq", "_genesis_"]),
            strings(&["ok", "genesis_x"]),
        )
    } else {
        panic!("no examples for the pattern {pattern:?}: add them to pattern_examples");
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(
            doc,
            doc.pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {r}")),
        ),
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// Values the schema calls valid, and values it calls invalid, as JSON.
fn values(schema: &Value) -> (Vec<Value>, Vec<Value>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    let t = types(schema);
    if let Some(words) = schema.get("enum").and_then(Value::as_array) {
        good.extend(words.iter().cloned());
        bad.push(json!("zzz-not-listed"));
        if t.contains(&"string") && !t.contains(&"null") {
            bad.push(json!(""));
        }
    } else if t.contains(&"integer") {
        let min = schema.get("minimum").and_then(Value::as_u64);
        let max = schema.get("maximum").and_then(Value::as_u64);
        good.push(json!(min.unwrap_or(0)));
        good.push(json!(min.unwrap_or(0) + 1));
        match max {
            Some(max) => {
                good.push(json!(max));
                bad.push(json!((u128::from(max) + 1).to_string()));
            }
            // A bare integer: the largest the server could take.
            None => good.push(json!(u64::MAX)),
        }
        match min {
            Some(0) | None => bad.push(json!(-1)),
            Some(min) => bad.push(json!(min - 1)),
        }
        bad.push(json!("1.5"));
        bad.push(json!("ten"));
    } else if t.contains(&"string") {
        let min_len = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        let max_len = schema.get("maxLength").and_then(Value::as_u64);
        let pattern = schema.get("pattern").and_then(Value::as_str);
        let format = schema.get("format").and_then(Value::as_str);
        match (pattern, format) {
            (Some(p), _) => {
                let (g, b) = pattern_examples(p);
                good.extend(
                    g.into_iter()
                        .filter(|s| s.len() as u64 >= min_len)
                        .map(Value::from),
                );
                bad.extend(b.into_iter().map(Value::from));
            }
            (None, Some("date-time")) => {
                good.extend([
                    json!("2026-01-31T12:00:00Z"),
                    json!("2026-01-31T12:00:00.250+02:00"),
                ]);
                bad.extend([json!("yesterday"), json!("2026-13-01T00:00:00Z"), json!("")]);
            }
            (None, Some(other)) => panic!("no examples for the format {other}"),
            (None, None) => {
                // A bare string: anything goes, so these must go.
                good.extend([json!("x"), json!("Not A Topic! é")]);
                if min_len == 0 {
                    good.push(json!(""));
                } else {
                    good.push(json!("x".repeat(min_len as usize)));
                    bad.push(json!("x".repeat(min_len as usize - 1)));
                }
            }
        }
        if let Some(max) = max_len {
            // Pattern-valid apart from its length.
            bad.push(json!("a".repeat(max as usize + 1)));
        }
    }
    if t.contains(&"null") {
        good.push(Value::Null);
    }
    (good, bad)
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parts of a request that the test varies.
#[derive(Clone)]
struct Case {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Case {
    /// The request the harness knows to be valid for this route.
    fn base(method: &str, template: &str) -> Self {
        let req = concrete(method, template, None);
        let path = req.uri().path().to_owned();
        let query = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|q| !q.is_empty())
            .filter_map(|q| q.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let body = match (method, template) {
            ("POST", "/genesis/events") => {
                Some(json!({"topic": "deploy.render", "payload": {"ok": true}}))
            }
            ("POST", "/engines/autonomy/deployment/event") => Some(json!({
                "platform": "render", "event_type": "start", "status": "building",
                "metadata": {"deploy_id": "dep-1"}
            })),
            ("POST", "/webhooks/deployment/{platform}") => Some(json!({"zen": "ping"})),
            _ => None,
        };
        Self {
            method: method.to_owned(),
            path,
            query,
            headers: Vec::new(),
            body,
        }
    }

    fn set_query(&mut self, name: &str, value: Option<String>) {
        self.query.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.query.push((name.to_owned(), encode(&v)));
        }
    }

    fn request(&self, token: &str) -> Request<Body> {
        let mut uri = self.path.clone();
        if !self.query.is_empty() {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            uri = format!("{uri}?{}", q.join("&"));
        }
        let mut builder = Request::builder()
            .method(self.method.as_str())
            .uri(uri)
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        match &self.body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        }
    }
}

struct Run<'a> {
    h: &'a Harness,
    doc: &'a Value,
    failures: Vec<String>,
    cases: usize,
}

impl Run<'_> {
    /// Sends `case`; `valid` says what the document calls it. A stream's success is not read.
    async fn check(&mut self, template: &str, case: &Case, valid: bool, what: &str) {
        self.cases += 1;
        let op = &self.doc["paths"][template][case.method.to_lowercase()];
        let response = self.h.send(case.request(&self.h.admiral)).await;
        let status = response.status();
        let label = format!("{} {template} {what}", case.method);
        if !op["responses"][status.as_u16().to_string()].is_object() {
            self.failures.push(format!(
                "{label}: answered {status}, which the document does not declare"
            ));
        }
        let streaming = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body: Value = if streaming {
            Value::Null
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let malformed = matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
        );
        if valid && malformed {
            self.failures.push(format!(
                "{label}: the document calls it valid, the server refused it {status}: {}",
                body["detail"]
            ));
        }
        if !valid {
            let in_path = what.starts_with("path ");
            let refused = malformed || (in_path && status == StatusCode::NOT_FOUND);
            if !refused {
                self.failures.push(format!(
                    "{label}: the document calls it invalid, the server answered {status}"
                ));
            } else if !(body["error"].is_string() && body["detail"].is_string()) {
                self.failures.push(format!(
                    "{label}: {status} without {{error, detail}}: {body}"
                ));
            }
        }
    }
}

async fn run(h: &Harness, doc: &Value) -> (usize, Vec<String>) {
    let mut run = Run {
        h,
        doc,
        failures: Vec::new(),
        cases: 0,
    };
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let base = Case::base(&method, template);
            run.check(template, &base, true, "as the harness sends it")
                .await;
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                let place = param["in"].as_str().unwrap();
                let (good, bad) = values(resolve(doc, &param["schema"]));
                let tried = good
                    .iter()
                    .map(|v| (v, true))
                    .chain(bad.iter().map(|v| (v, false)));
                for (value, valid) in tried {
                    let text = as_text(value);
                    let mut case = base.clone();
                    // The companion bound of a pair stays consistent: 0 < from <= to.
                    if template == "/ledger/consistency" {
                        let other = if name == "from" { "to" } else { "from" };
                        let companion = match (name, value.as_u64()) {
                            ("from", Some(n)) => n.max(1).to_string(),
                            _ => "1".to_owned(),
                        };
                        case.set_query(other, Some(companion));
                    }
                    match place {
                        "path" => {
                            let segment = format!("{{{name}}}");
                            case.path = template.replace(&segment, &encode(&text));
                            for (k, v) in [("{provider}", "render"), ("{platform}", "github")] {
                                case.path = case.path.replace(k, v);
                            }
                            case.path = case.path.replace("{index}", "0");
                        }
                        "query" => case.set_query(name, Some(text.clone())),
                        "header" => case.headers.push((name.to_owned(), text.clone())),
                        other => panic!("parameter in {other}"),
                    }
                    if place == "path" && text.is_empty() {
                        continue; // an empty segment is another path
                    }
                    run.check(template, &case, valid, &format!("{place} {name}={text:?}"))
                        .await;
                }
                if place == "query" && param["required"] == true {
                    let mut case = base.clone();
                    case.set_query(name, None);
                    run.check(template, &case, false, &format!("query {name} left out"))
                        .await;
                }
            }
            let body_schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if body_schema.is_object() {
                check_body(&mut run, template, &base, resolve(doc, body_schema)).await;
            }
        }
    }
    (run.cases, run.failures)
}

async fn check_body(run: &mut Run<'_>, template: &str, base: &Case, schema: &Value) {
    let Some(Value::Object(body)) = &base.body else {
        return;
    };
    let doc = run.doc;
    let with = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut case = base.clone();
        let mut b = body.clone();
        f(&mut b);
        case.body = Some(Value::Object(b));
        case
    };
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        let case = with(&|b| {
            b.remove(name);
        });
        run.check(template, &case, false, &format!("body without {name}"))
            .await;
    }
    if schema["additionalProperties"] == false {
        let case = with(&|b| {
            b.insert("zzz_unknown".into(), json!(1));
        });
        run.check(template, &case, false, "body with an unknown field")
            .await;
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let property = resolve(doc, property);
        let (good, bad) = values(property);
        for (value, valid) in good
            .iter()
            .map(|v| (v, true))
            .chain(bad.iter().map(|v| (v, false)))
        {
            let case = with(&|b| {
                b.insert(name.clone(), value.clone());
            });
            let shown: String = value.to_string().chars().take(40).collect();
            run.check(template, &case, valid, &format!("body {name}={shown}"))
                .await;
        }
        if let Some(not) = property["propertyNames"]["not"]["pattern"].as_str() {
            let (refused, allowed) = pattern_examples(not);
            for (key, valid) in allowed
                .iter()
                .map(|k| (k, true))
                .chain(refused.iter().map(|k| (k, false)))
            {
                let case = with(&|b| {
                    b.insert(name.clone(), json!({ key.as_str(): 1 }));
                });
                run.check(template, &case, valid, &format!("body {name} key {key:?}"))
                    .await;
            }
        }
    }
}

/// The document this server serves (its providers listed) holds for every parameter and
/// body field: what it calls valid is taken, what it calls invalid is refused.
#[tokio::test]
async fn the_server_checks_what_the_document_states() {
    let h = Harness::new().await;
    h.seed_ledger().await;
    let (status, doc) = h
        .call(concrete("GET", "/openapi.json", Some(&h.observer)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (cases, failures) = run(&h, &doc).await;
    eprintln!("{cases} cases, {} disagreeing", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases disagree with the document:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases > 150, "{cases}");
}

/// The same for the document of any server (`openapi::document`), whose providers are any
/// name.
#[tokio::test]
async fn the_server_checks_what_the_generic_document_states() {
    let h = Harness::new().await;
    h.seed_ledger().await;
    let doc = bridge_server::openapi::document(bridge_server::api::routes(), "test");
    let (cases, failures) = run(&h, &doc).await;
    assert!(
        failures.is_empty(),
        "{} of {cases} cases disagree with the document:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
