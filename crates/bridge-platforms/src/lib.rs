//! The places variables live, behind one [`Platform`] trait.
//!
//! A platform can be *read* (what it holds, as a [`RemoteSet`] in which write-only values
//! stay opaque), *loaded* as a source (the clear values, for platforms that return them) and
//! asked to *apply* plan ops. One file per platform: `local.rs` (a `.env` file, edited in
//! place), `process.rs` (the current process environment; as a target it prints `export`
//! lines), and the HTTP platforms `render.rs`, `netlify.rs`, `github.rs` over one client
//! ([`http`], which also serves every other outbound HTTP call of Bridge). A [`PlatformSpec`]
//! names one; [`open`] builds the adapter for it.

mod error;
pub mod github;
pub mod http;
pub mod local;
pub mod netlify;
pub mod process;
pub mod render;
mod sealed;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bridge_core::diff::{PlanOp, SyncPlan};
use bridge_core::{EnvSet, SecretClassifier, SecretValue};

pub use error::PlatformError;
pub use http::HttpOptions;
pub use spec::{PlatformKind, PlatformSpec};

/// What a platform holds for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteValue {
    /// The platform returns the value.
    Readable(SecretValue),
    /// The platform confirms the key exists but never returns its value (GitHub Actions
    /// secrets, Netlify secret values). `updated_at` is the platform's own stamp, RFC 3339.
    WriteOnly { updated_at: Option<String> },
}

/// Everything a platform holds, by key.
pub type RemoteSet = BTreeMap<String, RemoteValue>;

/// Wraps a readable set.
pub fn readable(set: &EnvSet) -> RemoteSet {
    set.iter()
        .map(|(k, v)| (k.clone(), RemoteValue::Readable(v.clone())))
        .collect()
}

/// What a platform can do; the engine and reports adapt to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Every value can be read back (false when some are write-only).
    pub values_readable: bool,
    /// Many keys can be written in one call.
    pub bulk_write: bool,
    /// The platform asks for writes one at a time (GitHub's guidance for content creation).
    pub serial_writes: bool,
    /// Bridge's ownership records limit deletions here: the place also holds keys that
    /// Bridge did not write (set by hand or by other tools), so a key is deleted only if
    /// Bridge's records say Bridge wrote it. False where the place belongs to the user
    /// running the sync (a `.env` file, a shell), where every key in scope may be deleted.
    pub ownership_applies: bool,
    /// Applying prints shell lines for the user to run (on stdout, in the CLI) instead of
    /// changing the place: reading the place back after an apply shows nothing new, so an
    /// apply cannot be verified, and whatever prints to the same output must make room.
    pub applies_by_printing: bool,
    /// The place is the file at the spec's path, so two platforms that both say so are one
    /// place when their paths name the same file, even through a symlink or `..` that
    /// their identities do not resolve.
    pub same_place_by_path: bool,
    /// An apply lands whole or not at all (a file replaced by rename, lines printed at the
    /// end): one that failed wrote nothing, so its journal has nothing left to resume.
    pub atomic_apply: bool,
}

/// The ops to apply, with what the platform held when they were planned (a bulk "replace
/// all" endpoint needs the keys outside the plan too).
#[derive(Debug, Clone, Copy)]
pub struct WriteRequest<'a> {
    pub ops: &'a [PlanOp],
    pub current: &'a RemoteSet,
    /// For a rollback: the image journalled by the apply it undoes. A place that keeps bytes
    /// of its own (a `.env` file) puts back its lines from it, where it still holds what
    /// that apply wrote, instead of writing `ops`' values in its own form.
    pub restore: Option<&'a Image>,
}

/// What a place that keeps bytes of its own (a `.env` file) held before an apply, and what
/// the apply writes there: journalled, sealed like values (the text holds them), so that a
/// rollback can restore the bytes and not only the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub before: SecretValue,
    pub after: SecretValue,
}

/// Told about every op as soon as the platform has confirmed it, so that a journal can
/// record progress and a resumed apply never repeats a write.
/// Async because recording may cross a network (a PostgreSQL state store): the next write
/// waits until the previous one is recorded. An error stops the apply: a write whose record
/// cannot be kept must not be followed by more.
#[async_trait::async_trait]
pub trait ApplyProgress: Send + Sync {
    async fn applied(&self, keys: &[&str]) -> Result<(), Interrupted>;
}

/// Why an apply was stopped by whoever records its progress.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stopped before the next write: {0}")]
pub struct Interrupted(pub String);

