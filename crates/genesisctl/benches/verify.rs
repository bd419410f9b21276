//! `cargo bench -p genesisctl --bench verify`: process wall time of `genesisctl env verify`
//! over three 1,000-key files (target: under 15 ms), beside the wall time of the same binary
//! doing nothing (`genesisctl --version`) measured in the same run: the process start-up
//! that any command pays.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEYS: usize = 1_000;
const RUNS: usize = 41;

fn main() {
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, drift) in [("a.env", 0), ("b.env", 3), ("c.env", 7)] {
        let mut text = String::new();
        for i in 0..KEYS {
            let value = if drift > 0 && i % 100 == drift {
                "drifted".to_string()
            } else {
                format!("value-{i}")
            };
            let key = if i % 10 == 0 {
                format!("SERVICE_{i}_TOKEN")
            } else {
                format!("SERVICE_{i}_SETTING")
            };
            text.push_str(&format!("{key}={value}\n"));
        }
        fs::write(dir.path().join(name), text).expect("write");
    }
    let verify = [
        "env",
        "verify",
        "--platforms",
        "local:a.env,local:b.env,local:c.env",
        "--output",
        "json",
    ];
    // Sanity: it runs and finds the drift.
    let out = Command::new(bin)
        .args(verify)
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let median_verify = median_wall(bin, &verify, dir.path());
    let median_start = median_wall(bin, &["--version"], dir.path());
    println!("env verify over 3 x {KEYS}-key files (median of {RUNS} runs, process wall time)");
    println!("  genesisctl env verify   {:>7.2} ms", ms(median_verify));
    println!(
        "  genesisctl --version    {:>7.2} ms  (baseline: process start-up)",
        ms(median_start)
    );
    println!(
        "  ratio verify/baseline: {:.2}; target < 15 ms: {}",
        median_verify.as_secs_f64() / median_start.as_secs_f64(),
        if median_verify < Duration::from_millis(15) {
            "met"
        } else {
            "NOT MET"
        }
    );
}

fn median_wall(bin: &str, args: &[&str], dir: &std::path::Path) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(bin)
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("runs");
            let elapsed = start.elapsed();
            assert!(status.code().is_some());
            elapsed
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
