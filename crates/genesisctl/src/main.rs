//! `genesisctl`: the one binary. Parses the command line, merges it with the environment and
//! `bridge.toml` into a [`config::Config`], runs the command, and turns the outcome into the
//! exit codes: 0 ok, 1 drift or plan not applied, 2 usage/config/input error,
//! 3 platform or network failure.

// In a binary, `pub` marks what other modules use; nothing is exported beyond the crate.
#![allow(unreachable_pub)]

mod cli;
mod commands;
mod config;
mod context;
mod discovery;
mod exit;
mod genesis;
mod health;
mod present;
mod sandbox;
mod shell;
mod state;
mod store;
mod witness;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::shell::Shell;

/// mimalloc rather than the system allocator: `serve` allocates and frees many short-lived
/// JSON maps and buffers on two or more threads, and glibc's malloc spent about a quarter of
/// the server's CPU under webhook load consolidating and unlinking free chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Everything Bridge creates (databases and their journals, keys, tokens, reports, new
    // `.env` files) may hold secrets: no group or other access, whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let shell = Shell::new(cli.global.output, cli.global.quiet);
    shell.report_platform_notices();
    // The server answers on every core; a command does one thing at a time.
    let mut builder = if matches!(cli.command, cli::Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            shell.error(format!("starting the async runtime: {e}"));
            return ExitCode::from(exit::Code::Input as u8);
        }
    };
    match runtime.block_on(commands::run(cli, &shell)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(failure) => {
            let message = format!("{:#}", failure.error);
            // A script reading JSON gets JSON for a failure too; people read stderr.
            if shell.is_json() {
                let _ = shell.print_json(&serde_json::json!({
                    "error": message,
                    "exit_code": failure.code as u8,
                }));
            }
            shell.error(message);
            ExitCode::from(failure.code as u8)
        }
    }
}
