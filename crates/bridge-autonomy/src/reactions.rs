//! The Autonomy engine: reactions to the bus, each a durable consumer, each outcome a
//! `genesis.heal` (something was done) or `genesis.intent` (something was decided: an
//! escalation, a verification, a warning) event, which the ledger records.
//!
//! - `envsync.drift` → re-sync each drifted provider (enforce mode), unless it drifted by more
//!   than `drift_alert_threshold` keys or was healed `drift_frequency_limit` times in the last
//!   hour: then escalate instead.
//! - `deploy.platform.failure` → plan that platform: if drift explains the failure, heal it and
//!   retrigger the deploy through its deploy hook (bounded retries with backoff), else
//!   escalate with the failure's details.
//! - `deploy.platform.success` → an intent, then a post-deploy parity verification (whose
//!   drift, if any, comes back as `envsync.drift`).
//! - `envsync.commit` → the schema check ("Blueprint"); a warning intent when it fails.
//!
//! No reaction can feed itself: none reacts to `genesis.*`, a heal's own commit only runs the
//! schema check, and a redeploy's outcome is judged by the drift it finds (none, after a heal).
//! Every reaction is idempotent under redelivery: it first looks for an outcome already
//! recorded for the same cause (`cause_seq`), and a re-sync that finds nothing writes nothing.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bridge_genesis::bus::{DurableConsumer, Event, HistoryQuery, Order, Role, TopicPattern};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::State;
use bridge_operations::Mode;
use bridge_operations::{DriftNotice, ErrorKind, Origin, ProviderSync};
use bridge_platforms::HttpOptions;
use bridge_platforms::http::{Client, Request};

/// How the engine behaves (`ENVSYNC_MODE`, `DRIFT_ALERT_THRESHOLD`, `DRIFT_FREQUENCY_LIMIT`,
/// the deploy hooks).
#[derive(Clone)]
pub struct AutonomyOptions {
    /// `false` (dry-run mode): decide and record intents, change nothing.
    pub enforce: bool,
    /// More drifted keys than this on one provider: escalate rather than heal.
    pub drift_alert_threshold: usize,
    /// Heals of one provider allowed per hour before escalating (flapping protection).
    pub drift_frequency_limit: usize,
    /// Deploy hook URL per platform kind (`render`, `netlify`). Secret: never logged.
    pub deploy_hooks: BTreeMap<String, String>,
    /// Attempts at a deploy hook before escalating.
    pub hook_attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub hook_backoff: Duration,
}

impl Default for AutonomyOptions {
    fn default() -> Self {
        Self {
            enforce: false,
            drift_alert_threshold: 10,
            drift_frequency_limit: 3,
            deploy_hooks: BTreeMap::new(),
            hook_attempts: 3,
            hook_backoff: Duration::from_secs(2),
        }
    }
}

impl std::fmt::Debug for AutonomyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutonomyOptions")
            .field("enforce", &self.enforce)
            .field("drift_alert_threshold", &self.drift_alert_threshold)
            .field("drift_frequency_limit", &self.drift_frequency_limit)
            .field(
                "deploy_hooks",
                &self.deploy_hooks.keys().collect::<Vec<_>>(),
            )
            .field("hook_attempts", &self.hook_attempts)
            .finish()
    }
}

/// One reaction: its consumer, the pattern it follows, what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    Drift,
    DeployFailure,
    DeploySuccess,
    Blueprint,
}

impl Reaction {
    pub(crate) const ALL: [Reaction; 4] = [
        Reaction::Drift,
        Reaction::DeployFailure,
        Reaction::DeploySuccess,
        Reaction::Blueprint,
    ];

    fn consumer(self) -> &'static str {
        match self {
            Reaction::Drift => "autonomy-drift",
            Reaction::DeployFailure => "autonomy-deploy-failure",
            Reaction::DeploySuccess => "autonomy-deploy-success",
            Reaction::Blueprint => "autonomy-blueprint",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Reaction::Drift => "envsync.drift",
            Reaction::DeployFailure => "deploy.platform.failure",
            Reaction::DeploySuccess => "deploy.platform.success",
            Reaction::Blueprint => "envsync.commit",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reaction::Drift => "drift",
            Reaction::DeployFailure => "deploy_failure",
            Reaction::DeploySuccess => "deploy_success",
            Reaction::Blueprint => "blueprint",
        }
    }
}

