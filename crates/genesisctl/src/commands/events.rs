//! `genesisctl events …`: the Genesis bus from the command line — publish, tail (with
//! `--follow`), stats, export as JSON lines.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use bridge_genesis::bus::{HistoryQuery, Order, Role, StartAt, TopicPattern};
use serde_json::{Value, json};

use crate::context::Context;
use crate::exit::Code;

pub async fn publish(
    ctx: &Context<'_>,
    topic: &str,
    payload: &str,
    role: &str,
) -> anyhow::Result<Code> {
    let payload: Value =
        serde_json::from_str(payload).map_err(|e| anyhow!("the payload is not JSON: {e}"))?;
    let role: Role = role.parse().map_err(|e| anyhow!("--as: {e}"))?;
    let bus = ctx.open_bus().await?;
    let event = bus
        .publish(topic, payload, role)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    ctx.shell
        .print(&format!("{}\n", event.envelope()))
        .map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

pub async fn tail(
    ctx: &Context<'_>,
    topic: Option<&str>,
    since: Option<u64>,
    limit: usize,
    follow: bool,
) -> anyhow::Result<Code> {
    let bus = ctx.open_bus().await?;
    let pattern = topic.unwrap_or(">");
    let parsed = TopicPattern::parse(pattern).map_err(|e| anyhow!("--topic: {e}"))?;
    // Without --since, the last `limit` events; with it, everything after it.
    let start = match since {
        Some(seq) => seq,
        None => {
            let mut query = HistoryQuery::default().pattern(parsed.clone()).limit(limit);
            query.order = Order::Descending;
            let newest = bus.history(query).await?;
            newest.last().map_or(u64::MAX, |e| e.seq.saturating_sub(1))
        }
    };
    let mut out = ctx.shell.stdout().lock();
    let mut print = |event: &bridge_genesis::bus::Event| -> std::io::Result<()> {
        if ctx.shell.is_json() {
            writeln!(out, "{}", event.envelope())?;
        } else {
            writeln!(
                out,
                "{:>8}  {}  {:<24}  {}",
                event.seq,
                event.timestamp_rfc3339(),
                event.topic,
                Value::Object(event.payload.clone())
            )?;
        }
        out.flush()
    };
    if start != u64::MAX {
        let mut after = start;
        loop {
            let page = bus
                .history(
                    HistoryQuery::default()
                        .pattern(parsed.clone())
                        .after_seq(after)
                        .limit(1_000),
                )
                .await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in &page {
                if print(e).is_err() {
                    return Ok(Code::Ok); // the reader went away
                }
            }
            after = last;
        }
        if !follow {
            return Ok(Code::Ok);
        }
        let mut live = bus.subscribe(pattern, StartAt::After(after)).await?;
        while let Some(e) = live.next().await? {
            if print(&e).is_err() {
                break;
            }
        }
    } else if follow {
        let mut live = bus.subscribe(pattern, StartAt::Now).await?;
        while let Some(e) = live.next().await? {
            if print(&e).is_err() {
                break;
            }
        }
    }
    Ok(Code::Ok)
}

pub async fn stats(ctx: &Context<'_>) -> anyhow::Result<Code> {
    let bus = ctx.open_bus().await?;
    let stats = bus.stats().await?;
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "total": stats.total,
                "last_seq": stats.last_seq,
                "last_hour": stats.last_hour,
                "per_minute": stats.per_minute,
                "by_topic": stats.by_topic,
            }))
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    }
    let mut text = format!(
        "{} events (last seq {}); {} in the last hour ({:.2}/min)\n",
        stats.total, stats.last_seq, stats.last_hour, stats.per_minute
    );
    for (topic, n) in &stats.by_topic {
        text.push_str(&format!("  {topic:<28} {n}\n"));
    }
    ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

pub async fn export(
    ctx: &Context<'_>,
    topic: Option<&str>,
    out: Option<&PathBuf>,
) -> anyhow::Result<Code> {
    let bus = ctx.open_bus().await?;
    let pattern = TopicPattern::parse(topic.unwrap_or(">")).map_err(|e| anyhow!("--topic: {e}"))?;
    let mut text = String::new();
    let mut after = 0;
    loop {
        let page = bus
            .history(
                HistoryQuery::default()
                    .pattern(pattern.clone())
                    .after_seq(after)
                    .limit(1_000),
            )
            .await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in &page {
            text.push_str(&e.envelope().to_string());
            text.push('\n');
        }
        after = last;
    }
    match out {
        Some(path) => {
            bridge_platforms::local::write_atomically(path, text.as_bytes())
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("writing {}", path.display()))?;
            ctx.shell.status(
                "Exported",
                format!("{} events to {}", text.lines().count(), path.display()),
            );
        }
        None => ctx.shell.print(&text).map_err(anyhow::Error::from)?,
    }
    Ok(Code::Ok)
}
