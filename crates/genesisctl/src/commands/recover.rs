//! `genesisctl env resume` and `genesisctl env rollback`: finishing and undoing applies from
//! their journals in the state store.

use anyhow::anyhow;
use bridge_operations::Origin;
use bridge_platforms::PlatformSpec;
use bridge_sync::RecoveryOutcome;
use serde_json::json;

use crate::context::Context;
use crate::exit::{CmdResult, Code, code_of};
use crate::shell::{GREEN, RED, YELLOW};

pub async fn resume(ctx: &Context<'_>, yes: bool) -> CmdResult {
    let ops = ctx.operations()?;
    // What is left prints before the writes; on a terminal, a person then says yes or no.
    if !ctx.shell.is_json() {
        let pending = match ops.existing_store().await? {
            Some(store) => store.latest_unfinished().await.map_err(|e| anyhow!(e))?,
            None => None,
        };
        let Some(journal) = pending else {
            return nothing(ctx, "to resume: every journalled apply finished");
        };
        let mut text = format!("journal {} left unfinished:\n", journal.id);
        for t in &journal.targets {
            let left: Vec<&str> = t
                .ops
                .iter()
                .filter(|o| !o.done)
                .map(|o| o.key.as_str())
                .collect();
            text.push_str(&format!(
                "  {}: {} to write: {}\n",
                t.spec,
                left.len(),
                left.join(", ")
            ));
        }
        ctx.shell.print(&text).map_err(anyhow::Error::from)?;
        if !yes
            && ctx.shell.interactive()
            && !ctx
                .shell
                .confirm("Resume it?")
                .map_err(anyhow::Error::from)?
        {
            ctx.shell.status("Not applied", "nothing was written");
            return Ok(Code::Drift);
        }
    }
    match ops.resume(Origin::Cli).await? {
        Some(outcome) => show(ctx, "resume", &outcome),
        None => nothing(ctx, "to resume: every journalled apply finished"),
    }
}

/// `env resume --discard ID`: gives up an unfinished journal.
pub async fn discard(ctx: &Context<'_>, id: i64) -> CmdResult {
    let journal = ctx.operations()?.discard(id, Origin::Cli).await?;
    let unwritten: Vec<serde_json::Value> = journal
        .targets
        .iter()
        .map(|t| {
            let keys: Vec<&str> = t
                .ops
                .iter()
                .filter(|o| !o.done && o.change.writes())
                .map(|o| o.key.as_str())
                .collect();
            json!({"target": t.spec, "unwritten": keys})
        })
        .collect();
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({"journal": id, "discarded": true, "targets": unwritten}))
            .map_err(anyhow::Error::from)?;
    } else {
        let mut text = format!("journal {id} discarded; these writes will never be made:\n");
        for t in &unwritten {
            let keys: Vec<&str> = t["unwritten"]
                .as_array()
                .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
                .unwrap_or_default();
            text.push_str(&format!(
                "  {}: {}\n",
                t["target"].as_str().unwrap_or(""),
                keys.join(", ")
            ));
        }
        text.push_str("sync again to bring the targets to the source\n");
        ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    }
    Ok(Code::Ok)
}

