//! `local:PATH`: a `.env` file.
//!
//! Reading parses the file with Bridge's own dotenv parser (no interpolation from the host
//! unless `--interpolate-env`). Applying edits the file in place — comments, blank lines and
//! key order survive and only changed lines change — and replaces it atomically (a temporary
//! file in the same directory, fsynced, then renamed over the original), keeping the file's
//! permissions; a file that did not exist is created 0600, as befits a secrets file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use async_trait::async_trait;
use bridge_core::diff::{Change, PlanOp, SyncPlan};
use bridge_core::dotenv::{self, Edit, ParseOptions};
use bridge_core::{EnvSet, SecretValue};

use crate::{
    ApplyProgress, ApplyReport, Capabilities, Image, Platform, PlatformError, PlatformSpec,
    RemoteSet, RuleViolation, WriteRequest, readable,
};

static WARNINGS: OnceLock<fn(&str)> = OnceLock::new();

/// Calls `report` with each warning a `.env` file's parse raises (a key defined twice), as
/// `path:line:column: message`, in this process (set once). A file read twice in one run
/// warns twice: the caller may say each once.
pub fn report_warnings(report: fn(&str)) {
    let _ = WARNINGS.set(report);
}

/// The rule a value breaks when no `.env` form carries it alike for every parser.
fn unwritable_rule(reason: &str) -> String {
    format!(
        "this value cannot be written to a .env file so that Bridge, python-dotenv and Node's \
         dotenv read it alike ({reason}); change it, or leave the key out of this target"
    )
}

/// The mode of a `.env` file Bridge creates.
pub const NEW_FILE_MODE: u32 = 0o600;

pub struct LocalFile {
    spec: PlatformSpec,
    path: PathBuf,
    interpolate_env: bool,
}

