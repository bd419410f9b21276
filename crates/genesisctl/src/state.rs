//! The state directory (`--state-dir`, default `./.bridge`): created 0700, holding
//!
//! - `fingerprint.key` (0600): the HMAC key under which secret values become comparable
//!   fingerprints;
//! - `state.key` (0600): the X25519 key that seals values at rest in the store;
//! - `state.db`: the state store (write records, ownership, journals).
//!
//! Each key may come from the environment instead, for runners that start empty and must
//! judge, seal and sign as every other runner does: `BRIDGE_FINGERPRINT_KEY`,
//! `BRIDGE_STATE_KEY`, `BRIDGE_LEDGER_KEY` (64 hex digits), or the same names with `_FILE`
//! naming a file that holds them. A key from the environment is never written to disk.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use bridge_core::FingerprintKey;
use bridge_core::hex;
use bridge_sync::sealing::Sealer;
use bridge_sync::store::StateStore;

use crate::cli::OutputFormat;
use crate::shell::Shell;

pub const KEY_FILE: &str = "fingerprint.key";
pub const STATE_KEY_FILE: &str = "state.key";
pub const STORE_FILE: &str = "state.db";
pub const LEDGER_FILE: &str = "ledger.db";
pub const LEDGER_KEY_FILE: &str = "ledger.key";
/// The ledger's public key (hex), for anyone who verifies proofs offline.
pub const LEDGER_PUB_FILE: &str = "ledger.pub";
/// The identity of this log in its checkpoints.
pub const LEDGER_ORIGIN: &str = "bridge.local/ledger";

/// A fingerprint key's public id: the first 16 hex digits of its fingerprint of a fixed
/// text. Two runners with one key have one id; the id reveals nothing of the key.
pub fn key_id(key: &FingerprintKey) -> String {
    let probe = bridge_core::SecretValue::new("bridge fingerprint key id");
    key.fingerprint(&probe).to_hex()[..16].to_owned()
}

