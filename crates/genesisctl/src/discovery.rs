//! The token discovery chain: where a platform's API token comes from, in the order
//! `discovery.order` gives (the seed's `env,secret_files,vault,dashboard`). It runs only for
//! the platforms a command uses, so local-only commands never touch the network.

use std::path::PathBuf;
use std::time::Duration;

use bridge_core::SecretValue;
use bridge_platforms::http::{Client, Request};
use bridge_platforms::{HttpOptions, PlatformKind};

use crate::config::RemoteConfig;

/// Where a token was found; shown by `platforms doctor` (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSource {
    Env { variable: String },
    SecretFile { path: String },
    Vault { url: String, key: String },
    Dashboard { url: String },
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env { variable } => write!(f, "environment variable {variable}"),
            TokenSource::SecretFile { path } => write!(f, "secret file {path}"),
            TokenSource::Vault { url, key } => write!(f, "vault {url} (key {key})"),
            TokenSource::Dashboard { url } => write!(f, "dashboard {url}"),
        }
    }
}

pub struct Discovered {
    pub token: SecretValue,
    pub source: TokenSource,
}

/// The outcome for one platform: the token (if any) and what was tried, for messages.
pub struct Discovery {
    pub found: Option<Discovered>,
    pub tried: Vec<String>,
}

/// The variables that hold a platform's token, preferred first.
pub fn token_vars(kind: PlatformKind) -> &'static [&'static str] {
    match kind {
        PlatformKind::Render => &["RENDER_API_TOKEN"],
        PlatformKind::Netlify => &["NETLIFY_API_TOKEN", "NETLIFY_AUTH_TOKEN"],
        PlatformKind::Github => &["GITHUB_TOKEN"],
        PlatformKind::Local | PlatformKind::Process => &[],
    }
}

pub async fn discover(
    kind: PlatformKind,
    cfg: &RemoteConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Discovery {
    let vars = token_vars(kind);
    let mut tried = Vec::new();
    for step in &cfg.discovery_order {
        let found = match step.as_str() {
            "env" => from_env(vars, env, &mut tried),
            "secret_files" => from_files(kind, vars, cfg, &mut tried),
            "vault" => from_vault(vars, cfg, env, &mut tried).await,
            "dashboard" => from_dashboard(vars, cfg, &mut tried).await,
            _ => None,
        };
        if let Some(found) = found {
            return Discovery {
                found: Some(found),
                tried,
            };
        }
    }
    Discovery { found: None, tried }
}

fn from_env(
    vars: &[&str],
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    tried: &mut Vec<String>,
) -> Option<Discovered> {
    for var in vars {
        tried.push(format!("env {var}"));
        if let Some(value) = env(var).filter(|v| !v.trim().is_empty()) {
            return Some(Discovered {
                token: SecretValue::new(value.trim()),
                source: TokenSource::Env {
                    variable: var.to_string(),
                },
            });
        }
    }
    None
}

fn from_files(
    kind: PlatformKind,
    vars: &[&str],
    cfg: &RemoteConfig,
    tried: &mut Vec<String>,
) -> Option<Discovered> {
    let mut names: Vec<String> = vars.iter().map(|v| v.to_string()).collect();
    names.extend(
        cfg.secret_filenames
            .iter()
            .filter(|n| n.starts_with(kind.name()))
            .cloned(),
    );
    for dir in &cfg.secret_dirs {
        for name in &names {
            let path = PathBuf::from(dir).join(name);
            tried.push(format!("file {}", path.display()));
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.trim().is_empty()
            {
                return Some(Discovered {
                    token: SecretValue::new(text.trim()),
                    source: TokenSource::SecretFile {
                        path: path.display().to_string(),
                    },
                });
            }
        }
    }
    None
}

/// The shared retrying client, with short bounds: discovery runs before a command's real
/// work, so an unreachable vault or dashboard costs seconds, not minutes, before the next
/// source is tried.
fn client() -> Option<Client> {
    Client::new(HttpOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_delay: Duration::from_millis(250),
        max_wait: Duration::from_secs(2),
        total_timeout: Duration::from_secs(10),
        ..HttpOptions::default()
    })
    .ok()
}

