//! Operations: the one place where syncs, verifications, resumes and rollbacks happen,
//! whoever starts them — a CLI command, an HTTP request, a reaction, the scheduler.
//!
//! ```text
//! caller (CLI / HTTP route / reaction / scheduler)
//!   └─> Operations::{sync, sync_provider, verify, parity, resume, rollback, schema_check}
//!         open places (Host) ─> apply lock per place (locks) ─> envsync.init
//!         ─> bridge_sync engine ─> envsync.commit|error|complete (events) ─> SyncListener
//! ```
//!
//! Every apply takes the same lock ([`locks`]), publishes its events once ([`events`]) and
//! leaves the ledger to its one feeder (the CLI's after each command, the server's feed),
//! which records each bus event once. A read publishes nothing unless its caller asks: only a
//! verification that may lead to a heal (an operator's `env verify`, the scheduler, a
//! post-deploy check) announces its drift. Results are domain types; callers map them to
//! exit codes, HTTP answers or reaction outcomes.

pub mod error;
mod events;
pub mod host;
pub mod locks;
pub mod log;
pub mod outcome;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use bridge_core::diff::{DeletionGuard, Deletions, DiffOptions};
use bridge_core::filter::KeyFilter;
use bridge_core::parity::ParityMatrix;
use bridge_core::schema::Schema;
use bridge_platforms::spec::assign_labels;
use bridge_platforms::{PlatformError, PlatformSpec};
pub use bridge_sync::PlannedSync;
use bridge_sync::store::{Journal, JournalId, JournalTarget, StateStore, StoreError};
use bridge_sync::{
    ProgressObserver, RecoveryOutcome, SyncError, SyncJob, SyncOptions, SyncOutcome, Target,
};

pub use crate::error::{ErrorKind, OpsError};
pub use crate::host::{BoxFuture, Host};
pub use crate::locks::{ApplyGuard, LockInfo, LockService};
pub use crate::log::{LogFormat, LogLevel, Logger};
pub use crate::outcome::{Counts, PlannedChange, ProviderSync, Summary};
pub use bridge_core::SecretClassifier;
pub use bridge_core::diff::UnknownPolicy;
pub use bridge_core::parity::ParityReport;
pub use bridge_sync::{Mode, now_rfc3339};

/// Who started an operation: carried by its events, so the ledger says who did what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A person at the command line.
    Cli,
    /// An HTTP request, by the role of its token.
    Api { role: &'static str },
    /// A reaction to the bus event `cause_seq`.
    Reaction { name: &'static str, cause_seq: u64 },
    /// The scheduled sync.
    Scheduler,
}

impl Origin {
    /// How events name it: `cli`, `api`, `reaction` or `scheduler`.
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Cli => "cli",
            Origin::Api { .. } => "api",
            Origin::Reaction { .. } => "reaction",
            Origin::Scheduler => "scheduler",
        }
    }

    /// Whether drift this origin found may be healed by a reaction: drift is announced only
    /// by verifications that may write (an operator's, the scheduler's, a post-deploy
    /// check), never by a read an observer made.
    pub fn may_heal(&self) -> bool {
        !matches!(self, Origin::Api { role: "observer" })
    }
}

/// Whether a verification announces the drift it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftNotice {
    /// Publish `envsync.drift` (which a reaction may heal), found by this origin.
    Publish(Origin),
    /// Publish nothing: a read.
    Quiet,
}

/// Which keys a sync looks at and whether it may delete.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub include_prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
    pub allow_deletions: bool,
    /// What to do with write-only values that cannot be compared: write them (the default:
    /// the source is canonical) or leave them (`--unknown=skip`).
    pub unknown: UnknownPolicy,
}

/// What operations take from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The canonical source.
    pub source: PlatformSpec,
    /// The configured targets (the providers of the API and the reactions).
    pub targets: Vec<PlatformSpec>,
    pub scope: Scope,
    /// Keys never compared nor written.
    pub ignore: Vec<String>,
    /// Keys never written on any target.
    pub protect: Vec<String>,
    /// The most of a target's keys a sync may delete without `force`.
    pub max_delete_share: f64,
    pub schema: Schema,
    /// How long an apply waits for another one holding a place it needs.
    pub lock_timeout: Duration,
}

