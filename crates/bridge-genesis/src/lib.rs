//! The Genesis bus and the Truth ledger.
//!
//! - [`bus`]: durable, ordered events. `publish(topic, payload, who)` runs the permission
//!   gate, assigns a gap-free sequence and a timestamp, persists, then fans out to in-process
//!   subscribers and durable consumers (stored cursors, at-least-once).
//! - [`ledger`]: a tamper-evident append-only Merkle log (RFC 6962/9162 hashing) of the events
//!   that matter, with Ed25519-signed checkpoints, inclusion and consistency proofs.
//! - [`schedule`]: claimed slots of scheduled jobs, so that a job runs once across the
//!   processes sharing a store.

pub mod bus;
pub mod deliveries;
pub mod feed;
pub mod ledger;
pub mod schedule;
mod sqlite_setup;
