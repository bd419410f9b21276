//! `genesisctl ledger …`: the Truth ledger, a tamper-evident Merkle log of every change Bridge
//! made, with signed checkpoints and proofs anyone can check offline with the public key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use bridge_core::hex;
use bridge_genesis::ledger::{self, Ledger, LedgerRows as _, ProofDocument};
use ed25519_dalek::VerifyingKey;
use serde_json::json;

use crate::context::Context;
use crate::exit::Code;
use crate::shell::{GREEN, RED};
use crate::store::StoreUrl;
use crate::witness::{Published, Witness};

/// A public key given as 64 hex digits, or a file holding them.
pub fn parse_public_key(text: &str) -> anyhow::Result<VerifyingKey> {
    let hexed = if Path::new(text).is_file() {
        std::fs::read_to_string(text).with_context(|| format!("reading {text}"))?
    } else {
        text.to_string()
    };
    let bytes: [u8; 32] = hex::decode(hexed.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            anyhow!(
                "a public key is 64 hex digits (or a file holding them, such as .bridge/ledger.pub)"
            )
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow!("not an Ed25519 public key"))
}

fn own_key(ctx: &Context<'_>, flag: Option<&str>) -> anyhow::Result<VerifyingKey> {
    match flag {
        Some(text) => parse_public_key(text),
        None => Ok(ctx.state.ledger_key()?.verifying_key()),
    }
}

pub async fn verify(
    ctx: &Context<'_>,
    public_key: Option<&str>,
    witness: Option<&str>,
) -> anyhow::Result<Code> {
    let key = own_key(ctx, public_key)?;
    let witness = witness.map(Witness::parse).transpose()?;
    let url = ctx.store_url()?;
    let report = match &url {
        StoreUrl::Local => {
            let path = ctx.state.ledger_path();
            if !path.exists() {
                bail!(
                    "no ledger at {} yet: it is created by the first applied sync",
                    path.display()
                );
            }
            // Read-only, so that verifying never creates or changes what it checks.
            ledger::verify_file(&path, crate::state::LEDGER_ORIGIN, &key)
                .with_context(|| format!("verifying {}", path.display()))?
        }
        StoreUrl::Postgres(url) => {
            // Straight to the rows: verifying claims no key and signs nothing.
            let shown = crate::store::redact_url(url);
            bridge_genesis_scale::PostgresLedgerRows::connect(url, None)
                .and_then(|rows| rows.verify(crate::state::LEDGER_ORIGIN, &key))
                .with_context(|| format!("verifying the --store ledger {shown}"))?
        }
    };
    let witnessed = match &witness {
        None => None,
        Some(witness) => Some(against_witness(ctx, witness, &url, &key).await?),
    };
    let witness_ok = witnessed.as_ref().is_none_or(|(ok, _)| *ok);
    if ctx.shell.is_json() {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        ctx.shell
            .print_json(&json!({
                "ok": report.is_ok() && witness_ok,
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "attested_size": report.attested_size,
                "root": hex::encode(&report.root),
                "first_bad_entry": report.first_bad_entry(),
                "problems": problems,
                "witness": witness.as_ref().zip(witnessed.as_ref()).map(|(w, (ok, detail))| json!({
                    "source": w.to_string(),
                    "extends": ok,
                    "detail": detail,
                })),
            }))
            .map_err(anyhow::Error::from)?;
    } else if report.is_ok() {
        let mut text = format!(
            "{GREEN}ok{GREEN:#}: {} entries, {} checkpoints; signed coverage up to entry {}; root {}\n",
            report.entries,
            report.checkpoints,
            report.attested_size,
            hex::encode(&report.root)
        );
        if let (Some(w), Some((ok, detail))) = (&witness, &witnessed) {
            if *ok {
                let _ = writeln!(text, "{GREEN}witnessed{GREEN:#}: {detail} ({w})");
            } else {
                let _ = writeln!(
                    text,
                    "{RED}tampered{RED:#}: the ledger {detail} (witness {w})"
                );
            }
        }
        ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    } else {
        let mut text = String::new();
        for p in &report.problems {
            let _ = writeln!(text, "  {RED}✗{RED:#} {p}");
        }
        if let Some((false, detail)) = &witnessed {
            let _ = writeln!(text, "  {RED}✗{RED:#} the ledger {detail}");
        }
        if let Some(first) = report.first() {
            let _ = writeln!(text, "{RED}tampered{RED:#}: {first}");
        }
        ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    }
    Ok(if report.is_ok() && witness_ok {
        Code::Ok
    } else {
        Code::Drift
    })
}

