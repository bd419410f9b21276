//! In-memory emulators of the Render, Netlify and GitHub env-var APIs, each
//! an HTTP server on its own 127.0.0.1 port, with the real paths and JSON
//! shapes so Bridge's real clients can talk to them through base URLs.
//! Every emulator can add latency and inject failures, rate limits and write
//! budgets, and counts its traffic for tests (`GET /_emulator/stats`); each handle also
//! logs the write requests it answered (`write_log`), method, path and key.
//!
//! Each emulator holds several instances: Render services, Netlify sites and
//! GitHub repositories, each with its own variables. One of each (the ids
//! [`RENDER_SERVICE_ID`], [`NETLIFY_SITE_ID`], [`GITHUB_REPOSITORY`]) exists
//! from the start; [`EmulatorConfig`] lists more to create at start, and the
//! handles' `add_*` methods create more later. An id the emulator does not hold
//! answers the platform's real 404, as a mistyped or deleted one does. The
//! fault settings, the stats and the write log stay one per emulator, shared
//! by its instances (the write log's paths tell them apart).
//!
//! ```no_run
//! # async fn demo() -> Result<(), bridge_emulators::EmulatorError> {
//! let emulators = bridge_emulators::start(Default::default()).await?;
//! for (name, value) in emulators.exports() {
//!     println!("{name}={value}");
//! }
//! emulators.shutdown().await;
//! # Ok(()) }
//! ```

mod common;
mod faults;
mod github;
mod layer;
mod netlify;
mod platform;
mod render;
mod stats;
mod write_log;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use github::{GithubHandle, GithubRepository, PullRequest};
pub use netlify::{NetlifyHandle, NetlifySite, SecretValueMode};
pub use render::{RenderHandle, RenderService};
pub use stats::Stats;
pub use write_log::WriteRecord;

use faults::FaultSettings;
use layer::Core;
use platform::Platform;

/// Render service id the emulator serves.
pub const RENDER_SERVICE_ID: &str = render::SERVICE_ID;
/// Render API key the emulator accepts.
pub const RENDER_API_TOKEN: &str = platform::RENDER_TOKEN;
/// Netlify site id the emulator serves.
pub const NETLIFY_SITE_ID: &str = netlify::SITE_ID;
/// Netlify account id (and slug) the emulator serves.
pub const NETLIFY_ACCOUNT_ID: &str = netlify::ACCOUNT_ID;
/// Netlify token the emulator accepts.
pub const NETLIFY_API_TOKEN: &str = platform::NETLIFY_TOKEN;
/// GitHub token the emulator accepts.
pub const GITHUB_TOKEN: &str = platform::GITHUB_TOKEN;
/// `owner/repo` the GitHub emulator serves.
pub const GITHUB_REPOSITORY: &str = "bridge/emulated";

/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which emulators to start and which faults to inject.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Start the Render emulator.
    pub render: bool,
    /// Start the Netlify emulator.
    pub netlify: bool,
    /// Start the GitHub emulator.
    pub github: bool,
    /// 0 = ephemeral ports; otherwise render = port, netlify = port + 1,
    /// github = port + 2.
    pub port: u16,
    /// Added to every request before answering.
    pub latency: Duration,
    /// Probability of an injected 503 on any request (not `/_emulator/*`).
    pub error_rate: f64,
    /// Requests per second per emulator; over it, 429 with `Retry-After`.
    pub rate_limit: Option<u32>,
    /// Overrides the default page size of list endpoints (an explicit
    /// `limit`/`per_page` from the client still wins).
    pub page_size: Option<usize>,
    /// After N successful env-var writes every further write answers 500,
    /// until the stats are reset.
    pub fail_after_writes: Option<u64>,
    /// Seed of the fault-injection random sequence.
    pub seed: u64,
    /// Render services to hold besides [`RENDER_SERVICE_ID`], e.g. `srv-prod`.
    pub render_services: Vec<String>,
    /// Netlify sites to hold besides [`NETLIFY_SITE_ID`], in the one account.
    pub netlify_sites: Vec<String>,
    /// GitHub repositories (`owner/repo`) to hold besides [`GITHUB_REPOSITORY`].
    pub github_repositories: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            render: true,
            netlify: true,
            github: true,
            port: 0,
            latency: Duration::ZERO,
            error_rate: 0.0,
            rate_limit: None,
            page_size: None,
            fail_after_writes: None,
            seed: 0,
            render_services: Vec::new(),
            netlify_sites: Vec::new(),
            github_repositories: Vec::new(),
        }
    }
}

