//! `genesisctl deploy publish`: a deploy event stated by CI, sent to a Bridge server or stored
//! straight into the local bus (and ledger) with `--local`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bridge_core::SecretValue;
use bridge_platforms::HttpOptions;
use bridge_platforms::http::{Client, Request};
use bridge_webhooks::DeployEventRequest;
use serde_json::{Value, json};

use crate::cli::DeployPublishArgs;
use crate::context::Context;
use crate::exit::{CmdResult, Code, Failure};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

pub async fn publish(ctx: &Context<'_>, args: &DeployPublishArgs) -> CmdResult {
    let body = json!({
        "platform": args.platform,
        "event_type": args.event_type,
        "status": args.status,
        "timestamp": args.timestamp,
        "metadata": {
            "commit_sha": args.commit_sha,
            "branch": args.branch,
            "deploy_url": args.deploy_url,
            "deploy_id": args.deploy_id,
            "message": args.message,
        },
    });
    // Checked here too, so that a typo is a usage error before any network call.
    let request: DeployEventRequest =
        serde_json::from_value(body.clone()).map_err(|e| anyhow!("the deploy event: {e}"))?;
    let answer = if args.local {
        publish_local(ctx, request).await?
    } else {
        publish_remote(args, &body).await?
    };
    if ctx.shell.is_json() {
        ctx.shell.print_json(&answer).map_err(anyhow::Error::from)?;
    } else {
        let topics: Vec<&str> = answer["topics"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        ctx.shell.status(
            "Published",
            format!("{} event on {}", args.event_type, topics.join(", ")),
        );
    }
    Ok(Code::Ok)
}

async fn publish_local(ctx: &Context<'_>, request: DeployEventRequest) -> Result<Value, Failure> {
    let event = request
        .into_event(time::OffsetDateTime::now_utc())
        .map_err(|e| anyhow!("--timestamp: {e}"))?;
    let bus = ctx.open_bus().await?;
    let topics = event.topics();
    let batch = topics
        .iter()
        .map(|t| (*t, Value::Object(event.to_payload())))
        .collect();
    let stored = bus
        .publish_all(batch, bridge_genesis::bus::Role::System)
        .await
        .map_err(|e| anyhow!("publishing the deploy event: {e}"))?;
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    Ok(json!({ "topics": topics, "seqs": seqs, "event": event.to_payload() }))
}

async fn publish_remote(args: &DeployPublishArgs, body: &Value) -> Result<Value, Failure> {
    let server = args
        .server
        .clone()
        .or_else(|| {
            std::env::var("BRIDGE_SERVER_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("BRIDGE_TOKEN").ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| {
            anyhow!(
                "no token for {server}: pass --token or set BRIDGE_TOKEN (an operator token from \
                 `genesisctl token create --role operator`), or use --local"
            )
        })?;
    let url = format!(
        "{}/engines/autonomy/deployment/event",
        server.trim_end_matches('/')
    );
    let unsent = |e: bridge_platforms::http::HttpError| Failure {
        code: Code::Platform,
        error: anyhow!("sending the event to {server}: {e}"),
    };
    // A POST: repeated only where the server cannot have acted (429, 503, a refused
    // connection), so a server that is restarting gets a few seconds to come back.
    let client = Client::new(HttpOptions {
        max_attempts: 4,
        total_timeout: Duration::from_secs(120),
        ..HttpOptions::default()
    })
    .map_err(unsent)?;
    let request = Request::post(&url)
        .bearer(&SecretValue::new(token))
        .json(body);
    let response = client.send(request).await.map_err(unsent)?;
    let status = response.status;
    let answer: Value = response
        .json()
        .with_context(|| format!("reading the answer of {server}"))
        .map_err(|error| Failure {
            code: Code::Platform,
            error,
        })?;
    if !status.is_success() {
        let detail = answer["detail"].as_str().unwrap_or("no detail");
        let code = if status.is_client_error() {
            Code::Input
        } else {
            Code::Platform
        };
        return Err(Failure {
            code,
            error: anyhow!("{server} answered {status}: {detail}"),
        });
    }
    Ok(answer)
}
