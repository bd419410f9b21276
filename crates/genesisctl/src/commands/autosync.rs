//! `genesisctl autosync plan|run|status`: the Auto-Sync pipeline (`bridge-autosync`) from
//! the command line. The global `--config FILE` names the pipeline's own file here
//! (default `autosync.toml`), not `bridge.toml`. `run` publishes its `autosync.*` events on
//! the Genesis bus and lets the ledger record them.
//!
//! Exit codes: 0 when planned, merged or nothing was new; 1 when a human is needed (a pull
//! request was opened or updated, a branch waits for review, a cherry-pick conflicted);
//! 2 configuration or input errors; 3 when git, the network or GitHub failed.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::anyhow;
use bridge_autosync::{
    AutosyncConfig, AutosyncError, AutosyncEvents, Env, EventFuture, RunOutcome,
};
use bridge_genesis::bus::Bus;
use serde_json::Value;

use crate::cli::AutosyncCommand;
use crate::cli::GlobalArgs;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure};
use crate::shell::Shell;

const DEFAULT_CONFIG: &str = "autosync.toml";

fn failure(e: AutosyncError) -> Failure {
    let code = if e.is_input_error() {
        Code::Input
    } else {
        Code::Platform
    };
    Failure {
        code,
        error: anyhow::Error::new(e),
    }
}

fn printed(r: std::io::Result<()>) -> Result<(), Failure> {
    r.map_err(|e| Failure::from(anyhow!("writing the report: {e}")))
}

pub async fn run(command: &AutosyncCommand, global: &GlobalArgs, shell: &Shell) -> CmdResult {
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = AutosyncConfig::load(&path).map_err(failure)?;
    let env = Env::from_process();
    match command {
        AutosyncCommand::Plan(_) => {
            let report = bridge_autosync::plan(&config, &env)
                .await
                .map_err(failure)?;
            if shell.is_json() {
                printed(shell.print_json(&report))?;
            } else {
                printed(shell.print(&report.render_text()))?;
            }
            Ok(if report.has_errors() {
                Code::Platform
            } else {
                Code::Ok
            })
        }
        AutosyncCommand::Status(_) => {
            let report = bridge_autosync::status(&config).map_err(failure)?;
            if shell.is_json() {
                printed(shell.print_json(&report))?;
            } else {
                printed(shell.print(&report.render_text()))?;
            }
            Ok(Code::Ok)
        }
        AutosyncCommand::Run(_) => {
            // The bus comes from bridge.toml / the environment / the global flags; the
            // global --config is this command's file, so it is not read as bridge.toml.
            let bridge_global = GlobalArgs {
                state_dir: global.state_dir.clone(),
                config: None,
                store: global.store.clone(),
                bus: global.bus.clone(),
                lock_timeout: global.lock_timeout.clone(),
                output: global.output,
                quiet: global.quiet,
            };
            let ctx = Context::load(shell, &bridge_global, Vec::new())?;
            let bus = ctx.open_bus().await?;
            let events = BusEvents {
                bus: bus.clone(),
                failures: Mutex::new(Vec::new()),
            };
            let report = bridge_autosync::run(&config, &env, &events)
                .await
                .map_err(failure)?;
            crate::genesis::record_in_ledger(&ctx.ledger_access()?, &bus).await?;
            for warning in events
                .failures
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
            {
                shell.warn(format!("an autosync event was not recorded: {warning}"));
            }
            if shell.is_json() {
                printed(shell.print_json(&report))?;
            } else {
                printed(shell.print(&report.render_text()))?;
            }
            Ok(match report.outcome {
                RunOutcome::NothingToDo | RunOutcome::Merged => Code::Ok,
                RunOutcome::NeedsReview => Code::Drift,
                RunOutcome::Failed => Code::Platform,
            })
        }
    }
}

/// The pipeline's events, published on the Genesis bus as the system.
struct BusEvents {
    bus: Bus,
    failures: Mutex<Vec<String>>,
}

impl AutosyncEvents for BusEvents {
    fn publish<'a>(&'a self, topic: &'a str, payload: Value) -> EventFuture<'a> {
        Box::pin(async move {
            if let Err(e) = crate::genesis::publish(&self.bus, topic, payload).await {
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{e:#}"));
            }
        })
    }
}
