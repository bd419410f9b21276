//! Shared helpers: emulators with an [`OpenContext`] pointing at them, fast retry settings,
//! plan ops built by hand, and a progress recorder.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_core::SecretValue;
use bridge_core::diff::{Change, PlanOp};
use bridge_emulators::{EmulatorConfig, Emulators};
use bridge_platforms::{
    ApplyProgress, ApplyReport, HttpOptions, OpenContext, Platform, PlatformError, PlatformSpec,
    RemoteSet, RemoteSettings, RemoteValue, WriteRequest,
};

/// Which emulator a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Render,
    Netlify,
    Github,
}

impl Which {
    pub(crate) fn spec(self) -> &'static str {
        match self {
            Which::Render => "render",
            Which::Netlify => "netlify",
            Which::Github => "github",
        }
    }

    pub(crate) fn token_variable(self) -> &'static str {
        match self {
            Which::Render => "RENDER_API_TOKEN",
            Which::Netlify => "NETLIFY_API_TOKEN",
            Which::Github => "GITHUB_TOKEN",
        }
    }
}

/// Retries that finish in test time: small steps, short caps.
pub(crate) fn fast() -> HttpOptions {
    HttpOptions {
        base_delay: Duration::from_millis(5),
        max_wait: Duration::from_millis(50),
        ..HttpOptions::default()
    }
}

/// Running emulator(s) and the settings that reach them.
pub(crate) struct Env {
    pub(crate) emulators: Emulators,
    pub(crate) ctx: OpenContext,
}

impl Env {
    pub(crate) async fn start(which: Which) -> Self {
        Self::with(which, EmulatorConfig::default()).await
    }

    pub(crate) async fn with(which: Which, config: EmulatorConfig) -> Self {
        let emulators = bridge_emulators::start(EmulatorConfig {
            render: which == Which::Render,
            netlify: which == Which::Netlify,
            github: which == Which::Github,
            ..config
        })
        .await
        .expect("emulators start");
        let exports: HashMap<String, String> = emulators.exports().into_iter().collect();
        let get = |name: &str| exports.get(name).cloned();
        let settings = |url: &str, id: &str, token: &str, account: Option<&str>| RemoteSettings {
            api_url: get(url).unwrap_or_default(),
            target_id: get(id),
            account_id: account.and_then(get),
            token: get(token).map(SecretValue::new),
        };
        let ctx = OpenContext {
            render: settings(
                "RENDER_API_URL",
                "RENDER_SERVICE_ID",
                "RENDER_API_TOKEN",
                None,
            ),
            netlify: settings(
                "NETLIFY_API_URL",
                "NETLIFY_SITE_ID",
                "NETLIFY_API_TOKEN",
                Some("NETLIFY_ACCOUNT_ID"),
            ),
            github: settings("GITHUB_API_URL", "GITHUB_REPOSITORY", "GITHUB_TOKEN", None),
            ..OpenContext::default()
        };
        Self { emulators, ctx }
    }

    pub(crate) fn open(&self, spec: &str) -> Arc<dyn Platform> {
        self.open_with(spec, &fast())
    }

    pub(crate) fn open_with(&self, spec: &str, options: &HttpOptions) -> Arc<dyn Platform> {
        let spec: PlatformSpec = spec.parse().expect("spec parses");
        bridge_platforms::open_with(&spec, &self.ctx, options).expect("adapter opens")
    }

    /// What the emulator holds, in clear, as the platform would serve it to `spec`'s
    /// context: Render's vars, Netlify's values for the context, GitHub's secrets and
    /// variables together.
    pub(crate) fn held(&self, which: Which) -> BTreeMap<String, String> {
        match which {
            Which::Render => self.emulators.render().expect("render").vars(),
            Which::Netlify => self
                .emulators
                .netlify()
                .expect("netlify")
                .vars("production"),
            Which::Github => {
                let g = self.emulators.github().expect("github");
                let mut all = g.variables(None);
                all.extend(g.secrets(None));
                all
            }
        }
    }

    pub(crate) fn stats(&self, which: Which) -> bridge_emulators::Stats {
        match which {
            Which::Render => self.emulators.render().expect("render").stats(),
            Which::Netlify => self.emulators.netlify().expect("netlify").stats(),
            Which::Github => self.emulators.github().expect("github").stats(),
        }
    }

