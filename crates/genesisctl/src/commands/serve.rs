//! `genesisctl serve [--sandbox]`: the control plane. Wires the configuration, the bus, the
//! ledger, the tokens and the operations into `bridge-server` (HTTP) and `bridge-autonomy`
//! (reactions, scheduler, ledger feed), listens, and shuts down on SIGINT/SIGTERM within
//! `server.shutdown_timeout_secs`: requests in flight first, then the background work.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bridge_autonomy::{WorkerParts, Workers};
use bridge_server::auth::{TOKENS_FILE, create_token_in};
use bridge_server::{
    AppState, LogFormat, LogLevel, Logger, Metrics, Parts, Role, ServerOptions, TokenStore,
    VaultLookup,
};
use serde_json::json;

use crate::cli::{LogFormatArg, OutputFormat, ServeArgs};
use crate::commands::emulate::{instances, wait_for_shutdown};
use crate::context::{Context, now_rfc3339};
use crate::exit::{CmdResult, Code};
use crate::shell::Shell;
use crate::state::StateDir;
use crate::store::StoreUrl;

pub async fn run(ctx: Context<'_>, args: &ServeArgs) -> CmdResult {
    let shell = ctx.shell;
    let level: LogLevel = args
        .log_level
        .parse()
        .map_err(|e: String| anyhow!("--log-level: {e}"))?;
    let format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    let logger = Logger::new(format, level);

    let (config, given_tokens, sandbox) = if args.sandbox {
        let (config, tokens, sandbox) = crate::sandbox::start(
            &ctx.config,
            &crate::sandbox::Extra {
                render_services: instances(&args.render_services),
                netlify_sites: instances(&args.netlify_sites),
                github_repositories: instances(&args.github_repositories),
            },
        )
        .await?;
        (config, tokens, Some(sandbox))
    } else {
        (ctx.config.clone(), Vec::new(), None)
    };
    // The engine reports nothing on a terminal: the server answers in JSON and logs.
    let quiet: &'static Shell = Box::leak(Box::new(Shell::new(OutputFormat::Json, true)));
    // The server's context lives as long as the process: its operations are shared by the
    // routes and the background workers.
    let state = StateDir::new(config.state_dir.clone())
        .with_env_keys(&|name| std::env::var(name).ok())?
        .reporting_to(shell);
    let server_ctx: &'static Context<'static> = Box::leak(Box::new(
        Context::new(quiet, config, state, given_tokens).serving(),
    ));
    server_ctx.state.ensure()?;
    // rustls on `ring` for every client the server builds (platform adapters, deploy hooks).
    bridge_platforms::http::install_tls();
    // A witness that cannot be named is a configuration error, before anything starts.
    let witness = match server_ctx.config.ledger_witness.trim() {
        "" => None,
        text => Some(crate::witness::Witness::parse(text).context("ledger.witness")?),
    };
    let bus = server_ctx.open_bus().await?;
    let ledger = server_ctx.ledger_access()?;
    // The token hashes: `tokens.json`, re-read inline when it changes, or the PostgreSQL
    // store's table, polled by a task of its own (shared by every server of the store).
    let store_url = server_ctx.store_url()?;
    let token_backend = crate::store::open_tokens(&store_url, &server_ctx.state).await?;
    let sandbox_token = match &sandbox {
        Some(_) => Some(
            create_token_in(&*token_backend, Role::Admiral, &now_rfc3339())
                .await
                .context("creating the sandbox's admiral token")?
                .0,
        ),
        None => None,
    };
    let tokens = match &store_url {
        StoreUrl::Local => {
            let path = server_ctx.state.path().join(TOKENS_FILE);
            TokenStore::open(&path).with_context(|| format!("reading {}", path.display()))?
        }
        StoreUrl::Postgres(_) => TokenStore::shared(token_backend.clone(), logger.clone())
            .await
            .with_context(|| format!("reading the tokens of {}", token_backend.describe()))?,
    };
    let no_tokens = tokens.is_empty();
    let vault: VaultLookup = match &sandbox {
        Some(s) => {
            let values = s.vault_values();
            Arc::new(move |key: &str| {
                values
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
        }
        None => Arc::new(|key: &str| std::env::var(key).ok()),
    };
    let server = &server_ctx.config.server;
    let options = ServerOptions {
        max_body_bytes: server.max_body_bytes,
        webhook_max_body_bytes: server.webhook_max_body_bytes,
        request_timeout: Duration::from_secs(server.request_timeout_secs),
        vault_keys: server.vault_keys.clone(),
        header_timeout: Duration::from_secs(server.header_timeout_secs),
        idle_timeout: Duration::from_secs(server.idle_timeout_secs),
        max_connections: server.max_connections,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let webhooks = bridge_webhooks::webhook::WebhookVerifier::new(
        bridge_webhooks::webhook::WebhookSecrets::from_env()
            .context("reading the deploy webhook secrets")?,
        bridge_webhooks::webhook::VerifyOptions {
            max_body_bytes: server.webhook_max_body_bytes,
            ..bridge_webhooks::webhook::VerifyOptions::default()
        },
    );
    let autonomy = autonomy_options(&server_ctx.config, sandbox.as_ref());
    // ENVSYNC_SCHEDULE: runs once across the servers sharing the store (a lock in it).
    let scheduler = crate::genesis::scheduled_sync(&bus, &server_ctx.config.schedule, &logger);
    let listen = server.listen.clone();
    let grace = Duration::from_secs(server.shutdown_timeout_secs);
    let metrics = Arc::new(Metrics::for_app());
    let ops = Arc::new(
        server_ctx
            .operations()?
            .with_owner("genesisctl serve")
            .with_listener(metrics.clone()),
    );
    let health = crate::health::envsync_health(server_ctx, ops.providers()).await;
    let state_path = server_ctx.state.path().to_owned();
    let workers = Workers::spawn(WorkerParts {
        bus: bus.clone(),
        ops: ops.clone(),
        ledger: ledger.clone(),
        options: autonomy,
        scheduler,
        logger: logger.clone(),
    });
    // Each checkpoint the feed signs goes to the witness; stopped after the workers, so the
    // one signed at shutdown is published too.
    let (stop_witness, witness_stop) = tokio::sync::watch::channel(false);
    let witness_task = witness.map(|witness| {
        tokio::spawn(crate::witness::publish_checkpoints(
            server_ctx,
            witness,
            ledger.clone(),
            logger.clone(),
            witness_stop,
        ))
    });
    let state = AppState::new(Parts {
        options,
        bus,
        ledger,
        ops,
        health,
        metrics,
        tokens,
        vault,
        webhooks,
        logger: logger.clone(),
    });

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen} (set --listen or BRIDGE_LISTEN)"))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("reading the address bound for {listen}"))?;
    let url = format!("http://{addr}");

    if shell.is_json() {
        shell
            .print_json(&json!({
                "listening": url,
                "state_dir": state_path.display().to_string(),
                "sandbox": sandbox.as_ref().map(|s| json!({
                    "dir": s.dir.display().to_string(),
                    "token": sandbox_token,
                    "emulators": s.emulators.exports().into_iter()
                        .filter(|(k, _)| k.ends_with("_API_URL"))
                        .map(|(k, v)| (k, serde_json::Value::String(v)))
                        .collect::<serde_json::Map<_, _>>(),
                })),
            }))
            .map_err(anyhow::Error::from)?;
    } else {
        let mut text = format!("Listening on {url}\n");
        if let (Some(s), Some(token)) = (&sandbox, &sandbox_token) {
            text.push_str(&sandbox_banner(&url, s, token));
        }
        shell.print(&text).map_err(anyhow::Error::from)?;
        if no_tokens && sandbox.is_none() {
            shell.warn(
                "no API token yet: every protected route answers 401 until you run \
                 `genesisctl token create --role admiral`",
            );
        }
    }
    state.logger().info(
        "listening",
        &[
            ("url", &url),
            ("state_dir", &state_path.display().to_string()),
        ],
    );

    // One deadline for the whole shutdown: the requests get it first, the workers what is
    // left of it.
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        wait_for_shutdown().await;
        let _ = signalled_tx.send(tokio::time::Instant::now());
    };
    let served = bridge_server::serve(listener, state, shutdown, grace).await;
    let began = signalled
        .await
        .unwrap_or_else(|_| tokio::time::Instant::now());
    let left = (began + grace).saturating_duration_since(tokio::time::Instant::now());
    workers.finish(left).await;
    let _ = stop_witness.send(true);
    if let Some(task) = witness_task
        && tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
    {
        logger.warn("shutdown: the ledger witness was not reached in time", &[]);
    }
    logger.info("shutdown", &[("phase", "done")]);
    served.with_context(|| format!("serving on {url}"))?;
    if let Some(s) = sandbox {
        s.emulators.shutdown().await;
    }
    Ok(Code::Ok)
}

/// The reactions' options: `ENVSYNC_MODE` decides whether they act; deploy hooks come from
/// `RENDER_DEPLOY_HOOK_URL` and `NETLIFY_BUILD_HOOK_URL` (environment only: each URL holds
/// its hook's secret), or the sandbox's emulators.
fn autonomy_options(
    config: &crate::config::Config,
    sandbox: Option<&crate::sandbox::Sandbox>,
) -> bridge_autonomy::AutonomyOptions {
    let mut hooks = std::collections::BTreeMap::new();
    for (kind, var) in [
        ("render", "RENDER_DEPLOY_HOOK_URL"),
        ("netlify", "NETLIFY_BUILD_HOOK_URL"),
    ] {
        if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            hooks.insert(kind.to_owned(), url);
        }
    }
    if let Some(s) = sandbox {
        hooks.extend(s.deploy_hooks());
    }
    bridge_autonomy::AutonomyOptions {
        enforce: config.schedule.mode == crate::config::SyncMode::Enforce,
        drift_alert_threshold: usize::try_from(config.autonomy.drift_alert_threshold)
            .unwrap_or(usize::MAX),
        drift_frequency_limit: usize::try_from(config.autonomy.drift_frequency_limit)
            .unwrap_or(usize::MAX),
        deploy_hooks: hooks,
        ..bridge_autonomy::AutonomyOptions::default()
    }
}

