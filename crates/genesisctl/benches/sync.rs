//! `cargo bench -p genesisctl --bench sync`: 1,000 keys to Render, Netlify and GitHub
//! emulators that answer after 20 ms, through the real binary and HTTP clients.
//!
//! Printed for each scenario: the calls each emulator received beside the minimum the APIs
//! allow, and for the first sync the wall time beside the lower bound those minimum calls and
//! the latency impose. The bound follows each platform's documented concurrency policy:
//! platforms side by side; Render and Netlify take all creates in one bulk call; GitHub asks
//! for content-creating requests one at a time, so its writes are serial.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bridge_emulators::{EmulatorConfig, Stats};

const KEYS: usize = 1_000;
const SECRETS: usize = 90; // GitHub caps a repository at 100 secrets
const LATENCY: Duration = Duration::from_millis(20);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let emu = runtime
        .block_on(bridge_emulators::start(EmulatorConfig {
            latency: LATENCY,
            ..EmulatorConfig::default()
        }))
        .expect("emulators");
    let dir = tempfile::tempdir().expect("tempdir");
    write_source(dir.path(), 0);
    let bin = env!("CARGO_BIN_EXE_genesisctl");
    let exports: Vec<(String, String)> = emu.exports();
    let sync = || {
        let start = Instant::now();
        let out = Command::new(bin)
            .args([
                "env",
                "sync",
                "--target",
                "render,netlify,github",
                "--output",
                "json",
            ])
            .current_dir(dir.path())
            .envs(exports.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("runs genesisctl");
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("sync prints its report as JSON");
        // Keys written per target label, as the sync reports them.
        let keys: BTreeMap<String, u64> = report["targets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|t| {
                        let label = t["label"].as_str().unwrap_or("?").to_string();
                        (label, t["writes"].as_u64().unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        (elapsed, keys)
    };
    let (render, netlify, github) = (
        emu.render().expect("render"),
        emu.netlify().expect("netlify"),
        emu.github().expect("github"),
    );
    let reset = || {
        render.reset_stats();
        netlify.reset_stats();
        github.reset_stats();
    };
    let pages = |n: usize, per: usize| n.div_ceil(per);
    let plain = KEYS - SECRETS;

    // First sync: everything is a create.
    reset();
    let (wall, _) = sync();
    let stats = [render.stats(), netlify.stats(), github.stats()];
    // Minimum sequential calls per platform (reads of the empty targets, then writes):
    // Render: 1 empty list + 1 bulk replace; Netlify: 1 list + 1 bulk create;
    // GitHub: 2 empty lists + 1 public key + one PUT/POST per key.
    let minimum = [2, 2, 3 + KEYS];
    let bound = LATENCY * (*minimum.iter().max().unwrap_or(&0) as u32);
    println!(
        "first sync of {KEYS} keys ({SECRETS} secrets) to render, netlify, github at {LATENCY:?} latency"
    );
    print_calls(&stats, &minimum);
    println!(
        "  wall {:.2} s; lower bound {:.2} s (GitHub's {} serial calls x {LATENCY:?}); ratio {:.3} (target <= 1.2: {})",
        wall.as_secs_f64(),
        bound.as_secs_f64(),
        minimum[2],
        wall.as_secs_f64() / bound.as_secs_f64(),
        verdict(wall.as_secs_f64() / bound.as_secs_f64() <= 1.2)
    );

    // No-op sync: one list per platform plus pages, nothing else.
    reset();
    let (wall, _) = sync();
    let stats = [render.stats(), netlify.stats(), github.stats()];
    // Render lists 100 a page and learns the end from a short page: 10 full pages + 1 empty.
    // Netlify returns the whole set. GitHub: secrets 100 a page, variables 30 a page.
    let minimum = [
        pages(KEYS, 100) + 1,
        1,
        pages(SECRETS, 100) + pages(plain, 30),
    ];
    println!("no-op sync (wall {:.2} s)", wall.as_secs_f64());
    print_calls(&stats, &minimum);
    let writes: u64 = stats.iter().map(|s| s.writes).sum();
    println!("  writes: {writes} (target 0: {})", verdict(writes == 0));
    let key_fetches = stats[2]
        .by_route
        .iter()
        .filter(|(r, _)| r.contains("public-key"))
        .map(|(_, n)| n)
        .sum::<u64>();
    println!(
        "  GitHub public-key fetches: {key_fetches} (target 0: {})",
        verdict(key_fetches == 0)
    );

    // Change 10 keys: only those 10 are written.
    write_source(dir.path(), 10);
    reset();
    let (wall, keys) = sync();
    let stats = [render.stats(), netlify.stats(), github.stats()];
    println!(
        "10 of {KEYS} keys changed (wall {:.2} s)",
        wall.as_secs_f64()
    );
    for (name, s) in ["render", "netlify", "github"].iter().zip(&stats) {
        let written = keys.get(*name).copied().unwrap_or(0);
        println!(
            "  {name:<8} keys written {written:>3} (target 10: {}); write calls {:>3} {:?}",
            verdict(written == 10),
            s.writes,
            write_routes(s)
        );
    }
    println!("  (a Netlify secret meant for every context is written once per context: 3 calls)");
    runtime.block_on(emu.shutdown());
}

fn write_source(dir: &std::path::Path, changed: usize) {
    let mut text = String::new();
    for i in 0..KEYS {
        let key = if i < SECRETS {
            format!("SERVICE_{i:04}_TOKEN")
        } else {
            format!("SERVICE_{i:04}_SETTING")
        };
        // Spread the changes over secrets and plain values alike.
        let suffix = if i % 100 == 0 && i / 100 < changed {
            "-changed"
        } else {
            ""
        };
        text.push_str(&format!("{key}=value-{i}{suffix}\n"));
    }
    std::fs::write(dir.join(".env"), text).expect("write source");
}

fn print_calls(stats: &[Stats; 3], minimum: &[usize; 3]) {
    for ((name, s), min) in ["render", "netlify", "github"]
        .iter()
        .zip(stats)
        .zip(minimum)
    {
        println!(
            "  {name:<8} {:>5} calls (minimum {min:>5}, ratio {:.3})",
            s.requests,
            s.requests as f64 / *min as f64
        );
    }
}

fn write_routes(s: &Stats) -> BTreeMap<&str, u64> {
    s.by_route
        .iter()
        .filter(|(r, _)| !r.starts_with("GET"))
        .map(|(r, n)| (r.as_str(), *n))
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}
