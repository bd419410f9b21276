//! The state store: what Bridge knows of each target, on a backend that one machine keeps
//! (SQLite in `.bridge/state.db`, [`SqliteState`]) or that every runner shares (PostgreSQL,
//! in `bridge-genesis-scale`). It keeps
//!
//! - **write records**: per target and key, the fingerprint of the value Bridge last wrote,
//!   the platform's `updated_at` after that write, and the value itself, sealed. They make
//!   write-only values comparable (drift from fingerprint and timestamp), define ownership
//!   (Bridge deletes on a platform only keys it wrote there) and let a rollback restore
//!   values the platform will not return;
//! - **journals**: every apply is journalled before its first write: per target, the plan's
//!   ops with the values to write and the pre-image to restore (both sealed), each op marked
//!   done as soon as the platform confirms it. An interrupted apply leaves a journal that
//!   `resume` finishes and `rollback` undoes.
//!
//! [`StateStore`] seals and opens values and speaks in domain types; a [`StateBackend`] keeps
//! rows of sealed bytes and never sees a clear value. Every backend passes the suite in
//! [`conformance`].

pub mod conformance;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use bridge_core::diff::Change;
use bridge_core::{Fingerprint, SecretValue};
use bridge_platforms::Image;

use crate::sealing::{SealError, Sealer};

pub use sqlite::SqliteState;

/// The schema version this build writes. A store whose version is higher was written by a
/// newer Bridge and is refused: an older binary would misread what it does not know.
pub const SCHEMA_VERSION: i64 = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed a query (`store` names it: a file, or a database without its
    /// password).
    #[error("{store}: {source}")]
    Backend {
        store: String,
        #[source]
        source: BoxError,
    },
    /// The backend could not be reached, or did not answer in time. A write it cut short may
    /// or may not have committed: as after a crash, the journal says which.
    #[error("{store} is unreachable: {source}")]
    Unavailable {
        store: String,
        #[source]
        source: BoxError,
    },
    #[error("state store: {0}")]
    Seal(#[from] SealError),
    #[error("state store: journal {0} does not exist")]
    NoJournal(i64),
    #[error("journal {journal} is {state}, not unfinished: there is nothing to discard")]
    Finished { journal: i64, state: &'static str },
    #[error(
        "the {store} holds records made with another fingerprint key (id {stored}); \
         this run's key has id {given}. Give every runner the key the records were made with \
         (BRIDGE_FINGERPRINT_KEY or BRIDGE_FINGERPRINT_KEY_FILE): judged with another key, every \
         secret would look changed"
    )]
    FingerprintKeyMismatch {
        store: String,
        stored: String,
        given: String,
    },
    #[error(
        "the {store} holds values sealed to another state key (id {stored}); this run's key \
         has id {given}. Give every runner the key the store was made with (BRIDGE_STATE_KEY \
         or BRIDGE_STATE_KEY_FILE): with another key, no journal could be resumed or rolled back"
    )]
    StateKeyMismatch {
        store: String,
        stored: String,
        given: String,
    },
    #[error(
        "the {store} has schema version {found}, written by a newer Bridge; this binary knows \
         version {known} and will not touch it: upgrade genesisctl"
    )]
    SchemaTooNew {
        store: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the {store} already holds journals or records; import only into an empty store, so \
         that two histories are never mixed"
    )]
    NotEmpty { store: String },
    #[error("state store: {0}")]
    Corrupt(String),
    /// The apply's lock on its place was broken while it ran (`genesisctl state unlock`, or
    /// its lock session ended): it stopped before its next write.
    #[error("{0}: the apply stopped before its next write; `genesisctl env resume` finishes it")]
    LockLost(String),
}

impl StoreError {
    /// Whether the store could not be reached (exit 3, naming the store), rather than
    /// answered with an error.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// What Bridge last wrote to one key of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub fingerprint: Fingerprint,
    pub updated_at: Option<String>,
}

/// What a key held before an apply touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreImage {
    /// The key did not exist.
    Absent,
    /// Its value (read from the platform, or for write-only values our last write).
    Value(SecretValue),
    /// It existed, write-only, with a value Bridge never wrote: a rollback cannot restore it.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalId(pub i64);