fn sandbox_banner(url: &str, sandbox: &crate::sandbox::Sandbox, token: &str) -> String {
    let mut text = String::new();
    text.push_str("\nBridge sandbox: emulated Render, Netlify and GitHub, seeded with drift.\n");
    text.push_str(&format!("  source      {}/.env\n", sandbox.dir.display()));
    for (name, value) in sandbox.emulators.exports() {
        if name.ends_with("_API_URL") {
            text.push_str(&format!(
                "  {:<11} {value}\n",
                name.trim_end_matches("_API_URL").to_lowercase()
            ));
        }
    }
    text.push_str(&format!("  token       {token}   (admiral)\n\nTry:\n"));
    text.push_str(&format!("  export TOKEN={token}\n"));
    text.push_str(&format!("  curl {url}/envsync/health\n"));
    text.push_str(&format!(
        "  curl -H \"Authorization: Bearer $TOKEN\" {url}/parity\n"
    ));
    text.push_str(&format!(
        "  curl -X POST -H \"Authorization: Bearer $TOKEN\" {url}/envsync/dry-run/render\n"
    ));
    text.push_str(&format!(
        "  curl -X POST -H \"Authorization: Bearer $TOKEN\" {url}/envsync/apply-all\n"
    ));
    text.push_str(&format!(
        "  curl -N -H \"Authorization: Bearer $TOKEN\" '{url}/genesis/stream?since=0'\n"
    ));
    text.push_str(&format!("  open {url}/ for the dashboard\n"));
    text
}
