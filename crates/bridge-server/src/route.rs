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

/// The JSON type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
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
    /// Error statuses besides the ones every route may answer (400, 401/403, 413, 503).
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
        codes.extend([400, 415, 422]);
    }
    if !route.params.is_empty() {
        codes.push(400);
    }
    if !route.streaming {
        codes.push(503);
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

/// The schema of every error answer.
pub fn error_schema(generator: &mut SchemaGenerator) -> Schema {
    schema_of::<crate::ErrorBody>(generator)
}
