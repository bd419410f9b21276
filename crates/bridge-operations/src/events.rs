//! The `envsync.*` events an operation publishes: keys, operations, fingerprints and counts,
//! never a value. The ledger records them through its one feeder, not from here.

use bridge_core::FingerprintKey;
use bridge_core::parity::ParityReport;
use bridge_genesis::bus::{Bus, Role};
use bridge_sync::store::Journal;
use bridge_sync::{RecoveryOutcome, SyncOutcome, TargetStatus};
use serde_json::{Map, Value, json};

use crate::{OpsError, Origin};

async fn publish(bus: &Bus, topic: &str, payload: Value) -> Result<(), OpsError> {
    bus.publish(topic, payload, Role::System)
        .await
        .map(drop)
        .map_err(|e| OpsError::State(format!("publishing {topic}: {e}")))
}

/// `envsync.init`: a sync that may write is starting.
pub(crate) async fn init(
    bus: &Bus,
    origin: &Origin,
    source: &str,
    targets: &[String],
) -> Result<(), OpsError> {
    let payload = json!({
        "source": source,
        "targets": targets,
        "mode": "enforce",
        "origin": origin.name(),
    });
    publish(bus, "envsync.init", with_cause(payload, origin)).await
}

/// What an applied sync did: `envsync.commit` per target written, `envsync.error` per target
/// that failed or was refused, then `envsync.complete`, in one append.
pub(crate) async fn outcome(
    bus: &Bus,
    origin: &Origin,
    outcome: &SyncOutcome,
    key: &FingerprintKey,
) -> Result<(), OpsError> {
    let source = outcome.source.to_string();
    let journal = outcome.journal.map(|j| j.0);
    let (mut applied, mut failed) = (0, 0);
    let mut events = Vec::new();
    for t in &outcome.targets {
        let changes: Vec<Value> = t
            .plan
            .iter()
            .flat_map(|p| p.writes())
            .map(|op| {
                json!({
                    "key": op.key,
                    "op": op.op_name(),
                    "fingerprint": op.after.as_ref().map(|v| key.fingerprint(v).to_hex()),
                })
            })
            .collect();
        let summary = crate::outcome::Summary::of(t);
        let topic = match &t.status {
            TargetStatus::InSync | TargetStatus::Planned => continue,
            TargetStatus::Applied { .. } | TargetStatus::Unverified { .. } => {
                applied += 1;
                "envsync.commit"
            }
            _ => {
                failed += 1;
                "envsync.error"
            }
        };
        let payload = json!({
            "source": source,
            "target": t.spec.to_string(),
            "identity": t.identity,
            "status": summary.status,
            "error": summary.detail,
            "journal": journal,
            "changes": changes,
            "origin": origin.name(),
        });
        events.push((topic, with_cause(payload, origin)));
    }
    let complete = json!({
        "source": source,
        "targets": outcome.targets.len(),
        "applied": applied,
        "failed": failed,
        "journal": journal,
    });
    publish_with_complete(bus, origin, events, complete, "the sync").await
}

/// Publishes `events` and, when there are any, `envsync.complete` with `complete`'s fields,
/// in one append.
async fn publish_with_complete(
    bus: &Bus,
    origin: &Origin,
    mut events: Vec<(&str, Value)>,
    mut complete: Value,
    what: &str,
) -> Result<(), OpsError> {
    if events.is_empty() {
        return Ok(());
    }
    if let Value::Object(map) = &mut complete {
        map.insert("origin".into(), origin.name().into());
    }
    events.push(("envsync.complete", with_cause(complete, origin)));
    bus.publish_all(events, Role::System)
        .await
        .map(drop)
        .map_err(|e| OpsError::State(format!("publishing the events of {what}: {e}")))
}

