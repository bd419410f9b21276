//! What the server asks of the sync engine, as a trait the binary implements: the server
//! knows HTTP, not configuration files, token discovery or platform adapters.
//!
//! Every type here is an answer body: serialisable, documented in the OpenAPI document
//! through its JSON schema, and free of values — keys, operations and counts only.

use std::future::Future;
use std::pin::Pin;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Dry run (plan only) or enforce (write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    DryRun,
    Enforce,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::DryRun => "dry-run",
            SyncMode::Enforce => "enforce",
        }
    }
}

/// `GET /envsync/health`: the sync configuration and whether it can run. Nothing secret:
/// whether a platform has a token, never where it came from or what it is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EnvSyncHealth {
    /// `ok`, or `degraded` when a configured platform has no token.
    pub status: String,
    pub enabled: bool,
    /// The scheduled sync's mode: `dry-run` or `enforce`.
    pub mode: String,
    /// `@hourly`, `@daily`, a cron expression, or empty for none.
    pub schedule: String,
    /// The canonical source, as a platform spec.
    pub source: String,
    /// The configured providers, by the name the API takes in `{provider}`.
    pub providers: Vec<ProviderHealth>,
    pub include_prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
    pub allow_deletions: bool,
    pub version: String,
}

/// One configured provider in [`EnvSyncHealth`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProviderHealth {
    /// The name `POST /envsync/dry-run/{provider}` takes.
    pub name: String,
    /// The platform spec it stands for (`render`, `netlify:context=production`, ...).
    pub spec: String,
    /// Whether a token was found for it (always true for local files).
    pub credentials: bool,
}

/// One planned change: a key and what happens to it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlannedChange {
    pub key: String,
    /// `create`, `update`, `delete` or `unknown` (a write-only value that may differ).
    pub op: String,
    /// Whether the value is a secret (its value is never shown anyway).
    pub secret: bool,
}

/// Counts of a plan's operations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ChangeSummary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unknown: usize,
    pub noop: usize,
}

/// What a dry run or an apply did to one provider (the seed's
/// `applied=True changes=3 errors=0`, with the plan behind it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SyncResult {
    pub provider: String,
    pub spec: String,
    /// `dry-run` or `enforce`.
    pub mode: String,
    /// `in_sync`, `planned`, `applied`, `unverified`, `refused`, `rejected` or `failed`.
    pub status: String,
    /// Whether changes were written.
    pub applied: bool,
    /// How many keys are (or were) written.
    pub changes: usize,
    /// How many problems stopped or spoiled the sync (0 when it went well).
    pub errors: usize,
    pub summary: ChangeSummary,
    pub plan: Vec<PlannedChange>,
    /// Why it was refused, rejected or failed, or what still differs.
    pub detail: Option<String>,
    /// The journal of an apply that wrote, for `genesisctl env rollback`.
    pub journal: Option<u64>,
}

impl SyncResult {
    /// Keys that differ after this run: the drift it found (dry run) or left (apply).
    pub fn drift(&self) -> usize {
        if self.applied { 0 } else { self.changes }
    }
}

/// `POST /envsync/apply-all`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApplyAllResult {
    pub mode: String,
    pub results: Vec<SyncResult>,
    /// Providers written to.
    pub applied: usize,
    /// Providers refused, rejected or failed.
    pub failed: usize,
}

/// The sync engine as the server sees it.
pub trait EnvSync: Send + Sync + 'static {
    fn health(&self) -> BoxFuture<'_, EnvSyncHealth>;

    /// The names `{provider}` may take.
    fn providers(&self) -> Vec<String>;

    /// Plans (and in enforce mode applies) the sync of one provider. The server makes sure
    /// two applies to one provider never overlap.
    fn sync<'a>(
        &'a self,
        provider: &'a str,
        mode: SyncMode,
    ) -> BoxFuture<'a, Result<SyncResult, ApiError>>;

    /// The source checked against the schema ("Blueprint"): `None` when there is no schema,
    /// else the violations (empty when it conforms), as text without values.
    fn schema_check(&self) -> BoxFuture<'_, Result<Option<Vec<String>>, ApiError>>;

    /// The parity report across the source and every provider, in the seed's shape.
    fn parity(&self) -> BoxFuture<'_, Result<serde_json::Value, ApiError>>;
}
