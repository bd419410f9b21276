//! The real `genesisctl` binary, run in a fresh directory per test, with stdout, stderr and
//! the exit code asserted. One test binary with a module per command (each extra binary
//! would relink the whole graph).

// A test binary exports nothing; `pub` marks what modules share.
#![allow(unreachable_pub)]
// A test binary: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

mod sandbox;

mod autosync;
mod check;
mod config;
mod crash;
mod deploy;
mod docs_fake;
mod docs_semantics;
mod documented;
mod errors;
mod events;
mod examples;
mod export;
mod ledger;
mod misc;
mod platforms;
mod rollback;
mod secrets;
mod serve;
mod shared_state;
mod sync;
mod verify;