pub async fn rollback(
    ctx: &Context<'_>,
    target: &str,
    request: bridge_operations::RollbackRequest,
    yes: bool,
) -> CmdResult {
    let spec: PlatformSpec = target.parse().map_err(|e| anyhow!("--target: {e}"))?;
    let ops = ctx.operations()?;
    let dry_run = request.mode == bridge_sync::Mode::DryRun;
    if !dry_run && !yes {
        if !ctx.shell.interactive() {
            return Err(anyhow!(
                "env rollback writes to {spec}: pass --yes (there is no terminal to ask on), or \
                 --dry-run to see what it would write"
            )
            .into());
        }
        // Show what it would write, then ask.
        let preview = bridge_operations::RollbackRequest {
            mode: bridge_sync::Mode::DryRun,
            ..request
        };
        let Some(planned) = ops.rollback(&spec, preview, Origin::Cli).await? else {
            return Err(anyhow!("no journalled apply to {spec} to roll back").into());
        };
        let code = show(ctx, "rollback (dry run)", &planned)?;
        let nothing_to_do = planned.targets.iter().all(|t| t.planned.is_empty());
        if code != Code::Ok || nothing_to_do {
            return Ok(code);
        }
        if !ctx
            .shell
            .confirm("Roll back?")
            .map_err(anyhow::Error::from)?
        {
            ctx.shell.status("Not applied", "nothing was written");
            return Ok(Code::Drift);
        }
    }
    match ops.rollback(&spec, request, Origin::Cli).await? {
        Some(outcome) => show(
            ctx,
            if dry_run {
                "rollback (dry run)"
            } else {
                "rollback"
            },
            &outcome,
        ),
        None => Err(anyhow!("no journalled apply to {spec} to roll back").into()),
    }
}

fn nothing(ctx: &Context<'_>, message: &str) -> CmdResult {
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({"journal": null, "message": message}))
            .map_err(anyhow::Error::from)?;
    } else {
        ctx.shell.status("Nothing", message);
    }
    Ok(Code::Ok)
}

fn show(ctx: &Context<'_>, what: &str, outcome: &RecoveryOutcome) -> CmdResult {
    let mut code = Code::Ok;
    for t in &outcome.targets {
        if let Some(e) = &t.error {
            code = code.max(code_of(e));
        } else if !t.unrestorable.is_empty() || t.refused.is_some() {
            code = code.max(Code::Drift);
        }
    }
    if ctx.shell.is_json() {
        let targets: Vec<_> = outcome
            .targets
            .iter()
            .map(|t| {
                json!({
                    "label": t.label,
                    "target": t.spec,
                    "writes": t.writes,
                    "already_done": t.already_done,
                    "unrestorable": t.unrestorable,
                    "resent": t.resent,
                    "planned": t.planned.iter()
                        .map(|op| json!({"key": op.key, "op": op.op_name()}))
                        .collect::<Vec<_>>(),
                    "refused": t.refused.as_ref().map(|r| r.to_string()),
                    "error": t.error.as_ref().map(|e| e.to_string()),
                })
            })
            .collect();
        ctx.shell
            .print_json(&json!({
                "action": what,
                "journal": outcome.journal.0,
                "written_as": outcome.written_as.map(|j| j.0),
                "targets": targets,
            }))
            .map_err(anyhow::Error::from)?;
        return Ok(code);
    }
    let mut text = String::new();
    for t in &outcome.targets {
        // What a rollback writes, before the verdict: the keys and ops, never values.
        for op in &t.planned {
            text.push_str(&format!("  {} {}\n", op.op_name(), op.key));
        }
        match (&t.error, &t.refused) {
            (Some(e), _) => text.push_str(&format!("{RED}failed{RED:#} {}: {e}\n", t.spec)),
            (None, Some(refused)) => text.push_str(&format!(
                "{RED}refused{RED:#} {} (undoing journal {}): {refused}; nothing written \
                 (--force to go ahead)\n",
                t.spec, outcome.journal
            )),
            (None, None) => text.push_str(&format!(
                "{GREEN}{what}{GREEN:#} {} (undoing journal {}): {} now, {} already done before\n",
                t.spec,
                outcome.journal,
                crate::present::writes_text(t.writes),
                t.already_done
            )),
        }
        if !t.resent.is_empty() {
            text.push_str(&format!(
                "  {YELLOW}written again{YELLOW:#} (write-only, in flight at the crash: it may \
                 have landed; same value): {}\n",
                t.resent.join(", ")
            ));
        }
        if !t.unrestorable.is_empty() {
            text.push_str(&format!(
                "  {YELLOW}cannot restore{YELLOW:#} (write-only, never written by Bridge): {}\n",
                t.unrestorable.join(", ")
            ));
        }
    }
    ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    Ok(code)
}
