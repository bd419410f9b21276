//! Witnesses of the ledger: places outside the state's reach that keep the latest signed
//! checkpoint, so that a cut tail or a rewritten history shows (`ledger verify --witness`).
//!
//! A witness is a file path, an `https://` URL taking a PUT (and answering a GET with what it
//! was given), or `github`: the Actions variable `BRIDGE_LEDGER_CHECKPOINT` of
//! `GITHUB_REPOSITORY`. Publishing never moves a witness backwards: the checkpoint it holds
//! must be one this ledger extends, or the publication is refused.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use bridge_genesis::ledger::{
    Checkpoint, LedgerAccess, LedgerRows, WitnessDocument, Witnessed, compare_with_witness,
    read_witnessed,
};
use bridge_operations::log::Logger;
use bridge_platforms::PlatformKind;
use bridge_platforms::http::{Client, Method, Request, StatusCode};
use ed25519_dalek::VerifyingKey;

use crate::context::Context;
use crate::state::LEDGER_ORIGIN;

/// The Actions variable a `github` witness keeps the checkpoint in.
pub const GITHUB_VARIABLE: &str = "BRIDGE_LEDGER_CHECKPOINT";

/// Where a checkpoint is published and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witness {
    File(PathBuf),
    Url(String),
    Github,
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Witness::File(path) => write!(f, "{}", path.display()),
            Witness::Url(url) => write!(f, "{}", bridge_core::redact::url_password(url)),
            Witness::Github => write!(f, "github (Actions variable {GITHUB_VARIABLE})"),
        }
    }
}

impl Witness {
    /// `github`, an `https://` URL (`http://` only to this machine), or a file path.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("a witness is a file path, an https:// URL or `github`; got nothing");
        }
        if text == "github" {
            return Ok(Witness::Github);
        }
        if let Some(rest) = text.strip_prefix("http://") {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            let name = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host.split(':').next().unwrap_or(""),
            };
            if !matches!(name, "127.0.0.1" | "localhost" | "::1") {
                bail!(
                    "witness {}: a witness URL must be https:// (http:// only to this machine)",
                    bridge_core::redact::url_password(text)
                );
            }
            return Ok(Witness::Url(text.to_string()));
        }
        if text.starts_with("https://") {
            return Ok(Witness::Url(text.to_string()));
        }
        if text.contains("://") {
            bail!(
                "witness {}: expected a file path, an https:// URL or `github`",
                bridge_core::redact::url_password(text)
            );
        }
        Ok(Witness::File(PathBuf::from(text)))
    }

    /// What the witness holds, or `None` when it holds nothing yet.
    pub async fn read(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        match self {
            Witness::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading the witness {}", path.display())),
            },
            Witness::Url(url) => {
                let answer = client()?
                    .send(Request::get(url))
                    .await
                    .with_context(|| format!("reading the witness {self}"))?;
                match answer.status {
                    StatusCode::NOT_FOUND => Ok(None),
                    s if s.is_success() => Ok(Some(answer.text())),
                    s => bail!("reading the witness {self}: HTTP {s}: {}", answer.message()),
                }
            }
            Witness::Github => {
                let github = Github::of(ctx).await?;
                let answer = client()?
                    .send(Request::get(&github.variable_url()).bearer(&github.token))
                    .await
                    .context("reading the witness variable on GitHub")?;
                match answer.status {
                    StatusCode::NOT_FOUND => Ok(None),
                    s if s.is_success() => {
                        let body: serde_json::Value = answer.json()?;
                        let value = body["value"].as_str().ok_or_else(|| {
                            anyhow!(
                                "GitHub answered the variable {GITHUB_VARIABLE} without a value"
                            )
                        })?;
                        Ok(Some(value.to_string()))
                    }
                    s => bail!(
                        "reading {GITHUB_VARIABLE} of {}: HTTP {s}: {}",
                        github.repository,
                        answer.message()
                    ),
                }
            }
        }
    }

    /// Replaces what the witness holds with `text`.
    async fn write(&self, ctx: &Context<'_>, text: &str) -> Result<()> {
        match self {
            Witness::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                bridge_platforms::local::write_atomically(path, format!("{text}\n").as_bytes())
                    .with_context(|| format!("writing the witness {}", path.display()))
            }
            Witness::Url(url) => {
                let document: serde_json::Value = serde_json::from_str(text)?;
                let answer = client()?
                    .send(
                        Request::new(Method::PUT, url)
                            .json(&document)
                            .idempotent(true),
                    )
                    .await
                    .with_context(|| format!("publishing to the witness {self}"))?;
                if !answer.is_success() {
                    bail!(
                        "publishing to the witness {self}: HTTP {}: {}",
                        answer.status,
                        answer.message()
                    );
                }
                Ok(())
            }
            Witness::Github => {
                let github = Github::of(ctx).await?;
                let body = serde_json::json!({"name": GITHUB_VARIABLE, "value": text});
                let client = client()?;
                let update = Request::new(Method::PATCH, &github.variable_url())
                    .bearer(&github.token)
                    .json(&body)
                    .idempotent(true);
                let mut answer = client
                    .send(update)
                    .await
                    .context("publishing the witness variable on GitHub")?;
                if answer.status == StatusCode::NOT_FOUND {
                    let create = Request::post(&github.variables_url())
                        .bearer(&github.token)
                        .json(&body);
                    answer = client
                        .send(create)
                        .await
                        .context("creating the witness variable on GitHub")?;
                }
                if !answer.is_success() {
                    bail!(
                        "publishing {GITHUB_VARIABLE} to {}: HTTP {}: {}",
                        github.repository,
                        answer.status,
                        answer.message()
                    );
                }
                Ok(())
            }
        }
    }
}