/// Why the emulators could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listener of one emulator could not be bound.
    #[error("cannot listen for the {platform} emulator on 127.0.0.1:{port}: {source}")]
    Bind {
        /// `render`, `netlify` or `github`.
        platform: &'static str,
        /// The requested port (0 = ephemeral).
        port: u16,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// `port + 2` does not fit in a port number.
    #[error("port {0} is too high: the emulators need port, port+1 and port+2")]
    PortOverflow(u16),
    /// An id in [`EmulatorConfig`]'s instance lists that cannot appear in a URL path.
    #[error("invalid {platform} id `{id}`: {reason}")]
    InvalidId {
        /// `render`, `netlify` or `github`.
        platform: &'static str,
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// An instance id becomes one path segment (`owner/repo` two), so it must not
/// need escaping: ASCII letters, digits, `-`, `_` and `.`.
fn check_ids(platform: &'static str, ids: &[String]) -> Result<(), EmulatorError> {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s != "."
            && s != ".."
    };
    for id in ids {
        let ok = if platform == "github" {
            id.split_once('/')
                .is_some_and(|(owner, repo)| segment_ok(owner) && segment_ok(repo))
        } else {
            segment_ok(id)
        };
        if !ok {
            return Err(EmulatorError::InvalidId {
                platform,
                id: id.clone(),
                reason: if platform == "github" {
                    "expected owner/repo, each letters, digits, `-`, `_` or `.`"
                } else {
                    "expected letters, digits, `-`, `_` or `.`"
                },
            });
        }
    }
    Ok(())
}

struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// The running emulators. Dropping this aborts the servers; prefer
/// [`Emulators::shutdown`] for a graceful stop.
pub struct Emulators {
    render: Option<RenderHandle>,
    netlify: Option<NetlifyHandle>,
    github: Option<GithubHandle>,
    servers: Vec<Server>,
}

impl std::fmt::Debug for Emulators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulators")
            .field("render", &self.render.as_ref().map(RenderHandle::base_url))
            .field(
                "netlify",
                &self.netlify.as_ref().map(NetlifyHandle::base_url),
            )
            .field("github", &self.github.as_ref().map(GithubHandle::base_url))
            .finish()
    }
}

/// Binds and starts the configured emulators on 127.0.0.1.
pub async fn start(config: EmulatorConfig) -> Result<Emulators, EmulatorError> {
    if config.port != 0 && config.port > u16::MAX - 2 {
        return Err(EmulatorError::PortOverflow(config.port));
    }
    check_ids("render", &config.render_services)?;
    check_ids("netlify", &config.netlify_sites)?;
    check_ids("github", &config.github_repositories)?;
    let port_for = |offset: u16| {
        if config.port == 0 {
            0
        } else {
            config.port + offset
        }
    };
    let settings = FaultSettings {
        latency: config.latency,
        error_rate: config.error_rate.clamp(0.0, 1.0),
        rate_limit: config.rate_limit,
        page_size: config.page_size,
        fail_after_writes: config.fail_after_writes,
    };
    let mut emulators = Emulators {
        render: None,
        netlify: None,
        github: None,
        servers: Vec::new(),
    };
    // Each platform gets its own stream so enabling one does not shift the
    // failure sequence of another.
    let seed_for = |i: u64| config.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if config.render {
        let (listener, core) = bind(Platform::Render, port_for(0), &settings, seed_for(1)).await?;
        let (router, handle) = render::router(core, &config.render_services);
        emulators.servers.push(serve(listener, router));
        emulators.render = Some(handle);
    }
    if config.netlify {
        let (listener, core) = bind(Platform::Netlify, port_for(1), &settings, seed_for(2)).await?;
        let (router, handle) = netlify::router(core, &config.netlify_sites);
        emulators.servers.push(serve(listener, router));
        emulators.netlify = Some(handle);
    }
    if config.github {
        let (listener, core) = bind(Platform::Github, port_for(2), &settings, seed_for(3)).await?;
        let (router, handle) = github::router(core, &config.github_repositories);
        emulators.servers.push(serve(listener, router));
        emulators.github = Some(handle);
    }
    Ok(emulators)
}