/// Progress that nobody records.
pub struct NoProgress;

#[async_trait::async_trait]
impl ApplyProgress for NoProgress {
    async fn applied(&self, _keys: &[&str]) -> Result<(), Interrupted> {
        Ok(())
    }
}

/// What applying did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Keys created, updated or deleted.
    pub writes: usize,
    /// For write-only values just written: the platform's `updated_at` after the write, so
    /// that a later change made elsewhere can be told from ours.
    pub stamps: BTreeMap<String, String>,
    /// Stamps this apply moved that other places share (see
    /// [`Platform::shares_stamps_with`]): a Netlify variable has one `updated_at` for all its
    /// contexts, so a write to one context moves every context's stamp.
    pub shared_stamps: BTreeMap<String, StampMove>,
}

/// A shared stamp that one apply moved: what the platform showed just before its writes, and
/// after them. A sibling place whose record still holds `from` saw no change but ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampMove {
    pub from: String,
    pub to: String,
}

/// A plan op that the platform would refuse, found before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    pub key: String,
    pub rule: String,
    /// The value itself cannot be written to this place in any form that its readers agree
    /// on (a `.env` value that Bridge, python-dotenv and Node's dotenv would read
    /// differently): an input error (exit 2), where other rules leave the plan not applied
    /// (exit 1).
    pub unwritable: bool,
}

#[async_trait]
pub trait Platform: Send + Sync {
    fn spec(&self) -> &PlatformSpec;

    fn capabilities(&self) -> Capabilities;

    /// The place this adapter writes to, stable across runs (a file's path, a service id):
    /// the key under which the state store keeps fingerprints, ownership and journals.
    fn identity(&self) -> String {
        self.spec().to_string()
    }

    /// The place one apply lock covers: the Render service, the Netlify site (all its
    /// contexts), the GitHub repository or environment, the file's absolute path. Wider
    /// than [`Platform::identity`] where places share state that concurrent applies could
    /// race on, as a Netlify site's contexts share each variable.
    fn lock_scope(&self) -> String {
        self.identity()
    }

    /// Whether the place `identity` (another adapter's [`Platform::identity`]) shares this
    /// one's per-key stamps, as two contexts of one Netlify site share each variable's
    /// `updated_at`. Such places are always in the same [`Platform::lock_scope`].
    fn shares_stamps_with(&self, _identity: &str) -> bool {
        false
    }

    /// What the platform holds now.
    async fn read(&self) -> Result<RemoteSet, PlatformError>;

    /// The clear values, for use as a sync source.
    async fn load(&self) -> Result<EnvSet, PlatformError> {
        let mut set = EnvSet::new();
        for (key, value) in self.read().await? {
            match value {
                RemoteValue::Readable(v) => {
                    set.insert(key, v);
                }
                RemoteValue::WriteOnly { .. } => {
                    return Err(PlatformError::Unsupported {
                        platform: self.spec().to_string(),
                        what: format!(
                            "the value of {key} cannot be read back, so this platform cannot be a source"
                        ),
                    });
                }
            }
        }
        Ok(set)
    }

    /// The platform's own rules (names, sizes, empty values) that the plan would break.
    fn check_rules(&self, _plan: &SyncPlan) -> Vec<RuleViolation> {
        Vec::new()
    }

    /// For a place that keeps bytes of its own (a `.env` file): what it holds now and what
    /// [`Platform::apply`] of `request` would leave, for the journal. `None` elsewhere, and
    /// when there is nothing to write.
    async fn image(&self, _request: WriteRequest<'_>) -> Result<Option<Image>, PlatformError> {
        Ok(None)
    }

    /// Writes the ops, reporting each to `progress` once the platform has confirmed it.
    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError>;
}

