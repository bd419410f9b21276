//! The places variables live, behind one [`Platform`] trait.
//!
//! A platform can be *read* (what it holds, as an [`ObservedSet`] in which write-only values
//! stay opaque), *loaded* as a source (the clear values, for platforms that return them) and
//! have a [`SyncPlan`] *applied*. One file per platform: `local.rs` (a `.env` file, edited in
//! place), `process.rs` (the current process environment; as a target it prints `export`
//! lines). A [`PlatformSpec`] (`local:PATH`, `process`, `render`, `netlify:context=production`,
//! `github:environment=prod`) names one; [`open`] builds the adapter for it.

mod error;
pub mod local;
pub mod process;
pub mod spec;

use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::EnvSet;
use bridge_core::diff::{ObservedSet, SyncPlan};

pub use error::PlatformError;
pub use spec::{PlatformKind, PlatformSpec};

/// What a platform can do; the planner and reports adapt to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Values can be read back (false for GitHub Actions secrets).
    pub values_readable: bool,
    /// Many keys can be written in one call.
    pub bulk_write: bool,
}

/// What applying a plan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Keys created, updated or deleted.
    pub writes: usize,
}

#[async_trait]
pub trait Platform: Send + Sync {
    fn spec(&self) -> &PlatformSpec;

    fn capabilities(&self) -> Capabilities;

    /// What the platform holds now.
    async fn read(&self) -> Result<ObservedSet, PlatformError>;

    /// The clear values, for use as a sync source.
    async fn load(&self) -> Result<EnvSet, PlatformError>;

    /// Writes the plan's creates, updates and deletes.
    async fn apply(&self, plan: &SyncPlan) -> Result<ApplyReport, PlatformError>;
}

/// Everything adapters need from their surroundings, gathered once by the caller.
#[derive(Default, Clone)]
pub struct OpenContext {
    /// Resolves `$VAR` references in `.env` files that are not defined in the file itself
    /// (`--interpolate-env`); `None` keeps files independent of the host.
    pub interpolate_env: bool,
    /// Where a `process` target writes its `export` lines.
    pub process_output: Option<process::Output>,
}

/// Builds the adapter for `spec`.
pub fn open(spec: &PlatformSpec, ctx: &OpenContext) -> Result<Arc<dyn Platform>, PlatformError> {
    match spec.kind {
        PlatformKind::Local => Ok(Arc::new(local::LocalFile::new(
            spec.clone(),
            ctx.interpolate_env,
        ))),
        PlatformKind::Process => Ok(Arc::new(process::ProcessEnv::new(
            spec.clone(),
            ctx.process_output.clone(),
        ))),
        PlatformKind::Render | PlatformKind::Netlify | PlatformKind::Github => {
            Err(PlatformError::Unsupported {
                platform: spec.to_string(),
                what: "this build has no adapter for it yet; use local:PATH or process".into(),
            })
        }
    }
}