impl std::fmt::Display for JournalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalState {
    Applying,
    Done,
    Failed,
    RolledBack,
    /// Given up by `env resume --discard`: its unfinished ops will never be written.
    Discarded,
}

impl JournalState {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalState::Applying => "applying",
            JournalState::Done => "done",
            JournalState::Failed => "failed",
            JournalState::RolledBack => "rolled_back",
            JournalState::Discarded => "discarded",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "applying" => JournalState::Applying,
            "done" => JournalState::Done,
            "failed" => JournalState::Failed,
            "rolled_back" => JournalState::RolledBack,
            "discarded" => JournalState::Discarded,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown journal state {other}"
                )));
            }
        })
    }
}

/// One op as journalled.
#[derive(Debug, Clone)]
pub struct JournalOp {
    pub key: String,
    pub change: Change,
    pub after: Option<SecretValue>,
    pub before: PreImage,
    /// For a write-only value: the platform's stamp when planned. At resume, a stamp that
    /// has not moved proves the op's write did not land.
    pub before_stamp: Option<String>,
    pub done: bool,
}

/// An op the platform confirmed, recorded in the transaction that marks it done.
#[derive(Debug, Clone, Copy)]
pub enum Landed<'a> {
    /// Written: what the record keeps (its stamp follows with [`StateStore::set_stamps`]).
    Written {
        key: &'a str,
        fingerprint: Fingerprint,
        value: &'a SecretValue,
    },
    /// Deleted: the record goes.
    Deleted { key: &'a str },
}

#[derive(Debug, Clone)]
pub struct JournalTarget {
    /// `Platform::identity()`.
    pub identity: String,
    /// The spec it was opened from, to open it again on resume.
    pub spec: String,
    pub label: String,
    pub state: JournalState,
    pub error: Option<String>,
    /// A digest of what the target held when planned, outside the keys of `ops`: a resume
    /// refuses when it changed (someone wrote there since), as an apply refuses a stale plan.
    pub untouched: Option<String>,
    /// For a place that keeps bytes of its own (a `.env` file): its text before the apply
    /// and the text the apply writes, so that a rollback restores the lines themselves.
    /// `None` elsewhere, and in journals an older Bridge wrote.
    pub image: Option<Image>,
    pub ops: Vec<JournalOp>,
}

#[derive(Debug, Clone)]
pub struct Journal {
    pub id: JournalId,
    pub created_at: String,
    pub source: String,
    pub state: JournalState,
    pub targets: Vec<JournalTarget>,
}

// --- What a backend keeps: rows of sealed bytes --------------------------------------------

/// A write record as a backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordRow {
    pub target: String,
    pub key: String,
    /// Hex of the keyed fingerprint.
    pub fingerprint: String,
    pub updated_at: Option<String>,
    /// The value, sealed to the state key.
    #[serde(with = "hex_bytes")]
    pub sealed: Vec<u8>,
    pub written_at: String,
}

/// What judging a target needs of one record: no sealed value, which only a rollback or an
/// export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    pub key: String,
    /// Hex of the keyed fingerprint.
    pub fingerprint: String,
    pub updated_at: Option<String>,
}

/// How a pre-image is kept: `absent`, `unknown`, or `value` with the sealed value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpRow {
    pub key: String,
    /// [`Change::as_str`].
    pub change: String,
    #[serde(with = "hex_opt")]
    pub after: Option<Vec<u8>>,
    pub before_kind: String,
    #[serde(with = "hex_opt")]
    pub before: Option<Vec<u8>>,
    pub before_stamp: Option<String>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetRow {
    pub identity: String,
    pub spec: String,
    pub label: String,
    pub state: String,
    pub error: Option<String>,
    pub untouched: Option<String>,
    /// [`JournalTarget::image`], both texts sealed. Missing from dumps and rows an older
    /// Bridge wrote, which read as no image.
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub image_before: Option<Vec<u8>>,
    #[serde(default, with = "hex_opt", skip_serializing_if = "Option::is_none")]
    pub image_after: Option<Vec<u8>>,
    pub ops: Vec<OpRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalRow {
    pub id: i64,
    pub created_at: String,
    pub source: String,
    pub state: String,
    pub targets: Vec<TargetRow>,
}

/// An op the platform confirmed, sealed.
#[derive(Debug, Clone)]
pub enum LandedRow {
    Written {
        key: String,
        fingerprint: String,
        sealed: Vec<u8>,
    },
    Deleted {
        key: String,
    },
}

impl LandedRow {
    pub fn key(&self) -> &str {
        match self {
            LandedRow::Written { key, .. } | LandedRow::Deleted { key } => key,
        }
    }
}

/// Everything a store holds, for `state export`, `state import` and `state migrate`. Values
/// stay sealed: a dump is as safe as the store it came from, and opens only with its key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateDump {
    pub meta: BTreeMap<String, String>,
    pub records: Vec<RecordRow>,
    pub journals: Vec<JournalRow>,
}

