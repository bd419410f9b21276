//! A temporary working directory and a way to run the binary in it, hermetically: the
//! environment is cleared but for PATH and what the test sets, and a fixed fingerprint key
//! makes redacted output reproducible.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub struct Sandbox {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Everything the command printed, for checks that a secret appears nowhere.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let sandbox = Self::bare();
        sandbox.file(".bridge/fingerprint.key", &format!("{KEY_HEX}\n"));
        for (path, mode) in [(".bridge", 0o700), (".bridge/fingerprint.key", 0o600)] {
            fs::set_permissions(sandbox.path(path), fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
        sandbox
    }

    /// Without a state directory.
    pub fn bare() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn file(&self, name: &str, contents: &str) -> &Self {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, contents).expect("write");
        self
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).expect("read")
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The binary with `args`, in this directory, with only this sandbox's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_genesisctl"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("runs genesisctl");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The example files shipped under `examples/`, so tests exercise what users first see.
pub fn with_examples() -> Sandbox {
    let sandbox = Sandbox::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for name in [".env", ".env.production"] {
        let text = fs::read_to_string(examples.join(name)).expect("example file");
        sandbox.file(name, &text);
    }
    sandbox
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// Seeded random edits of a text, for the fuzz tests of the parsers through the binary.
pub struct Mangler {
    seed: u64,
}

impl Mangler {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// xorshift64: the same cases on every run.
    fn next(&mut self, n: usize) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % n as u64) as usize
    }

    /// `base` with 1 to `max_edits` bytes removed, replaced or inserted from `alphabet`.
    pub fn mangle(&mut self, base: &str, alphabet: &[u8], max_edits: usize) -> Vec<u8> {
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..1 + self.next(max_edits) {
            let at = self.next(bytes.len());
            let c = alphabet[self.next(alphabet.len())];
            match self.next(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes[at] = c,
                _ => bytes.insert(at, c),
            }
        }
        bytes
    }
}

/// Whether `text` names a position in `file`: `FILE:LINE:COLUMN`.
pub fn names_a_position(text: &str, file: &str) -> bool {
    text.split(&format!("{file}:")).skip(1).any(|rest| {
        let mut parts = rest.splitn(3, ':');
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next()) && digits(parts.next())
    })
}

/// The number of fuzz cases: `BRIDGE_FUZZ_CASES`, else `default`.
pub fn fuzz_cases(default: u64) -> u64 {
    std::env::var("BRIDGE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