/// One sync: from where, to where, how.
pub struct SyncRequest {
    pub source: PlatformSpec,
    pub targets: Vec<PlatformSpec>,
    pub mode: Mode,
    pub scope: Scope,
    /// Lifts the deletion guard.
    pub force: bool,
    pub allow_empty_source: bool,
    pub origin: Origin,
    /// Told how far each target's apply has got.
    pub progress: Option<ProgressObserver>,
    /// Asked between the plan and the first write.
    pub gate: Option<Arc<dyn ApplyGate>>,
}

/// Asked once a sync is planned and before its first write, with the apply locks held, so
/// that what it approves is exactly what is written: the CLI prints the plan here and, on a
/// terminal, asks. Called only when the plan has writes and the sync is not a dry run; it
/// may block (a person answering a question).
pub trait ApplyGate: Send + Sync {
    /// Whether to apply `plan`. A refusal writes nothing and publishes nothing.
    fn approve(&self, plan: &PlannedSync) -> bool;
}

/// One rollback: which apply to undo, whether to write, whether the deletion guard holds.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest {
    /// The journal to undo; `None`: the latest apply to the target.
    pub to: Option<i64>,
    pub mode: Mode,
    /// Lifts the deletion guard.
    pub force: bool,
}

/// Told of every target's sync (the server's metrics listen).
pub trait SyncListener: Send + Sync {
    fn synced(&self, label: &str, mode: Mode, summary: &Summary);
}

/// A configured target, by the name the API and reactions use.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub spec: PlatformSpec,
}

/// The operations of one program (a CLI command, or a server for its life).
pub struct Operations<'h> {
    host: &'h dyn Host,
    settings: Settings,
    providers: Vec<Provider>,
    listener: Option<Arc<dyn SyncListener>>,
    owner: String,
}

impl<'h> Operations<'h> {
    pub fn new(host: &'h dyn Host, settings: Settings) -> Result<Self, OpsError> {
        let labels = assign_labels(&settings.targets)
            .map_err(|e| OpsError::Input(format!("sync.targets: {e}")))?;
        let providers = settings
            .targets
            .iter()
            .cloned()
            .zip(labels)
            .map(|(spec, name)| Provider { name, spec })
            .collect();
        Ok(Self {
            host,
            settings,
            providers,
            listener: None,
            owner: "genesisctl".to_owned(),
        })
    }

