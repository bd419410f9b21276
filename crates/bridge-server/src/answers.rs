//! The answers of `/envsync/*`: serialisable, documented in the OpenAPI document through
//! their JSON schemas, and free of values — keys, operations and counts only — made from the
//! operations' domain results.

use bridge_operations::{Mode, ProviderSync, SecretClassifier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// The answer for one provider's sync.
    pub fn of(sync: &ProviderSync, mode: Mode, classifier: &SecretClassifier) -> Self {
        let summary = sync.summary();
        let counts = sync.counts();
        SyncResult {
            provider: sync.provider.clone(),
            spec: sync.target.spec.to_string(),
            mode: mode.as_str().to_owned(),
            status: summary.status.to_owned(),
            applied: summary.applied,
            changes: summary.changes,
            errors: summary.errors,
            summary: ChangeSummary {
                create: counts.create,
                update: counts.update,
                delete: counts.delete,
                unknown: counts.unknown,
                noop: counts.noop,
            },
            plan: sync
                .planned(classifier)
                .into_iter()
                .map(|c| PlannedChange {
                    key: c.key,
                    op: c.op.to_owned(),
                    secret: c.secret,
                })
                .collect(),
            detail: summary.detail,
            journal: if summary.applied {
                sync.journal.and_then(|j| u64::try_from(j).ok())
            } else {
                None
            },
        }
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