fn client() -> Result<Client> {
    Client::new(bridge_platforms::HttpOptions {
        total_timeout: Duration::from_secs(30),
        ..bridge_platforms::HttpOptions::default()
    })
    .map_err(|e| anyhow!("{e}"))
}

/// The repository, API root and token a `github` witness uses: those of the `github`
/// platform (`GITHUB_REPOSITORY`, `github.api_url`, the token discovery chain).
struct Github {
    api_url: String,
    repository: String,
    token: bridge_core::SecretValue,
}

impl Github {
    async fn of(ctx: &Context<'_>) -> Result<Self> {
        let open = ctx.open_context(&[PlatformKind::Github]).await;
        let repository = open
            .github
            .target_id
            .clone()
            .filter(|r| r.contains('/'))
            .ok_or_else(|| {
                anyhow!(
                    "the github witness needs GITHUB_REPOSITORY (owner/name) or github.repository"
                )
            })?;
        let token = open.github.token.clone().ok_or_else(|| {
            anyhow!(
                "the github witness needs a GitHub token (GITHUB_TOKEN, or see `platforms doctor`)"
            )
        })?;
        Ok(Self {
            api_url: open.github.api_url.trim_end_matches('/').to_string(),
            repository,
            token,
        })
    }

    fn variables_url(&self) -> String {
        format!(
            "{}/repos/{}/actions/variables",
            self.api_url, self.repository
        )
    }

    fn variable_url(&self) -> String {
        format!("{}/{GITHUB_VARIABLE}", self.variables_url())
    }
}

/// What a publication did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The witness now holds this checkpoint.
    Now { size: u64 },
    /// It already held a checkpoint of this size (the same tree): nothing to do.
    Already { size: u64 },
}

