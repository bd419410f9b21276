//! Roles and bearer tokens (the seeds' RBAC, their "Guardian").
//!
//! - Three roles, each including the one below: `observer` reads, `operator` also runs
//!   dry-runs and applies and publishes, `admiral` may do everything, the vault included.
//! - Tokens are `brg_` and 40 hex digits (160 random bits). Only their SHA-256 is stored, in
//!   `tokens.json` in the state directory (0600): a high-entropy token needs no slow hash, and
//!   a stolen file gives nothing to present.
//! - A presented token is hashed and compared with every stored hash in constant time, so
//!   neither a match's position nor a near miss shows in the timing.
//! - The server re-reads the file when it changes (checked at most once a second), so
//!   `genesisctl token create` takes effect without a restart.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The file, inside the state directory, that holds the token hashes.
pub const TOKENS_FILE: &str = "tokens.json";

const TOKEN_PREFIX: &str = "brg_";
const TOKEN_HEX_LEN: usize = 40;
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Who may do what. Ordered: each role may do everything the roles below it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: health, events, stats, parity, ledger, metrics.
    Observer,
    /// Also dry-runs, applies and publishing events.
    Operator,
    /// Everything, including the vault.
    Admiral,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Observer, Role::Operator, Role::Admiral];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Operator => "operator",
            Role::Admiral => "admiral",
        }
    }

    /// The bus role the gate checks when this role publishes.
    pub fn bus_role(self) -> bridge_genesis::bus::Role {
        match self {
            Role::Observer => bridge_genesis::bus::Role::Observer,
            Role::Operator => bridge_genesis::bus::Role::Operator,
            Role::Admiral => bridge_genesis::bus::Role::Admiral,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: expected admiral, operator or observer"))
    }
}

/// Who made a request: the token's id (never the token) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
}

/// One stored token: its id, role and hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `tok_` and the first 8 hex digits of the hash: names the token in logs and events.
    pub id: String,
    pub role: Role,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

/// Why tokens could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path} is not a token file Bridge wrote: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("no source of randomness for a new token: {0}")]
    Random(String),
}