/// Where rows are kept. Each method is one transaction: it happens whole or not at all.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync {
    /// The store as people read it in errors: `state store /path/state.db`, or
    /// `PostgreSQL state store HOST:PORT/DB` (never a password).
    fn describe(&self) -> String;
    /// Every record of `target`, without the sealed values.
    async fn records(&self, target: &str) -> Result<Vec<RecordHead>, StoreError>;
    async fn sealed_value(&self, target: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Upserts `written` and forgets `deleted`, for one target.
    async fn record(
        &self,
        target: &str,
        written: Vec<RecordRow>,
        deleted: Vec<String>,
    ) -> Result<(), StoreError>;
    /// The targets whose record of `key` holds the stamp `stamp`.
    async fn holding_stamp(&self, key: &str, stamp: &str) -> Result<Vec<String>, StoreError>;
    /// Moves `key`'s stamp from `from` to `to` in `targets`, where it still is `from`.
    async fn move_stamp(
        &self,
        key: &str,
        from: &str,
        to: &str,
        targets: Vec<String>,
    ) -> Result<usize, StoreError>;
    /// Journals an apply (`state` applying), returning its id.
    async fn begin(
        &self,
        created_at: &str,
        source: &str,
        targets: Vec<TargetRow>,
    ) -> Result<i64, StoreError>;
    /// Marks ops done and records what they wrote, in one transaction.
    async fn mark_done(
        &self,
        journal: i64,
        target: &str,
        landed: Vec<LandedRow>,
        now: &str,
    ) -> Result<(), StoreError>;
    async fn set_stamps(
        &self,
        target: &str,
        stamps: BTreeMap<String, String>,
        only_unset: bool,
    ) -> Result<(), StoreError>;
    async fn unfinished_on(&self, target: &str) -> Result<Option<i64>, StoreError>;
    async fn finish_target(
        &self,
        journal: i64,
        target: &str,
        state: JournalState,
        error: Option<String>,
    ) -> Result<(), StoreError>;
    async fn finish(&self, journal: i64, state: JournalState) -> Result<(), StoreError>;
    /// Sets `key` to `value` unless it has a value, and answers the value it has.
    async fn claim_meta(&self, key: &str, value: &str) -> Result<String, StoreError>;
    /// [`StateBackend::claim_meta`] for several keys (a backend across a network does it
    /// in one round trip).
    async fn claim_meta_all(&self, pairs: &[(&str, &str)]) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            out.push(self.claim_meta(key, value).await?);
        }
        Ok(out)
    }
    async fn latest_unfinished(&self) -> Result<Option<i64>, StoreError>;
    async fn latest_for_target(&self, target: &str) -> Result<Option<i64>, StoreError>;
    async fn journal(&self, id: i64) -> Result<Option<JournalRow>, StoreError>;
    /// Everything, for a backup or a move.
    async fn export(&self) -> Result<StateDump, StoreError>;
    /// Loads `dump` into a store that holds no journal and no record yet (refused
    /// otherwise, so an import never mixes two histories). Journal ids are kept.
    async fn import(&self, dump: StateDump) -> Result<(), StoreError>;
}