/// What a resume or rollback wrote: `envsync.commit` per target written, `envsync.error` per
/// target that failed, then `envsync.complete`, each with `action`.
pub(crate) async fn recovery(
    bus: &Bus,
    origin: &Origin,
    action: &str,
    outcome: &RecoveryOutcome,
) -> Result<(), OpsError> {
    let journal = outcome.journal.0;
    let mut events = Vec::new();
    let (mut applied, mut failed) = (0, 0);
    for t in &outcome.targets {
        let (topic, status) = match &t.error {
            Some(_) => ("envsync.error", "failed"),
            None if t.writes > 0 => ("envsync.commit", "applied"),
            None => continue,
        };
        if t.error.is_some() {
            failed += 1;
        } else {
            applied += 1;
        }
        let payload = json!({
            "action": action,
            "target": t.spec,
            "status": status,
            "writes": t.writes,
            "already_done": t.already_done,
            "unrestorable": t.unrestorable,
            "error": t.error.as_ref().map(|e| e.to_string()),
            "journal": journal,
            "origin": origin.name(),
        });
        events.push((topic, with_cause(payload, origin)));
    }
    let complete = json!({
        "action": action,
        "written_as": outcome.written_as.map(|j| j.0),
        "targets": outcome.targets.len(),
        "applied": applied,
        "failed": failed,
        "journal": journal,
    });
    publish_with_complete(bus, origin, events, complete, action).await
}

/// `envsync.drift`: which keys are out of parity where (names only), and who found it, which
/// decides whether a reaction may heal it.
pub(crate) async fn drift(
    bus: &Bus,
    origin: &Origin,
    report: &ParityReport,
) -> Result<(), OpsError> {
    let conflicts: Vec<&String> = report.conflicts.keys().collect();
    // Keys each place drifts on from the source: what a heal of that place would write.
    let by_platform: Map<String, Value> = report
        .drift_by_place
        .iter()
        .map(|(place, n)| (place.clone(), (*n).into()))
        .collect();
    let payload = json!({
        "verified_at": report.verified_at,
        "platforms": report.platforms,
        "missing": report.missing,
        "extra": report.extra,
        "changed_outside": report.changed_outside.keys().collect::<Vec<_>>(),
        "conflicts": conflicts,
        "by_platform": by_platform,
        "drift_count": report.summary.drift_count,
        "total_keys": report.summary.total_keys,
        "origin": origin.name(),
        "heal": origin.may_heal(),
    });
    publish(bus, "envsync.drift", with_cause(payload, origin)).await
}

/// Adds the causing event's sequence, for operations a reaction started.
fn with_cause(mut payload: Value, origin: &Origin) -> Value {
    if let (Origin::Reaction { cause_seq, .. }, Value::Object(map)) = (origin, &mut payload) {
        map.insert("cause_seq".into(), (*cause_seq).into());
    }
    payload
}

/// A journal given up (`env resume --discard`): `envsync.complete` with `action: discard`,
/// naming the ops that will never be written.
pub(crate) async fn discarded(
    bus: &Bus,
    origin: &Origin,
    journal: &Journal,
) -> Result<(), OpsError> {
    let targets: Vec<Value> = journal
        .targets
        .iter()
        .map(|t| {
            let unwritten: Vec<&str> = t
                .ops
                .iter()
                .filter(|o| !o.done && o.change.writes())
                .map(|o| o.key.as_str())
                .collect();
            json!({"target": t.spec, "unwritten": unwritten})
        })
        .collect();
    let payload = json!({
        "action": "discard",
        "journal": journal.id.0,
        "source": journal.source,
        "targets": targets,
        "origin": origin.name(),
    });
    publish(bus, "envsync.complete", with_cause(payload, origin)).await
}

/// `envsync.complete` with `action: unlock`: an apply lock was broken by hand.
pub(crate) async fn unlocked(
    bus: &Bus,
    origin: &Origin,
    lock: &crate::locks::LockInfo,
) -> Result<(), OpsError> {
    let holder = lock
        .holder
        .as_ref()
        .map(|h| json!({"owner": h.owner, "host": h.host, "pid": h.pid, "since": h.since}));
    let payload = json!({
        "action": "unlock",
        "lock": lock.id,
        "scope": lock.scope,
        "holder": holder,
        "origin": origin.name(),
    });
    publish(bus, "envsync.complete", with_cause(payload, origin)).await
}
