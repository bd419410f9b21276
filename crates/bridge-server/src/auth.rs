//! Roles and bearer tokens (the seeds' RBAC, their "Guardian").
//!
//! - Three roles, each including the one below: `observer` reads, `operator` also runs
//!   dry-runs and applies and publishes, `admiral` may do everything, the vault included.
//! - Tokens are `brg_` and 40 hex digits (160 random bits). Only their SHA-256 is stored
//!   ([`TokenBackend`]): in `tokens.json` in the state directory (0600, [`FileTokens`]) for
//!   the embedded store, in the store's `bridge_tokens` table for PostgreSQL. A
//!   high-entropy token needs no slow hash, and a stolen file gives nothing to present.
//! - A presented token is hashed and compared with every stored hash in constant time, so
//!   neither a match's position nor a near miss shows in the timing.
//! - The server holds the set in memory and re-reads it when it changes, checked at most
//!   once a second (the file's identity and time; the store's generation counter, polled
//!   by a task so no request waits on the network), so `genesisctl token create` and
//!   `revoke` take effect without a restart, on every server of a shared store.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bridge_operations::host::BoxFuture;
use bridge_operations::log::Logger;

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

pub use bridge_operations::tokens::{TokenBackend, TokenError, TokenRecord};

/// The file's format: `{"tokens": [{id, role, sha256, created_at}, …]}`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    id: String,
    role: Role,
    sha256: String,
    created_at: String,
}

impl From<FileRecord> for TokenRecord {
    fn from(r: FileRecord) -> Self {
        TokenRecord {
            id: r.id,
            role: r.role.as_str().to_owned(),
            sha256: r.sha256,
            created_at: r.created_at,
        }
    }
}

type Hashes = Vec<([u8; 32], Principal)>;

struct Loaded {
    hashes: Hashes,
    /// The backend's [`TokenBackend::generation`] the set was read at.
    generation: Option<String>,
    checked: Instant,
}

/// Where a [`TokenStore`] reads its set from.
enum Source {
    /// `tokens.json`: a `stat` per second, done inline (a local file answers at once).
    File(PathBuf),
    /// A shared store: polled by a task of its own, so no request waits on the network.
    Backend(Arc<dyn TokenBackend>),
}

struct Shared {
    source: Source,
    loaded: RwLock<Loaded>,
    logger: Logger,
    /// Set while the store cannot be read: the warning is logged once, not per poll.
    unreachable: AtomicBool,
}

/// The token hashes the server accepts, held in memory and refreshed from their store at
/// most once a second: the file's identity and time, or the store's generation counter, is
/// compared first, and the whole set read again only when it moved.
pub struct TokenStore {
    shared: Arc<Shared>,
    poller: Option<tokio::task::AbortHandle>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("store", &self.describe())
            .finish_non_exhaustive()
    }
}

impl Drop for TokenStore {
    fn drop(&mut self) {
        if let Some(poller) = &self.poller {
            poller.abort();
        }
    }
}

/// How long one poll of a shared store may take before it counts as unreachable.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);