impl LocalFile {
    pub fn new(spec: PlatformSpec, interpolate_env: bool) -> Self {
        let path = spec.path.clone().unwrap_or_else(|| PathBuf::from(".env"));
        Self {
            spec,
            path,
            interpolate_env,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text, or `None` when it does not exist.
    fn read_text(&self) -> Result<Option<String>, PlatformError> {
        match fs::read(&self.path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let column = String::from_utf8_lossy(&valid[line_start..])
                    .chars()
                    .count()
                    + 1;
                PlatformError::Parse {
                    path: self.path.clone(),
                    line,
                    column,
                    message: "the file is not valid UTF-8".into(),
                }
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PlatformError::io("reading", &self.path, e)),
        }
    }

    fn parse(&self, text: &str) -> Result<EnvSet, PlatformError> {
        let fallback = |name: &str| std::env::var(name).ok();
        let options = self.parse_options(&fallback);
        let parsed = dotenv::parse(text, &options).map_err(|e| self.parse_error(e))?;
        if let Some(report) = WARNINGS.get() {
            for w in &parsed.warnings {
                report(&format!(
                    "{}:{}:{}: {}",
                    self.path.display(),
                    w.line,
                    w.column,
                    w.message
                ));
            }
        }
        Ok(parsed.vars)
    }

    fn parse_options<'a>(&self, fallback: &'a dyn Fn(&str) -> Option<String>) -> ParseOptions<'a> {
        ParseOptions {
            env_fallback: self.interpolate_env.then_some(fallback),
        }
    }

    fn parse_error(&self, e: dotenv::ParseError) -> PlatformError {
        PlatformError::Parse {
            path: self.path.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

#[async_trait]
impl Platform for LocalFile {
    fn spec(&self) -> &PlatformSpec {
        &self.spec
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            values_readable: true,
            bulk_write: true,
            serial_writes: false,
            ownership_applies: false,
            applies_by_printing: false,
            same_place_by_path: true,
            atomic_apply: true,
        }
    }

    /// The absolute path, so that records and journals follow the file wherever the command
    /// runs from.
    fn identity(&self) -> String {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("local:{}", path.display())
    }

    async fn read(&self) -> Result<RemoteSet, PlatformError> {
        // A target file that does not exist yet holds nothing; the sync will create it.
        let text = self.read_text()?.unwrap_or_default();
        Ok(readable(&self.parse(&text)?))
    }

    async fn load(&self) -> Result<EnvSet, PlatformError> {
        let text = self.read_text()?.ok_or_else(|| PlatformError::NotFound {
            path: self.path.clone(),
        })?;
        self.parse(&text)
    }

    /// A value no `.env` form carries alike for Bridge, python-dotenv and Node's dotenv is
    /// refused at plan time, before anything is written.
    fn check_rules(&self, plan: &SyncPlan) -> Vec<RuleViolation> {
        plan.writes()
            .filter(|op| matches!(op.change, Change::Create | Change::Update))
            .filter_map(|op| {
                let reason = dotenv::check_value(op.after.as_ref()?.expose()).err()?;
                Some(RuleViolation {
                    key: op.key.clone(),
                    rule: unwritable_rule(reason),
                    unwritable: true,
                })
            })
            .collect()
    }

    async fn image(&self, request: WriteRequest<'_>) -> Result<Option<Image>, PlatformError> {
        let edits = edits_of(request.ops);
        if edits.is_empty() {
            return Ok(None);
        }
        let original = self.read_text()?.unwrap_or_default();
        let edited = self.edited(&original, &edits, request.restore)?;
        Ok(Some(Image {
            before: SecretValue::new(original),
            after: SecretValue::new(edited),
        }))
    }

    async fn apply(
        &self,
        request: WriteRequest<'_>,
        progress: &dyn ApplyProgress,
    ) -> Result<ApplyReport, PlatformError> {
        let edits = edits_of(request.ops);
        if edits.is_empty() {
            return Ok(ApplyReport::default());
        }
        let original = self.read_text()?.unwrap_or_default();
        let edited = self.edited(&original, &edits, request.restore)?;
        write_atomically(&self.path, edited.as_bytes())?;
        // One atomic rename makes every edit visible at once.
        let keys: Vec<&str> = edits
            .iter()
            .map(|e| match e {
                Edit::Set { key, .. } | Edit::Remove { key } => *key,
            })
            .collect();
        progress.applied(&keys).await?;
        Ok(ApplyReport {
            writes: edits.len(),
            ..ApplyReport::default()
        })
    }
}

/// The edits that carry out `ops`.
fn edits_of(ops: &[PlanOp]) -> Vec<Edit<'_>> {
    ops.iter()
        .filter(|op| op.change.writes())
        .filter_map(|op| match (op.change, &op.after) {
            (Change::Delete, _) => Some(Edit::Remove { key: &op.key }),
            (_, Some(value)) => Some(Edit::Set {
                key: &op.key,
                value,
            }),
            (_, None) => None,
        })
        .collect()
}

