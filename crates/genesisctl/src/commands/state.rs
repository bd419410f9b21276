//! `genesisctl state locks|unlock|export|import|migrate`: the state store as a whole — who
//! holds which apply lock, backups, and moving a state directory's history to a shared
//! PostgreSQL store.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use bridge_genesis::bus::{Event, EventStore, HistoryQuery};
use bridge_genesis::deliveries::DeliveryClaim;
use bridge_genesis::ledger::rows::Checkpoints;
use bridge_genesis::ledger::{LedgerAccess, LedgerDump, LedgerRows};
use bridge_genesis::schedule::ScheduledRun;
use bridge_operations::tokens::{TokenBackend, TokenRecord};
use bridge_operations::{LockInfo, Origin};
use bridge_sync::store::{StateDump, StateStore};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::StateCommand;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure};
use crate::state::StateDir;
use crate::store::StoreUrl;

/// The `state export` file's format name: a reader refuses one it does not know.
const FORMAT: &str = "bridge-state/1";

/// What `state export` writes and `state import` reads. Values stay sealed.
#[derive(Debug, Serialize, Deserialize)]
struct ExportFile {
    format: String,
    exported_at: String,
    /// The store it came from, as errors name it.
    store: String,
    state: StateDump,
    events: Vec<ExportedEvent>,
    /// The API's token hashes (added to `bridge-state/1`; absent in older files).
    #[serde(default)]
    tokens: Vec<ExportedToken>,
    /// Claimed webhook deliveries.
    #[serde(default)]
    delivery_claims: Vec<ExportedDelivery>,
    /// Claimed slots of scheduled jobs.
    #[serde(default)]
    schedule_claims: Vec<ExportedRun>,
    /// The Truth ledger's rows, verbatim (absent in older files, and when there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerDump>,
}