impl TokenStore {
    /// Reads `path` (a missing file means no token yet: every protected route answers 401).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let path = path.into();
        let hashes = principals(
            read_file(&path)?
                .unwrap_or_default()
                .tokens
                .into_iter()
                .map(TokenRecord::from),
        )
        .map_err(|message| TokenError::Malformed {
            path: path.clone(),
            message,
        })?;
        let generation = Some(file_generation(&path));
        Ok(Self {
            shared: Arc::new(Shared {
                source: Source::File(path),
                loaded: RwLock::new(Loaded {
                    hashes,
                    generation,
                    checked: Instant::now(),
                }),
                logger: Logger::off(),
                unreachable: AtomicBool::new(false),
            }),
            poller: None,
        })
    }

    /// Reads the set of a shared store (PostgreSQL) and polls it every second from a task
    /// of its own: a token created or revoked by any runner counts on this server within
    /// about a second. While the store cannot be read, the last set stays in force and
    /// `logger` says so once. Must be called inside a Tokio runtime.
    pub async fn shared(
        backend: Arc<dyn TokenBackend>,
        logger: Logger,
    ) -> Result<Self, TokenError> {
        let generation = backend.generation().await?;
        let hashes = principals(backend.list().await?).map_err(|message| TokenError::Store {
            store: backend.describe(),
            message,
        })?;
        let shared = Arc::new(Shared {
            source: Source::Backend(backend),
            loaded: RwLock::new(Loaded {
                hashes,
                generation: Some(generation),
                checked: Instant::now(),
            }),
            logger,
            unreachable: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let poller = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                shared.poll().await;
            }
        });
        Ok(Self {
            shared,
            poller: Some(poller.abort_handle()),
        })
    }

    /// The file's path or the store's name.
    pub fn describe(&self) -> String {
        match &self.shared.source {
            Source::File(path) => path.display().to_string(),
            Source::Backend(backend) => backend.describe(),
        }
    }

    /// How many tokens are accepted now.
    pub fn len(&self) -> usize {
        self.refresh();
        self.shared
            .loaded
            .read()
            .map(|l| l.hashes.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a presented token stands for, if any. Never waits on a network.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.refresh();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let loaded = self.shared.loaded.read().ok()?;
        let mut found = None;
        // Every hash is compared, whatever matched before, in constant time.
        for (hash, principal) in &loaded.hashes {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// Whether `principal` (a token authenticated earlier) is still accepted with its role:
    /// what a long request, the live stream, asks again while it runs, so that a revoked
    /// token loses what it holds open as well as what it asks next. Never waits on a
    /// network.
    pub fn is_current(&self, principal: &Principal) -> bool {
        self.refresh();
        let Ok(loaded) = self.shared.loaded.read() else {
            return false;
        };
        loaded
            .hashes
            .iter()
            .any(|(_, p)| p.token_id == principal.token_id && p.role == principal.role)
    }

    /// The file's inline check; a shared store is refreshed by its poller instead.
    fn refresh(&self) {
        let Source::File(path) = &self.shared.source else {
            return;
        };
        let due = self
            .shared
            .loaded
            .read()
            .map(|l| l.checked.elapsed() >= RELOAD_EVERY)
            .unwrap_or(false);
        if !due {
            return;
        }
        let Ok(mut loaded) = self.shared.loaded.write() else {
            return;
        };
        loaded.checked = Instant::now();
        let generation = file_generation(path);
        if loaded.generation.as_ref() == Some(&generation) {
            return;
        }
        // A file being rewritten is replaced atomically; a read error keeps the old set.
        let records = match read_file(path) {
            Ok(file) => file.unwrap_or_default().tokens,
            Err(_) => return,
        };
        if let Ok(hashes) = principals(records.into_iter().map(TokenRecord::from)) {
            loaded.hashes = hashes;
            loaded.generation = Some(generation);
        }
    }
}

impl Shared {
    /// One poll of a shared store: the generation, and the set when it moved.
    async fn poll(&self) {
        let Source::Backend(backend) = &self.source else {
            return;
        };
        let known = self.loaded.read().ok().and_then(|l| l.generation.clone());
        let read = async {
            let generation = backend.generation().await?;
            if known.as_ref() == Some(&generation) {
                return Ok(None);
            }
            let records = backend.list().await?;
            let hashes = principals(records).map_err(|message| TokenError::Store {
                store: backend.describe(),
                message,
            })?;
            Ok::<_, TokenError>(Some((generation, hashes)))
        };
        let result = match tokio::time::timeout(POLL_TIMEOUT, read).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Unavailable {
                store: backend.describe(),
                message: format!("no answer within {} s", POLL_TIMEOUT.as_secs()),
            }),
        };
        match result {
            Ok(fresh) => {
                if self.unreachable.swap(false, Ordering::Relaxed) {
                    self.logger.info(
                        "the token store answers again",
                        &[("store", &backend.describe())],
                    );
                }
                if let Some((generation, hashes)) = fresh
                    && let Ok(mut loaded) = self.loaded.write()
                {
                    loaded.hashes = hashes;
                    loaded.generation = Some(generation);
                    loaded.checked = Instant::now();
                }
            }
            Err(e) => {
                if !self.unreachable.swap(true, Ordering::Relaxed) {
                    let kept = self.loaded.read().map(|l| l.hashes.len()).unwrap_or(0);
                    self.logger.warn(
                        "cannot read the tokens; the last set stays in force until the store answers",
                        &[
                            ("store", &backend.describe()),
                            ("tokens", &kept.to_string()),
                            ("error", &e.to_string()),
                        ],
                    );
                }
            }
        }
    }
}

/// The principals of `records`; an unknown role or a malformed hash is an error (naming the
/// token's id), so a damaged store never quietly drops or grants access.
fn principals(records: impl IntoIterator<Item = TokenRecord>) -> Result<Hashes, String> {
    let mut hashes = Vec::new();
    for record in records {
        let bytes = decode_hex32(&record.sha256)
            .ok_or_else(|| format!("token {} has a malformed hash", record.id))?;
        let role: Role = record
            .role
            .parse()
            .map_err(|e| format!("token {}: {e}", record.id))?;
        hashes.push((
            bytes,
            Principal {
                token_id: record.id,
                role,
            },
        ));
    }
    Ok(hashes)
}