/// Whether the ledger extends what `witness` holds, and the words for it. A witness that
/// holds nothing is an error (nothing to prove against); one that holds what this key did
/// not sign is a failed proof.
async fn against_witness(
    ctx: &Context<'_>,
    witness: &Witness,
    url: &StoreUrl,
    key: &VerifyingKey,
) -> anyhow::Result<(bool, String)> {
    let held = witness.read(ctx).await?.ok_or_else(|| {
        anyhow!(
            "the witness {witness} holds no checkpoint yet: publish one with `genesisctl ledger \
             checkpoint --publish`"
        )
    })?;
    let seen = match ledger::read_witnessed(&held, crate::state::LEDGER_ORIGIN, key) {
        Ok(seen) => seen,
        Err(e) => return Ok((false, format!("cannot be checked against it: {e}"))),
    };
    let rows: Box<dyn ledger::LedgerRows> = match url {
        StoreUrl::Local => Box::new(ledger::SqliteRows::open_read_only(ctx.state.ledger_path())?),
        StoreUrl::Postgres(url) => Box::new(
            bridge_genesis_scale::PostgresLedgerRows::connect(url, None).with_context(|| {
                format!(
                    "reading the --store ledger {}",
                    crate::store::redact_url(url)
                )
            })?,
        ),
    };
    let verdict = ledger::compare_with_witness(&*rows, &seen)?;
    Ok((verdict.extends(), verdict.to_string()))
}

pub fn show(ctx: &Context<'_>, from: u64, limit: u64) -> anyhow::Result<Code> {
    let ledger = open_existing(ctx)?;
    let end = from.saturating_add(limit).min(ledger.len());
    let entries = ledger.entries(from.min(end)..end)?;
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&entries)
            .map_err(anyhow::Error::from)?;
        return Ok(Code::Ok);
    }
    let mut text = String::new();
    for e in &entries {
        let _ = writeln!(
            text,
            "{:>6}  {}  {:<18}  {}",
            e.index, e.timestamp, e.topic, e.payload
        );
    }
    let _ = writeln!(text, "{} of {} entries", entries.len(), ledger.len());
    ctx.shell.print(&text).map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

