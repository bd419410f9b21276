//! `genesisctl serve --sandbox`: the whole product with one command and no credentials.
//!
//! Starts the Render, Netlify and GitHub emulators in this process, writes a realistic `.env`
//! as the source in a fresh directory, seeds each platform with most of it plus some drift (a
//! missing key, a stale value, secrets Bridge never wrote), and points the configuration at
//! all of it. Everything lives in a new private temporary directory, so nothing of the user's
//! is read or touched, and the directory (its tokens, keys and `.env`) is removed when the
//! sandbox stops or fails to start.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use bridge_emulators::{EmulatorConfig, Emulators};
use bridge_platforms::{PlatformKind, PlatformSpec};

use crate::config::Config;

/// The source's variables: what a small web service typically carries.
const SOURCE: &[(&str, &str)] = &[
    ("APP_NAME", "bridge-demo"),
    ("NODE_ENV", "production"),
    ("LOG_LEVEL", "info"),
    ("API_BASE_URL", "https://api.example.com/v2"),
    ("CDN_URL", "https://cdn.example.com"),
    (
        "DATABASE_URL",
        "postgres://app:sandbox-db-pass@db.internal:5432/app",
    ),
    ("REDIS_URL", "redis://cache.internal:6379/0"),
    ("STRIPE_PUBLISHABLE_KEY", "pk_test_sandbox_51H"),
    ("STRIPE_SECRET_KEY", "sk_test_sandbox_51H"),
    ("JWT_SECRET", "sandbox-jwt-secret-change-me"),
    ("SENTRY_DSN", "https://public@o0.ingest.sentry.io/0"),
    ("SMTP_PASSWORD", "sandbox-mail-pass"),
    ("FEATURE_NEW_CHECKOUT", "true"),
    ("SESSION_TTL_SECONDS", "3600"),
];

/// Instances the emulators hold besides the seeded ones, each also a target; empty, so the
/// first apply-all fills them. Ids as the flags gave them, trimmed.
#[derive(Debug, Default)]
pub struct Extra {
    pub render_services: Vec<String>,
    pub netlify_sites: Vec<String>,
    pub github_repositories: Vec<String>,
}

impl Extra {
    /// `LABEL=SPEC` per instance, the label its id with `_` for what a label cannot hold.
    fn targets(&self) -> String {
        let label = |id: &str| -> String {
            id.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        let mut out = String::new();
        for (ids, spec) in [
            (&self.render_services, "render:service="),
            (&self.netlify_sites, "netlify:site="),
            (&self.github_repositories, "github:repository="),
        ] {
            for id in ids {
                out.push_str(&format!(",{}={spec}{id}", label(id)));
            }
        }
        out
    }
}

/// A running sandbox: keep it alive as long as the server.
pub struct Sandbox {
    pub emulators: Emulators,
    pub dir: PathBuf,
    _removed_on_drop: RemovedOnDrop,
}

/// A directory removed, with everything in it, when this is dropped.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Sandbox {
    /// The emulators' Render deploy hook and Netlify build hook, for the reactions.
    pub fn deploy_hooks(&self) -> Vec<(String, String)> {
        let mut hooks = Vec::new();
        if let Some(r) = self.emulators.render() {
            hooks.push(("render".to_owned(), r.deploy_hook_url()));
        }
        if let Some(n) = self.emulators.netlify() {
            hooks.push(("netlify".to_owned(), n.build_hook_url("sandbox")));
        }
        hooks
    }

    /// Where the vault finds values: the emulators' tokens, so `GET /vault/secret` has
    /// something to hand out.
    pub fn vault_values(&self) -> Vec<(String, String)> {
        self.emulators
            .exports()
            .into_iter()
            .filter(|(k, _)| k.ends_with("_TOKEN"))
            .collect()
    }
}