/// Runs `reaction` until shutdown.
pub(crate) async fn run(state: State, reaction: Reaction) {
    let mut live = state.bus.store().live();
    let mut shutdown = state.shutdown.clone();
    let Ok(pattern) = TopicPattern::parse(reaction.pattern()) else {
        return;
    };
    let mut consumer = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = run_once(&state, reaction, &mut consumer).await {
            // Reopened from the stored floor next time, so the failed event comes again.
            consumer = None;
            state.logger.warn(
                "a reaction failed; it will be retried",
                &[("reaction", reaction.name()), ("error", &e)],
            );
        }
        let wanted = |t: &str| pattern.matches(t);
        if !crate::wake::wait_for_news(&mut live, &mut shutdown, started, wanted).await {
            return;
        }
    }
}

/// Handles every event of `reaction`'s pattern since its last ack, acking each once handled,
/// on `slot`'s consumer (opened when empty).
async fn run_once(
    state: &State,
    reaction: Reaction,
    slot: &mut Option<DurableConsumer>,
) -> Result<(), String> {
    let consumer =
        crate::wake::open_from_now(state, slot, reaction.consumer(), reaction.pattern()).await?;
    let mut handled: Option<HashSet<u64>> = None;
    loop {
        if state.stopping() {
            return Ok(());
        }
        let batch = consumer.next_batch(16).await.map_err(|e| e.to_string())?;
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let handled = match &mut handled {
            Some(handled) => handled,
            // Any outcome of this run's events is stored after the first of them.
            None => handled.insert(handled_after(state, reaction, first.seq).await?),
        };
        // An outcome already recorded means a redelivery after a crash between acting and
        // acking: acked without acting twice.
        let todo: Vec<&Event> = batch.iter().filter(|e| !handled.remove(&e.seq)).collect();
        if reaction == Reaction::DeploySuccess {
            on_deploy_successes(state, &todo).await?;
        } else {
            for (i, event) in todo.iter().enumerate() {
                if state.stopping() {
                    // Shutting down: keep what was done; the rest comes again on next start.
                    if let Some(done) = i.checked_sub(1).and_then(|i| todo.get(i)) {
                        consumer.ack(done.seq).await.map_err(|e| e.to_string())?;
                    }
                    return Ok(());
                }
                if let Err(e) = react(state, reaction, event).await {
                    // Keep what was done: only this event and the ones after come again.
                    if let Some(done) = i.checked_sub(1).and_then(|i| todo.get(i)) {
                        consumer.ack(done.seq).await.map_err(|e| e.to_string())?;
                    }
                    return Err(e);
                }
            }
        }
        // One ack for the batch (acking N acks everything up to N): one write, not one per
        // event.
        if let Some(last) = batch.last() {
            consumer.ack(last.seq).await.map_err(|e| e.to_string())?;
        }
    }
}

/// The topics a reaction's outcomes are published on.
const OUTCOME_TOPICS: [&str; 2] = ["genesis.heal", "genesis.intent"];

/// The events that already have an outcome of `reaction` stored after `seq`. Read once per
/// run that has work, through the topic index, so the cost is the outcomes since the run's
/// first event: a check per event used to scan everything published after that event.
async fn handled_after(
    state: &State,
    reaction: Reaction,
    seq: u64,
) -> Result<HashSet<u64>, String> {
    const PAGE: usize = 1_000;
    let mut handled = HashSet::new();
    for topic in OUTCOME_TOPICS {
        let pattern = TopicPattern::parse(topic).map_err(|e| e.to_string())?;
        let mut after = seq;
        loop {
            let query = HistoryQuery {
                pattern: Some(pattern.clone()),
                after_seq: Some(after),
                limit: PAGE,
                order: Order::Ascending,
                ..HistoryQuery::default()
            };
            let events = state
                .bus
                .history(query)
                .await
                .map_err(|e| format!("reading earlier outcomes: {e}"))?;
            handled.extend(
                events
                    .iter()
                    .filter(|e| {
                        e.payload.get("reaction").and_then(Value::as_str) == Some(reaction.name())
                    })
                    .filter_map(|e| e.payload.get("cause_seq").and_then(Value::as_u64)),
            );
            match events.last() {
                Some(last) if events.len() == PAGE => after = last.seq,
                _ => break,
            }
        }
    }
    Ok(handled)
}

