//! Runs a child process with its output captured and a deadline. The child leads its own
//! process group, so on timeout the whole group is killed: a validation script's `cargo`
//! or `node` children die with it instead of holding the pipes open.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

/// How a finished (or killed) process ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Killed because the deadline passed.
    pub(crate) timed_out: bool,
    pub(crate) elapsed: Duration,
}

impl Finished {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// After the child is gone, how long its pipes may stay open (a grandchild that left the
/// process group) before we stop reading.
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Spawns `command` (stdin closed, stdout and stderr captured) and waits for it, killing
/// its process group after `timeout`.
pub(crate) async fn run(mut command: Command, timeout: Duration) -> std::io::Result<Finished> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let wait = async {
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => (status, false),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid).await;
                }
                let _ = child.start_kill();
                (child.wait().await, true)
            }
        }
    };
    let limit = timeout + PIPE_GRACE;
    let (out, err, (status, timed_out)) = tokio::join!(
        tokio::time::timeout(limit, read_out),
        tokio::time::timeout(limit, read_err),
        wait
    );
    let status = status?;
    Ok(Finished {
        code: status.code(),
        stdout: out.unwrap_or_default(),
        stderr: err.unwrap_or_default(),
        timed_out,
        elapsed: started.elapsed(),
    })
}

/// `kill -KILL -- -PGID`: the standard tool rather than `libc::kill`, which would need
/// `unsafe` (forbidden in this workspace).
async fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn captures_output_and_code() {
        let f = run(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(f.code, Some(3));
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(f.stderr, b"err\n");
        assert!(!f.timed_out && !f.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        // The grandchild `sleep` holds stdout; only a group kill ends it quickly.
        let f = run(
            sh("echo started; sleep 30 & sleep 30; wait"),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(f.timed_out);
        assert!(f.elapsed < Duration::from_secs(5), "{:?}", f.elapsed);
        assert_eq!(f.stdout, b"started\n");
    }
}