/// The state store: sealing in front of a backend.
#[derive(Clone)]
pub struct StateStore {
    backend: Arc<dyn StateBackend>,
    sealer: Sealer,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("backend", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

fn parse_change(text: &str) -> Result<Change, StoreError> {
    Ok(match text {
        "create" => Change::Create,
        "update" => Change::Update,
        "delete" => Change::Delete,
        "noop" => Change::Noop,
        "unknown" => Change::Unknown,
        other => return Err(StoreError::Corrupt(format!("unknown op {other}"))),
    })
}

impl StateStore {
    pub fn new(backend: Arc<dyn StateBackend>, sealer: Sealer) -> Self {
        Self { backend, sealer }
    }

    /// The SQLite store in `path`, created on first use.
    pub fn open_sqlite(path: &std::path::Path, sealer: Sealer) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(SqliteState::open(path)?), sealer))
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    pub fn backend(&self) -> &Arc<dyn StateBackend> {
        &self.backend
    }

    /// Our last write to every key of `target`.
    pub async fn records(&self, target: &str) -> Result<BTreeMap<String, WriteRecord>, StoreError> {
        let rows = self.backend.records(target).await?;
        let mut out = BTreeMap::new();
        for row in rows {
            let fingerprint = Fingerprint::from_hex(&row.fingerprint)
                .ok_or_else(|| StoreError::Corrupt(format!("bad fingerprint for {}", row.key)))?;
            out.insert(
                row.key,
                WriteRecord {
                    fingerprint,
                    updated_at: row.updated_at,
                },
            );
        }
        Ok(out)
    }

    /// The value we last wrote to `key`, if any.
    pub async fn recorded_value(
        &self,
        target: &str,
        key: &str,
    ) -> Result<Option<SecretValue>, StoreError> {
        self.backend
            .sealed_value(target, key)
            .await?
            .map(|s| self.sealer.open(&s).map_err(StoreError::from))
            .transpose()
    }