pub fn proof(ctx: &Context<'_>, index: u64) -> anyhow::Result<Code> {
    let mut ledger = open(ctx)?;
    if index >= ledger.len() {
        bail!(
            "entry {index} does not exist (the ledger has {} entries)",
            ledger.len()
        );
    }
    // Prove against a signed checkpoint that covers the entry, signing one if needed.
    let checkpoint = match ledger.latest_checkpoint()? {
        Some(c) if c.checkpoint.size > index => c,
        _ => ledger.checkpoint(time::OffsetDateTime::now_utc())?,
    };
    let proof = ledger.inclusion_proof(index, checkpoint.checkpoint.size)?;
    ctx.shell
        .print(&format!("{}\n", proof.to_json()))
        .map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

/// `ledger proof --from M [--to N]`: the signed tree of N entries (the latest checkpoint's
/// by default) extends the signed tree of M.
pub fn consistency_proof(ctx: &Context<'_>, from: u64, to: Option<u64>) -> anyhow::Result<Code> {
    let ledger = open(ctx)?;
    let to = match to {
        Some(to) => to,
        None => match ledger.latest_checkpoint()? {
            Some(latest) => latest.checkpoint.size,
            None => bail!("the ledger has no signed checkpoint yet"),
        },
    };
    if from > to {
        bail!("--from {from} is after --to {to}: the older tree comes first");
    }
    if to > ledger.len() {
        bail!("the ledger has {} entries, fewer than {to}", ledger.len());
    }
    let proof = ledger.signed_consistency_proof(from, to)?;
    ctx.shell
        .print(&format!("{}\n", proof.to_json()))
        .map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

pub fn verify_proof(ctx: &Context<'_>, file: &Path, public_key: &str) -> anyhow::Result<Code> {
    let key = parse_public_key(public_key)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match ledger::verify_proof_document(&text, &key) {
        Ok(document) => {
            let (message, fields) = match document {
                ProofDocument::Inclusion(proof) => (
                    format!(
                        "entry {} is included in the signed tree of {} entries",
                        proof.index, proof.tree_size
                    ),
                    json!({"ok": true, "kind": "inclusion", "index": proof.index,
                           "tree_size": proof.tree_size}),
                ),
                ProofDocument::Consistency(proof) => (
                    format!(
                        "the signed tree of {} entries extends the signed tree of {} \
                         (root {})",
                        proof.to_size,
                        proof.from_size,
                        ledger::to_hex(&proof.from_root)
                    ),
                    json!({"ok": true, "kind": "consistency", "from_size": proof.from_size,
                           "to_size": proof.to_size,
                           "from_root": ledger::to_hex(&proof.from_root),
                           "to_root": ledger::to_hex(&proof.to_root)}),
                ),
            };
            if ctx.shell.is_json() {
                ctx.shell.print_json(&fields).map_err(anyhow::Error::from)?;
            } else {
                ctx.shell
                    .print(&format!("{GREEN}ok{GREEN:#}: {message}\n"))
                    .map_err(anyhow::Error::from)?;
            }
            Ok(Code::Ok)
        }
        Err(e) => {
            if ctx.shell.is_json() {
                ctx.shell
                    .print_json(&json!({"ok": false, "error": e.to_string()}))
                    .map_err(anyhow::Error::from)?;
            } else {
                ctx.shell
                    .print(&format!("{RED}invalid{RED:#}: {e}\n"))
                    .map_err(anyhow::Error::from)?;
            }
            Ok(Code::Drift)
        }
    }
}

pub fn export(ctx: &Context<'_>, out: Option<&PathBuf>) -> anyhow::Result<Code> {
    let ledger = open_existing(ctx)?;
    match out {
        Some(path) => {
            let mut buffer = Vec::new();
            let n = ledger.export_jsonl(&mut buffer)?;
            bridge_platforms::local::write_atomically(path, &buffer)
                .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
            ctx.shell
                .status("Exported", format!("{n} entries to {}", path.display()));
        }
        None => {
            ledger.export_jsonl(ctx.shell.stdout().lock())?;
        }
    }
    Ok(Code::Ok)
}

pub async fn checkpoint(ctx: &Context<'_>, publish: Option<&str>) -> anyhow::Result<Code> {
    let witness = publish.map(Witness::parse).transpose()?;
    let access = ctx.ledger_access()?;
    let mut ledger = access.open()?;
    let c = ledger.checkpoint(time::OffsetDateTime::now_utc())?;
    drop(ledger);
    let published = match &witness {
        None => None,
        Some(witness) => {
            let key = access.verifying_key();
            let rows = move || access.rows().map_err(anyhow::Error::from);
            match crate::witness::publish(ctx, witness, &c.checkpoint, &key, rows).await {
                Ok(done) => Some(done),
                // A witness this ledger does not extend is the finding verify reports.
                Err(e) => {
                    ctx.shell.error(format!("{e:#}"));
                    return Ok(Code::Drift);
                }
            }
        }
    };
    if ctx.shell.is_json() {
        ctx.shell
            .print_json(&json!({
                "id": c.id,
                "size": c.checkpoint.size,
                "note": c.checkpoint.note,
                "published": witness.as_ref().map(|w| w.to_string()),
            }))
            .map_err(anyhow::Error::from)?;
    } else {
        ctx.shell
            .print(&c.checkpoint.note)
            .map_err(anyhow::Error::from)?;
        if let (Some(w), Some(done)) = (&witness, &published) {
            let what = match done {
                Published::Now { size } => format!("checkpoint of {size} entries to {w}"),
                Published::Already { size } => {
                    format!("checkpoint of {size} entries: {w} already holds it")
                }
            };
            ctx.shell.status("Published", what);
        }
    }
    Ok(Code::Ok)
}

pub fn public_key(ctx: &Context<'_>) -> anyhow::Result<Code> {
    let key = hex::encode(ctx.state.ledger_key()?.verifying_key().as_bytes());
    if ctx.shell.is_json() {
        ctx.shell.print_json(&serde_json::json!({
            "public_key": key,
            "algorithm": "ed25519",
            "origin": crate::state::LEDGER_ORIGIN,
        }))
    } else {
        ctx.shell.print(&format!("{key}\n"))
    }
    .map_err(anyhow::Error::from)?;
    Ok(Code::Ok)
}

fn open_existing(ctx: &Context<'_>) -> anyhow::Result<Ledger> {
    if ctx.store_url()? == StoreUrl::Local {
        let path = ctx.state.ledger_path();
        if !path.exists() {
            bail!(
                "no ledger at {} yet: it is created by the first applied sync",
                path.display()
            );
        }
    }
    open(ctx)
}

/// The ledger of this command's store, able to sign.
fn open(ctx: &Context<'_>) -> anyhow::Result<Ledger> {
    let access = ctx.ledger_access()?;
    access
        .open()
        .with_context(|| format!("opening {}", access.describe()))
}
