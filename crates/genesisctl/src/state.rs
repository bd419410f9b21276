//! The state directory (`--state-dir`, default `./.bridge`): created 0700, and holding the
//! local fingerprint key (`fingerprint.key`, 0600) under which secret values are reduced to
//! comparable fingerprints.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bridge_core::FingerprintKey;
use bridge_core::hex;

pub const KEY_FILE: &str = "fingerprint.key";

pub struct StateDir {
    path: PathBuf,
}

/// Whether [`StateDir::ensure`] made anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Now,
    AlreadyThere,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory 0700 if it is missing.
    pub fn ensure(&self) -> Result<Created> {
        match fs::metadata(&self.path) {
            Ok(meta) if meta.is_dir() => Ok(Created::AlreadyThere),
            Ok(_) => bail!(
                "state directory {} exists but is not a directory",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.path)
                    .with_context(|| format!("creating state directory {}", self.path.display()))?;
                // The umask may have narrowed the mode; the directory holds keys, so be exact.
                fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("setting permissions on {}", self.path.display()))?;
                Ok(Created::Now)
            }
            Err(e) => Err(e).with_context(|| format!("inspecting {}", self.path.display())),
        }
    }

    fn key_path(&self) -> PathBuf {
        self.path.join(KEY_FILE)
    }

    /// The fingerprint key, if one exists.
    pub fn load_key(&self) -> Result<Option<FingerprintKey>> {
        let path = self.key_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let key = hex::decode(text.trim())
            .and_then(|bytes| FingerprintKey::from_slice(&bytes))
            .with_context(|| {
                format!(
                    "{} is not a fingerprint key (64 hex digits); restore it from backup, or \
                     delete it to start new fingerprints (earlier ones will no longer match)",
                    path.display()
                )
            })?;
        Ok(Some(key))
    }

    /// The fingerprint key, created (with the directory) on first use.
    pub fn key(&self) -> Result<(FingerprintKey, Created)> {
        if let Some(key) = self.load_key()? {
            return Ok((key, Created::AlreadyThere));
        }
        self.ensure()?;
        let mut bytes = [0u8; FingerprintKey::LEN];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for a new key: {e}"))?;
        let key = FingerprintKey::from_bytes(bytes);
        let path = self.key_path();
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(format!("{}\n", hex::encode(key.as_bytes())).as_bytes())?;
                f.sync_all()
            });
        match written {
            Ok(()) => Ok((key, Created::Now)),
            // Another process created it first: use theirs, so both agree.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let key = self
                    .load_key()?
                    .with_context(|| format!("{} vanished while being created", path.display()))?;
                Ok((key, Created::AlreadyThere))
            }
            Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_dir_and_stable_key() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let state = StateDir::new(tmp.path().join("nested/.bridge"));
        let (k1, created) = state.key()?;
        assert_eq!(created, Created::Now);
        let (k2, again) = state.key()?;
        assert_eq!(again, Created::AlreadyThere);
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        let dir_mode = fs::metadata(state.path())?.permissions().mode() & 0o777;
        let key_mode = fs::metadata(state.key_path())?.permissions().mode() & 0o777;
        assert_eq!((dir_mode, key_mode), (0o700, 0o600));
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