impl LocalFile {
    /// `original` with `edits` made; for a rollback (`restore`), with the lines the undone
    /// apply changed put back as they were, where the file still holds what it wrote.
    fn edited(
        &self,
        original: &str,
        edits: &[Edit<'_>],
        restore: Option<&Image>,
    ) -> Result<String, PlatformError> {
        let fallback = |name: &str| std::env::var(name).ok();
        let options = self.parse_options(&fallback);
        match restore {
            Some(image) => dotenv::restore_edits(
                image.before.expose(),
                image.after.expose(),
                original,
                edits,
                &options,
            ),
            None => dotenv::apply_edits(original, edits, &options),
        }
        .map_err(|e| match e {
            dotenv::EditError::Parse(e) => self.parse_error(e),
            dotenv::EditError::Unwritable(e) => PlatformError::Rule {
                platform: self.identity(),
                key: e.key.clone(),
                rule: unwritable_rule(e.reason),
            },
        })
    }
}

/// Replaces `path` with `contents` so that a reader sees the old file or the new one, never
/// a mix, and a crash leaves at worst a stray temporary file (named after the target).
///
/// What is not a regular file — `/dev/stdout`, a pipe, a terminal, anything under `/dev` or
/// `/proc` — is written through, appending, as a shell's `>` would: renaming over it would
/// replace the file behind the caller's stdout, or a device node.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), PlatformError> {
    if writes_through(path) {
        let written = match own_stream(path) {
            // Through this process's own descriptor, so the caller's offset moves on with
            // what is written (a fresh open of `/dev/stdout` would start at its beginning).
            Some(1) => {
                let mut out = io::stdout().lock();
                out.write_all(contents).and_then(|()| out.flush())
            }
            Some(_) => {
                let mut err = io::stderr().lock();
                err.write_all(contents).and_then(|()| err.flush())
            }
            None => fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(contents).and_then(|()| f.flush())),
        };
        return written.map_err(|e| PlatformError::io("writing", path, e));
    }
    // Write through a symlink rather than replacing the link with a file.
    let path = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| PlatformError::io("resolving", path, e))?
        }
        _ => path.to_path_buf(),
    };
    let mode = match fs::metadata(&path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => NEW_FILE_MODE,
        Err(e) => return Err(PlatformError::io("inspecting", &path, e)),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "env".into());
    let tmp = dir.join(format!(".{name}.bridge-{}.tmp", std::process::id()));

    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| PlatformError::io("creating", &tmp, e))?;
        // The umask may have narrowed `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| PlatformError::io("setting permissions on", &tmp, e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| PlatformError::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| PlatformError::io("replacing", &path, e))?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// 1 or 2 when `path` names this process's stdout or stderr.
fn own_stream(path: &Path) -> Option<u8> {
    match path.to_str()? {
        "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" => Some(1),
        "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" => Some(2),
        _ => None,
    }
}

/// Whether `path` is a stream or device to write into rather than a file to replace.
fn writes_through(path: &Path) -> bool {
    let special = ["/dev/", "/proc/"].iter().any(|p| path.starts_with(p));
    match fs::metadata(path) {
        Ok(meta) => special || !meta.is_file(),
        // A dangling `/dev/fd/N` is an error to report, not a file to create.
        Err(_) => special,
    }
}

#[cfg(test)]
mod tests {
    use bridge_core::EnvSet;
    use bridge_core::diff::{Deletions, DiffOptions, ObservedSet, SyncPlan, diff};

    use super::*;
    use crate::NoProgress;

    fn observed(set: &RemoteSet) -> ObservedSet {
        set.iter()
            .map(|(k, v)| match v {
                crate::RemoteValue::Readable(v) => {
                    (k.clone(), bridge_core::diff::Observed::Value(v.clone()))
                }
                crate::RemoteValue::WriteOnly { .. } => unreachable!("local files are readable"),
            })
            .collect()
    }

    async fn apply(target: &LocalFile, plan: &SyncPlan) -> ApplyReport {
        let current = target.read().await.expect("read");
        target
            .apply(
                WriteRequest {
                    ops: &plan.ops,
                    current: &current,
                    restore: None,
                },
                &NoProgress,
            )
            .await
            .expect("apply")
    }

    fn local(path: &Path) -> LocalFile {
        LocalFile::new(PlatformSpec::local(path), false)
    }