/// A token's record: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExportedToken {
    id: String,
    role: String,
    sha256: String,
    created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExportedDelivery {
    id: String,
    owner: String,
    /// RFC 3339, UTC.
    claimed_at: String,
    published: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExportedRun {
    job: String,
    slot: String,
    owner: String,
    claimed_at: String,
    finished_at: Option<String>,
    outcome: Option<String>,
}

/// The token records, delivery claims and schedule claims a store carries beside its state
/// and events.
#[derive(Debug, Default, Clone, PartialEq)]
struct Carried {
    tokens: Vec<ExportedToken>,
    deliveries: Vec<ExportedDelivery>,
    runs: Vec<ExportedRun>,
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn parse_time(what: &str, text: &str) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{what}: bad time {text}"))
}

impl Carried {
    /// What `tokens` and `events` (its claim tables, when it has them) hold.
    async fn read(
        tokens: &dyn TokenBackend,
        events: Option<&Arc<dyn EventStore>>,
    ) -> anyhow::Result<Self> {
        let records = tokens
            .list()
            .await
            .with_context(|| format!("reading the tokens of {}", tokens.describe()))?;
        let (mut deliveries, mut runs) = (Vec::new(), Vec::new());
        if let Some(events) = events {
            if let Some(d) = events.deliveries() {
                deliveries = d.claims().await.with_context(|| {
                    format!("reading the delivery claims of {}", events.describe())
                })?;
            }
            if let Some(s) = events.schedules() {
                runs = s.all_runs().await.with_context(|| {
                    format!("reading the schedule claims of {}", events.describe())
                })?;
            }
        }
        Ok(Self {
            tokens: records
                .into_iter()
                .map(|t| ExportedToken {
                    id: t.id,
                    role: t.role,
                    sha256: t.sha256,
                    created_at: t.created_at,
                })
                .collect(),
            deliveries: deliveries
                .into_iter()
                .map(|c| ExportedDelivery {
                    id: c.id,
                    owner: c.owner,
                    claimed_at: rfc3339(c.claimed_at),
                    published: c.published,
                })
                .collect(),
            runs: runs
                .into_iter()
                .map(|r| ExportedRun {
                    job: r.job,
                    slot: rfc3339(r.slot),
                    owner: r.owner,
                    claimed_at: rfc3339(r.claimed_at),
                    finished_at: r.finished_at.map(rfc3339),
                    outcome: r.outcome,
                })
                .collect(),
        })
    }

    /// Adds everything to `tokens` and `events`, keeping what is there.
    async fn write(
        &self,
        tokens: &dyn TokenBackend,
        events: &Arc<dyn EventStore>,
    ) -> anyhow::Result<()> {
        for t in &self.tokens {
            tokens
                .insert(TokenRecord {
                    id: t.id.clone(),
                    role: t.role.clone(),
                    sha256: t.sha256.clone(),
                    created_at: t.created_at.clone(),
                })
                .await
                .with_context(|| format!("adding token {} to {}", t.id, tokens.describe()))?;
        }
        let claims_of = |what: &str| {
            anyhow!(
                "{} keeps no {what} (NATS): import into the store's own event log",
                events.describe()
            )
        };
        if !self.deliveries.is_empty() {
            let store = events
                .deliveries()
                .ok_or_else(|| claims_of("delivery claims"))?;
            let claims = self
                .deliveries
                .iter()
                .map(|c| {
                    Ok(DeliveryClaim {
                        id: c.id.clone(),
                        owner: c.owner.clone(),
                        claimed_at: parse_time(&c.id, &c.claimed_at)?,
                        published: c.published,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            store
                .import(claims)
                .await
                .context("importing the delivery claims")?;
        }
        if !self.runs.is_empty() {
            let store = events
                .schedules()
                .ok_or_else(|| claims_of("schedule claims"))?;
            let runs = self
                .runs
                .iter()
                .map(|r| {
                    Ok(ScheduledRun {
                        job: r.job.clone(),
                        slot: parse_time(&r.job, &r.slot)?,
                        owner: r.owner.clone(),
                        claimed_at: parse_time(&r.job, &r.claimed_at)?,
                        finished_at: r
                            .finished_at
                            .as_deref()
                            .map(|f| parse_time(&r.job, f))
                            .transpose()?,
                        outcome: r.outcome.clone(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            store
                .import_runs(runs)
                .await
                .context("importing the schedule claims")?;
        }
        Ok(())
    }
}

/// One event as recorded: sequence, topic, time, publisher, payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExportedEvent {
    seq: u64,
    topic: String,
    /// RFC 3339, microseconds, UTC.
    at: String,
    who: String,
    payload: serde_json::Map<String, serde_json::Value>,
}

impl ExportedEvent {
    fn of(e: &Event) -> Self {
        Self {
            seq: e.seq,
            topic: e.topic.clone(),
            at: e.timestamp_rfc3339(),
            who: e.who.clone(),
            payload: e.payload.clone(),
        }
    }

    fn event(&self) -> anyhow::Result<Event> {
        let timestamp =
            time::OffsetDateTime::parse(&self.at, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("event {}: bad time {}", self.seq, self.at))?;
        Ok(Event {
            seq: self.seq,
            topic: self.topic.clone(),
            timestamp,
            who: self.who.clone(),
            payload: self.payload.clone(),
        })
    }
}

pub async fn run(ctx: &Context<'_>, command: StateCommand) -> CmdResult {
    match command {
        StateCommand::Locks => locks(ctx).await,
        StateCommand::Unlock { id, yes } => unlock(ctx, &id, yes).await,
        StateCommand::Export { out } => export(ctx, out.as_deref()).await,
        StateCommand::Import { file } => import(ctx, &file).await,
        StateCommand::Migrate { from, to } => migrate(ctx, &from, &to).await,
    }
}

fn lock_json(lock: &LockInfo) -> serde_json::Value {
    let holder = lock.holder.as_ref();
    json!({
        "id": lock.id,
        "scope": lock.scope,
        "owner": holder.map(|h| &h.owner),
        "host": holder.map(|h| &h.host),
        "pid": holder.map(|h| h.pid),
        "since": holder.map(|h| &h.since),
    })
}

async fn locks(ctx: &Context<'_>) -> CmdResult {
    let locks = ctx.operations()?.locks().await?;
    if ctx.shell.is_json() {
        let list: Vec<_> = locks.iter().map(lock_json).collect();
        ctx.shell
            .print_json(&json!({ "locks": list }))
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    }
    if locks.is_empty() {
        ctx.shell
            .status("Locks", "none held: no apply is running on this store");
        return Ok(Code::Ok);
    }
    let mut text = String::new();
    for lock in &locks {
        let holder = lock
            .holder
            .as_ref()
            .map_or_else(|| "(holder unknown)".to_owned(), ToString::to_string);
        text.push_str(&format!("{}  {}  {holder}\n", lock.id, lock.scope));
    }
    ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

async fn unlock(ctx: &Context<'_>, id: &str, yes: bool) -> CmdResult {
    let ops = ctx.operations()?;
    let held = ops.locks().await?;
    let Some(lock) = held.iter().find(|l| l.id == id || l.scope == id) else {
        return Err(anyhow!("no apply lock {id} is held: see `genesisctl state locks`").into());
    };
    let holder = lock
        .holder
        .as_ref()
        .map_or_else(|| "an unknown holder".to_owned(), ToString::to_string);
    ctx.shell.warn(format!(
        "breaking the apply lock of {} held by {holder}: if that process is still applying, \
         its writes and the next runner's may interleave",
        lock.scope
    ));
    if !yes {
        if !ctx.shell.interactive() {
            return Err(anyhow!(
                "state unlock breaks another runner's lock: pass --yes (there is no terminal \
                 to ask on)"
            )
            .into());
        }
        if !ctx
            .shell
            .confirm("Break it?")
            .map_err(anyhow::Error::from)?
        {
            ctx.shell.status("Kept", "the lock was not broken");
            return Ok(Code::Drift);
        }
    }
    let broken = ops.unlock(&lock.id, Origin::Cli).await?;
    if ctx.shell.is_json() {
        let list: Vec<_> = broken.iter().map(lock_json).collect();
        ctx.shell
            .print_json(&json!({ "unlocked": list }))
            .map_err(anyhow::Error::from)?;
    } else {
        for lock in &broken {
            ctx.shell
                .status("Unlocked", format!("{} ({})", lock.scope, lock.id));
        }
        if broken.len() > 1 {
            ctx.shell.warn(format!(
                "the holder's {} locks shared one session, and all were released",
                broken.len()
            ));
        }
    }
    Ok(Code::Ok)
}

/// Exit 3 when the store could not be reached, 2 for anything else.
fn store_failure(error: anyhow::Error) -> Failure {
    let unreachable = error.chain().any(|c| {
        c.downcast_ref::<bridge_sync::store::StoreError>()
            .is_some_and(bridge_sync::store::StoreError::is_unavailable)
            || c.downcast_ref::<bridge_genesis::bus::StoreError>()
                .is_some_and(|e| matches!(e, bridge_genesis::bus::StoreError::Io { .. }))
    });
    Failure {
        code: if unreachable {
            Code::Platform
        } else {
            Code::Input
        },
        error,
    }
}

/// Every event of `store`, oldest first.
async fn all_events(store: &Arc<dyn EventStore>) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read(HistoryQuery::default().after_seq(after).limit(1_000))
            .await
            .with_context(|| format!("reading the events of {}", store.describe()))?;
        let Some(last) = page.last() else {
            return Ok(events);
        };
        after = last.seq;
        events.extend(page);
    }
}

/// Runs ledger work (synchronous, possibly on the network) off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow!("the ledger's task ended abnormally: {e}"))?
}

/// Every row of the ledger `access` opens; `None` when it has none.
async fn read_ledger(access: &LedgerAccess) -> anyhow::Result<Option<LedgerDump>> {
    let access = access.clone();
    blocking(move || {
        let rows = access.rows()?;
        let dump = LedgerDump::read(&*rows, access.origin())
            .with_context(|| format!("reading {}", access.describe()))?;
        Ok((!dump.entries.is_empty() || !dump.checkpoints.is_empty()).then_some(dump))
    })
    .await
}

/// Refuses a ledger that already holds entries or checkpoints: checked before anything is
/// written, so that two logs are never mixed.
async fn empty_ledger(access: &LedgerAccess) -> Result<(), Failure> {
    let access = access.clone();
    blocking(move || {
        let rows = access.rows()?;
        rows.setup(access.origin())?;
        let held = rows.stored_len()?;
        if held > 0 || !rows.checkpoints(Checkpoints::Latest)?.is_empty() {
            bail!(
                "{} already holds {held} entries; import only into an empty store, so that \
                 two ledgers are never mixed",
                access.describe()
            );
        }
        Ok(())
    })
    .await
    .map_err(store_failure)
}

/// A ledger from a file made elsewhere must prove all of itself with this run's key before
/// anything is written: every entry under a signed checkpoint (an unsigned tail could be
/// anyone's, and the next checkpoint would vouch for it), its origin this store's, its
/// values storable, and each event it names in the file.
fn check_imported_ledger(
    access: &LedgerAccess,
    dump: &LedgerDump,
    events: &[ExportedEvent],
    file: &Path,
) -> anyhow::Result<()> {
    let refuse = |why: String| anyhow!("{}: the ledger in it {why}", file.display());
    if dump.origin != access.origin() {
        return Err(refuse(format!(
            "is the log {:?}, not this store's {:?}",
            dump.origin,
            access.origin()
        )));
    }
    dump.check_loadable()
        .map_err(|e| refuse(format!("cannot be loaded: {e}")))?;
    let report = dump.verify(&access.verifying_key())?;
    if !report.is_ok() {
        return Err(refuse(format!(
            "does not verify with this run's ledger key ({report}); set BRIDGE_LEDGER_KEY to \
             the key of the store it came from"
        )));
    }
    if report.attested_size != report.entries {
        return Err(refuse(format!(
            "does not verify: entries {}..{} are under no signed checkpoint, so nothing proves \
             them; export again after a checkpoint (`genesisctl ledger checkpoint`)",
            report.attested_size, report.entries
        )));
    }
    let last_event = events.iter().map(|e| e.seq).max().unwrap_or(0);
    if let Some(seq) = dump.last_seq().filter(|seq| *seq > last_event) {
        return Err(refuse(format!(
            "records event {seq}, which the file does not hold (its events end at {last_event})"
        )));
    }
    Ok(())
}

/// Loads `dump` into the ledger `access` opens, then verifies the whole ledger there with
/// its public key: the copy must prove what the original proved.
async fn load_ledger(access: &LedgerAccess, dump: LedgerDump) -> Result<usize, Failure> {
    let access = access.clone();
    blocking(move || {
        let rows: Box<dyn LedgerRows> = access.rows()?;
        dump.load(&*rows)
            .with_context(|| format!("loading the ledger into {}", access.describe()))?;
        let report = rows.verify(access.origin(), &access.verifying_key())?;
        if !report.is_ok() || report.entries != dump.entries.len() as u64 {
            bail!(
                "the ledger copied into {} does not verify ({report}): do not use it",
                access.describe()
            );
        }
        Ok(dump.entries.len())
    })
    .await
    .map_err(|error| Failure {
        code: Code::Platform,
        error,
    })
}

async fn export(ctx: &Context<'_>, out: Option<&Path>) -> CmdResult {
    let store = ctx.open_state_store(false).await.map_err(store_failure)?;
    let (state, described) = match &store {
        Some(store) => (
            store
                .backend()
                .export()
                .await
                .map_err(|e| store_failure(e.into()))?,
            store.describe(),
        ),
        None => (StateDump::default(), "an empty state directory".to_owned()),
    };
    // The ledger before the events: every event an entry records is then in the events
    // read after it, however much is published meanwhile.
    let has_ledger = match ctx.store_url()? {
        StoreUrl::Local => ctx.state.ledger_path().exists(),
        StoreUrl::Postgres(_) => true,
    };
    let ledger = match has_ledger {
        true => read_ledger(&ctx.ledger_access()?)
            .await
            .map_err(store_failure)?,
        false => None,
    };
    let bus = ctx.open_bus().await.map_err(store_failure)?;
    let events = all_events(bus.store()).await.map_err(store_failure)?;
    let tokens = crate::store::open_tokens(&ctx.store_url()?, &ctx.state)
        .await
        .map_err(store_failure)?;
    let carried = Carried::read(&*tokens, Some(bus.store()))
        .await
        .map_err(store_failure)?;
    let file = ExportFile {
        format: FORMAT.to_owned(),
        exported_at: bridge_sync::now_rfc3339(),
        store: described,
        events: events.iter().map(ExportedEvent::of).collect(),
        state,
        tokens: carried.tokens,
        delivery_claims: carried.deliveries,
        schedule_claims: carried.runs,
        ledger,
    };
    let text = serde_json::to_string_pretty(&file).map_err(anyhow::Error::from)?;
    match out {
        Some(path) => {
            bridge_platforms::local::write_atomically(path, format!("{text}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            ctx.shell.status(
                "Exported",
                format!(
                    "{} records, {} journals, {} events, {} tokens, {} delivery and {} \
                     schedule claims, {} ledger entries to {}",
                    file.state.records.len(),
                    file.state.journals.len(),
                    file.events.len(),
                    file.tokens.len(),
                    file.delivery_claims.len(),
                    file.schedule_claims.len(),
                    file.ledger.as_ref().map_or(0, |l| l.entries.len()),
                    path.display()
                ),
            );
        }
        None => ctx
            .shell
            .print(&format!("{text}\n"))
            .map_err(anyhow::Error::from)?,
    }
    Ok(Code::Ok)
}

async fn import(ctx: &Context<'_>, file: &Path) -> CmdResult {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let export: ExportFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `genesisctl state export` file", file.display()))?;
    if export.format != FORMAT {
        return Err(anyhow!(
            "{}: format {} is not {FORMAT}, the one this genesisctl reads",
            file.display(),
            export.format
        )
        .into());
    }
    let url = ctx.store_url()?;
    let (records, journals) = (export.state.records.len(), export.state.journals.len());
    check_keys(&ctx.state, &export.state)?;
    // Everything is checked before anything is written, so a refusal leaves the store as it
    // was (the state import refuses a store with records or journals on its own). Events
    // and ledger entries name each other by sequence: when the file carries either, both
    // logs must be empty, and no entry may name an event the file does not hold.
    let history = !export.events.is_empty() || export.ledger.is_some();
    let events_store = match &url {
        StoreUrl::Postgres(url) if history => Some(empty_event_store(url, "--store").await?),
        _ => None,
    };
    let ledger = match (&url, export.ledger) {
        (StoreUrl::Postgres(_), Some(dump)) => {
            let access = ctx.ledger_access()?;
            check_imported_ledger(&access, &dump, &export.events, file)?;
            empty_ledger(&access).await?;
            Some((access, dump))
        }
        (StoreUrl::Postgres(_), None) if history => {
            empty_ledger(&ctx.ledger_access()?).await?;
            None
        }
        (StoreUrl::Local, Some(dump)) => {
            ctx.shell.warn(format!(
                "{} ledger entries were not imported: a local store keeps its ledger in \
                 ledger.db, which a backup of the state directory restores",
                dump.entries.len()
            ));
            None
        }
        (_, _) => None,
    };
    let store = ctx
        .open_state_store(true)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| anyhow!("no state store to import into"))?;
    let held = store
        .backend()
        .export()
        .await
        .map_err(|e| store_failure(e.into()))?;
    if !held.records.is_empty() || !held.journals.is_empty() {
        return Err(anyhow!(
            "{} already holds records or journals; import only into an empty store, so that \
             two histories are never mixed",
            store.describe()
        )
        .into());
    }
    // The ledger first: a feeder running on the store meanwhile then finds the imported
    // events already recorded, rather than recording them into the empty ledger.
    let entries = match ledger {
        Some((access, dump)) => load_ledger(&access, dump).await?,
        None => 0,
    };
    store
        .backend()
        .import(export.state)
        .await
        .map_err(|e| store_failure(e.into()))?;
    let events = match (&url, &events_store) {
        (StoreUrl::Postgres(_), Some(store)) => import_events(store, &export.events).await?,
        (StoreUrl::Postgres(_), None) => 0,
        (StoreUrl::Local, _) if !export.events.is_empty() => {
            ctx.shell.warn(format!(
                "{} events were not imported: a local store keeps its events in events.db, \
                 which a backup of the state directory restores",
                export.events.len()
            ));
            0
        }
        (StoreUrl::Local, _) => 0,
    };
    let carried = Carried {
        tokens: export.tokens,
        deliveries: export.delivery_claims,
        runs: export.schedule_claims,
    };
    let tokens = crate::store::open_tokens(&url, &ctx.state)
        .await
        .map_err(store_failure)?;
    let bus = ctx.open_bus().await.map_err(store_failure)?;
    carried
        .write(&*tokens, bus.store())
        .await
        .map_err(store_failure)?;
    report(
        ctx,
        "Imported",
        Counts {
            records,
            journals,
            events,
            entries,
        },
        &carried,
        &store.describe(),
    )
}

/// The dump's keys must be this run's, or nothing in it could be judged or opened: checked
/// before anything is written.
fn check_keys(dir: &StateDir, dump: &StateDump) -> anyhow::Result<()> {
    let (key, _) = dir.key()?;
    let ours = [
        (
            "fingerprint_key_id",
            crate::state::key_id(&key),
            "BRIDGE_FINGERPRINT_KEY",
        ),
        ("state_key_id", dir.sealer()?.key_id(), "BRIDGE_STATE_KEY"),
    ];
    for (name, id, variable) in ours {
        if let Some(theirs) = dump.meta.get(name)
            && *theirs != id
        {
            bail!(
                "the export was made with another key ({name} {theirs}, this run's is {id}): \
                 set {variable} to the key of the store it came from"
            );
        }
    }
    Ok(())
}

/// The event store at `url`, refused unless its log is empty (`flag` names where the URL came
/// from).
async fn empty_event_store(
    url: &str,
    flag: &str,
) -> Result<bridge_genesis_scale::PostgresStore, Failure> {
    let store = bridge_genesis_scale::PostgresStore::connect(url)
        .await
        .with_context(|| format!("connecting to the {flag} PostgreSQL event store"))
        .map_err(store_failure)?;
    let last = store
        .last_seq()
        .await
        .context("reading the event log's end")
        .map_err(store_failure)?;
    if last > 0 {
        return Err(anyhow!(
            "the {flag} event log already holds {last} events; import only into an empty \
             store, so that two histories are never mixed"
        )
        .into());
    }
    Ok(store)
}

async fn import_events(
    store: &bridge_genesis_scale::PostgresStore,
    events: &[ExportedEvent],
) -> Result<usize, Failure> {
    let events: Vec<Event> = events
        .iter()
        .map(ExportedEvent::event)
        .collect::<anyhow::Result<_>>()?;
    store
        .import_events(&events)
        .await
        .context("importing the events")
        .map_err(store_failure)
}

/// What an import or a migration moved, besides the tokens and claims.
struct Counts {
    records: usize,
    journals: usize,
    events: usize,
    /// Ledger entries.
    entries: usize,
}

fn report(
    ctx: &Context<'_>,
    verb: &str,
    counts: Counts,
    carried: &Carried,
    store: &str,
) -> CmdResult {
    let Counts {
        records,
        journals,
        events,
        entries,
    } = counts;
    let (tokens, deliveries, runs) = (
        carried.tokens.len(),
        carried.deliveries.len(),
        carried.runs.len(),
    );
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "store": store,
                "records": records,
                "journals": journals,
                "events": events,
                "tokens": tokens,
                "delivery_claims": deliveries,
                "schedule_claims": runs,
                "ledger_entries": entries,
            }))
            .map_err(anyhow::Error::from)?;
    } else {
        ctx.shell.status(
            verb,
            format!(
                "{records} records, {journals} journals, {events} events, {tokens} tokens, \
                 {deliveries} delivery and {runs} schedule claims, {entries} ledger entries \
                 into the {store}"
            ),
        );
    }
    Ok(Code::Ok)
}

async fn migrate(ctx: &Context<'_>, from: &Path, to: &str) -> CmdResult {
    let Ok(StoreUrl::Postgres(url)) = StoreUrl::parse(to) else {
        return Err(anyhow!(
            "--to {}: expected postgres://USER@HOST/DB (a store every runner can reach)",
            crate::store::redact_url(to)
        )
        .into());
    };
    let dir = StateDir::new(from)
        .with_env_keys(&|name| std::env::var(name).ok())?
        .reporting_to(ctx.shell);
    if !from.join(crate::state::STORE_FILE).exists() {
        return Err(anyhow!(
            "{} holds no state store ({}): nothing to migrate",
            from.display(),
            crate::state::STORE_FILE
        )
        .into());
    }
    let source = dir.store().map_err(store_failure)?;
    // Opened with the directory's keys, so the copy is judged and sealed as before.
    check_keys(
        &dir,
        &source
            .backend()
            .export()
            .await
            .map_err(|e| store_failure(e.into()))?,
    )?;
    let dump = source
        .backend()
        .export()
        .await
        .map_err(|e| store_failure(e.into()))?;
    let events_path = from.join(crate::genesis::EVENTS_FILE);
    let local_tokens =
        bridge_server::auth::FileTokens::new(from.join(bridge_server::auth::TOKENS_FILE));
    let (events, carried) = if events_path.exists() {
        let store: Arc<dyn EventStore> = Arc::new(
            bridge_genesis::bus::SqliteStore::open(&events_path)
                .with_context(|| format!("opening {}", events_path.display()))?,
        );
        (
            all_events(&store).await?,
            Carried::read(&local_tokens, Some(&store)).await?,
        )
    } else {
        (Vec::new(), Carried::read(&local_tokens, None).await?)
    };

    // The ledger moves only as a log that proves itself, signed with the directory's key.
    let ledger_path = from.join(crate::state::LEDGER_FILE);
    let ledger = if ledger_path.exists() {
        let local =
            LedgerAccess::sqlite(&ledger_path, crate::state::LEDGER_ORIGIN, dir.ledger_key()?);
        let checked = local.clone();
        blocking(move || {
            let report = checked
                .rows()?
                .verify(checked.origin(), &checked.verifying_key())?;
            if !report.is_ok() {
                bail!(
                    "the ledger {} does not verify ({report}): migrate carries only a log \
                     that proves itself; see `genesisctl ledger verify`",
                    checked.describe()
                );
            }
            Ok(())
        })
        .await?;
        read_ledger(&local).await?
    } else {
        None
    };
    let pg_ledger = crate::store::ledger_access(&StoreUrl::Postgres(url.clone()), &dir)?;

    // Every log is checked empty before anything is written.
    let pg_events = empty_event_store(&url, "--to").await?;
    empty_ledger(&pg_ledger).await?;
    let backend = bridge_genesis_scale::PostgresState::connect(&url, None)
        .await
        .context("opening the --to PostgreSQL state store")
        .map_err(store_failure)?;
    let target = StateStore::new(Arc::new(backend), dir.sealer()?);
    target
        .backend()
        .import(dump.clone())
        .await
        .map_err(|e| store_failure(e.into()))?;
    pg_events
        .import_events(&events)
        .await
        .context("importing the events")
        .map_err(store_failure)?;
    let pg_tokens = bridge_genesis_scale::PgTokens::connect(&url, None)
        .await
        .context("opening the --to PostgreSQL token store")
        .map_err(store_failure)?;
    let pg_claims: Arc<dyn EventStore> = Arc::new(pg_events.clone());
    carried
        .write(&pg_tokens, &pg_claims)
        .await
        .map_err(store_failure)?;

    // Loaded, then verified there with the key: the copy proves what the original proved.
    let entries = match ledger {
        Some(dump) => load_ledger(&pg_ledger, dump).await?,
        None => 0,
    };

    // Read everything back: the move is done only when the copy is the original.
    let copied = target
        .backend()
        .export()
        .await
        .map_err(|e| store_failure(e.into()))?;
    let mut expected = dump.clone();
    expected.meta.remove("schema_version");
    let mut got = copied;
    got.meta.remove("schema_version");
    if got != expected {
        return Err(Failure {
            code: Code::Platform,
            error: anyhow!(
                "the copy in {} differs from {}: do not use it; drop its bridge_* tables and \
                 migrate again",
                target.describe(),
                from.display()
            ),
        });
    }
    let carried_back = Carried::read(&pg_tokens, Some(&pg_claims))
        .await
        .map_err(store_failure)?;
    // The copy may hold more (a token made on the store before the move), never less.
    let kept = carried
        .tokens
        .iter()
        .all(|t| carried_back.tokens.contains(t))
        && carried
            .deliveries
            .iter()
            .all(|c| carried_back.deliveries.contains(c))
        && carried.runs.iter().all(|r| carried_back.runs.contains(r));
    if !kept {
        return Err(Failure {
            code: Code::Platform,
            error: anyhow!(
                "the tokens or claims in {} differ from those of {}: do not use the copy",
                pg_claims.describe(),
                from.display()
            ),
        });
    }
    let pg: Arc<dyn EventStore> = Arc::new(pg_events);
    let back = all_events(&pg).await.map_err(store_failure)?;
    let same = back.len() == events.len()
        && back
            .iter()
            .zip(&events)
            .all(|(a, b)| ExportedEvent::of(a) == ExportedEvent::of(b));
    if !same {
        return Err(Failure {
            code: Code::Platform,
            error: anyhow!(
                "the events in {} differ from those of {} ({} against {})",
                pg.describe(),
                events_path.display(),
                back.len(),
                events.len()
            ),
        });
    }
    if !ctx.shell.is_json() {
        ctx.shell.status(
            "Verified",
            "every record, journal, event, token and claim reads back as it was, and the \
             ledger verifies",
        );
        ctx.shell.warn(format!(
            "every runner of this store needs the keys of {}: set BRIDGE_FINGERPRINT_KEY, \
             BRIDGE_STATE_KEY and BRIDGE_LEDGER_KEY from its fingerprint.key, state.key and \
             ledger.key (or their _FILE forms)",
            from.display()
        ));
    }
    report(
        ctx,
        "Migrated",
        Counts {
            records: dump.records.len(),
            journals: dump.journals.len(),
            events: events.len(),
            entries,
        },
        &carried,
        &target.describe(),
    )
}
