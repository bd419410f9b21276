//! An in-memory platform for engine tests: optionally write-only (like GitHub secrets),
//! optionally failing after k writes, applying op by op and reporting each.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bridge_core::SecretValue;
use bridge_core::diff::Change;
use bridge_platforms::{
    ApplyProgress, ApplyReport, Capabilities, Platform, PlatformError, PlatformSpec, RemoteSet,
    RemoteValue, WriteRequest,
};

pub struct FakePlatform {
    spec: PlatformSpec,
    pub write_only: bool,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    vars: BTreeMap<String, (String, u64)>,
    clock: u64,
    writes: u64,
    fail_after: Option<u64>,
    /// After this many writes the process "dies": the apply never returns. With `true`, the
    /// next write lands first, its confirmation lost with the process.
    crash_after: Option<(u64, bool)>,
}

impl FakePlatform {
    pub fn new(write_only: bool) -> Self {
        Self {
            spec: "render".parse().expect("spec"),
            write_only,
            state: Mutex::new(FakeState::default()),
        }
    }

    pub fn set(&self, key: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        s.clock += 1;
        let stamp = s.clock;
        s.vars.insert(key.into(), (value.into(), stamp));
    }

    pub fn vars(&self) -> BTreeMap<String, String> {
        let s = self.state.lock().unwrap();
        s.vars
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    pub fn writes(&self) -> u64 {
        self.state.lock().unwrap().writes
    }

    pub fn fail_after(&self, n: Option<u64>) {
        self.state.lock().unwrap().fail_after = n;
    }

    /// See [`FakeState::crash_after`]; `None` heals the platform.
    pub fn crash_after(&self, n: Option<(u64, bool)>) {
        self.state.lock().unwrap().crash_after = n;
    }
}

#[async_trait]
impl Platform for FakePlatform {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: !self.write_only,
            bulk_write: false,
            serial_writes: true,
            ownership_applies: true,
            applies_by_printing: false,
            same_place_by_path: false,
            atomic_apply: false,
        }
    }

    fn identity(&self) -> String {
        "fake:1".into()
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        let s = self.state.lock().unwrap();
        Ok(s.vars
            .iter()
            .map(|(k, (v, stamp))| {
                let value = if self.write_only {
                    RemoteValue::WriteOnly {
                        updated_at: Some(stamp.to_string()),
                    }
                } else {
                    RemoteValue::Readable(SecretValue::new(v.as_str()))
                };
                (k.clone(), value)
            })
            .collect())
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let mut report = ApplyReport::default();
        for op in request.ops.iter().filter(|o| o.change.writes()) {
            let crashed = {
                let mut s = self.state.lock().unwrap();
                match s.crash_after {
                    Some((n, land)) if s.writes >= n => {
                        if land {
                            s.writes += 1;
                            s.clock += 1;
                            let stamp = s.clock;
                            match &op.after {
                                Some(v) if op.change != Change::Delete => {
                                    s.vars
                                        .insert(op.key.clone(), (v.expose().to_string(), stamp));
                                }
                                _ => {
                                    s.vars.remove(&op.key);
                                }
                            }
                        }
                        true
                    }
                    _ => false,
                }
            };
            if crashed {
                // The process is gone: nothing after this point runs.
                std::future::pending::<()>().await;
            }
            {
                let mut s = self.state.lock().unwrap();
                if s.fail_after.is_some_and(|n| s.writes >= n) {
                    return Err(PlatformError::Status {
                        platform: "fake".into(),
                        method: "PUT".into(),
                        path: format!("/vars/{}", op.key),
                        status: 500,
                        message: "injected failure".into(),
                    });
                }
                s.writes += 1;
                s.clock += 1;
                let stamp = s.clock;
                match (op.change, &op.after) {
                    (Change::Delete, _) => {
                        s.vars.remove(&op.key);
                    }
                    (_, Some(v)) => {
                        s.vars
                            .insert(op.key.clone(), (v.expose().to_string(), stamp));
                        if self.write_only {
                            report.stamps.insert(op.key.clone(), stamp.to_string());
                        }
                    }
                    _ => {}
                }
                report.writes += 1;
            }
            progress.applied(&[op.key.as_str()]).await?;
        }
        Ok(report)
    }
}