async fn from_vault(
    vars: &[&str],
    cfg: &RemoteConfig,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    tried: &mut Vec<String>,
) -> Option<Discovered> {
    if cfg.vault_url.is_empty() {
        return None;
    }
    let client = client()?;
    let bearer = env("BRIDGE_VAULT_TOKEN")
        .filter(|t| !t.is_empty())
        .map(SecretValue::new);
    for var in vars {
        if !cfg.vault_token_keys.is_empty() && !cfg.vault_token_keys.iter().any(|k| k == var) {
            continue;
        }
        let url = format!("{}/vault/secret", cfg.vault_url.trim_end_matches('/'));
        tried.push(format!("vault {url} key {var}"));
        let mut request = Request::get(&url).query(&[("key", var)]);
        if let Some(bearer) = &bearer {
            request = request.bearer(bearer);
        }
        let Ok(response) = client.send(request).await else {
            continue;
        };
        if !response.is_success() {
            continue;
        }
        let Ok(body) = response.json::<serde_json::Value>() else {
            continue;
        };
        if let Some(value) = body
            .get("value")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
        {
            return Some(Discovered {
                token: SecretValue::new(value),
                source: TokenSource::Vault {
                    url,
                    key: var.to_string(),
                },
            });
        }
    }
    None
}

async fn from_dashboard(
    vars: &[&str],
    cfg: &RemoteConfig,
    tried: &mut Vec<String>,
) -> Option<Discovered> {
    if cfg.dashboard_token_urls.is_empty() {
        return None;
    }
    let client = client()?;
    for url in &cfg.dashboard_token_urls {
        tried.push(format!("dashboard {url}"));
        let Ok(response) = client.send(Request::get(url)).await else {
            continue;
        };
        let Ok(body) = response
            .error_for_status()
            .and_then(|r| r.json::<serde_json::Value>())
        else {
            continue;
        };
        for var in vars {
            if let Some(value) = body
                .get(*var)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
            {
                return Some(Discovered {
                    token: SecretValue::new(value),
                    source: TokenSource::Dashboard { url: url.clone() },
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path) -> RemoteConfig {
        RemoteConfig {
            discovery_order: vec!["env".into(), "secret_files".into()],
            secret_dirs: vec![dir.display().to_string()],
            secret_filenames: vec!["render.token".into(), "github.token".into()],
            ..RemoteConfig::default()
        }
    }

    /// A one-request HTTP server on loopback: answers `body` and hands back the request head.
    fn serve_once(body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vault_and_dashboard_sources() {
        let (url, server) = serve_once(r#"{"key":"RENDER_API_TOKEN","value":"rnd_from_vault"}"#);
        let cfg = RemoteConfig {
            discovery_order: vec!["env".into(), "vault".into()],
            vault_url: url.clone(),
            ..RemoteConfig::default()
        };
        let env = |name: &str| (name == "BRIDGE_VAULT_TOKEN").then(|| "vault-bearer".to_string());
        let d = discover(PlatformKind::Render, &cfg, &env).await;
        let found = d.found.unwrap();
        assert_eq!(found.token.expose(), "rnd_from_vault");
        assert_eq!(
            found.source,
            TokenSource::Vault {
                url: format!("{url}/vault/secret"),
                key: "RENDER_API_TOKEN".into()
            }
        );
        let head = server.join().unwrap();
        assert!(
            head.starts_with("GET /vault/secret?key=RENDER_API_TOKEN "),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer vault-bearer"),
            "{head}"
        );

        let (url, server) = serve_once(r#"{"GITHUB_TOKEN":"ghp_from_dashboard"}"#);
        let cfg = RemoteConfig {
            discovery_order: vec!["dashboard".into()],
            dashboard_token_urls: vec![format!("{url}/tokens")],
            ..RemoteConfig::default()
        };
        let none = |_: &str| None;
        let d = discover(PlatformKind::Github, &cfg, &none).await;
        assert_eq!(d.found.unwrap().token.expose(), "ghp_from_dashboard");
        server.join().unwrap();
    }

    #[tokio::test]
    async fn env_first_then_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("render.token"), "rnd_from_file\n").unwrap();
        let none = |_: &str| None;
        let d = discover(PlatformKind::Render, &cfg(dir.path()), &none).await;
        let found = d.found.unwrap();
        assert_eq!(found.token.expose(), "rnd_from_file");
        assert!(matches!(found.source, TokenSource::SecretFile { .. }));

        let env = |name: &str| (name == "RENDER_API_TOKEN").then(|| "rnd_env".to_string());
        let d = discover(PlatformKind::Render, &cfg(dir.path()), &env).await;
        assert_eq!(
            d.found.unwrap().source.to_string(),
            "environment variable RENDER_API_TOKEN"
        );

        let d = discover(PlatformKind::Netlify, &cfg(dir.path()), &none).await;
        assert!(d.found.is_none());
        assert!(d.tried.iter().any(|t| t.contains("NETLIFY_AUTH_TOKEN")));
    }
}
