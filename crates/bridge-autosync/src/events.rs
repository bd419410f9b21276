//! The events a run publishes, through a trait the caller implements (the CLI wires it to
//! the Genesis bus, whose ledger records `autosync.*`). Payloads are redacted before they
//! reach the trait, so an implementation may store them as they are.
//!
//! | topic | when | payload (besides `run_id`) |
//! |---|---|---|
//! | `autosync.plan` | a run starts | `target`, `branch`, `sources` |
//! | `autosync.fetch` | a source was polled | `source`, `url`, `head`, `attempts`, `new_commits` |
//! | `autosync.commit_selected` | a commit will be carried | `source`, `sha`, `subject`, `type`, `breaking` |
//! | `autosync.commit_skipped` | a commit will not | `source`, `sha`, `subject`, `reason`, `detail`, `path`? |
//! | `autosync.cherry_pick` | a commit was carried | `source`, `sha`, `target_sha`, `branch` |
//! | `autosync.conflict` | a cherry-pick conflicted and was aborted | `source`, `sha`, `subject`, `files`, `policy` |
//! | `autosync.validate` | a validation command ended | `source`, `name`, `kind`, `status`, `errors`, `failures`, `duration_ms` |
//! | `autosync.merge` | the integration branch was fast-forwarded into the target | `source`, `branch`, `into`, `from`, `to`, `risk`, `pushed` |
//! | `autosync.pull_request` | a pull request was opened or updated | `source`, `number`, `url`, `labels`, `created`, `risk` |
//! | `autosync.complete` | a source reached its outcome | `source`, `outcome`, `picked`, `conflicts`, `skipped` |
//! | `autosync.error` | a source failed | `source`, `error` |

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde_json::Value;

use crate::redact::Redactor;

/// What [`AutosyncEvents::publish`] returns.
pub type EventFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where a run's events go. Publishing cannot fail the run: an implementation that can
/// fail should log or collect its errors itself.
pub trait AutosyncEvents: Send + Sync {
    /// Publishes one event.
    fn publish<'a>(&'a self, topic: &'a str, payload: Value) -> EventFuture<'a>;
}

/// Drops every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl AutosyncEvents for NoEvents {
    fn publish<'a>(&'a self, _topic: &'a str, _payload: Value) -> EventFuture<'a> {
        Box::pin(async {})
    }
}

/// Keeps every event in memory (tests, embedding).
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<(String, Value)>>,
}

impl MemoryEvents {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events so far, in order.
    pub fn events(&self) -> Vec<(String, Value)> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The topics so far, in order.
    pub fn topics(&self) -> Vec<String> {
        self.events().into_iter().map(|(t, _)| t).collect()
    }
}

impl AutosyncEvents for MemoryEvents {
    fn publish<'a>(&'a self, topic: &'a str, payload: Value) -> EventFuture<'a> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((topic.to_owned(), payload));
        Box::pin(async {})
    }
}

/// Redacts, stamps the run id, and publishes.
pub(crate) struct Emitter<'a> {
    pub(crate) sink: &'a dyn AutosyncEvents,
    pub(crate) redactor: Redactor,
    pub(crate) run_id: String,
}

impl Emitter<'_> {
    pub(crate) async fn emit(&self, topic: &str, mut payload: Value) {
        if let Value::Object(map) = &mut payload {
            map.insert("run_id".into(), Value::String(self.run_id.clone()));
        }
        let payload = self.redactor.redact_json(payload);
        self.sink.publish(topic, payload).await;
    }
}