    /// Records writes (fingerprint, sealed value, the platform's stamp) and forgets deleted keys.
    pub async fn record(
        &self,
        target: &str,
        written: &[(&str, Fingerprint, &SecretValue, Option<&str>)],
        deleted: &[&str],
        now: &str,
    ) -> Result<(), StoreError> {
        let rows = written
            .iter()
            .map(|(key, fp, value, updated_at)| {
                Ok(RecordRow {
                    target: target.to_owned(),
                    key: (*key).to_owned(),
                    fingerprint: fp.to_hex(),
                    updated_at: updated_at.map(str::to_owned),
                    sealed: self.sealer.seal(value)?,
                    written_at: now.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let deleted = deleted.iter().map(|k| (*k).to_owned()).collect();
        self.backend.record(target, rows, deleted).await
    }

    /// Moves the stamp of `key` from `from` to `to` in the records of every other place that
    /// `shares` names and that still holds `from`: a write elsewhere moved a stamp those
    /// places share, and nothing else changed it. A record holding another stamp keeps it,
    /// and reads as changed outside Bridge, which it was.
    pub async fn advance_shared_stamp(
        &self,
        key: &str,
        from: &str,
        to: &str,
        shares: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let targets: Vec<String> = self
            .backend
            .holding_stamp(key, from)
            .await?
            .into_iter()
            .filter(|t| shares(t))
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        // The move is conditional on the stamp still being `from`, so a record another
        // writer changed in between keeps what it has.
        self.backend.move_stamp(key, from, to, targets).await
    }

    /// Journals an apply before its first write.
    pub async fn begin(
        &self,
        source: &str,
        now: &str,
        targets: &[JournalTarget],
    ) -> Result<JournalId, StoreError> {
        let mut rows = Vec::with_capacity(targets.len());
        for t in targets {
            let mut ops = Vec::with_capacity(t.ops.len());
            for op in &t.ops {
                let (before_kind, before) = match &op.before {
                    PreImage::Absent => ("absent", None),
                    PreImage::Value(v) => ("value", Some(self.sealer.seal(v)?)),
                    PreImage::Unknown => ("unknown", None),
                };
                ops.push(OpRow {
                    key: op.key.clone(),
                    change: op.change.as_str().to_owned(),
                    after: op.after.as_ref().map(|v| self.sealer.seal(v)).transpose()?,
                    before_kind: before_kind.to_owned(),
                    before,
                    before_stamp: op.before_stamp.clone(),
                    done: op.done,
                });
            }
            rows.push(TargetRow {
                identity: t.identity.clone(),
                spec: t.spec.clone(),
                label: t.label.clone(),
                state: JournalState::Applying.as_str().to_owned(),
                error: None,
                untouched: t.untouched.clone(),
                image_before: t
                    .image
                    .as_ref()
                    .map(|i| self.sealer.seal(&i.before))
                    .transpose()?,
                image_after: t
                    .image
                    .as_ref()
                    .map(|i| self.sealer.seal(&i.after))
                    .transpose()?,
                ops,
            });
        }
        self.backend.begin(now, source, rows).await.map(JournalId)
    }

    /// Marks ops done and, in the same transaction, records what they wrote: a write's
    /// fingerprint, sealed value and ownership, a deletion's forgetting. A crash therefore
    /// never leaves an op done without its record, nor a record without its op.
    pub async fn mark_done(
        &self,
        id: JournalId,
        target: &str,
        landed: &[Landed<'_>],
        now: &str,
    ) -> Result<(), StoreError> {
        let rows = landed
            .iter()
            .map(|l| {
                Ok(match l {
                    Landed::Written {
                        key,
                        fingerprint,
                        value,
                    } => LandedRow::Written {
                        key: (*key).to_owned(),
                        fingerprint: fingerprint.to_hex(),
                        sealed: self.sealer.seal(value)?,
                    },
                    Landed::Deleted { key } => LandedRow::Deleted {
                        key: (*key).to_owned(),
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.backend.mark_done(id.0, target, rows, now).await
    }

    /// Sets the platform's stamps on records just written (the platform tells them after the
    /// writes, or a resume reads them). With `only_unset`, a record keeps a stamp it has.
    pub async fn set_stamps(
        &self,
        target: &str,
        stamps: &BTreeMap<String, String>,
        only_unset: bool,
    ) -> Result<(), StoreError> {
        if stamps.is_empty() {
            return Ok(());
        }
        self.backend
            .set_stamps(target, stamps.clone(), only_unset)
            .await
    }

    /// The newest journal that left ops unwritten on `target` and was neither finished,
    /// rolled back nor discarded: while it stands, a new apply there would race its resume.
    pub async fn unfinished_on(&self, target: &str) -> Result<Option<JournalId>, StoreError> {
        Ok(self.backend.unfinished_on(target).await?.map(JournalId))
    }

    pub async fn finish_target(
        &self,
        id: JournalId,
        target: &str,
        state: JournalState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.backend
            .finish_target(id.0, target, state, error.map(str::to_owned))
            .await
    }

    pub async fn finish(&self, id: JournalId, state: JournalState) -> Result<(), StoreError> {
        self.backend.finish(id.0, state).await
    }

    /// Both checks at once: [`StateStore::check_fingerprint_key`] and
    /// [`StateStore::check_state_key`], in one call to the backend.
    pub async fn check_keys(&self, fingerprint_key_id: &str) -> Result<(), StoreError> {
        let sealing = self.sealer.key_id();
        let stored = self
            .backend
            .claim_meta_all(&[
                ("fingerprint_key_id", fingerprint_key_id),
                ("state_key_id", &sealing),
            ])
            .await?;
        let (Some(fingerprint), Some(state)) = (stored.first(), stored.get(1)) else {
            return Err(StoreError::Corrupt("a key check answered nothing".into()));
        };
        if fingerprint != fingerprint_key_id {
            return Err(StoreError::FingerprintKeyMismatch {
                store: self.describe(),
                stored: fingerprint.clone(),
                given: fingerprint_key_id.to_owned(),
            });
        }
        if *state != sealing {
            return Err(StoreError::StateKeyMismatch {
                store: self.describe(),
                stored: state.clone(),
                given: sealing,
            });
        }
        Ok(())
    }

    /// Checks that the records were made with the fingerprint key whose id is `key_id` (a
    /// fingerprint of a fixed text under it, which reveals nothing of the key), recording it
    /// on first use.
    pub async fn check_fingerprint_key(&self, key_id: &str) -> Result<(), StoreError> {
        let stored = self
            .backend
            .claim_meta("fingerprint_key_id", key_id)
            .await?;
        if stored == key_id {
            Ok(())
        } else {
            Err(StoreError::FingerprintKeyMismatch {
                store: self.describe(),
                stored,
                given: key_id.to_owned(),
            })
        }
    }

    /// Checks that the store's values are sealed to this run's state key, recording its id
    /// on first use, so that a runner with another key stops before it seals anything.
    pub async fn check_state_key(&self) -> Result<(), StoreError> {
        let given = self.sealer.key_id();
        let stored = self.backend.claim_meta("state_key_id", &given).await?;
        if stored == given {
            Ok(())
        } else {
            Err(StoreError::StateKeyMismatch {
                store: self.describe(),
                stored,
                given,
            })
        }
    }

    /// Gives up journal `id`: its unwritten ops will never be written, and applies to its
    /// targets may go ahead. Refused for a journal that finished.
    pub async fn discard(&self, id: JournalId) -> Result<Journal, StoreError> {
        let journal = self.journal(id).await?;
        if !matches!(journal.state, JournalState::Applying | JournalState::Failed) {
            return Err(StoreError::Finished {
                journal: id.0,
                state: journal.state.as_str(),
            });
        }
        self.finish(id, JournalState::Discarded).await?;
        Ok(journal)
    }

    /// The newest journal that did not finish cleanly (applying or failed).
    pub async fn latest_unfinished(&self) -> Result<Option<Journal>, StoreError> {
        match self.backend.latest_unfinished().await? {
            Some(id) => self.journal(JournalId(id)).await.map(Some),
            None => Ok(None),
        }
    }

    /// The newest journal that wrote to `target` and was not rolled back.
    pub async fn latest_for_target(&self, target: &str) -> Result<Option<Journal>, StoreError> {
        match self.backend.latest_for_target(target).await? {
            Some(id) => self.journal(JournalId(id)).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn journal(&self, id: JournalId) -> Result<Journal, StoreError> {
        let row = self
            .backend
            .journal(id.0)
            .await?
            .ok_or(StoreError::NoJournal(id.0))?;
        let mut targets = Vec::with_capacity(row.targets.len());
        for t in row.targets {
            let mut ops = Vec::with_capacity(t.ops.len());
            for op in t.ops {
                let before = match (op.before_kind.as_str(), op.before) {
                    ("absent", _) => PreImage::Absent,
                    ("unknown", _) => PreImage::Unknown,
                    ("value", Some(b)) => PreImage::Value(self.sealer.open(&b)?),
                    (other, _) => {
                        return Err(StoreError::Corrupt(format!("bad pre-image kind {other}")));
                    }
                };
                ops.push(JournalOp {
                    key: op.key,
                    change: parse_change(&op.change)?,
                    after: op.after.map(|a| self.sealer.open(&a)).transpose()?,
                    before,
                    before_stamp: op.before_stamp,
                    done: op.done,
                });
            }
            let image = match (t.image_before, t.image_after) {
                (Some(before), Some(after)) => Some(Image {
                    before: self.sealer.open(&before)?,
                    after: self.sealer.open(&after)?,
                }),
                (None, None) => None,
                _ => return Err(StoreError::Corrupt("half an image of a target".into())),
            };
            targets.push(JournalTarget {
                identity: t.identity,
                spec: t.spec,
                label: t.label,
                state: JournalState::parse(&t.state)?,
                error: t.error,
                untouched: t.untouched,
                image,
                ops,
            });
        }
        Ok(Journal {
            id,
            created_at: row.created_at,
            source: row.source,
            state: JournalState::parse(&row.state)?,
            targets,
        })
    }
}

/// Bytes as lower-case hex in a dump.
mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bridge_core::hex::encode(bytes))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        bridge_core::hex::decode(&text).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

mod hex_opt {
    pub(super) fn serialize<S: serde::Serializer>(
        bytes: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&bridge_core::hex::encode(b)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(d)?;
        text.map(|t| {
            bridge_core::hex::decode(&t).ok_or_else(|| serde::de::Error::custom("not hex"))
        })
        .transpose()
    }
}
