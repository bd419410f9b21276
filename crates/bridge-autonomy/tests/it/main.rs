//! Integration tests of the workers on the real operations: places held in memory
//! (`bridge_operations::testing`), a real SQLite (or PostgreSQL) bus, ledger, state store and
//! apply locks in a temporary directory.
#![allow(unreachable_pub, clippy::unwrap_used)]

mod harness;
mod reactions;
mod scheduler;
mod shutdown;