async fn react(state: &State, reaction: Reaction, event: &Event) -> Result<(), String> {
    match reaction {
        Reaction::Drift => on_drift(state, event).await,
        Reaction::DeployFailure => on_deploy_failure(state, event).await,
        Reaction::DeploySuccess => on_deploy_successes(state, &[event]).await,
        Reaction::Blueprint => on_commit(state, event).await,
    }
}

/// Publishes an outcome of `reaction` caused by `cause`.
async fn outcome(
    state: &State,
    topic: &str,
    reaction: Reaction,
    cause: &Event,
    fields: Value,
) -> Result<(), String> {
    state
        .bus
        .publish(
            topic,
            outcome_payload(reaction, cause, fields),
            Role::System,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("publishing {topic}: {e}"))
}

/// The payload of an outcome of `reaction` caused by `cause`: who, why, then `fields`.
fn outcome_payload(reaction: Reaction, cause: &Event, fields: Value) -> Value {
    let mut payload = Map::new();
    payload.insert("reaction".into(), reaction.name().into());
    payload.insert("cause_seq".into(), cause.seq.into());
    payload.insert("cause_topic".into(), cause.topic.clone().into());
    if let Value::Object(fields) = fields {
        payload.extend(fields);
    }
    Value::Object(payload)
}

/// A `genesis.intent` escalation of `reaction`: `kind: "escalation"` plus `fields`.
async fn escalate(
    state: &State,
    reaction: Reaction,
    cause: &Event,
    fields: Value,
) -> Result<(), String> {
    let mut fields = fields;
    if let Value::Object(map) = &mut fields {
        map.insert("kind".into(), "escalation".into());
    }
    outcome(state, "genesis.intent", reaction, cause, fields).await
}

/// The provider a platform kind (`render`, `github`, ...) or report label stands for.
fn provider_for(state: &State, platform: &str) -> Option<String> {
    state.ops.provider_for(platform).map(|p| p.name.clone())
}

/// The origin of what `reaction` does about `cause`, for the events it leads to.
fn origin(reaction: Reaction, cause: &Event) -> Origin {
    Origin::Reaction {
        name: reaction.name(),
        cause_seq: cause.seq,
    }
}

