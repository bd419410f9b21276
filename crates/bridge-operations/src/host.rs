//! [`Host`]: what an operation needs from the program it runs in — the CLI for one command,
//! or `genesisctl serve` for its whole life. The host knows configuration files, token
//! discovery and terminals; operations know none of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bridge_core::{FingerprintKey, SecretClassifier};
use bridge_genesis::bus::Bus;
use bridge_platforms::PlatformSpec;
use bridge_sync::Target;
use bridge_sync::store::StateStore;

use crate::OpsError;
use crate::locks::LockService;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Host: Send + Sync {
    /// Opens every spec (tokens found as the host finds them), labelled for reports.
    fn open<'a>(
        &'a self,
        specs: &'a [PlatformSpec],
    ) -> BoxFuture<'a, Result<Vec<Target>, OpsError>>;

    /// The fingerprint key, created on first use; an error when there is nowhere to keep it.
    fn fingerprint_key(&self) -> Result<FingerprintKey, OpsError>;

    /// The fingerprint key if one exists: a read creates nothing.
    fn existing_fingerprint_key(&self) -> Option<FingerprintKey>;

    /// The state store: created when `create`, else only if it exists already.
    fn state_store(&self, create: bool) -> BoxFuture<'_, Result<Option<StateStore>, OpsError>>;

    /// The bus events are published on (opened once, shared after).
    fn bus(&self) -> BoxFuture<'_, Result<Bus, OpsError>>;

    /// Which keys hold secrets.
    fn classifier(&self) -> SecretClassifier;

    /// The cross-process apply locks: the state store's (created by the host on demand).
    fn locks(&self) -> BoxFuture<'_, Result<Arc<dyn LockService>, OpsError>>;

    /// Says something that went wrong beside the operation (an event not published).
    fn warn(&self, message: &str);
}