    pub(crate) fn reset_stats(&self, which: Which) {
        match which {
            Which::Render => self.emulators.render().expect("render").reset_stats(),
            Which::Netlify => self.emulators.netlify().expect("netlify").reset_stats(),
            Which::Github => self.emulators.github().expect("github").reset_stats(),
        }
    }

    pub(crate) fn set_rate_limit(&self, which: Which, per_sec: Option<u32>) {
        match which {
            Which::Render => self
                .emulators
                .render()
                .expect("render")
                .set_rate_limit(per_sec),
            Which::Netlify => self
                .emulators
                .netlify()
                .expect("netlify")
                .set_rate_limit(per_sec),
            Which::Github => self
                .emulators
                .github()
                .expect("github")
                .set_rate_limit(per_sec),
        }
    }

    pub(crate) fn set_fail_after_writes(&self, which: Which, n: Option<u64>) {
        match which {
            Which::Render => self
                .emulators
                .render()
                .expect("render")
                .set_fail_after_writes(n),
            Which::Netlify => self
                .emulators
                .netlify()
                .expect("netlify")
                .set_fail_after_writes(n),
            Which::Github => self
                .emulators
                .github()
                .expect("github")
                .set_fail_after_writes(n),
        }
    }
}

/// Records the keys applied, in order.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    pub(crate) fn keys(&self) -> Vec<String> {
        self.0.lock().expect("recorder").clone()
    }
}

#[async_trait::async_trait]
impl ApplyProgress for Recorder {
    async fn applied(&self, keys: &[&str]) -> Result<(), bridge_platforms::Interrupted> {
        self.0
            .lock()
            .expect("recorder")
            .extend(keys.iter().map(|k| k.to_string()));
        Ok(())
    }
}

pub(crate) fn op(key: &str, change: Change, after: Option<&str>) -> PlanOp {
    PlanOp {
        key: key.into(),
        change,
        before: None,
        after: after.map(SecretValue::new),
        reason: None,
    }
}

pub(crate) fn creates(pairs: &[(&str, &str)]) -> Vec<PlanOp> {
    pairs
        .iter()
        .map(|(k, v)| op(k, Change::Create, Some(v)))
        .collect()
}

pub(crate) fn updates(pairs: &[(&str, &str)]) -> Vec<PlanOp> {
    pairs
        .iter()
        .map(|(k, v)| op(k, Change::Update, Some(v)))
        .collect()
}

pub(crate) fn deletes(keys: &[&str]) -> Vec<PlanOp> {
    keys.iter().map(|k| op(k, Change::Delete, None)).collect()
}

/// Reads, then applies `ops` against what was read, as the engine does.
pub(crate) async fn apply(
    platform: &dyn Platform,
    ops: &[PlanOp],
    progress: &dyn ApplyProgress,
) -> Result<ApplyReport, PlatformError> {
    let current = platform.read().await?;
    apply_on(platform, ops, &current, progress).await
}

pub(crate) async fn apply_on(
    platform: &dyn Platform,
    ops: &[PlanOp],
    current: &RemoteSet,
    progress: &dyn ApplyProgress,
) -> Result<ApplyReport, PlatformError> {
    platform
        .apply(
            WriteRequest {
                ops,
                current,
                restore: None,
            },
            progress,
        )
        .await
}

/// The readable values of a read, and the keys of its write-only ones.
pub(crate) fn split(set: &RemoteSet) -> (BTreeMap<String, String>, Vec<String>) {
    let mut readable = BTreeMap::new();
    let mut write_only = Vec::new();
    for (k, v) in set {
        match v {
            RemoteValue::Readable(v) => {
                readable.insert(k.clone(), v.expose().to_string());
            }
            RemoteValue::WriteOnly { .. } => write_only.push(k.clone()),
        }
    }
    (readable, write_only)
}

pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Fails if `err`'s `Display` or `Debug` contains any of `needles`.
pub(crate) fn assert_clean(err: &PlatformError, needles: &[&str]) {
    let text = format!("{err}\n{err:?}");
    for needle in needles {
        assert!(!text.contains(needle), "`{needle}` leaked into: {text}");
    }
}
