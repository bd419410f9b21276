//! `GET /vault/secret?key=`: hands a platform token to another Bridge's discovery chain.
//!
//! Admiral only. It answers only keys on its allow-list (`server.vault_keys`), reads values
//! from the server's environment, and records every read — granted, refused or missing — as a
//! `vault.read` event (key and token id, never the value), which the ledger keeps.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiQuery};
use crate::route::{Access, Answer, ParamType, Route, schema_of};
use crate::routes::query;

pub(crate) fn routes() -> Vec<Route> {
    const KEY: &[crate::route::Param] = &[query(
        "key",
        ParamType::String { min_len: 1 },
        true,
        "the variable to read, e.g. RENDER_API_TOKEN",
    )];
    vec![Route {
        method: "GET",
        path: "/vault/secret",
        operation_id: "vaultSecret",
        summary: "Read one allow-listed secret",
        description: "For the token discovery chain of another Bridge (`discovery.vault_url`). \
                      Admiral only; every read is a `vault.read` event and a ledger entry.",
        tag: "vault",
        access: Access::Role(Role::Admiral),
        params: KEY,
        body: None,
        answer: Answer::Json(schema_of::<VaultSecret>),
        success: 200,
        errors: &[404],
        streaming: false,
        handler: || get(secret),
    }]
}

#[derive(Debug, Deserialize)]
struct VaultQuery {
    key: Option<String>,
}

/// The answer: the key and its value (the only place the API ever shows a value).
#[derive(Serialize, Deserialize, JsonSchema)]
pub struct VaultSecret {
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSecret")
            .field("key", &self.key)
            .field("value", &"<redacted>")
            .finish()
    }
}

async fn secret(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<VaultQuery>,
) -> Result<Json<VaultSecret>, ApiError> {
    let key = q
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_request("give the key to read: /vault/secret?key=NAME"))?;
    let allowed = state.inner.options.vault_keys.contains(&key);
    let value = if allowed {
        (state.inner.vault)(&key).filter(|v| !v.is_empty())
    } else {
        None
    };
    let outcome = match (allowed, &value) {
        (false, _) => "refused",
        (true, None) => "missing",
        (true, Some(_)) => "granted",
    };
    // The read is recorded before the value leaves: no record, no value.
    let recorded = state
        .inner
        .bus
        .publish(
            "vault.read",
            json!({ "key": key, "token": who.token_id, "outcome": outcome }),
            bridge_genesis::bus::Role::System,
        )
        .await;
    if let Err(e) = recorded {
        return Err(ApiError::unavailable(format!(
            "the read could not be recorded, so it is refused: {e}"
        )));
    }
    match (allowed, value) {
        (false, _) => Err(ApiError::forbidden(format!(
            "`{key}` is not on the vault's allow-list (server.vault_keys)"
        ))),
        (true, None) => Err(ApiError::not_found(format!(
            "`{key}` is allowed but not set in the server's environment"
        ))),
        (true, Some(value)) => Ok(Json(VaultSecret { key, value })),
    }
}