/// What identifies the file's present content: a rename gives a new inode, a rewrite a new
/// time or length.
fn file_generation(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    match fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{}.{}:{}",
            m.dev(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.len()
        ),
        Err(_) => "none".to_owned(),
    }
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

/// A new token of `role` and its record; the token exists nowhere else.
fn new_token(role: Role, created_at: &str) -> Result<(String, TokenRecord), TokenError> {
    let mut random = [0u8; TOKEN_HEX_LEN / 2];
    getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&random));
    let digest = hex(&Sha256::digest(token.as_bytes()));
    let record = TokenRecord {
        id: format!("tok_{}", &digest[..8]),
        role: role.as_str().to_owned(),
        sha256: digest,
        created_at: created_at.to_owned(),
    };
    Ok((token, record))
}

/// A new token of `role`, its hash appended to the file at `path` (created 0600). Returns the
/// token, which exists nowhere else: print it once.
pub fn create_token(
    path: &Path,
    role: Role,
    created_at: &str,
) -> Result<(String, TokenRecord), TokenError> {
    let (token, record) = new_token(role, created_at)?;
    file_insert(path, record.clone())?;
    Ok((token, record))
}

/// [`create_token`] in any [`TokenBackend`] (the store's table when it is PostgreSQL).
pub async fn create_token_in(
    backend: &dyn TokenBackend,
    role: Role,
    created_at: &str,
) -> Result<(String, TokenRecord), TokenError> {
    let (token, record) = new_token(role, created_at)?;
    backend.insert(record.clone()).await?;
    Ok((token, record))
}

/// Every stored token's record (no token can be recovered from them).
pub fn list_tokens(path: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    Ok(read_file(path)?
        .unwrap_or_default()
        .tokens
        .into_iter()
        .map(TokenRecord::from)
        .collect())
}

/// Removes the token with `id`; `false` when there was none.
pub fn revoke_token(path: &Path, id: &str) -> Result<bool, TokenError> {
    let _lock = FileLock::take(path)?;
    let mut file = read_file(path)?.unwrap_or_default();
    let before = file.tokens.len();
    file.tokens.retain(|t| t.id != id);
    if file.tokens.len() == before {
        return Ok(false);
    }
    write_atomically(path, &file)?;
    Ok(true)
}

fn file_insert(path: &Path, record: TokenRecord) -> Result<(), TokenError> {
    let role: Role = record
        .role
        .parse()
        .map_err(|message| TokenError::Malformed {
            path: path.to_owned(),
            message,
        })?;
    let _lock = FileLock::take(path)?;
    let mut file = read_file(path)?.unwrap_or_default();
    if file.tokens.iter().any(|t| t.sha256 == record.sha256) {
        return Ok(());
    }
    file.tokens.push(FileRecord {
        id: record.id,
        role,
        sha256: record.sha256,
        created_at: record.created_at,
    });
    write_atomically(path, &file)
}

/// An exclusive `flock` on `<file>.lock` beside the token file, held across a
/// read-modify-write, so that two `token create`s at once both land.
struct FileLock(#[allow(dead_code)] fs::File);

impl FileLock {
    fn take(path: &Path) -> Result<Self, TokenError> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let io_err = |op, source| TokenError::Io {
            op,
            path: lock_path.clone(),
            source,
        };
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_err("opening", e))?;
        file.lock().map_err(|e| io_err("locking", e))?;
        Ok(Self(file))
    }
}

/// `tokens.json` as a [`TokenBackend`]: the embedded store's tokens (0600, replaced
/// atomically, a `flock` around each change).
#[derive(Debug, Clone)]
pub struct FileTokens {
    path: PathBuf,
}

impl FileTokens {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenBackend for FileTokens {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>, TokenError>> {
        Box::pin(async move { list_tokens(&self.path) })
    }

    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenError>> {
        Box::pin(async move { file_insert(&self.path, record) })
    }

    fn revoke(&self, id: String) -> BoxFuture<'_, Result<bool, TokenError>> {
        Box::pin(async move { revoke_token(&self.path, &id) })
    }

    fn generation(&self) -> BoxFuture<'_, Result<String, TokenError>> {
        Box::pin(async move { Ok(file_generation(&self.path)) })
    }
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
        store.shared.loaded.write().unwrap().checked = Instant::now() - RELOAD_EVERY;
        store.shared.loaded.write().unwrap().generation = None;
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
