//! `/ledger/*`: the Truth ledger over HTTP — entries, the latest signed checkpoint, proofs
//! anyone can check offline with the public key, and a full verification.
//!
//! The ledger is synchronous; each request runs on a blocking thread with a handle brought up
//! to date with what other handles (the feed, other processes) appended, so it is never stale.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use bridge_genesis::ledger::{self, Ledger, LedgerEntry, to_hex};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::AppState;
use crate::auth::Role;
use crate::error::{ApiError, ApiQuery};
use crate::route::{Access, Answer, Param, ParamType, Route, schema_of};
use crate::routes::{path_param, query};

pub(crate) fn routes() -> Vec<Route> {
    const ENTRIES: &[Param] = &[
        query("from", ParamType::SEQ, false, "first index (default 0)"),
        query(
            "limit",
            ParamType::Integer { min: 1, max: 1000 },
            false,
            "at most this many (default 100, at most 1000)",
        ),
    ];
    const PROOF: &[Param] = &[path_param(
        "index",
        ParamType::SEQ,
        "the entry's index, from 0 (404 past the last entry)",
    )];
    // 0 < from <= to, and `to` at most the ledger's size (404 otherwise).
    const SIZE: ParamType = ParamType::Integer {
        min: 1,
        max: u64::MAX,
    };
    const CONSISTENCY: &[Param] = &[
        query("from", SIZE, true, "the older tree size, at least 1"),
        query(
            "to",
            SIZE,
            true,
            "the newer tree size, at least `from` (400 otherwise) and at most the ledger's \
             size (404 otherwise)",
        ),
    ];
    let observer = Access::Role(Role::Observer);
    vec![
        Route {
            method: "GET",
            path: "/ledger/entries",
            operation_id: "ledgerEntries",
            summary: "Ledger entries, oldest first",
            description: "Payloads are stored redacted: keys, operations and fingerprints.",
            tag: "ledger",
            access: observer,
            params: ENTRIES,
            body: None,
            answer: Answer::Json(schema_of::<EntriesPage>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(entries),
        },
        Route {
            method: "GET",
            path: "/ledger/checkpoint",
            operation_id: "ledgerCheckpoint",
            summary: "The latest signed checkpoint",
            description: "A C2SP tlog-checkpoint note signed with Ed25519.",
            tag: "ledger",
            access: observer,
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<CheckpointBody>),
            success: 200,
            errors: &[404],
            streaming: false,
            handler: || get(checkpoint),
        },
        Route {
            method: "GET",
            path: "/ledger/proof/{index}",
            operation_id: "ledgerProof",
            summary: "Inclusion proof of one entry",
            description: "The same JSON `genesisctl ledger proof` prints and `genesisctl ledger \
                          verify-proof` checks offline with only the public key.",
            tag: "ledger",
            access: observer,
            params: PROOF,
            body: None,
            answer: Answer::Json(schema_of::<Map<String, Value>>),
            success: 200,
            errors: &[404],
            streaming: false,
            handler: || get(proof),
        },
        Route {
            method: "GET",
            path: "/ledger/consistency",
            operation_id: "ledgerConsistency",
            summary: "Consistency proof between two tree sizes",
            description: "RFC 9162 consistency path: the newer tree extends the older.",
            tag: "ledger",
            access: observer,
            params: CONSISTENCY,
            body: None,
            answer: Answer::Json(schema_of::<ConsistencyBody>),
            success: 200,
            // 400 for `from > to`: a rule between two parameters, which a schema cannot state.
            errors: &[400, 404],
            streaming: false,
            handler: || get(consistency),
        },
        Route {
            method: "GET",
            path: "/ledger/verify",
            operation_id: "ledgerVerify",
            summary: "Recompute the whole ledger and check every signature",
            description: "`ok` is false when anything was changed, removed or reordered; \
                          `first_bad_entry` names the first entry that was.",
            tag: "ledger",
            access: observer,
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<VerifyBody>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(verify),
        },
        Route {
            method: "GET",
            path: "/ledger/public-key",
            operation_id: "ledgerPublicKey",
            summary: "The Ed25519 key checkpoints are signed with",
            description: "",
            tag: "ledger",
            access: observer,
            params: &[],
            body: None,
            answer: Answer::Json(schema_of::<PublicKeyBody>),
            success: 200,
            errors: &[],
            streaming: false,
            handler: || get(public_key),
        },
    ]
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EntriesPage {
    pub entries: Vec<EntryBody>,
    /// How many entries the ledger holds.
    pub total: u64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EntryBody {
    pub index: u64,
    pub timestamp: String,
    pub topic: String,
    pub seq: Option<u64>,
    pub payload: Value,
}

impl From<LedgerEntry> for EntryBody {
    fn from(e: LedgerEntry) -> Self {
        Self {
            index: e.index,
            timestamp: e.timestamp,
            topic: e.topic,
            seq: e.seq,
            payload: e.payload,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointBody {
    pub origin: String,
    pub size: u64,
    /// Merkle root, hex.
    pub root: String,
    /// The signed note, as published.
    pub note: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConsistencyBody {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    /// Hex hashes.
    pub proof: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct VerifyBody {
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub attested_size: u64,
    pub root: String,
    pub first_bad_entry: Option<u64>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PublicKeyBody {
    pub origin: String,
    /// 64 hex digits.
    pub public_key: String,
}

#[derive(Debug, Deserialize)]
struct EntriesParams {
    from: Option<u64>,
    limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ConsistencyParams {
    from: Option<u64>,
    to: Option<u64>,
}

fn ledger_error(e: ledger::LedgerError) -> ApiError {
    ApiError::unavailable(format!("the ledger: {e}"))
}

/// Runs `f` on a ledger handle, up to date, on a blocking thread.
async fn with_ledger<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Ledger) -> Result<T, ApiError> + Send + 'static,
{
    let access = state.inner.ledger.clone();
    tokio::task::spawn_blocking(move || access.with(f).map_err(ledger_error)?)
        .await
        .map_err(|e| ApiError::internal(format!("the ledger task ended abnormally: {e}")))?
}

async fn entries(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<EntriesParams>,
) -> Result<Json<EntriesPage>, ApiError> {
    let from = p.from.unwrap_or(0);
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    with_ledger(&state, move |ledger| {
        let total = ledger.len();
        let end = from.saturating_add(limit).min(total);
        let entries = if from >= end {
            Vec::new()
        } else {
            ledger.entries(from..end).map_err(ledger_error)?
        };
        Ok(Json(EntriesPage {
            entries: entries.into_iter().map(EntryBody::from).collect(),
            total,
        }))
    })
    .await
}

async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointBody>, ApiError> {
    with_ledger(&state, |ledger| {
        let stored = ledger
            .latest_checkpoint()
            .map_err(ledger_error)?
            .ok_or_else(|| ApiError::not_found("the ledger has no checkpoint yet"))?;
        Ok(Json(CheckpointBody {
            origin: stored.checkpoint.origin,
            size: stored.checkpoint.size,
            root: to_hex(&stored.checkpoint.root),
            note: stored.checkpoint.note,
            created_at: stored.created_at,
        }))
    })
    .await
}

async fn proof(
    State(state): State<AppState>,
    Path(index): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let index: u64 = index
        .parse()
        .map_err(|_| ApiError::bad_request("the index is a whole number from 0"))?;
    with_ledger(&state, move |ledger| {
        if index >= ledger.len() {
            return Err(ApiError::not_found(format!(
                "entry {index} does not exist (the ledger has {} entries)",
                ledger.len()
            )));
        }
        // Prove against a signed checkpoint covering the entry, signing one if needed.
        let checkpoint = match ledger.latest_checkpoint().map_err(ledger_error)? {
            Some(c) if c.checkpoint.size > index => c,
            _ => ledger
                .checkpoint(time::OffsetDateTime::now_utc())
                .map_err(ledger_error)?,
        };
        let proof = ledger
            .inclusion_proof(index, checkpoint.checkpoint.size)
            .map_err(ledger_error)?;
        serde_json::to_value(&proof)
            .map(Json)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}

async fn consistency(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ConsistencyParams>,
) -> Result<Json<ConsistencyBody>, ApiError> {
    let (Some(from), Some(to)) = (p.from, p.to) else {
        return Err(ApiError::bad_request(
            "give both tree sizes: /ledger/consistency?from=M&to=N",
        ));
    };
    if from == 0 || from > to {
        return Err(ApiError::bad_request("sizes must satisfy 0 < from <= to"));
    }
    with_ledger(&state, move |ledger| {
        if to > ledger.len() {
            return Err(ApiError::not_found(format!(
                "the ledger has {} entries, fewer than {to}",
                ledger.len()
            )));
        }
        let proof = ledger.consistency_proof(from, to).map_err(ledger_error)?;
        Ok(Json(ConsistencyBody {
            from,
            to,
            from_root: to_hex(&ledger.root_at(from).map_err(ledger_error)?),
            to_root: to_hex(&ledger.root_at(to).map_err(ledger_error)?),
            proof: proof.iter().map(|h| to_hex(h)).collect(),
        }))
    })
    .await
}

async fn verify(State(state): State<AppState>) -> Result<Json<VerifyBody>, ApiError> {
    let key = state.inner.ledger.verifying_key();
    with_ledger(&state, move |ledger| {
        let report = ledger.verify(&key).map_err(ledger_error)?;
        Ok(Json(VerifyBody {
            ok: report.is_ok(),
            entries: report.entries,
            checkpoints: report.checkpoints,
            attested_size: report.attested_size,
            root: to_hex(&report.root),
            first_bad_entry: report.first_bad_entry(),
            problems: report.problems.iter().map(|p| p.to_string()).collect(),
        }))
    })
    .await
}

async fn public_key(State(state): State<AppState>) -> Json<PublicKeyBody> {
    let access = &state.inner.ledger;
    Json(PublicKeyBody {
        origin: access.origin().to_owned(),
        public_key: to_hex(access.verifying_key().as_bytes()),
    })
}