/// Starts the emulators, seeds them, and returns the configuration and tokens to use.
pub async fn start(
    base: &Config,
    extra: &Extra,
) -> Result<(Config, Vec<(PlatformKind, String)>, Sandbox)> {
    // A name nobody can guess, made new and private: another local user cannot plant it.
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let dir = std::env::temp_dir().join(format!(
        "bridge-sandbox-{}-{}",
        std::process::id(),
        bridge_core::hex::encode(&nonce)
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let removed_on_drop = RemovedOnDrop(dir.clone());
    let env_file = dir.join(".env");
    let mut text =
        String::from("# The sandbox's canonical source. Edit it and POST /envsync/apply-all.\n");
    for (k, v) in SOURCE {
        text.push_str(&format!("{k}={v}\n"));
    }
    fs::write(&env_file, text).with_context(|| format!("writing {}", env_file.display()))?;

    let emulators = bridge_emulators::start(EmulatorConfig {
        render_services: extra.render_services.clone(),
        netlify_sites: extra.netlify_sites.clone(),
        github_repositories: extra.github_repositories.clone(),
        ..EmulatorConfig::default()
    })
    .await
    .context("starting the sandbox's emulators")?;
    seed(&emulators);

    let mut config = base.clone();
    let export = |name: &str| {
        emulators
            .exports()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    config.state_dir = dir.join(".bridge");
    config.store_url = String::new();
    config.bus_url = String::new();
    config.sync.source = format!("local:{}", env_file.display())
        .parse::<PlatformSpec>()
        .map_err(|e| anyhow::anyhow!("the sandbox source: {e}"))?;
    config.sync.targets =
        PlatformSpec::parse_list(&format!("render,netlify,github{}", extra.targets()))
            .map_err(|e| anyhow::anyhow!("the sandbox targets: {e}"))?;
    config.sync.allow_deletions = false;
    let r = &mut config.remote;
    r.render_api_url = export("RENDER_API_URL");
    r.render_service_id = export("RENDER_SERVICE_ID");
    r.netlify_api_url = export("NETLIFY_API_URL");
    r.netlify_site_id = export("NETLIFY_SITE_ID");
    r.netlify_account_id = export("NETLIFY_ACCOUNT_ID");
    r.github_api_url = export("GITHUB_API_URL");
    r.github_repository = export("GITHUB_REPOSITORY");
    config.server.vault_keys = vec![
        "RENDER_API_TOKEN".into(),
        "NETLIFY_API_TOKEN".into(),
        "GITHUB_TOKEN".into(),
    ];
    let tokens = vec![
        (PlatformKind::Render, export("RENDER_API_TOKEN")),
        (PlatformKind::Netlify, export("NETLIFY_API_TOKEN")),
        (PlatformKind::Github, export("GITHUB_TOKEN")),
    ];
    Ok((
        config,
        tokens,
        Sandbox {
            emulators,
            dir,
            _removed_on_drop: removed_on_drop,
        },
    ))
}

/// Each platform holds most of the source, with drift a newcomer can see and fix.
fn seed(emulators: &Emulators) {
    let value = |key: &str| {
        SOURCE
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    };
    if let Some(render) = emulators.render() {
        for (k, v) in SOURCE {
            match *k {
                // Never added on Render.
                "FEATURE_NEW_CHECKOUT" => {}
                // Changed by hand in the dashboard.
                "LOG_LEVEL" => render.set_var(k, "debug"),
                _ => render.set_var(k, v),
            }
        }
    }
    if let Some(netlify) = emulators.netlify() {
        for key in [
            "APP_NAME",
            "NODE_ENV",
            "API_BASE_URL",
            "CDN_URL",
            "STRIPE_PUBLISHABLE_KEY",
            "SENTRY_DSN",
        ] {
            let v = if key == "API_BASE_URL" {
                // Still on the old API version.
                "https://api.example.com/v1"
            } else {
                value(key)
            };
            netlify.set_var(key, "all", v, false);
        }
    }
    if let Some(github) = emulators.github() {
        for key in ["APP_NAME", "NODE_ENV", "LOG_LEVEL", "API_BASE_URL"] {
            github.set_variable(None, key, value(key));
        }
        // Set by hand long ago: write-only, so Bridge reports them as unknown until it writes.
        for key in ["DATABASE_URL", "STRIPE_SECRET_KEY"] {
            github.set_secret(None, key, value(key));
        }
    }
}
