//! The sync engine: load the source once, then for every target (side by side) read what it
//! holds, diff, check the guards, and apply — or stop at the plan for a dry run. And parity:
//! read N places and line them up in a [`bridge_core::parity::ParityMatrix`].
//!
//! Knows platforms only through the [`bridge_platforms::Platform`] trait, and nothing of the
//! CLI: the binary turns flags and config into a [`SyncJob`] and renders the [`SyncOutcome`].

mod engine;
mod verify;

pub use engine::{
    Mode, SyncError, SyncJob, SyncOptions, SyncOutcome, Target, TargetOutcome, TargetStatus, run,
};
pub use verify::{VerifyError, verify};
