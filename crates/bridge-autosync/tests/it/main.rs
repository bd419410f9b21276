//! Auto-Sync against real git repositories in temporary directories and the GitHub
//! emulator on loopback. One test binary, a module per concern.

// A test binary exports nothing; `pub` marks what modules share.
#![allow(unreachable_pub)]
// A test binary: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

mod repo;

mod fetch;
mod plan;
mod redaction;
mod run;