struct Loaded {
    hashes: Vec<([u8; 32], Principal)>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// The token hashes the server accepts, re-read when the file changes.
pub struct TokenStore {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Reads `path` (a missing file means no token yet: every protected route answers 401).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let path = path.into();
        let (hashes, modified) = read_hashes(&path)?;
        Ok(Self {
            path,
            loaded: RwLock::new(Loaded {
                hashes,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many tokens are accepted now.
    pub fn len(&self) -> usize {
        self.refresh();
        self.loaded.read().map(|l| l.hashes.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a presented token stands for, if any.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.refresh();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let loaded = self.loaded.read().ok()?;
        let mut found = None;
        // Every hash is compared, whatever matched before, in constant time.
        for (hash, principal) in &loaded.hashes {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal.clone());
            }
        }
        found
    }

    fn refresh(&self) {
        let due = self
            .loaded
            .read()
            .map(|l| l.checked.elapsed() >= RELOAD_EVERY)
            .unwrap_or(false);
        if !due {
            return;
        }
        let Ok(mut loaded) = self.loaded.write() else {
            return;
        };
        loaded.checked = Instant::now();
        let modified = fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == loaded.modified {
            return;
        }
        // A file being rewritten is replaced atomically; a read error keeps the old set.
        if let Ok((hashes, modified)) = read_hashes(&self.path) {
            loaded.hashes = hashes;
            loaded.modified = modified;
        }
    }
}

type Hashes = Vec<([u8; 32], Principal)>;

fn read_hashes(path: &Path) -> Result<(Hashes, Option<SystemTime>), TokenError> {
    let file = match read_file(path)? {
        Some(file) => file,
        None => return Ok((Vec::new(), None)),
    };
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut hashes = Vec::with_capacity(file.tokens.len());
    for record in file.tokens {
        let bytes = decode_hex32(&record.sha256).ok_or_else(|| TokenError::Malformed {
            path: path.to_owned(),
            message: format!("token {} has a malformed hash", record.id),
        })?;
        hashes.push((
            bytes,
            Principal {
                token_id: record.id,
                role: record.role,
            },
        ));
    }
    Ok((hashes, modified))
}

fn read_file(path: &Path) -> Result<Option<TokenFile>, TokenError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenError::Io {
                op: "reading",
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TokenError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// A new token of `role`, its hash appended to the file at `path` (created 0600). Returns the
/// token, which exists nowhere else: print it once.
pub fn create_token(
    path: &Path,
    role: Role,
    created_at: &str,
) -> Result<(String, TokenRecord), TokenError> {
    let mut random = [0u8; TOKEN_HEX_LEN / 2];
    getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&random));
    let digest = hex(&Sha256::digest(token.as_bytes()));
    let record = TokenRecord {
        id: format!("tok_{}", &digest[..8]),
        role,
        sha256: digest,
        created_at: created_at.to_owned(),
    };
    let mut file = read_file(path)?.unwrap_or_default();
    file.tokens.push(record.clone());
    write_atomically(path, &file)?;
    Ok((token, record))
}

/// Every stored token's record (no token can be recovered from them).
pub fn list_tokens(path: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(read_file(path)?.unwrap_or_default().tokens)
}

/// Removes the token with `id`; `false` when there was none.
pub fn revoke_token(path: &Path, id: &str) -> Result<bool, TokenError> {
    let mut file = read_file(path)?.unwrap_or_default();
    let before = file.tokens.len();
    file.tokens.retain(|t| t.id != id);
    if file.tokens.len() == before {
        return Ok(false);
    }
    write_atomically(path, &file)?;
    Ok(true)
}

fn write_atomically(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let io_err = |op, source| TokenError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let text = serde_json::to_string_pretty(file).map_err(|e| TokenError::Malformed {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let text = format!("{text}\n");
    bridge_platforms::local::write_atomically(path, text.as_bytes()).map_err(|e| {
        TokenError::Write {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    // Only hashes, but who may call what: owner-only, whatever the file was before.
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("setting permissions on", e))
}

fn hex(bytes: &[u8]) -> String {
    bridge_core::hex::encode(bytes)
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    bridge_core::hex::decode(text)?.try_into().ok()
}

/// The bearer token of an `Authorization` header value, if it has one.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_tokens_authenticate_with_their_role_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENS_FILE);
        let (op, record) = create_token(&path, Role::Operator, "now").unwrap();
        let (adm, _) = create_token(&path, Role::Admiral, "now").unwrap();
        assert!(op.starts_with("brg_") && op.len() == 44);
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.authenticate(&op).unwrap().role, Role::Operator);
        assert_eq!(store.authenticate(&op).unwrap().token_id, record.id);
        assert_eq!(store.authenticate(&adm).unwrap().role, Role::Admiral);
        assert!(store.authenticate("brg_0000").is_none());
        assert!(store.authenticate(&op[..43]).is_none());
        // The file holds hashes only.
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&op[4..]) && !text.contains(&adm[4..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn revoked_tokens_stop_working_once_the_file_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENS_FILE);
        let (token, record) = create_token(&path, Role::Observer, "now").unwrap();
        let store = TokenStore::open(&path).unwrap();
        assert!(store.authenticate(&token).is_some());
        assert!(revoke_token(&path, &record.id).unwrap());
        assert!(!revoke_token(&path, &record.id).unwrap());
        // Make the reload due and the mtime surely different.
        store.loaded.write().unwrap().checked = Instant::now() - RELOAD_EVERY;
        store.loaded.write().unwrap().modified = None;
        assert!(store.authenticate(&token).is_none());
    }

    #[test]
    fn roles_are_ordered_and_parse_from_their_names() {
        assert!(Role::Admiral > Role::Operator && Role::Operator > Role::Observer);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("system".parse::<Role>().is_err());
    }

    #[test]
    fn bearer_takes_the_token_of_the_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
