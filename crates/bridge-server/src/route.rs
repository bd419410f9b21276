//! What a route declares: method, path, access, parameters, body and answer types, handler.
//! The route modules fill these in; [`crate::api`] builds the router and
//! [`crate::openapi`] the document from them.

use axum::routing::MethodRouter;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::AppState;
use crate::auth::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the health checks load balancers call. They reveal nothing secret.
    Public,
    /// A bearer token of this role or above.
    Role(Role),
    /// No token: the handler checks the platform's signature (webhooks).
    Signature,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
}

/// The type of a parameter and what the server checks of it: the document states exactly
/// this ([`crate::openapi`]), and the handler refuses anything else (400, or 404 for a path
/// segment that names nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any string of at least `min_len` characters.
    String { min_len: u64 },
    /// A whole number in `min..=max` (the handler parses it as `u64`).
    Integer { min: u64, max: u64 },
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A topic pattern (`bridge_genesis::bus::TopicPattern`); empty means none given.
    TopicPattern,
    /// An RFC 3339 date-time.
    DateTime,
    /// A provider configured on this server: the served document lists them
    /// ([`crate::openapi::document_for`]); any other name is answered 404.
    Provider,
}

impl ParamType {
    /// Any string.
    pub const STRING: ParamType = ParamType::String { min_len: 0 };
    /// A whole number from 0 (a `_genesis_seq`, an index).
    pub const SEQ: ParamType = ParamType::Integer {
        min: 0,
        max: u64::MAX,
    };
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub kind: ParamType,
    pub description: &'static str,
}

pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The JSON schema of `T`, as a reference into the document's components.
pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route answers on success.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(SchemaFn),
    /// Plain text of this media type (Prometheus exposition, ...).
    Text(&'static str),
    /// Server-sent events.
    EventStream,
}

/// One route.
#[derive(Clone)]
pub struct Route {
    pub method: &'static str,
    /// The path in OpenAPI (and axum 0.8) syntax: `/envsync/dry-run/{provider}`.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub tag: &'static str,
    pub access: Access,
    pub params: &'static [Param],
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    pub success: u16,
    /// Error statuses besides the ones [`common_errors`] adds (400 for a parameter or body,
    /// 401/403 for a role, 413, 415/422 for a JSON body, 503).
    pub errors: &'static [u16],
    /// A live stream: no request timeout.
    pub streaming: bool,
    pub handler: fn() -> MethodRouter<AppState>,
}

/// The error answers common to every route, for the OpenAPI document.
pub fn common_errors(route: &Route) -> Vec<u16> {
    let mut codes: Vec<u16> = route.errors.to_vec();
    if matches!(route.access, Access::Role(_)) {
        codes.extend([401, 403]);
    }
    // Any body over the limit, even to a route that takes none.
    codes.push(413);
    if route.body.is_some() {
        codes.extend([400, 422]);
        // The webhooks read the raw body, whatever its type; every other body is JSON.
        if route.access != Access::Signature {
            codes.push(415);
        }
    }
    if !route.params.is_empty() {
        codes.push(400);
    }
    // A timeout, an unavailable store, or the server at `server.max_connections`.
    codes.push(503);
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// The schema of every error answer.
pub fn error_schema(generator: &mut SchemaGenerator) -> Schema {
    schema_of::<crate::ErrorBody>(generator)
}