    #[test]
    fn a_device_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        write_atomically(Path::new("/dev/null"), b"A=1\n").expect("writes into /dev/null");
        let meta = fs::metadata("/dev/null").expect("still there");
        assert!(meta.file_type().is_char_device());
        assert!(writes_through(Path::new("/dev/stdout")));
        assert!(!writes_through(Path::new("Cargo.toml")));
    }

    #[tokio::test]
    async fn edits_in_place_and_keeps_comments_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        fs::write(&path, "# app\nA=1\n\n# db\nB=2\nC=3\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        let target = local(&path);
        let source: EnvSet = [("A", "1"), ("B", "two"), ("D", "4")].into_iter().collect();
        let options = DiffOptions {
            deletions: Deletions::Allow,
            ..DiffOptions::default()
        };
        let plan = diff(
            &source,
            &observed(&target.read().await.expect("read")),
            &options,
            None,
        );
        let report = apply(&target, &plan).await;
        assert_eq!(report.writes, 3);
        assert_eq!(
            fs::read_to_string(&path).expect("read back"),
            "# app\nA=1\n\n# db\nB=two\nD=4\n"
        );
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(target.load().await.expect("load"), source);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn an_apply_undone_with_its_image_leaves_the_original_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        let original = "export A=\"x y\"  # keep\nB='single'\nC=${A}/path\nGONE=1\n";
        fs::write(&path, original).expect("write");
        let target = local(&path);
        let source: EnvSet = [("A", "z"), ("B", "b"), ("C", "x y/path"), ("NEW", "n")]
            .into_iter()
            .collect();
        let options = DiffOptions {
            deletions: Deletions::Allow,
            ..DiffOptions::default()
        };
        let current = target.read().await.expect("read");
        let plan = diff(&source, &observed(&current), &options, None);
        let request = WriteRequest {
            ops: &plan.ops,
            current: &current,
            restore: None,
        };
        let image = target.image(request).await.expect("image").expect("writes");
        assert_eq!(image.before.expose(), original);
        apply(&target, &plan).await;
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            image.after.expose()
        );

        // The undo by value, as a rollback plans it, with the image to restore the bytes.
        let now = target.read().await.expect("read");
        let before: EnvSet = [
            ("A", "x y"),
            ("B", "single"),
            ("C", "x y/path"),
            ("GONE", "1"),
        ]
        .into_iter()
        .collect();
        let undo = diff(&before, &observed(&now), &options, None);
        let mut request = WriteRequest {
            ops: &undo.ops,
            current: &now,
            restore: Some(&image),
        };
        let undone = target.image(request).await.expect("image").expect("writes");
        assert_eq!(
            undone.after.expose(),
            original,
            "the image says what it will write"
        );
        target.apply(request, &NoProgress).await.expect("rollback");
        assert_eq!(fs::read_to_string(&path).expect("read"), original);

        // Without the image, the values come back in Bridge's own form.
        fs::write(&path, image.after.expose()).expect("write");
        request.restore = None;
        target.apply(request, &NoProgress).await.expect("by value");
        let by_value = fs::read_to_string(&path).expect("read");
        assert_ne!(by_value, original);
        assert_eq!(target.load().await.expect("load"), before);
    }

    #[tokio::test]
    async fn new_files_are_private_and_missing_sources_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.env");
        let target = local(&path);
        assert!(target.read().await.expect("read").is_empty());
        assert!(matches!(
            target.load().await,
            Err(PlatformError::NotFound { .. })
        ));
        let source: EnvSet = [("TOKEN", "s3cr3t")].into_iter().collect();
        let plan = diff(&source, &ObservedSet::new(), &DiffOptions::default(), None);
        apply(&target, &plan).await;
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, NEW_FILE_MODE);
        assert_eq!(target.load().await.expect("load"), source);
    }

    #[tokio::test]
    async fn writes_through_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.env");
        let link = dir.path().join(".env");
        fs::write(&real, "A=1\n").expect("write");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_atomically(&link, b"A=2\n").expect("write");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).expect("read"), "A=2\n");
    }

    #[tokio::test]
    async fn malformed_and_non_utf8_files_name_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.env");
        fs::write(&path, b"A=1\nB=\xff\n").expect("write");
        let err = local(&path).load().await.expect_err("not utf-8");
        let text = err.to_string();
        assert!(
            text.ends_with("bad.env:2:3: the file is not valid UTF-8"),
            "{text}"
        );
        assert!(err.is_input_error());
    }
}