async fn bind(
    platform: Platform,
    port: u16,
    settings: &FaultSettings,
    seed: u64,
) -> Result<(TcpListener, Arc<Core>), EmulatorError> {
    let bind_err = |source| EmulatorError::Bind {
        platform: platform.name(),
        port,
        source,
    };
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let core = Core::new(platform, format!("http://{addr}"), settings.clone(), seed);
    Ok((listener, Arc::new(core)))
}

fn serve(listener: TcpListener, router: axum::Router) -> Server {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // `serve` only fails on listener errors, and nobody could act on them
        // from a detached task; the emulator simply stops answering.
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Server {
        shutdown: Some(tx),
        task,
    }
}

impl Emulators {
    /// The variables a client needs, in this order: `RENDER_API_URL`,
    /// `RENDER_API_TOKEN`, `RENDER_SERVICE_ID`, `NETLIFY_API_URL`,
    /// `NETLIFY_API_TOKEN`, `NETLIFY_SITE_ID`, `NETLIFY_ACCOUNT_ID`,
    /// `GITHUB_API_URL`, `GITHUB_TOKEN`, `GITHUB_REPOSITORY` (only for the
    /// started platforms).
    pub fn exports(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, v: &str| out.push((k.to_owned(), v.to_owned()));
        if let Some(r) = &self.render {
            push("RENDER_API_URL", &r.base_url());
            push("RENDER_API_TOKEN", RENDER_API_TOKEN);
            push("RENDER_SERVICE_ID", RENDER_SERVICE_ID);
        }
        if let Some(n) = &self.netlify {
            push("NETLIFY_API_URL", &n.base_url());
            push("NETLIFY_API_TOKEN", NETLIFY_API_TOKEN);
            push("NETLIFY_SITE_ID", NETLIFY_SITE_ID);
            push("NETLIFY_ACCOUNT_ID", NETLIFY_ACCOUNT_ID);
        }
        if let Some(g) = &self.github {
            push("GITHUB_API_URL", &g.base_url());
            push("GITHUB_TOKEN", GITHUB_TOKEN);
            push("GITHUB_REPOSITORY", GITHUB_REPOSITORY);
        }
        out
    }

    /// The Render emulator, if started.
    pub fn render(&self) -> Option<&RenderHandle> {
        self.render.as_ref()
    }

    /// The Netlify emulator, if started.
    pub fn netlify(&self) -> Option<&NetlifyHandle> {
        self.netlify.as_ref()
    }

    /// The GitHub emulator, if started.
    pub fn github(&self) -> Option<&GithubHandle> {
        self.github.as_ref()
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a
    /// short grace period) and waits for the servers to end.
    pub async fn shutdown(mut self) {
        let mut servers = std::mem::take(&mut self.servers);
        // Signal all first so the servers drain concurrently.
        for server in &mut servers {
            if let Some(tx) = server.shutdown.take() {
                // Fails only if the server task already ended.
                let _ = tx.send(());
            }
        }
        for mut server in servers {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server.task)
                .await
                .is_err()
            {
                // A client holding a connection open must not hang the caller.
                server.task.abort();
            }
        }
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        for server in &self.servers {
            server.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exports_only_started_platforms_in_order() {
        let emulators = start(EmulatorConfig {
            netlify: false,
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        let names: Vec<String> = emulators.exports().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "RENDER_API_URL",
                "RENDER_API_TOKEN",
                "RENDER_SERVICE_ID",
                "GITHUB_API_URL",
                "GITHUB_TOKEN",
                "GITHUB_REPOSITORY"
            ]
        );
        assert!(emulators.netlify().is_none());
        let render_url = &emulators.exports()[0].1;
        assert!(render_url.starts_with("http://127.0.0.1:") && render_url.ends_with("/v1"));
        emulators.shutdown().await;
    }

    #[tokio::test]
    async fn port_overflow_is_an_error() {
        let err = start(EmulatorConfig {
            port: u16::MAX - 1,
            ..EmulatorConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, EmulatorError::PortOverflow(_)));
    }
}
