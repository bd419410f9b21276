//! Test support (feature `testing`): places held in memory and a [`Host`] over them, so the
//! server's and the reactions' tests run the real operations — locks, events, journals —
//! against platforms whose contents, latency and concurrency a test controls and observes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bridge_core::diff::Change;
use bridge_core::schema::Schema;
use bridge_core::{EnvSet, FingerprintKey, SecretClassifier, SecretValue};
use bridge_genesis::bus::Bus;
use bridge_platforms::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    WriteRequest, readable,
};
use bridge_sync::Target;
use bridge_sync::sealing::Sealer;
use bridge_sync::store::StateStore;

use crate::locks::{FileLocks, LockService};

use crate::{BoxFuture, Host, OpsError, Scope, Settings};

/// Applies running at once across every place of one host, and the most ever.
#[derive(Debug, Default)]
pub struct Concurrency {
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
}

/// A place whose variables live in memory.
pub struct MemoryPlatform {
    group: Mutex<Option<Arc<Concurrency>>>,
    spec: PlatformSpec,
    scope: String,
    vars: Mutex<EnvSet>,
    /// How long each apply takes.
    pub apply_delay: Mutex<Duration>,
    /// Applies running now, and the most ever at once.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
    /// Applies finished.
    pub applies: AtomicUsize,
    /// Reads made.
    pub reads: AtomicUsize,
}

impl MemoryPlatform {
    /// A place for `spec` (`render`, `local:.env`, ...), locked under `scope`.
    pub fn new(spec: &str, scope: &str, vars: &[(&str, &str)]) -> Arc<Self> {
        Arc::new(Self {
            group: Mutex::new(None),
            spec: spec.parse().unwrap(),
            scope: scope.to_owned(),
            vars: Mutex::new(vars.iter().map(|(k, v)| (*k, *v)).collect()),
            apply_delay: Mutex::new(Duration::ZERO),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            applies: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        })
    }

    pub fn set(&self, key: &str, value: &str) {
        self.vars
            .lock()
            .unwrap()
            .insert(key.to_owned(), SecretValue::new(value));
    }

    pub fn remove(&self, key: &str) {
        self.vars.lock().unwrap().remove(key);
    }

    pub fn keys(&self) -> Vec<String> {
        self.vars
            .lock()
            .unwrap()
            .keys()
            .map(str::to_owned)
            .collect()
    }

    pub fn set_apply_delay(&self, delay: Duration) {
        *self.apply_delay.lock().unwrap() = delay;
    }
}

#[async_trait]
impl Platform for MemoryPlatform {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: true,
            bulk_write: true,
            serial_writes: false,
            // A remote platform: deletions are bounded by what Bridge wrote.
            ownership_applies: true,
            applies_by_printing: false,
            same_place_by_path: false,
            atomic_apply: false,
        }
    }

    fn identity(&self) -> String {
        format!("memory:{}", self.spec)
    }

    fn lock_scope(&self) -> String {
        self.scope.clone()
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(readable(&self.vars.lock().unwrap()))
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let group = self.group.lock().unwrap().clone();
        if let Some(g) = &group {
            let now = g.active.fetch_add(1, Ordering::SeqCst) + 1;
            g.max_active.fetch_max(now, Ordering::SeqCst);
        }
        let delay = *self.apply_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let mut writes = 0;
        for op in request.ops {
            match (op.change, &op.after) {
                (Change::Noop, _) => continue,
                (Change::Delete, _) => {
                    self.vars.lock().unwrap().remove(&op.key);
                }
                (_, Some(value)) => {
                    self.vars
                        .lock()
                        .unwrap()
                        .insert(op.key.clone(), value.clone());
                }
                (_, None) => continue,
            }
            writes += 1;
            progress.applied(&[op.key.as_str()]).await?;
        }
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.active.fetch_sub(1, Ordering::SeqCst);
        if let Some(g) = &group {
            g.active.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(ApplyReport {
            writes,
            ..ApplyReport::default()
        })
    }
}

/// A host whose places are [`MemoryPlatform`]s by spec, with its state in `dir`.
pub struct MemoryHost {
    dir: PathBuf,
    bus: Bus,
    places: Mutex<BTreeMap<String, Arc<MemoryPlatform>>>,
    pub warnings: Mutex<Vec<String>>,
    /// Applies across all of this host's places.
    pub concurrency: Arc<Concurrency>,
}

impl MemoryHost {
    pub fn new(dir: &Path, bus: Bus) -> Self {
        Self {
            dir: dir.to_owned(),
            bus,
            places: Mutex::new(BTreeMap::new()),
            warnings: Mutex::new(Vec::new()),
            concurrency: Arc::default(),
        }
    }

    /// Adds (or replaces) the place for `platform`'s spec.
    pub fn add(&self, platform: Arc<MemoryPlatform>) -> Arc<MemoryPlatform> {
        *platform.group.lock().unwrap() = Some(self.concurrency.clone());
        self.places
            .lock()
            .unwrap()
            .insert(platform.spec.to_string(), platform.clone());
        platform
    }

    pub fn place(&self, spec: &str) -> Arc<MemoryPlatform> {
        self.places.lock().unwrap()[spec].clone()
    }
}

impl Host for MemoryHost {
    fn open<'a>(
        &'a self,
        specs: &'a [PlatformSpec],
    ) -> BoxFuture<'a, Result<Vec<Target>, OpsError>> {
        Box::pin(async move {
            let places = self.places.lock().unwrap();
            specs
                .iter()
                .map(|spec| {
                    let place = places
                        .get(&spec.to_string())
                        .ok_or_else(|| OpsError::Input(format!("no memory place for {spec}")))?;
                    Ok(Target {
                        label: spec.to_string(),
                        platform: place.clone() as Arc<dyn Platform>,
                    })
                })
                .collect()
        })
    }

    fn fingerprint_key(&self) -> Result<FingerprintKey, OpsError> {
        Ok(FingerprintKey::from_bytes([5; FingerprintKey::LEN]))
    }

    fn existing_fingerprint_key(&self) -> Option<FingerprintKey> {
        self.fingerprint_key().ok()
    }

    fn state_store(&self, _create: bool) -> BoxFuture<'_, Result<Option<StateStore>, OpsError>> {
        Box::pin(async move {
            StateStore::open_sqlite(
                &self.dir.join("state.db"),
                Sealer::from_secret_bytes([6; 32]),
            )
            .map(Some)
            .map_err(|e| OpsError::State(e.to_string()))
        })
    }

    fn bus(&self) -> BoxFuture<'_, Result<Bus, OpsError>> {
        Box::pin(async move { Ok(self.bus.clone()) })
    }

    fn classifier(&self) -> SecretClassifier {
        SecretClassifier::default()
    }

    fn locks(&self) -> BoxFuture<'_, Result<Arc<dyn LockService>, OpsError>> {
        Box::pin(async move {
            let dir = self.dir.join("locks");
            std::fs::create_dir_all(&dir).map_err(|e| OpsError::State(e.to_string()))?;
            Ok(Arc::new(FileLocks::new(dir)) as Arc<dyn LockService>)
        })
    }

    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.to_owned());
    }
}

/// Settings for a source and targets given as specs.
pub fn settings(source: &str, targets: &[&str]) -> Settings {
    Settings {
        source: source.parse().unwrap(),
        targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
        scope: Scope::default(),
        ignore: Vec::new(),
        protect: Vec::new(),
        max_delete_share: 0.5,
        schema: Schema::default(),
        lock_timeout: Duration::from_secs(30),
    }
}
