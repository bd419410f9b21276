//! One file per command; [`run`] dispatches. Each command returns the exit [`Code`] of its
//! outcome or a [`Failure`](crate::exit::Failure) that carries its own.

pub mod autosync;
mod check;
mod completions;
mod config_show;
mod deploy;
mod doctor;
pub mod emulate;
mod events;
mod export;
mod init;
mod ledger;
mod plan_file;
mod recover;
mod run_cmd;
mod serve;
mod state;
pub mod sync;
mod token;
pub mod verify;

use crate::cli::{
    Cli, Command, ConfigCommand, EnvCommand, EventsCommand, LedgerCommand, PlatformsCommand,
    StateCommand,
};
use crate::config::FlagValue;
use crate::context::{Context, interpolate_flag, scope_flags};
use crate::exit::CmdResult;
use crate::shell::Shell;
use bridge_genesis::ledger::LedgerAccess;

pub async fn run(cli: Cli, shell: &Shell) -> CmdResult {
    if let Command::Completions { shell: target } = &cli.command {
        return completions::run(*target, shell);
    }
    if let Command::Autosync(command) = &cli.command {
        // Its --config is autosync.toml, so it builds its own context (only `run` needs one).
        return autosync::run(command, &cli.global, shell).await;
    }
    if let Command::Emulate(args) = &cli.command {
        return emulate::run(args, shell).await;
    }
    let flags = command_flags(&cli.command);
    let ctx = Context::load(shell, &cli.global, flags)?;
    if let Command::Serve(args) = &cli.command {
        // The server runs the ledger's feed itself, for as long as it runs.
        return serve::run(ctx, args).await;
    }
    let publishes = publishes(&cli.command);
    // An apply on a shared store will record its events: the ledger's connection is opened
    // while the command works, not after it. (Only then: opening sets up the ledger, and a
    // read must write nothing.)
    let ledger = match publishes && applies(&cli.command) {
        true => ctx
            .ledger_access()
            .ok()
            .filter(|_| matches!(ctx.store_url(), Ok(crate::store::StoreUrl::Postgres(_)))),
        false => None,
    };
    if let Some(ledger) = &ledger {
        ledger.prepare();
    }
    let result = dispatch(&ctx, cli.command).await;
    if publishes {
        record_in_ledger(&ctx, ledger).await;
    }
    result
}

/// Whether a command writes to places (and so records what it did).
fn applies(command: &Command) -> bool {
    matches!(
        command,
        Command::Env(
            EnvCommand::Sync { dry_run: false, .. }
                | EnvCommand::Apply { .. }
                | EnvCommand::Resume { .. }
                | EnvCommand::Rollback { .. }
        )
    )
}

/// Whether a command may publish events: only those feed the ledger after them, so a read
/// (`events tail`, `ledger show`) writes nothing.
fn publishes(command: &Command) -> bool {
    matches!(
        command,
        Command::Env(
            EnvCommand::Sync { .. }
                | EnvCommand::Apply { .. }
                | EnvCommand::Resume { .. }
                | EnvCommand::Rollback { .. }
                | EnvCommand::Verify { .. }
        ) | Command::Events(EventsCommand::Publish { .. })
            | Command::Deploy(_)
            | Command::State(StateCommand::Unlock { .. })
    )
}

/// The ledger's one feeder for a command: whatever the command published (an apply's
/// events, a verify's drift, a deploy event) is recorded once it is done, and whatever an
/// earlier command left unrecorded (a crash between publishing and recording) with it.
async fn record_in_ledger(ctx: &Context<'_>, prepared: Option<LedgerAccess>) {
    let Some(bus) = ctx.bus.get() else {
        return;
    };
    let ledger = match prepared {
        Some(ledger) => Ok(ledger),
        None => ctx.ledger_access(),
    };
    let recorded = match ledger {
        Ok(ledger) => crate::genesis::record_in_ledger(&ledger, bus).await,
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        ctx.shell.warn(format!(
            "the ledger did not record or sign this command's events ({e:#}); they stay in the \
             event log, and the next command able to records them"
        ));
    }
}