    /// Who holds the locks this program takes, as other waiters are told (`serve`, `cli`).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    pub fn with_listener(mut self, listener: Arc<dyn SyncListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn host(&self) -> &'h dyn Host {
        self.host
    }

    /// The configured targets, named as reports name them.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The provider called `name`.
    pub fn provider(&self, name: &str) -> Result<&Provider, OpsError> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
                OpsError::NotFound(format!(
                    "no provider `{name}` is configured; configured: {}",
                    if known.is_empty() {
                        "none (set sync.targets or ENVSYNC_TARGETS)".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// The provider a platform kind (`render`, `github`, ...) or report label stands for.
    pub fn provider_for(&self, platform: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|p| p.name == platform)
            .or_else(|| {
                self.providers
                    .iter()
                    .find(|p| p.spec.to_string().split(':').next() == Some(platform))
            })
    }

    /// The configured filter: include/exclude prefixes and ignored keys.
    pub fn filter(&self) -> KeyFilter {
        let scope = &self.settings.scope;
        KeyFilter::new(
            scope.include_prefixes.clone(),
            scope.exclude_prefixes.clone(),
        )
        .ignoring(self.settings.ignore.clone())
    }

    /// A sync as configured (source, scope) of one provider.
    pub async fn sync_provider(
        &self,
        name: &str,
        mode: Mode,
        origin: Origin,
    ) -> Result<ProviderSync, OpsError> {
        let provider = self.provider(name)?.clone();
        let outcome = self
            .sync(SyncRequest {
                source: self.settings.source.clone(),
                targets: vec![provider.spec.clone()],
                mode,
                scope: self.settings.scope.clone(),
                force: false,
                allow_empty_source: false,
                origin,
                progress: None,
                gate: None,
            })
            .await?;
        let journal = outcome.journal.map(|j| j.0);
        let mut target = outcome.targets.into_iter().next().ok_or_else(|| {
            OpsError::State("the sync returned no outcome for the provider".into())
        })?;
        target.label = provider.name.clone();
        Ok(ProviderSync {
            provider: provider.name,
            target,
            journal,
        })
    }

    /// Plans `request` and, unless it is a dry run, applies it: under the apply lock of
    /// every target, announced by `envsync.init` and reported by `envsync.commit|error|
    /// complete`. A dry run takes no lock, creates no store and publishes nothing.
    pub async fn sync(&self, request: SyncRequest) -> Result<SyncOutcome, OpsError> {
        let dry_run = request.mode == Mode::DryRun;
        let source = self.open_one(&request.source).await?.platform;
        let targets = self.host.open(&request.targets).await?;
        let key = self.host.fingerprint_key()?;
        // A dry run reads the records that judge write-only values but creates no store. On a
        // shared store each of the store, the locks and the bus is a connection to make, so
        // they are opened side by side, the bus while the plan is made.
        let lock = async {
            if dry_run {
                Ok(None)
            } else {
                self.lock(&targets).await.map(Some)
            }
        };
        let (store, held) = tokio::join!(self.host.state_store(!dry_run), lock);
        let (store, held) = (store?, held?);
        let scope = &request.scope;
        let job = SyncJob {
            observer: request.progress.clone(),
            source,
            targets,
            store: store.map(Arc::new),
            // Held until this function returns; the apply stops if one is broken meanwhile.
            fence: held.as_ref().and_then(ApplyGuard::fence),
            options: SyncOptions {
                mode: request.mode,
                diff: DiffOptions {
                    filter: KeyFilter::new(
                        scope.include_prefixes.clone(),
                        scope.exclude_prefixes.clone(),
                    )
                    .ignoring(self.settings.ignore.clone()),
                    deletions: if scope.allow_deletions {
                        Deletions::Allow
                    } else {
                        Deletions::Keep
                    },
                    unknown: scope.unknown,
                },
                guard: (!request.force).then_some(DeletionGuard {
                    max_share: self.settings.max_delete_share,
                }),
                allow_empty_source: request.allow_empty_source,
                fingerprints: key.clone(),
                protect: self.settings.protect.clone(),
            },
        };
        // An apply needs its bus before its first write: one whose events could not be
        // published would change places with no record (a dry run publishes nothing).
        let bus = async {
            match dry_run {
                true => Ok(None),
                false => self.host.bus().await.map(Some),
            }
        };
        let (planned, bus) = tokio::join!(bridge_sync::plan(job), bus);
        let bus = bus?;
        let planned = planned.map_err(sync_error)?;
        if !dry_run
            && planned.has_writes()
            && let Some(gate) = &request.gate
            && !gate.approve(&planned)
        {
            return Ok(planned.into_outcome());
        }
        if let Some(bus) = &bus {
            let targets: Vec<String> = planned.targets().map(|t| t.spec.to_string()).collect();
            let source = planned.source().to_string();
            if let Err(e) = events::init(bus, &request.origin, &source, &targets).await {
                self.host
                    .warn(&format!("could not publish envsync.init: {e}"));
            }
        }
        let outcome = planned.apply().await.map_err(sync_error)?;
        if let Some(bus) = &bus
            && let Err(e) = events::outcome(bus, &request.origin, &outcome, &key).await
        {
            // The writes happened; say loudly that their record did not.
            self.host.warn(&format!(
                "the sync was applied but its events were not published: {e}"
            ));
        }
        if let Some(listener) = &self.listener {
            for t in &outcome.targets {
                listener.synced(&t.label, request.mode, &Summary::of(t));
            }
        }
        Ok(outcome)
    }

    /// Parity across `specs` (the first is the reference). `notice` says whether the drift
    /// found is announced on the bus, for a reaction to heal.
    pub async fn verify(
        &self,
        specs: &[PlatformSpec],
        notice: DriftNotice,
        verified_at: String,
    ) -> Result<(ParityMatrix, ParityReport), OpsError> {
        let places = self.host.open(specs).await?;
        // Fingerprints are needed only to judge write-only values; comparing readable values
        // needs no key, so a verify leaves the state directory alone.
        let key = self.host.existing_fingerprint_key();
        let store = self.host.state_store(false).await?;
        let matrix = bridge_sync::verify(
            &places,
            &self.filter(),
            &self.host.classifier(),
            key.as_ref(),
            store.as_ref(),
            &self.settings.protect,
        )
        .await
        .map_err(|e| OpsError::platform(e.source, format!("reading {}", e.spec)))?;
        let report = matrix.report(verified_at);
        if report.has_drift
            && let DriftNotice::Publish(origin) = &notice
            && let Some(bus) = self.bus().await
            && let Err(e) = events::drift(&bus, origin, &report).await
        {
            self.host
                .warn(&format!("could not publish envsync.drift: {e}"));
        }
        Ok((matrix, report))
    }

    /// Parity across the source and every configured provider.
    pub async fn parity(
        &self,
        notice: DriftNotice,
        verified_at: String,
    ) -> Result<ParityReport, OpsError> {
        if self.providers.is_empty() {
            return Err(OpsError::Input(
                "parity needs at least one target: set sync.targets or ENVSYNC_TARGETS".into(),
            ));
        }
        let mut specs = vec![self.settings.source.clone()];
        specs.extend(self.providers.iter().map(|p| p.spec.clone()));
        self.verify(&specs, notice, verified_at)
            .await
            .map(|(_, report)| report)
    }

    /// The source checked against the schema: `None` without a schema, else the violations
    /// (empty when it conforms), as text without values.
    pub async fn schema_check(&self) -> Result<Option<Vec<String>>, OpsError> {
        let schema = &self.settings.schema;
        if schema.is_empty() {
            return Ok(None);
        }
        let compiled = schema
            .compile()
            .map_err(|e| OpsError::Input(format!("bridge.toml [schema]: {e}")))?;
        let spec = &self.settings.source;
        let vars = self
            .open_one(spec)
            .await?
            .platform
            .load()
            .await
            .map_err(|e| OpsError::platform(e, format!("reading {spec}")))?;
        Ok(Some(
            compiled
                .check(&vars)
                .iter()
                .map(|v| v.to_string())
                .collect(),
        ))
    }

    /// Finishes the latest interrupted apply from its journal, under the apply lock of each
    /// of its targets. `None` when every journalled apply finished.
    pub async fn resume(&self, origin: Origin) -> Result<Option<RecoveryOutcome>, OpsError> {
        let Some(store) = self.host.state_store(false).await? else {
            return Ok(None);
        };
        let Some(journal) = store.latest_unfinished().await.map_err(state)? else {
            return Ok(None);
        };
        // Open every target of the journal up front (opening may need the network for tokens).
        let mut opened = Vec::with_capacity(journal.targets.len());
        for jt in &journal.targets {
            let spec: PlatformSpec = jt.spec.parse().map_err(|e| {
                OpsError::Input(format!("journal {}: target {}: {e}", journal.id, jt.spec))
            })?;
            let mut place = self.open_one(&spec).await?;
            place.label = jt.label.clone();
            opened.push((jt.spec.clone(), place));
        }
        let places: Vec<Target> = opened.iter().map(|(_, t)| t.clone()).collect();
        // The bus before the first write, as for a sync: no change without its record.
        self.host.bus().await?;
        let held = self.lock(&places).await?;
        let open = |jt: &JournalTarget| -> Result<Target, PlatformError> {
            opened
                .iter()
                .find(|(spec, _)| *spec == jt.spec)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| PlatformError::Unsupported {
                    platform: jt.spec.clone(),
                    what: "not opened".into(),
                })
        };
        let key = self.host.fingerprint_key()?;
        let fence = held.fence();
        let outcome = bridge_sync::resume(&store, &open, &key, fence.as_deref())
            .await
            .map_err(sync_error)?;
        self.announce_recovery(&origin, "resume", outcome.as_ref())
            .await;
        Ok(outcome)
    }

    /// Restores `target` to its state before the latest apply to it (or before journal
    /// `to`), under its apply lock. `None` when no journalled apply touched it.
    pub async fn rollback(
        &self,
        target: &PlatformSpec,
        request: RollbackRequest,
        origin: Origin,
    ) -> Result<Option<RecoveryOutcome>, OpsError> {
        let Some(store) = self.host.state_store(false).await? else {
            return Ok(None);
        };
        let place = self.open_one(target).await?;
        let dry_run = request.mode == Mode::DryRun;
        // A dry run reads and plans only: no lock, no events.
        let held = if dry_run {
            None
        } else {
            // The bus before the first write, as for a sync: no change without its record.
            self.host.bus().await?;
            Some(self.lock(std::slice::from_ref(&place)).await?)
        };
        let key = self.host.fingerprint_key()?;
        let options = bridge_sync::RollbackOptions {
            to: request.to.map(JournalId),
            mode: request.mode,
            guard: (!request.force).then_some(DeletionGuard {
                max_share: self.settings.max_delete_share,
            }),
            fence: held.as_ref().and_then(ApplyGuard::fence),
        };
        let outcome = bridge_sync::rollback_with(&store, &place, options, &key)
            .await
            .map_err(sync_error)?;
        if !dry_run {
            self.announce_recovery(&origin, "rollback", outcome.as_ref())
                .await;
        }
        Ok(outcome)
    }

    /// Gives up unfinished journal `id` (`env resume --discard ID`): its unwritten ops will
    /// never be written, and syncs to its targets may go ahead. Announced as
    /// `envsync.complete` with `action: discard`, so the ledger keeps it.
    pub async fn discard(&self, id: i64, origin: Origin) -> Result<Journal, OpsError> {
        let store =
            self.host.state_store(false).await?.ok_or_else(|| {
                OpsError::NotFound(format!("no journal {id}: no state store yet"))
            })?;
        let journal = store.discard(JournalId(id)).await.map_err(|e| match e {
            StoreError::NoJournal(_) => OpsError::NotFound(e.to_string()),
            StoreError::Finished { .. } => OpsError::Input(e.to_string()),
            other => state(other),
        })?;
        if let Some(bus) = self.bus().await
            && let Err(e) = events::discarded(&bus, &origin, &journal).await
        {
            self.host.warn(&format!(
                "journal {id} was discarded but its event was not published: {e}"
            ));
        }
        Ok(journal)
    }

    async fn announce_recovery(
        &self,
        origin: &Origin,
        action: &str,
        outcome: Option<&RecoveryOutcome>,
    ) {
        let Some(outcome) = outcome else {
            return;
        };
        if let Some(bus) = self.bus().await
            && let Err(e) = events::recovery(&bus, origin, action, outcome).await
        {
            self.host.warn(&format!(
                "the {action} was applied but its events were not published: {e}"
            ));
        }
    }

    /// The state store, if one exists (reads create none).
    pub async fn existing_store(&self) -> Result<Option<StateStore>, OpsError> {
        self.host.state_store(false).await
    }

    /// The apply locks held now, by any process sharing the store (`genesisctl state locks`).
    pub async fn locks(&self) -> Result<Vec<LockInfo>, OpsError> {
        self.host.locks().await?.list().await
    }

    /// Breaks the apply lock `id` (`genesisctl state unlock ID`), announced as
    /// `envsync.complete` with `action: unlock`, so the ledger keeps who broke whose lock.
    /// Answers every lock broken with it (a holder's locks share one session).
    pub async fn unlock(&self, id: &str, origin: Origin) -> Result<Vec<LockInfo>, OpsError> {
        let broken = self.host.locks().await?.force(id).await?;
        if let Some(bus) = self.bus().await {
            for lock in &broken {
                if let Err(e) = events::unlocked(&bus, &origin, lock).await {
                    self.host.warn(&format!(
                        "the lock {} was broken but its event was not published: {e}",
                        lock.id
                    ));
                }
            }
        }
        Ok(broken)
    }

    async fn open_one(&self, spec: &PlatformSpec) -> Result<Target, OpsError> {
        let mut places = self.host.open(std::slice::from_ref(spec)).await?;
        places
            .pop()
            .ok_or_else(|| OpsError::State(format!("no place was opened for {spec}")))
    }

    /// The apply locks of `places`.
    async fn lock(&self, places: &[Target]) -> Result<ApplyGuard, OpsError> {
        let service = self.host.locks().await?;
        let scopes = places.iter().map(|t| t.platform.lock_scope());
        let waiting = |message: &str| self.host.warn(message);
        locks::acquire_saying(
            service.as_ref(),
            scopes,
            &self.owner,
            self.settings.lock_timeout,
            &waiting,
        )
        .await
    }

    /// The bus, or `None` with a warning, for what publishes beside an operation (drift, a
    /// discard, an unlock) or after its writes. An apply checks the bus before its first
    /// write instead (`Host::bus`), so it never changes a place with no way to record it.
    async fn bus(&self) -> Option<bridge_genesis::bus::Bus> {
        match self.host.bus().await {
            Ok(bus) => Some(bus),
            Err(e) => {
                self.host.warn(&format!("events cannot be published: {e}"));
                None
            }
        }
    }
}

fn state(e: impl std::fmt::Display) -> OpsError {
    OpsError::State(e.to_string())
}

fn sync_error(e: SyncError) -> OpsError {
    match e {
        SyncError::Source { source, spec } => {
            OpsError::platform(source, format!("reading the source {spec}"))
        }
        // Another runner may hold the place now: as for a lock that could not be had.
        SyncError::Store(e @ StoreError::LockLost(_)) => OpsError::Busy(e.to_string()),
        SyncError::Store(e) => OpsError::State(e.to_string()),
        e @ (SyncError::Unfinished { .. } | SyncError::StaleJournal { .. }) => {
            OpsError::NotApplied(e.to_string())
        }
        other => OpsError::Input(other.to_string()),
    }
}