/// Publishes `checkpoint` to `witness`, unless what the witness holds is not a checkpoint of
/// this ledger (refused: it may be another log's, or tampered with) or one this ledger does
/// not extend (refused: the ledger was cut or rewritten since it was witnessed).
pub async fn publish(
    ctx: &Context<'_>,
    witness: &Witness,
    checkpoint: &Checkpoint,
    key: &VerifyingKey,
    rows: impl FnOnce() -> Result<Box<dyn LedgerRows>> + Send + 'static,
) -> Result<Published> {
    if let Some(held) = witness.read(ctx).await? {
        let seen = read_witnessed(&held, LEDGER_ORIGIN, key)
            .map_err(|e| anyhow!("the witness {witness} holds something this ledger did not sign ({e}); refusing to overwrite it"))?;
        if seen.size > checkpoint.size {
            bail!(
                "the witness {witness} saw a signed tree of {} entries, more than this \
                 checkpoint's {}: the ledger lost entries since (run `ledger verify --witness`)",
                seen.size,
                checkpoint.size
            );
        }
        let seen_size = seen.size;
        let verdict = tokio::task::spawn_blocking(move || -> Result<Witnessed> {
            Ok(compare_with_witness(&*rows()?, &seen)?)
        })
        .await
        .map_err(|e| anyhow!("comparing with the witness: {e}"))??;
        if !verdict.extends() {
            bail!("not publishing to the witness {witness}: this ledger {verdict}");
        }
        if seen_size == checkpoint.size {
            return Ok(Published::Already {
                size: checkpoint.size,
            });
        }
    }
    witness
        .write(ctx, &WitnessDocument::of(checkpoint).to_json())
        .await?;
    Ok(Published::Now {
        size: checkpoint.size,
    })
}

/// `serve` with `ledger.witness`: publishes each new signed checkpoint, checking once a
/// second; a failure is logged and tried again ten seconds later. Returns when `stop` says
/// so, after one last publication (the shutdown signs what was left unsigned).
pub async fn publish_checkpoints(
    ctx: &'static Context<'static>,
    witness: Witness,
    access: LedgerAccess,
    logger: Logger,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut published = 0u64;
    let mut last_try = 0u64;
    loop {
        let stopping = *stop.borrow();
        let latest = {
            let access = access.clone();
            tokio::task::spawn_blocking(move || latest_checkpoint(&access)).await
        };
        match latest {
            Ok(Ok(Some(checkpoint))) if checkpoint.size > published => {
                let from = access.clone();
                let rows = move || from.rows().map_err(anyhow::Error::from);
                let key = access.verifying_key();
                match publish(ctx, &witness, &checkpoint, &key, rows).await {
                    Ok(_) => {
                        published = checkpoint.size;
                        logger.info(
                            "ledger checkpoint witnessed",
                            &[
                                ("witness", &witness.to_string()),
                                ("size", &checkpoint.size.to_string()),
                            ],
                        );
                    }
                    Err(e) => {
                        // Said once per checkpoint size, not every retry.
                        if last_try != checkpoint.size {
                            logger.warn(
                                "publishing to the ledger witness failed; retrying",
                                &[
                                    ("witness", &witness.to_string()),
                                    ("error", &format!("{e:#}")),
                                ],
                            );
                        }
                        last_try = checkpoint.size;
                        if !stopping {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(10), stop.changed()).await;
                            continue;
                        }
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => logger.warn(
                "reading the latest checkpoint for the witness failed",
                &[("error", &format!("{e:#}"))],
            ),
            Err(e) => logger.warn(
                "reading the latest checkpoint for the witness failed",
                &[("error", &e.to_string())],
            ),
        }
        if stopping {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stop.changed()).await;
    }
}

fn latest_checkpoint(access: &LedgerAccess) -> Result<Option<Checkpoint>> {
    let rows = access.rows()?;
    let Some(row) = rows
        .checkpoints(bridge_genesis::ledger::rows::Checkpoints::Latest)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let checkpoint = bridge_genesis::ledger::verify_checkpoint(&row.note, &access.verifying_key())
        .map_err(|e| anyhow!("the latest checkpoint does not verify: {e}"))?;
    Ok(Some(checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witnesses_parse() {
        assert_eq!(Witness::parse("github").unwrap(), Witness::Github);
        assert_eq!(
            Witness::parse("/srv/witness.json").unwrap(),
            Witness::File("/srv/witness.json".into())
        );
        assert!(matches!(
            Witness::parse("https://w.example/ledger").unwrap(),
            Witness::Url(_)
        ));
        assert!(matches!(
            Witness::parse("http://127.0.0.1:9000/w").unwrap(),
            Witness::Url(_)
        ));
        for bad in [
            "",
            "http://w.example/x",
            "http://127.0.0.1.evil/x",
            "ftp://x/y",
        ] {
            assert!(Witness::parse(bad).is_err(), "{bad}");
        }
        let shown = Witness::parse("https://u:hunter2@w.example/x")
            .unwrap()
            .to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