/// Syncs `provider` as `reaction`'s answer to `cause`.
async fn resync(
    state: &State,
    reaction: Reaction,
    cause: &Event,
    provider: &str,
    mode: Mode,
) -> Result<ProviderSync, String> {
    let first = state
        .ops
        .sync_provider(provider, mode, origin(reaction, cause))
        .await;
    match first {
        // An unfinished journal stands in the way (an apply cut off mid-way, the server's
        // own at shutdown included): finish it first. The resume refuses a stale journal,
        // which then escalates with the way out.
        Err(e) if e.kind() == ErrorKind::NotApplied => {
            state
                .ops
                .resume(origin(reaction, cause))
                .await
                .map_err(|e| format!("an unfinished journal could not be resumed: {e}"))?;
            state
                .ops
                .sync_provider(provider, mode, origin(reaction, cause))
                .await
                .map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

/// The keys a drift event says are only on `platform` (`extra_in_<platform>`).
fn extra_keys(event: &Event, platform: &str) -> Vec<String> {
    event
        .payload
        .get("extra")
        .and_then(|e| e.get(format!("extra_in_{platform}")))
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the drift reaction already escalated `extra` on `provider` (the newest 1,000
/// intents are looked at).
async fn already_escalated(
    state: &State,
    provider: &str,
    extra: &[String],
) -> Result<bool, String> {
    let pattern = TopicPattern::parse("genesis.intent").map_err(|e| e.to_string())?;
    let query = HistoryQuery {
        pattern: Some(pattern),
        limit: 1_000,
        order: Order::Descending,
        ..HistoryQuery::default()
    };
    let intents = state
        .bus
        .history(query)
        .await
        .map_err(|e| format!("reading earlier escalations: {e}"))?;
    Ok(intents.iter().any(|e| {
        let p = &e.payload;
        p.get("reaction").and_then(Value::as_str) == Some(Reaction::Drift.name())
            && p.get("kind").and_then(Value::as_str) == Some("escalation")
            && p.get("provider").and_then(Value::as_str) == Some(provider)
            && p.get("extra") == Some(&json!(extra))
    }))
}

/// How many times `provider` was re-synced by a reaction in the last hour.
async fn heals_last_hour(state: &State, provider: &str) -> usize {
    let Ok(pattern) = TopicPattern::parse("genesis.heal") else {
        return 0;
    };
    let hour_ago = OffsetDateTime::now_utc() - time::Duration::HOUR;
    let query = HistoryQuery {
        pattern: Some(pattern),
        from_time: Some(hour_ago),
        limit: 10_000,
        ..HistoryQuery::default()
    };
    state
        .bus
        .history(query)
        .await
        .map(|events| {
            events
                .iter()
                .filter(|e| e.payload.get("provider").and_then(Value::as_str) == Some(provider))
                .count()
        })
        .unwrap_or(0)
}

async fn on_drift(state: &State, event: &Event) -> Result<(), String> {
    let options = &state.options;
    // Only drift found by a verification that may write heals (see `Origin::may_heal`): an
    // operator's `env verify`, the scheduler, a post-deploy check. A read never leads here,
    // since it publishes nothing; an event without the mark (published by hand) does not heal.
    if event.payload.get("heal").and_then(Value::as_bool) != Some(true) {
        return outcome(
            state,
            "genesis.intent",
            Reaction::Drift,
            event,
            json!({"kind": "ignored",
                   "reason": "the drift was not found by a verification that may heal \
                              (`heal: true`): an operator's env verify, the scheduler or a \
                              post-deploy check"}),
        )
        .await;
    }
    let Some(Value::Object(by_platform)) = event.payload.get("by_platform") else {
        return outcome(
            state,
            "genesis.intent",
            Reaction::Drift,
            event,
            json!({"kind": "ignored", "reason": "the drift event names no platform"}),
        )
        .await;
    };
    for (platform, count) in by_platform {
        let drifted = count.as_u64().unwrap_or(0) as usize;
        if drifted == 0 {
            continue;
        }
        let Some(provider) = provider_for(state, platform) else {
            // The source itself, or a place that is not a sync target.
            continue;
        };
        // Keys only on this place, and nothing else drifted: with deletions off a heal
        // writes nothing, so healing would loop until the flapping limit. Say so once.
        let extra = extra_keys(event, platform);
        if extra.len() == drifted && !state.ops.settings().scope.allow_deletions {
            let fields = if already_escalated(state, &provider, &extra).await? {
                json!({"kind": "ignored", "provider": provider, "extra": extra,
                       "reason": "already escalated: keys only on this place, and deletions are off"})
            } else {
                json!({"kind": "escalation", "provider": provider, "extra": extra,
                       "reason": format!(
                           "{} only on {provider}, not in the source; deletions are off \
                            (ENVSYNC_ALLOW_DELETIONS), so a heal cannot remove them: add them to \
                            the source, or delete them with env sync --allow-deletions",
                           extra.join(", "))})
            };
            outcome(state, "genesis.intent", Reaction::Drift, event, fields).await?;
            continue;
        }
        let heals = heals_last_hour(state, &provider).await;
        let decision = if drifted > options.drift_alert_threshold {
            Some(format!(
                "{drifted} keys drifted, more than DRIFT_ALERT_THRESHOLD ({}): a person should look",
                options.drift_alert_threshold
            ))
        } else if heals >= options.drift_frequency_limit {
            Some(format!(
                "healed {heals} times in the last hour (DRIFT_FREQUENCY_LIMIT {}): something keeps undoing it",
                options.drift_frequency_limit
            ))
        } else {
            None
        };
        if let Some(reason) = decision {
            escalate(
                state,
                Reaction::Drift,
                event,
                json!({"provider": provider, "drifted": drifted, "reason": reason}),
            )
            .await?;
            continue;
        }
        if !options.enforce {
            outcome(
                state,
                "genesis.intent",
                Reaction::Drift,
                event,
                json!({"kind": "would_heal", "provider": provider, "drifted": drifted,
                       "reason": "ENVSYNC_MODE is dry-run"}),
            )
            .await?;
            continue;
        }
        let result = resync(state, Reaction::Drift, event, &provider, Mode::Apply).await;
        let fields = match result.as_ref().map(ProviderSync::summary) {
            Ok(r) => json!({"action": "resync", "provider": provider, "drifted": drifted,
                            "result": r.status, "changes": r.changes, "errors": r.errors}),
            Err(e) => json!({"action": "resync", "provider": provider, "drifted": drifted,
                             "result": "failed", "detail": e}),
        };
        outcome(state, "genesis.heal", Reaction::Drift, event, fields).await?;
    }
    Ok(())
}

/// The deploy event's platform and metadata.
fn deploy_facts(event: &Event) -> (String, Value) {
    let platform = event
        .payload
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let metadata = event
        .payload
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Null);
    (platform, metadata)
}

async fn on_deploy_failure(state: &State, event: &Event) -> Result<(), String> {
    let options = state.options.clone();
    let (platform, metadata) = deploy_facts(event);
    let Some(provider) = provider_for(state, &platform) else {
        return escalate(
            state,
            Reaction::DeployFailure,
            event,
            json!({"platform": platform, "metadata": metadata,
                   "reason": "the failed platform is not a sync target, so drift cannot be checked"}),
        )
        .await;
    };
    let plan = match resync(
        state,
        Reaction::DeployFailure,
        event,
        &provider,
        Mode::DryRun,
    )
    .await
    {
        Ok(plan) => plan,
        Err(e) => {
            return escalate(
                state,
                Reaction::DeployFailure,
                event,
                json!({"provider": provider, "metadata": metadata,
                       "reason": format!("could not check parity: {e}")}),
            )
            .await;
        }
    };
    let missing = plan.changed_keys();
    if plan.summary().changes == 0 {
        return escalate(
            state,
            Reaction::DeployFailure,
            event,
            json!({"provider": provider, "metadata": metadata,
                   "reason": "the environment is in parity, so drift does not explain the failure"}),
        )
        .await;
    }
    if !options.enforce {
        return outcome(
            state,
            "genesis.intent",
            Reaction::DeployFailure,
            event,
            json!({"kind": "would_heal", "provider": provider, "keys": missing,
                   "reason": "ENVSYNC_MODE is dry-run"}),
        )
        .await;
    }
    let healed = resync(
        state,
        Reaction::DeployFailure,
        event,
        &provider,
        Mode::Apply,
    )
    .await;
    let healed = match healed.as_ref().map(ProviderSync::summary) {
        Ok(r) if r.errors == 0 => r,
        Ok(r) => {
            return escalate(
                state,
                Reaction::DeployFailure,
                event,
                json!({"provider": provider, "keys": missing,
                       "reason": format!("the heal did not go through: {}", r.detail.as_deref().unwrap_or(r.status))}),
            )
            .await;
        }
        Err(e) => {
            return escalate(
                state,
                Reaction::DeployFailure,
                event,
                json!({"provider": provider, "keys": missing,
                       "reason": format!("the heal failed: {e}")}),
            )
            .await;
        }
    };
    let kind = platform.as_str();
    let Some(hook) = options.deploy_hooks.get(kind) else {
        outcome(
            state,
            "genesis.heal",
            Reaction::DeployFailure,
            event,
            json!({"action": "resync", "provider": provider, "keys": missing,
                   "changes": healed.changes, "redeploy": "no deploy hook configured"}),
        )
        .await?;
        return escalate(
            state,
            Reaction::DeployFailure,
            event,
            json!({"provider": provider,
                   "reason": format!("healed, but no deploy hook is configured for {kind} to redeploy")}),
        )
        .await;
    };
    let attempts = trigger_hook(hook, options.hook_attempts, options.hook_backoff).await;
    match attempts {
        Ok(n) => {
            outcome(
                state,
                "genesis.heal",
                Reaction::DeployFailure,
                event,
                json!({"action": "resync_and_redeploy", "provider": provider, "keys": missing,
                       "changes": healed.changes, "hook_attempts": n}),
            )
            .await
        }
        Err((n, why)) => {
            outcome(
                state,
                "genesis.heal",
                Reaction::DeployFailure,
                event,
                json!({"action": "resync", "provider": provider, "keys": missing,
                       "changes": healed.changes, "redeploy": "failed", "hook_attempts": n}),
            )
            .await?;
            escalate(
                state,
                Reaction::DeployFailure,
                event,
                json!({"provider": provider,
                       "reason": format!("the deploy hook failed {n} times: {why}")}),
            )
            .await
        }
    }
}

/// POSTs the deploy hook through the shared HTTP client until it answers 2xx, at most
/// `attempts` times, with backoff from `backoff` (jittered, doubling). Returns the attempts
/// made, or those and the last failure (which never contains the URL: it holds the hook's
/// secret).
async fn trigger_hook(url: &str, attempts: u32, backoff: Duration) -> Result<u32, (u32, String)> {
    let options = HttpOptions {
        max_attempts: attempts.max(1),
        base_delay: backoff,
        request_timeout: Duration::from_secs(15),
        ..HttpOptions::default()
    };
    let client = Client::new(options).map_err(|e| (0, e.to_string()))?;
    match client.send(Request::post(url)).await {
        Ok(answer) if answer.is_success() => Ok(answer.attempts),
        Ok(answer) => Err((answer.attempts, format!("answered {}", answer.status))),
        Err(e) => Err((e.attempts(), e.to_string())),
    }
}

/// Successful deploys: one parity check for the batch, since it runs after every one of them,
/// and one outcome per deploy, all published in one append.
async fn on_deploy_successes(state: &State, events: &[&Event]) -> Result<(), String> {
    if events.is_empty() {
        return Ok(());
    }
    // A verification whose drift may be healed: the drift reaction picks it up.
    let notice = match events.first() {
        Some(first) => DriftNotice::Publish(origin(Reaction::DeploySuccess, first)),
        None => DriftNotice::Quiet,
    };
    let parity = state
        .ops
        .parity(notice, bridge_operations::now_rfc3339())
        .await;
    let outcomes = events
        .iter()
        .map(|event| {
            let (platform, metadata) = deploy_facts(event);
            let fields = match &parity {
                Ok(report) => json!({
                    "kind": "post_deploy_verification", "platform": platform, "metadata": metadata,
                    "has_drift": report.has_drift,
                    "drift_count": report.summary.drift_count,
                }),
                Err(e) => json!({
                    "kind": "post_deploy_verification", "platform": platform, "metadata": metadata,
                    "error": e.to_string(),
                }),
            };
            (
                "genesis.intent",
                outcome_payload(Reaction::DeploySuccess, event, fields),
            )
        })
        .collect();
    state
        .bus
        .publish_all(outcomes, Role::System)
        .await
        .map(|_| ())
        .map_err(|e| format!("publishing genesis.intent: {e}"))
}

async fn on_commit(state: &State, event: &Event) -> Result<(), String> {
    match state.ops.schema_check().await {
        Ok(None) => Ok(()),
        Ok(Some(violations)) if violations.is_empty() => Ok(()),
        Ok(Some(violations)) => {
            outcome(
                state,
                "genesis.intent",
                Reaction::Blueprint,
                event,
                json!({"kind": "blueprint_warning", "target": event.payload.get("target"),
                       "violations": violations}),
            )
            .await
        }
        Err(e) => {
            outcome(
                state,
                "genesis.intent",
                Reaction::Blueprint,
                event,
                json!({"kind": "blueprint_warning", "error": e.to_string()}),
            )
            .await
        }
    }
}
