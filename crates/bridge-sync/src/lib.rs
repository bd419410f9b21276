//! The sync engine: load the source once, then for every target (side by side) read what it
//! holds, diff, check the guards and the platform's rules, journal, apply op by op, record
//! what was written, and verify — or stop at the plan for a dry run. [`resume`] finishes an
//! interrupted apply from its journal; [`rollback`] restores a target's pre-image. And
//! parity: read N places and line them up in a [`bridge_core::parity::ParityMatrix`].
//!
//! Knows platforms only through the [`bridge_platforms::Platform`] trait, and nothing of the
//! CLI: the binary turns flags and config into a [`SyncJob`] and renders the [`SyncOutcome`].

mod engine;
mod recovery;
pub mod sealing;
pub mod store;
mod verify;

pub use engine::{
    Fence, Mode, PlannedSync, ProgressObserver, SyncError, SyncJob, SyncOptions, SyncOutcome,
    Target, TargetOutcome, TargetStatus, digest_remote, digest_set, now_rfc3339, observe, plan,
    run,
};
pub use recovery::{
    RecoveryOutcome, RecoveryTarget, RollbackOptions, resume, rollback, rollback_with,
};
pub use verify::{VerifyError, verify};
