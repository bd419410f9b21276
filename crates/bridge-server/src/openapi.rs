//! The OpenAPI 3.1 document, built from the route table ([`crate::api::routes`]) and the
//! JSON schemas of the answer types (schemars, JSON Schema 2020-12 as OpenAPI 3.1 uses it).
//! Nothing here is written by hand per route, so the document cannot fall behind the server.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::route::{Access, Answer, In, ParamType, Route, common_errors, error_schema};

/// The whole document, for any server: a provider is any name (the server answers 404 for
/// one it does not have).
pub fn document(routes: &[Route], version: &str) -> Value {
    document_for(routes, version, &[])
}

/// The document a server with these configured `providers` serves: its `{provider}`
/// parameters list them as an `enum`.
pub fn document_for(routes: &[Route], version: &str, providers: &[String]) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let error_schema = error_schema(&mut generator).to_value();

    let mut paths = Map::new();
    for route in routes {
        let operation = operation(route, &mut generator, &error_schema, providers);
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(route.method.to_ascii_lowercase(), operation);
        }
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Bridge control plane",
            "version": version,
            "description": "Keep environment variables and secrets identical across Render, \
                            Netlify, GitHub Actions and .env files: plan, apply, prove. Errors \
                            are `{error, detail}`, on every route and for what the HTTP layer \
                            answers itself: 400 (a request it cannot parse), 414 (a URI over \
                            64 KiB), 431 (a head too large), 503 (a connection over \
                            `server.max_connections`). Authenticate with `Authorization: Bearer` and \
                            a token from `genesisctl token create --role ROLE`; each operation's \
                            `x-bridge-role` names the least role it needs.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [{ "url": "/" }],
        "tags": [
            { "name": "envsync", "description": "Plan and apply syncs; parity." },
            { "name": "vault", "description": "Tokens for other Bridges' discovery chains." },
            { "name": "genesis", "description": "The event bus: history, publishing, live stream." },
            { "name": "ledger", "description": "The tamper-evident Truth ledger." },
            { "name": "deploy", "description": "Deploy webhooks and events, and their history." },
            { "name": "system", "description": "Metrics, this document, the dashboard." }
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `genesisctl token create --role admiral|operator|observer`."
                }
            }
        }
    })
}

fn operation(
    route: &Route,
    generator: &mut schemars::SchemaGenerator,
    error: &Value,
    providers: &[String],
) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), route.operation_id.into());
    op.insert("summary".into(), route.summary.into());
    if !route.description.is_empty() {
        op.insert("description".into(), route.description.into());
    }
    op.insert("tags".into(), json!([route.tag]));
    match route.access {
        Access::Public => {
            op.insert("security".into(), json!([]));
            op.insert("x-bridge-role".into(), "public".into());
        }
        Access::Signature => {
            op.insert("security".into(), json!([]));
            op.insert("x-bridge-role".into(), "signature".into());
        }
        Access::Role(role) => {
            op.insert("security".into(), json!([{ "bearer": [] }]));
            op.insert("x-bridge-role".into(), role.as_str().into());
        }
    }
    if !route.params.is_empty() {
        let params: Vec<Value> = route
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location { In::Path => "path", In::Query => "query", In::Header => "header" },
                    "required": p.required,
                    "description": p.description,
                    "schema": param_schema(p.kind, providers),
                })
            })
            .collect();
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = route.body {
        op.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "application/json": { "schema": body(generator).to_value() } }
            }),
        );
    }
    let mut responses = Map::new();
    let success = match route.answer {
        Answer::Json(schema) => json!({
            "description": "OK",
            "content": { "application/json": { "schema": schema(generator).to_value() } }
        }),
        Answer::Text(media) => json!({
            "description": "OK",
            "content": { media: { "schema": { "type": "string" } } }
        }),
        Answer::EventStream => json!({
            "description": "A stream of server-sent events: `id` = _genesis_seq, `event` = topic, `data` = the envelope as JSON.",
            // OpenAPI 3.1 has the schema of an event stream describe each event.
            "content": { "text/event-stream": { "schema": {
                "type": "object",
                "required": ["id", "event", "data"],
                "properties": {
                    "id": { "type": "string", "pattern": "^[0-9]+$", "description": "_genesis_seq" },
                    "event": { "type": "string", "description": "the topic" },
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "description": "the envelope"
                    }
                }
            } } }
        }),
    };
    responses.insert(route.success.to_string(), success.clone());
    for code in common_errors(route) {
        if code < 400 {
            // Another success (a duplicate webhook delivery): same answer type.
            responses.insert(code.to_string(), success.clone());
            continue;
        }
        responses.insert(
            code.to_string(),
            json!({
                "description": error_description(code),
                "content": { "application/json": { "schema": error } }
            }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// What the server checks of a parameter of this type, as a schema.
fn param_schema(kind: ParamType, providers: &[String]) -> Value {
    match kind {
        ParamType::String { min_len: 0 } => json!({ "type": "string" }),
        ParamType::String { min_len } => json!({ "type": "string", "minLength": min_len }),
        ParamType::Integer { min, max } => {
            json!({ "type": "integer", "minimum": min, "maximum": max })
        }
        ParamType::Enum(words) => json!({ "type": "string", "enum": words }),
        ParamType::TopicPattern => json!({
            "type": "string",
            "maxLength": bridge_genesis::bus::topic::MAX_TOPIC_LEN,
            "pattern": crate::routes::genesis::TOPIC_PATTERN_PATTERN,
        }),
        ParamType::DateTime => json!({ "type": "string", "format": "date-time" }),
        ParamType::Provider if providers.is_empty() => json!({ "type": "string", "minLength": 1 }),
        ParamType::Provider => json!({ "type": "string", "enum": providers }),
    }
}

fn error_description(code: u16) -> &'static str {
    match code {
        400 => "Bad request: a malformed parameter or body",
        401 => "No valid bearer token",
        403 => "The token's role is not enough, or the gate or allow-list refused",
        404 => "Not found: no such provider, platform, entry or key",
        409 => "Busy: another apply holds the place's lock past the lock timeout",
        413 => {
            "The body is over the server's limit: `server.max_body_bytes` (256 KiB by default), for the deploy webhooks `server.webhook_max_body_bytes` (1 MiB); a route that takes no body refuses one over the limit too, before it runs"
        }
        415 => "The body is not JSON",
        422 => "The body is JSON of the wrong shape",
        502 => "A platform failed",
        503 => {
            "Timed out (`server.request_timeout`), the store is unavailable, a webhook's secret is not set, or the server is at `server.max_connections`"
        }
        _ => "Error",
    }
}