pub struct StateDir {
    path: PathBuf,
    /// Keys given in the environment: `(key file name, key)`.
    given: Vec<(&'static str, [u8; 32])>,
    /// Where a tightened mode is reported.
    shell: Shell,
    /// Set once the directory has been found (or made) usable, so later calls cost nothing.
    checked: OnceLock<()>,
}

/// The environment variable that may hold each key file's key.
const KEY_VARIABLES: [(&str, &str); 3] = [
    (KEY_FILE, "BRIDGE_FINGERPRINT_KEY"),
    (STATE_KEY_FILE, "BRIDGE_STATE_KEY"),
    (LEDGER_KEY_FILE, "BRIDGE_LEDGER_KEY"),
];

/// Whether something was made just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Now,
    AlreadyThere,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            given: Vec::new(),
            shell: Shell::new(OutputFormat::Text, false),
            checked: OnceLock::new(),
        }
    }

    /// Reports through `shell` (a tightened mode is a warning).
    pub fn reporting_to(mut self, shell: &Shell) -> Self {
        self.shell = shell.clone();
        self
    }

    /// The directory, with the keys `env` gives (see the module docs). A variable set both
    /// directly and as `…_FILE`, a `…_FILE` that cannot be read, or a value that is not 64
    /// hex digits is an error, found before anything runs.
    pub fn with_env_keys(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        for (file, variable) in KEY_VARIABLES {
            let direct = env(variable).filter(|v| !v.trim().is_empty());
            let file_variable = format!("{variable}_FILE");
            let from_file = env(&file_variable).filter(|v| !v.trim().is_empty());
            let given = match (direct, from_file) {
                (Some(_), Some(_)) => {
                    bail!("both {variable} and {file_variable} are set; keep one")
                }
                (Some(value), None) => Some((variable.to_string(), value)),
                (None, Some(path)) => {
                    let value = fs::read_to_string(path.trim())
                        .with_context(|| format!("{file_variable}: reading {}", path.trim()))?;
                    Some((file_variable, value))
                }
                (None, None) => None,
            };
            if let Some((from, value)) = given {
                let bytes = hex::decode(value.trim())
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .with_context(|| {
                        format!("{from} is not a valid key: it must be 64 hex digits (32 bytes)")
                    })?;
                self.given.push((file, bytes));
            }
        }
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory 0700 if it is missing. One that exists must be a directory this
    /// user owns: another user could replace its keys and `tokens.json`. Group or other
    /// access to it, or to a file in it, is taken away, with a warning.
    pub fn ensure(&self) -> Result<Created> {
        if self.inspect()? {
            return Ok(Created::AlreadyThere);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .with_context(|| format!("creating state directory {}", self.path.display()))?;
        // The umask may have narrowed the mode; the directory holds keys, so be exact.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting permissions on {}", self.path.display()))?;
        let _ = self.checked.set(());
        Ok(Created::Now)
    }

    /// Whether the directory exists, checked (owner) and tightened (mode) the first time it
    /// is found: before anything in it is read or written.
    fn inspect(&self) -> Result<bool> {
        if self.checked.get().is_some() {
            return Ok(true);
        }
        match fs::metadata(&self.path) {
            Ok(meta) if meta.is_dir() => {
                self.check_owner(&meta)?;
                self.tighten(&meta)?;
                let _ = self.checked.set(());
                Ok(true)
            }
            Ok(_) => bail!(
                "state directory {} exists but is not a directory",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("inspecting {}", self.path.display())),
        }
    }

    fn check_owner(&self, meta: &fs::Metadata) -> Result<()> {
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            bail!(
                "state directory {} belongs to uid {}, not to this user (uid {me}): whoever owns \
                 it could replace its keys and tokens; choose another --state-dir",
                self.path.display(),
                meta.uid()
            );
        }
        Ok(())
    }

    /// Takes group and other access away from the directory and the files in it (and in
    /// its `locks/`), saying what was loosened.
    fn tighten(&self, meta: &fs::Metadata) -> Result<()> {
        let mut loosened = Vec::new();
        let dir_mode = meta.permissions().mode() & 0o7777;
        if dir_mode & 0o077 != 0 {
            fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting permissions on {}", self.path.display()))?;
            loosened.push(format!("{} was {dir_mode:04o}", self.path.display()));
        }
        for dir in [self.path.clone(), self.path.join("locks")] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                let mode = meta.permissions().mode() & 0o7777;
                let wanted = if meta.is_dir() {
                    0o700
                } else if meta.is_file() {
                    0o600
                } else {
                    continue;
                };
                if mode & 0o077 != 0 {
                    fs::set_permissions(entry.path(), fs::Permissions::from_mode(wanted))
                        .with_context(|| {
                            format!("setting permissions on {}", entry.path().display())
                        })?;
                    loosened.push(format!("{} was {mode:04o}", entry.path().display()));
                }
            }
        }
        if !loosened.is_empty() {
            self.shell.warn(format!(
                "state directory {}: other users had access; made it private ({})",
                self.path.display(),
                loosened.join(", ")
            ));
        }
        Ok(())
    }

    /// The fingerprint key, if one exists.
    pub fn load_key(&self) -> Result<Option<FingerprintKey>> {
        Ok(self
            .load_secret(KEY_FILE, "a fingerprint key")?
            .map(FingerprintKey::from_bytes))
    }

    /// The fingerprint key, created (with the directory) on first use.
    pub fn key(&self) -> Result<(FingerprintKey, Created)> {
        let (bytes, created) = self.secret(KEY_FILE, "a fingerprint key")?;
        Ok((FingerprintKey::from_bytes(bytes), created))
    }

    /// The key that seals values in the state store, created on first use.
    pub fn sealer(&self) -> Result<Sealer> {
        let (bytes, _) = self.secret(STATE_KEY_FILE, "a state key")?;
        Ok(Sealer::from_secret_bytes(bytes))
    }

    /// The local state store (`state.db`), created on first use. `crate::store::open_state`
    /// checks it against this run's keys.
    pub fn store(&self) -> Result<StateStore> {
        let sealer = self.sealer()?;
        // Keys from the environment create no file, so the directory may not exist yet.
        self.ensure()?;
        let path = self.path.join(STORE_FILE);
        StateStore::open_sqlite(&path, sealer)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// The ledger's signing key, created on first use, with its public half beside it.
    pub fn ledger_key(&self) -> Result<ed25519_dalek::SigningKey> {
        let (bytes, _) = self.secret(LEDGER_KEY_FILE, "a ledger signing key")?;
        let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
        let public = self.path.join(LEDGER_PUB_FILE);
        // A key from the environment leaves no file behind: an ephemeral runner's directory
        // may not even exist, and `ledger public-key` prints it anyway.
        let given = self.given.iter().any(|(f, _)| *f == LEDGER_KEY_FILE);
        if !given && !public.exists() {
            let text = format!("{}\n", hex::encode(key.verifying_key().as_bytes()));
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&public)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .with_context(|| format!("writing {}", public.display()))?;
        }
        Ok(key)
    }

    /// The Truth ledger's file, when the store is local.
    pub fn ledger_path(&self) -> PathBuf {
        self.path.join(LEDGER_FILE)
    }

    fn load_secret(&self, name: &str, what: &str) -> Result<Option<[u8; 32]>> {
        if let Some((_, bytes)) = self.given.iter().find(|(f, _)| *f == name) {
            return Ok(Some(*bytes));
        }
        if !self.inspect()? {
            return Ok(None);
        }
        let path = self.path.join(name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let bytes = hex::decode(text.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .with_context(|| {
                format!(
                    "{} is not {what} (64 hex digits); restore it from backup, or delete it to \
                     start afresh (what was fingerprinted or sealed with it is then lost)",
                    path.display()
                )
            })?;
        Ok(Some(bytes))
    }

    /// A 32-byte secret in `name`, created (0600, with the directory) on first use.
    fn secret(&self, name: &str, what: &str) -> Result<([u8; 32], Created)> {
        if let Some(bytes) = self.load_secret(name, what)? {
            return Ok((bytes, Created::AlreadyThere));
        }
        self.ensure()?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for a new key: {e}"))?;
        let path = self.path.join(name);
        // Written whole to a private file first, then linked into place: the key appears
        // complete or not at all, so a concurrent reader never sees it half-written.
        let tmp = self.path.join(format!(
            ".{name}.{}.{}",
            std::process::id(),
            hex::encode(&bytes[..4])
        ));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(format!("{}\n", hex::encode(&bytes)).as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok((bytes, Created::Now)),
            // Another process created it first: use theirs, so both agree.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = self
                    .load_secret(name, what)?
                    .with_context(|| format!("{} vanished while being created", path.display()))?;
                Ok((bytes, Created::AlreadyThere))
            }
            Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_dir_and_stable_keys() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let state = StateDir::new(tmp.path().join("nested/.bridge"));
        let (k1, created) = state.key()?;
        assert_eq!(created, Created::Now);
        let (k2, again) = state.key()?;
        assert_eq!(again, Created::AlreadyThere);
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        let sealer = state.sealer()?;
        let sealed = sealer.seal(&"x".into())?;
        assert_eq!(state.sealer()?.open(&sealed)?.expose(), "x");
        assert_eq!(mode(state.path()), 0o700);
        assert_eq!(mode(&state.path().join(KEY_FILE)), 0o600);
        assert_eq!(mode(&state.path().join(STATE_KEY_FILE)), 0o600);
        Ok(())
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_key() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let state = StateDir::new(tmp.path());
        fs::write(tmp.path().join(KEY_FILE), "not hex")?;
        let err = format!("{:#}", state.key().expect_err("damaged"));
        assert!(err.contains("is not a fingerprint key"), "{err}");
        Ok(())
    }
}