/// Where a remote platform is and who we are to it. Filled by the binary from configuration
/// and the token discovery chain.
#[derive(Clone, Default)]
pub struct RemoteSettings {
    pub api_url: String,
    /// `RENDER_SERVICE_ID`, `NETLIFY_SITE_ID`, `GITHUB_REPOSITORY`.
    pub target_id: Option<String>,
    /// `NETLIFY_ACCOUNT_ID`.
    pub account_id: Option<String>,
    pub token: Option<SecretValue>,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("api_url", &self.api_url)
            .field("target_id", &self.target_id)
            .field("account_id", &self.account_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Everything adapters need from their surroundings, gathered once by the caller.
#[derive(Clone, Default)]
pub struct OpenContext {
    /// Lets `.env` files reference the process environment (`--interpolate-env`).
    pub interpolate_env: bool,
    /// Where a `process` target writes its `export` lines.
    pub process_output: Option<process::Output>,
    pub render: RemoteSettings,
    pub netlify: RemoteSettings,
    pub github: RemoteSettings,
    /// Decides which keys become GitHub Actions secrets rather than variables.
    pub classifier: Option<Arc<SecretClassifier>>,
}

/// Builds the adapter for `spec`.
pub fn open(spec: &PlatformSpec, ctx: &OpenContext) -> Result<Arc<dyn Platform>, PlatformError> {
    open_with(spec, ctx, &HttpOptions::default())
}

/// [`open`] with explicit HTTP timeouts and retry bounds (tests shrink the waits).
pub fn open_with(
    spec: &PlatformSpec,
    ctx: &OpenContext,
    http: &HttpOptions,
) -> Result<Arc<dyn Platform>, PlatformError> {
    match spec.kind {
        PlatformKind::Local => Ok(Arc::new(local::LocalFile::new(
            spec.clone(),
            ctx.interpolate_env,
        ))),
        PlatformKind::Process => Ok(Arc::new(process::ProcessEnv::new(
            spec.clone(),
            ctx.process_output.clone(),
        ))),
        PlatformKind::Render => Ok(Arc::new(render::Render::new(
            spec.clone(),
            &ctx.render,
            http.clone(),
        )?)),
        PlatformKind::Netlify => Ok(Arc::new(netlify::Netlify::new(
            spec.clone(),
            &ctx.netlify,
            ctx.classifier.clone(),
            http.clone(),
        )?)),
        PlatformKind::Github => Ok(Arc::new(github::Github::new(
            spec.clone(),
            &ctx.github,
            ctx.classifier.clone(),
            http.clone(),
        )?)),
    }
}

/// The token in `settings`, or the error naming `variable` and how to get one.
pub(crate) fn required_token<'a>(
    settings: &'a RemoteSettings,
    platform: &str,
    variable: &'static str,
    hint: &str,
) -> Result<&'a SecretValue, PlatformError> {
    settings
        .token
        .as_ref()
        .filter(|t| !t.expose().trim().is_empty())
        .ok_or_else(|| PlatformError::MissingSetting {
            platform: platform.to_string(),
            variable,
            hint: hint.to_string(),
        })
}

/// The place an adapter writes to: the spec's `option` (`render:service=…`), else the
/// configured id, or the error naming `variable` and how to set it.
pub(crate) fn required_target(
    spec: &PlatformSpec,
    option: &str,
    settings: &RemoteSettings,
    variable: &'static str,
    hint: &str,
) -> Result<String, PlatformError> {
    spec.option(option)
        .map(str::to_string)
        .or_else(|| settings.target_id.clone())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| PlatformError::MissingSetting {
            platform: spec.to_string(),
            variable,
            hint: hint.to_string(),
        })
}

/// The ops that write, in plan order.
pub(crate) fn written_ops(ops: &[PlanOp]) -> Vec<&PlanOp> {
    ops.iter().filter(|op| op.change.writes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(target_id: &str) -> RemoteSettings {
        RemoteSettings {
            api_url: "http://127.0.0.1:9".into(),
            target_id: Some(target_id.into()),
            account_id: Some("team".into()),
            token: Some(SecretValue::new("token")),
        }
    }

    fn capabilities(spec: &str) -> Capabilities {
        let ctx = OpenContext {
            render: remote("srv-1"),
            netlify: remote("site-1"),
            github: remote("owner/repo"),
            ..OpenContext::default()
        };
        open(&spec.parse().expect("spec"), &ctx)
            .expect("opens")
            .capabilities()
    }

    #[test]
    fn ownership_applies_only_where_others_write_too() {
        for spec in ["render", "netlify", "github"] {
            assert!(capabilities(spec).ownership_applies, "{spec}");
        }
        for spec in ["local:.env", "process"] {
            assert!(!capabilities(spec).ownership_applies, "{spec}");
        }
    }

    #[test]
    fn only_process_applies_by_printing_and_only_files_compare_paths() {
        for spec in ["local:.env", "process", "render", "netlify", "github"] {
            let caps = capabilities(spec);
            assert_eq!(caps.applies_by_printing, spec == "process", "{spec}");
            assert_eq!(caps.same_place_by_path, spec == "local:.env", "{spec}");
        }
    }
}