async fn dispatch(ctx: &Context<'_>, command: Command) -> CmdResult {
    match command {
        Command::Init => init::run(ctx),
        Command::Config(ConfigCommand::Show) => config_show::run(ctx),
        Command::Env(EnvCommand::Diff(args)) => sync::run(ctx, &args, sync::Options::diff()).await,
        Command::Env(EnvCommand::Sync {
            args,
            dry_run,
            force,
            allow_empty_source,
            yes,
        }) => {
            let options = sync::Options {
                dry_run,
                force,
                allow_empty_source,
                yes,
            };
            sync::run(ctx, &args, options).await
        }
        Command::Env(EnvCommand::Export {
            source,
            target,
            out,
            reveal,
            ..
        }) => export::run(ctx, source.as_deref(), target, out, reveal).await,
        Command::Env(EnvCommand::Verify {
            platforms,
            report,
            audit_md,
            allow_unknown,
            ..
        }) => verify::run(ctx, platforms.as_deref(), report, audit_md, allow_unknown).await,
        Command::Env(EnvCommand::Check { from, .. }) => check::run(ctx, from.as_deref()).await,
        Command::Env(EnvCommand::Plan {
            args,
            out,
            detailed_exitcode,
        }) => plan_file::plan(ctx, &args, &out, detailed_exitcode).await,
        Command::Env(EnvCommand::Apply { plan, force, yes }) => {
            plan_file::apply(ctx, &plan, force, yes).await
        }
        Command::Env(EnvCommand::Resume {
            discard: Some(id), ..
        }) => recover::discard(ctx, id).await,
        Command::Env(EnvCommand::Resume { yes, .. }) => recover::resume(ctx, yes).await,
        Command::Env(EnvCommand::Rollback {
            target,
            to,
            dry_run,
            force,
            yes,
        }) => {
            let request = bridge_operations::RollbackRequest {
                to,
                mode: if dry_run {
                    bridge_sync::Mode::DryRun
                } else {
                    bridge_sync::Mode::Apply
                },
                force,
            };
            recover::rollback(ctx, &target, request, yes).await
        }
        Command::Events(command) => Ok(match command {
            EventsCommand::Publish {
                topic,
                payload,
                role,
            } => events::publish(ctx, &topic, &payload, &role).await?,
            EventsCommand::Tail {
                topic,
                since,
                limit,
                follow,
            } => events::tail(ctx, topic.as_deref(), since, limit, follow).await?,
            EventsCommand::Stats => events::stats(ctx).await?,
            EventsCommand::Export { topic, out } => {
                events::export(ctx, topic.as_deref(), out.as_ref()).await?
            }
        }),
        Command::Ledger(command) => Ok(match command {
            LedgerCommand::Verify {
                public_key,
                witness,
            } => ledger::verify(ctx, public_key.as_deref(), witness.as_deref()).await?,
            LedgerCommand::Show { from, limit } => ledger::show(ctx, from, limit)?,
            // clap requires an index or --from, and refuses both.
            LedgerCommand::Proof { index, from, to } => match (index, from) {
                (_, Some(from)) => ledger::consistency_proof(ctx, from, to)?,
                (Some(index), None) => ledger::proof(ctx, index)?,
                (None, None) => Err(anyhow::anyhow!("give an entry index, or --from SIZE"))?,
            },
            LedgerCommand::VerifyProof { file, public_key } => {
                ledger::verify_proof(ctx, &file, &public_key)?
            }
            LedgerCommand::Export { out } => ledger::export(ctx, out.as_ref())?,
            LedgerCommand::Checkpoint { publish } => {
                ledger::checkpoint(ctx, publish.as_deref()).await?
            }
            LedgerCommand::PublicKey => ledger::public_key(ctx)?,
        }),
        Command::Platforms(PlatformsCommand::Doctor { platforms }) => {
            doctor::run(ctx, platforms.as_deref()).await
        }
        Command::Run { from, command, .. } => run_cmd::run(ctx, from.as_deref(), &command).await,
        Command::Deploy(crate::cli::DeployCommand::Publish(args)) => {
            deploy::publish(ctx, &args).await
        }
        Command::Token(command) => token::run(ctx, &command).await,
        Command::State(command) => state::run(ctx, command).await,
        Command::Completions { .. }
        | Command::Emulate(_)
        | Command::Autosync(_)
        | Command::Serve(_) => {
            unreachable!("handled above")
        }
    }
}

/// The command's flags that override configuration settings.
fn command_flags(command: &Command) -> Vec<FlagValue> {
    let interpolate = |on: bool| if on { vec![interpolate_flag()] } else { vec![] };
    match command {
        Command::Env(EnvCommand::Diff(args))
        | Command::Env(EnvCommand::Sync { args, .. })
        | Command::Env(EnvCommand::Plan { args, .. }) => {
            let mut flags = scope_flags(&args.scope);
            if args.allow_deletions {
                flags.push(FlagValue {
                    setting: "sync.allow_deletions",
                    flag: "--allow-deletions",
                    value: "true".into(),
                });
            }
            flags
        }
        Command::Env(EnvCommand::Verify { scope, .. }) => scope_flags(scope),
        Command::Env(EnvCommand::Export {
            interpolate_env, ..
        })
        | Command::Env(EnvCommand::Check {
            interpolate_env, ..
        })
        | Command::Run {
            interpolate_env, ..
        } => interpolate(*interpolate_env),
        Command::Serve(args) => args
            .listen
            .iter()
            .map(|listen| FlagValue {
                setting: "listen",
                flag: "--listen",
                value: listen.clone(),
            })
            .collect(),
        Command::Init
        | Command::Deploy(_)
        | Command::Token(_)
        | Command::Config(_)
        | Command::Completions { .. }
        | Command::Emulate(_)
        | Command::Autosync(_)
        | Command::Platforms(_)
        | Command::Ledger(_)
        | Command::State(_)
        | Command::Events(_)
        | Command::Env(EnvCommand::Apply { .. })
        | Command::Env(EnvCommand::Resume { .. })
        | Command::Env(EnvCommand::Rollback { .. }) => vec![],
    }
}
