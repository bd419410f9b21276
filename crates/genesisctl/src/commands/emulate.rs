//! `genesisctl emulate`: local emulators of the Render, Netlify and GitHub APIs, for trying
//! Bridge without credentials and for tests. Prints the `export` lines a client needs, then
//! `ready`, then serves until interrupted.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bridge_emulators::EmulatorConfig;

use crate::cli::EmulateArgs;
use crate::exit::{CmdResult, Code};
use crate::shell::Shell;

pub async fn run(args: &EmulateArgs, shell: &Shell) -> CmdResult {
    let config = config(args)?;
    let emulators = bridge_emulators::start(config)
        .await
        .context("starting the emulators")?;
    let mut out = String::new();
    for (name, value) in emulators.exports() {
        out.push_str(&format!(
            "export {name}={}\n",
            bridge_platforms::process::shell_quote(&value)
        ));
    }
    out.push_str("ready\n");
    shell.print(&out).map_err(anyhow::Error::from)?;
    let mut held = Vec::new();
    if let Some(r) = emulators.render() {
        held.push(format!("render services {}", r.service_ids().join(", ")));
    }
    if let Some(n) = emulators.netlify() {
        held.push(format!("netlify sites {}", n.site_ids().join(", ")));
    }
    if let Some(g) = emulators.github() {
        held.push(format!(
            "github repositories {}",
            g.repositories().join(", ")
        ));
    }
    shell.status("Holding", held.join("; "));
    shell.status("Serving", "until interrupted (Ctrl-C)");
    wait_for_shutdown().await;
    emulators.shutdown().await;
    Ok(Code::Ok)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn config(args: &EmulateArgs) -> anyhow::Result<EmulatorConfig> {
    let mut config = EmulatorConfig {
        render: false,
        netlify: false,
        github: false,
        port: args.port,
        latency: parse_duration(&args.latency).context("--latency")?,
        error_rate: args.error_rate,
        rate_limit: args
            .rate_limit
            .as_deref()
            .map(parse_rate)
            .transpose()
            .context("--rate-limit")?,
        page_size: args.page_size,
        fail_after_writes: args.fail_after_writes,
        render_services: instances(&args.render_services),
        netlify_sites: instances(&args.netlify_sites),
        github_repositories: instances(&args.github_repositories),
        ..EmulatorConfig::default()
    };
    if !(0.0..=1.0).contains(&args.error_rate) {
        bail!(
            "--error-rate: expected a number between 0 and 1, got {}",
            args.error_rate
        );
    }
    if args.page_size == Some(0) {
        bail!("--page-size: expected at least 1");
    }
    for name in args
        .platforms
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match name {
            "render" => config.render = true,
            "netlify" => config.netlify = true,
            "github" => config.github = true,
            other => bail!(
                "--platforms: unknown platform `{other}`; expected some of render, netlify, github"
            ),
        }
    }
    if !(config.render || config.netlify || config.github) {
        bail!("--platforms: name at least one of render, netlify, github");
    }
    // Instances of an emulator that is not started would be silently ignored.
    for (flag, given, started) in [
        ("--render-services", &config.render_services, config.render),
        ("--netlify-sites", &config.netlify_sites, config.netlify),
        (
            "--github-repositories",
            &config.github_repositories,
            config.github,
        ),
    ] {
        if !given.is_empty() && !started {
            bail!("{flag}: that emulator is not started; add it to --platforms");
        }
    }
    Ok(config)
}

/// The ids of an instance flag, trimmed, without empty entries (`a, b,`).
/// The ids of an instance flag (`--render-services a, b`), trimmed, empty ones dropped.
pub(crate) fn instances(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// `20ms`, `1.5s`, `0`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "ms"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| anyhow!("expected a duration such as 20ms or 1s, got `{text}`"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("expected a duration such as 20ms or 1s, got `{text}`"),
    };
    if !(0.0..=3600.0).contains(&seconds) {
        bail!("expected a duration between 0 and 1h, got `{text}`");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `50/s` or `50`.
fn parse_rate(text: &str) -> anyhow::Result<u32> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("expected requests per second such as 50/s, got `{text}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_rate("50/s").unwrap(), 50);
        assert!(parse_rate("0/s").is_err());
    }
}
