//! `cargo bench -p bridge-core --bench core`: the `.env` parser's throughput and the diff's
//! latency, each beside a baseline measured in the same run on the same data.
//!
//! - parse: a generated 100,000-line `.env` (target: at least 100 MB/s). Baseline: the
//!   least any parser must do, splitting lines and `=` with the standard library and copying
//!   keys and values into a `Vec`.
//! - diff: two 100,000-key sets that differ in 1% of values, 0.5% of keys each way (target:
//!   under 20 ms). Baseline: a `HashMap` lookup per source key, the naive diff.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bridge_core::EnvSet;
use bridge_core::diff::{Deletions, DiffOptions, diff, observe_readable};
use bridge_core::dotenv::{ParseOptions, parse};

const LINES: usize = 100_000;
const KEYS: usize = 100_000;

fn main() {
    let text = generate_env(LINES);
    let mb = text.len() as f64 / 1e6;
    println!("parse: {LINES} lines, {:.2} MB", mb);
    let options = ParseOptions::default();
    let parsed = parse(&text, &options).expect("generated file parses");
    assert!(parsed.vars.len() > LINES * 8 / 10);
    // Timed twice: the parse alone (the result is freed after the clock stops), and the
    // parse plus freeing the result, which zeroizes every value.
    let ours = best_of_kept(15, || parse(black_box(&text), &options).expect("parses"));
    let ours_with_drop = best_of(15, || {
        black_box(parse(black_box(&text), &options).expect("parses"));
    });
    let base = best_of_kept(15, || naive_split(black_box(&text)));
    let ours_mbs = mb / ours.as_secs_f64();
    let base_mbs = mb / base.as_secs_f64();
    println!(
        "  bridge_core::dotenv::parse  {:>8.1} MB/s  ({:.2} ms)",
        ours_mbs,
        ms(ours)
    );
    println!(
        "  … including freeing it      {:>8.1} MB/s  ({:.2} ms)",
        mb / ours_with_drop.as_secs_f64(),
        ms(ours_with_drop)
    );
    println!(
        "  baseline lines()+split_once {:>8.1} MB/s  ({:.2} ms)",
        base_mbs,
        ms(base)
    );
    println!(
        "  ratio ours/baseline throughput: {:.2}; target >= 100 MB/s: {}",
        ours_mbs / base_mbs,
        verdict(ours_mbs >= 100.0)
    );

    let (source, target) = generate_sets(KEYS);
    let observed = observe_readable(&target);
    let options = DiffOptions {
        deletions: Deletions::Allow,
        ..DiffOptions::default()
    };
    let plan = diff(&source, &observed, &options, None);
    let s = plan.summary();
    println!(
        "diff: {KEYS} x {KEYS} keys -> {} create, {} update, {} delete, {} noop",
        s.create, s.update, s.delete, s.noop
    );
    let ours = best_of(15, || {
        black_box(diff(
            black_box(&source),
            black_box(&observed),
            &options,
            None,
        ));
    });
    let source_map: HashMap<&str, &str> = source
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    let target_map: HashMap<&str, &str> = target
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    let base = best_of(15, || {
        black_box(naive_diff(black_box(&source_map), black_box(&target_map)));
    });
    println!("  bridge_core::diff::diff     {:>8.2} ms", ms(ours));
    println!("  baseline HashMap diff       {:>8.2} ms", ms(base));
    println!(
        "  ratio ours/baseline time: {:.2}; target < 20 ms: {}",
        ours.as_secs_f64() / base.as_secs_f64(),
        verdict(ours < Duration::from_millis(20))
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm caches and the allocator
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Like [`best_of`], but `f`'s result is dropped after the clock stops.
fn best_of_kept<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    drop(f());
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let kept = black_box(f());
            let elapsed = start.elapsed();
            drop(kept);
            elapsed
        })
        .min()
        .unwrap_or_default()
}

/// A realistic mix: mostly plain assignments, some quoted, exported, commented and blank
/// lines, a few interpolations.
fn generate_env(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 48);
    for i in 0..lines {
        let line = match i % 20 {
            0 => format!("# section {i}\n"),
            1 => "\n".to_string(),
            2 => format!("export EXPORTED_{i}=value-{i}\n"),
            3 => format!("QUOTED_{i}=\"a quoted value with spaces {i}\"\n"),
            4 => format!("SINGLE_{i}='literal $not_a_ref {i}'\n"),
            5 => format!("INLINE_{i}=value-{i} # trailing comment\n"),
            6 => format!("REF_{i}=${{INLINE_{}}}/path\n", i - 1),
            _ => format!("KEY_{i}=postgres://user:pass@host-{i}.internal:5432/db\n"),
        };
        out.push_str(&line);
    }
    out
}

fn naive_split(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn generate_sets(n: usize) -> (EnvSet, EnvSet) {
    let mut source = EnvSet::new();
    let mut target = EnvSet::new();
    for i in 0..n {
        let key = format!("SERVICE_{:06}_SETTING", i);
        let value = format!("value-{i}-{}", i * 7919 % 10007);
        match i % 200 {
            0 => {
                source.insert(key, value);
            } // only in source: create
            1 => {
                target.insert(key, value);
            } // only in target: delete
            2 | 3 => {
                target.insert(key.clone(), format!("{value}-old"));
                source.insert(key, value);
            } // update
            _ => {
                target.insert(key.clone(), value.clone());
                source.insert(key, value);
            }
        }
    }
    (source, target)
}

fn naive_diff<'a>(
    source: &HashMap<&'a str, &'a str>,
    target: &HashMap<&'a str, &'a str>,
) -> Vec<(&'a str, u8)> {
    let mut out = Vec::with_capacity(source.len());
    for (k, v) in source {
        out.push((
            *k,
            match target.get(k) {
                None => 0,
                Some(t) if t == v => 3,
                Some(_) => 1,
            },
        ));
    }
    for k in target.keys() {
        if !source.contains_key(k) {
            out.push((*k, 2));
        }
    }
    out
}
