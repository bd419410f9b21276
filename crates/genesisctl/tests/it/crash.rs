//! The crash harness: a real `genesisctl env sync` to Render, Netlify and GitHub is killed
//! with SIGKILL at a seeded random moment, then `env resume` finishes it, and every promise
//! of the journal is checked against what the platforms hold and what Bridge recorded:
//! records are written with an op's done mark, a resume writes only what is still to
//! write, and a sync refuses while an unfinished journal holds its targets.
//!
//! Each trial, from its own seed, against emulators that add [`LATENCY`] to every request:
//!
//! 1. builds a source v1 (40–60 keys, a third of them secret by name: `*_API_TOKEN`,
//!    `*_SECRET`, `*_PASSWORD`) and a v2 (a third of the values changed, 10 keys added,
//!    5 removed);
//! 2. in a reference sandbox, against its own emulators, syncs v1 then v2 uninterrupted,
//!    watching when the v2 sync's writes begin and end: its records and the platforms it
//!    leaves are what a crash must end in;
//! 3. in the crash sandbox, syncs v1, snapshots the platforms, starts the v2 sync
//!    (`--allow-deletions`) and kills it after a delay drawn, three times in four, from the
//!    reference's write window, else from its whole run, so most kills land among the
//!    writes; the journal ops not done at the kill are the in-flight window (a write the
//!    platform may or may not have taken when the process died);
//! 4. runs `env resume --yes` (when the kill came before the journal, there is nothing to
//!    resume and the v2 sync runs again instead), then the same sync once more, which must
//!    write nothing;
//! 5. checks, collecting every mismatch rather than stopping at the first:
//!    - the platforms equal what the reference run left (all three, GitHub's split into
//!      secrets and variables and Netlify's deploy contexts included);
//!    - the write records (`target, key, fingerprint`) equal the reference run's — the
//!      fingerprint key is the sandbox's fixed one, so they compare across sandboxes;
//!    - no write (method, concrete path and key, from the emulators' write log) was sent
//!      by both the killed sync and the resume, and the resume wrote no key whose op was
//!      done, except for the ops in the in-flight window, which are counted apart;
//!    - `env rollback --target T --yes`, for each platform, restores the v1 snapshot;
//! 6. kills a second v2 sync mid-way and, while its journal has writes left, runs the sync
//!    again: it must refuse (exit non-zero, no write and no journal for a target on which
//!    the unfinished journal has ops not done).
//!
//! A summary line (trials, mismatches, records missing, repeated writes, in-window
//! repeats, ...) and the failing trials per check go to stderr, with a paragraph per
//! failing trial that names its seed; `BRIDGE_CRASH_VERBOSE=1` adds every trial's write
//! requests, killed sync and resume. Keys are printed, values never. The test fails when
//! any count outside the in-flight window is not zero.
//!
//! The quick test runs [`QUICK_TRIALS`] trials from `BRIDGE_CRASH_SEED` (hex or decimal; a
//! fixed default otherwise), [`PARALLEL`] at a time. Trial `i` uses seed
//! `BRIDGE_CRASH_SEED + i`, so a failing trial replays alone (its data and kill delay; the
//! exact interleaving depends on timing) with `BRIDGE_CRASH_SEED=<its seed>
//! BRIDGE_CRASH_TRIALS=1` and the campaign below (`BRIDGE_CRASH_KILL_MS` fixes the first
//! kill's delay). The longer campaign is on demand:
//!
//! ```text
//! BRIDGE_CRASH_TRIALS=300 cargo test -p genesisctl --test it crash -- --ignored --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bridge_emulators::{EmulatorConfig, Emulators, WriteRecord};
use tokio::runtime::Handle;

use crate::sandbox::{Run, Sandbox};

const TARGETS: &str = "render,netlify,github";
const SYNC_V1: [&str; 5] = ["env", "sync", "--target", TARGETS, "--yes"];
const SYNC_V2: [&str; 6] = [
    "env",
    "sync",
    "--target",
    TARGETS,
    "--allow-deletions",
    "--yes",
];
const PLATFORMS: [&str; 3] = ["render", "netlify", "github"];
/// The contexts whose view of the site is compared (secrets live in the deploy contexts).
const NETLIFY_CONTEXTS: [&str; 5] = [
    "all",
    "production",
    "deploy-preview",
    "branch-deploy",
    "dev",
];

const DEFAULT_SEED: u64 = 0xB41D_6E00_C4A5_0001;
/// Trials of the quick test.
const QUICK_TRIALS: usize = 24;
/// Trials of the on-demand campaign without `BRIDGE_CRASH_TRIALS`.
const CAMPAIGN_TRIALS: usize = 300;
/// Added by the emulators to every request (the campaign's figure is 30 ms; less keeps the
/// test quick while every write still takes long enough to be caught in flight).
const LATENCY: Duration = Duration::from_millis(15);
/// How long, after the kill, the requests the dead process had in flight may still take to
/// land; nothing is read before.
const SETTLE: Duration = Duration::from_millis(120);
/// Trials side by side: each mostly waits on the emulators' latency.
const PARALLEL: usize = 3;

#[test]
fn sigkill_anywhere_in_a_sync_then_resume_keeps_every_promise() {
    campaign(QUICK_TRIALS);
}

#[test]
#[ignore = "a long campaign: BRIDGE_CRASH_TRIALS=300 cargo test -p genesisctl --test it crash -- --ignored --nocapture"]
fn crash_campaign() {
    let trials = std::env::var("BRIDGE_CRASH_TRIALS")
        .ok()
        .map(|t| t.trim().parse().expect("BRIDGE_CRASH_TRIALS is a number"))
        .unwrap_or(CAMPAIGN_TRIALS);
    campaign(trials);
}

fn base_seed() -> u64 {
    let Ok(text) = std::env::var("BRIDGE_CRASH_SEED") else {
        return DEFAULT_SEED;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.expect("BRIDGE_CRASH_SEED is a number (decimal or 0x-hex)")
}

fn campaign(trials: usize) {
    let seed = base_seed();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime for the emulators");
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(trials) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= trials {
                        break;
                    }
                    let report = trial(runtime.handle(), i, seed.wrapping_add(i as u64));
                    reports
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.index);
    let summary = Summary::of(&reports);
    let verbose = std::env::var_os("BRIDGE_CRASH_VERBOSE").is_some();
    for r in reports
        .iter()
        .filter(|r| verbose || !r.mismatches.is_empty() || r.in_window > 0)
    {
        eprintln!("{}", r.describe());
    }
    eprintln!("{}", summary.per_check(&reports));
    eprintln!(
        "{} (seed {seed:#x}, {:.1}s)",
        summary.line(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        summary.mismatches, 0,
        "the crash harness found {} mismatches; replay with BRIDGE_CRASH_SEED={seed:#x}",
        summary.mismatches
    );
}

// ---------------------------------------------------------------------------------------
// One trial.

/// The promises a trial checks; a mismatch names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    /// `env resume` (or the re-run sync) exits 0 and finds the journal the kill left.
    ResumeSucceeds,
    /// No write reaches a platform before the apply's journal is on disk.
    JournalBeforeWrites,
    /// The platforms hold what the uninterrupted reference run left.
    PlatformsEqualV2,
    /// The write records equal the reference run's.
    RecordsEqualReference,
    /// No write is sent twice outside the in-flight window.
    NoRepeatedWrites,
    /// A sync after the resume writes nothing.
    NextSyncWritesNothing,
    /// Rolling each target back restores the v1 snapshot.
    RollbackRestoresV1,
    /// A sync refuses while an unfinished journal holds its targets.
    SyncRefusesWhileUnfinished,
}

impl Check {
    const ALL: [Check; 8] = [
        Check::ResumeSucceeds,
        Check::JournalBeforeWrites,
        Check::PlatformsEqualV2,
        Check::RecordsEqualReference,
        Check::NoRepeatedWrites,
        Check::NextSyncWritesNothing,
        Check::RollbackRestoresV1,
        Check::SyncRefusesWhileUnfinished,
    ];

    fn name(self) -> &'static str {
        match self {
            Check::ResumeSucceeds => "resume_succeeds",
            Check::JournalBeforeWrites => "journal_before_writes",
            Check::PlatformsEqualV2 => "platforms_equal_v2",
            Check::RecordsEqualReference => "records_equal_reference",
            Check::NoRepeatedWrites => "no_repeated_writes",
            Check::NextSyncWritesNothing => "next_sync_writes_nothing",
            Check::RollbackRestoresV1 => "rollback_restores_v1",
            Check::SyncRefusesWhileUnfinished => "sync_refuses_while_unfinished",
        }
    }
}

/// Where the kill landed, as the state store tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum KillPoint {
    /// The sync had already exited.
    #[default]
    AfterExit,
    /// No journal yet: nothing was written.
    BeforeJournal,
    /// Journalled, `done` of `total` ops done.
    MidApply { done: usize, total: usize },
    /// Every op done, the journal not finished.
    AfterWrites,
    /// The journal finished; the process had not exited yet.
    AfterFinish,
}

impl KillPoint {
    fn name(&self) -> &'static str {
        match self {
            KillPoint::AfterExit => "after_exit",
            KillPoint::BeforeJournal => "before_journal",
            KillPoint::MidApply { .. } => "mid_apply",
            KillPoint::AfterWrites => "after_writes",
            KillPoint::AfterFinish => "after_finish",
        }
    }
}

#[derive(Debug, Default)]
struct TrialReport {
    index: usize,
    seed: u64,
    keys: (usize, usize),
    kill: KillPoint,
    kill_at: Duration,
    reference: Duration,
    /// When the reference run's writes began and ended.
    writes_window: (Duration, Duration),
    mismatches: Vec<(Check, String)>,
    records_missing: usize,
    records_stale: usize,
    repeated: usize,
    in_window: usize,
    /// Of those, repeats of values the resume could have read back as already written.
    in_window_readable: usize,
    /// The in-window repeats, as `METHOD path`.
    in_window_writes: Vec<String>,
    /// Ops not done at the kill, by platform: the in-flight window.
    not_done: BTreeMap<&'static str, usize>,
    /// With `BRIDGE_CRASH_VERBOSE`: the write requests of the killed sync and the resume.
    sequences: Option<String>,
    next_sync_writes: u64,
    /// Whether the refusal probe ran (an unfinished journal was caught) and was refused.
    probe: Option<bool>,
}

impl TrialReport {
    fn fail(&mut self, check: Check, detail: impl Into<String>) {
        self.mismatches.push((check, detail.into()));
    }

    fn describe(&self) -> String {
        let kill = match &self.kill {
            KillPoint::MidApply { done, total } => format!("mid_apply {done}/{total} ops done"),
            other => other.name().to_owned(),
        };
        let mut text = format!(
            "crash: trial {} seed={:#x} ({} -> {} keys), killed at {}ms (reference: writes \
             {}..{}ms, exit {}ms): {kill}",
            self.index,
            self.seed,
            self.keys.0,
            self.keys.1,
            self.kill_at.as_millis(),
            self.writes_window.0.as_millis(),
            self.writes_window.1.as_millis(),
            self.reference.as_millis(),
        );
        if !self.not_done.is_empty() {
            let window: Vec<String> = self
                .not_done
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            text.push_str(&format!("; not done at the kill: {}", window.join(", ")));
        }
        for (check, detail) in &self.mismatches {
            text.push_str(&format!("\n  {}: {detail}", check.name()));
        }
        if !self.in_window_writes.is_empty() {
            let writes = list(&self.in_window_writes, 12);
            text.push_str(&format!("\n  (in-window repeats: {writes})"));
        }
        if let Some(sequences) = &self.sequences {
            text.push_str(&format!("\n{sequences}"));
        }
        text
    }
}

fn trial(rt: &Handle, index: usize, seed: u64) -> TrialReport {
    let mut rng = Rng::new(seed);
    let sources = Sources::new(&mut rng);
    let mut report = TrialReport {
        index,
        seed,
        keys: (sources.v1.len(), sources.v2.len()),
        ..TrialReport::default()
    };
    let setup = |what: &str, run: Option<&Run>| setup_failure(index, seed, what, run, &sources);

    // The reference: v1 then v2, uninterrupted.
    let Reference {
        timing,
        platforms: want_v2,
        records: want_records,
    } = reference(rt, &sources, &setup);
    report.reference = timing.total;
    report.writes_window = (timing.first_write, timing.last_write);

    // The crash: v1, then v2 killed.
    let emu = start(rt);
    let s = sandbox(&emu, &sources.v1);
    let run = s.run(&SYNC_V1);
    if run.code != 0 {
        setup("the v1 sync failed", Some(&run));
    }
    let v1 = Snapshot::of(&emu);
    if let Err(why) = v1.holds(&sources.v1) {
        setup(&format!("the v1 sync left {why}"), None);
    }
    let v1_journal = last_journal_id(&s);
    take_logs(&emu);
    s.file(".env", &dotenv(&sources.v2));
    let delay = match std::env::var("BRIDGE_CRASH_KILL_MS") {
        Ok(ms) => {
            Duration::from_millis(ms.trim().parse().expect("BRIDGE_CRASH_KILL_MS is a number"))
        }
        Err(_) => timing.kill_delay(&mut rng),
    };
    report.kill_at = delay;
    let exited = kill_after(&s, &SYNC_V2, delay);
    let killed_log = take_logs(&emu);
    let journal = journals_after(&s, v1_journal).into_iter().next();
    report.kill = match (&journal, exited) {
        (_, true) => KillPoint::AfterExit,
        (None, false) => KillPoint::BeforeJournal,
        (Some(j), false) if j.finished() => KillPoint::AfterFinish,
        (Some(j), false) => match j.ops.iter().filter(|o| o.done).count() {
            done if done == j.ops.len() => KillPoint::AfterWrites,
            done => KillPoint::MidApply {
                done,
                total: j.ops.len(),
            },
        },
    };
    for op in journal.iter().flat_map(|j| &j.ops).filter(|op| !op.done) {
        *report.not_done.entry(op.platform).or_default() += 1;
    }
    if journal.is_none() && !killed_log.is_empty() {
        report.fail(
            Check::JournalBeforeWrites,
            format!(
                "{} writes reached the platforms and no journal was written: {}",
                killed_log.len(),
                requests(&killed_log)
            ),
        );
    }

    // Resume (or, with nothing to resume, the v2 sync again).
    let resume = s.run(&["env", "resume", "--yes", "--output", "json"]);
    let resumed = resume.code == 0
        && serde_json::from_str::<serde_json::Value>(&resume.stdout)
            .is_ok_and(|j| !j["journal"].is_null());
    if resume.code != 0 {
        report.fail(
            Check::ResumeSucceeds,
            format!(
                "env resume exited {}: {}",
                resume.code,
                one_line(&sources.scrub(&resume.stderr))
            ),
        );
    }
    let unfinished = journal.as_ref().filter(|j| !j.finished());
    match (unfinished, resumed) {
        (Some(j), false) if resume.code == 0 => report.fail(
            Check::ResumeSucceeds,
            format!(
                "journal {} was left unfinished, and resume found nothing",
                j.id
            ),
        ),
        (None, true) => report.fail(
            Check::ResumeSucceeds,
            "resume found a journal to finish where the kill left none",
        ),
        _ => {}
    }
    if !resumed {
        let run = s.run(&SYNC_V2);
        if run.code != 0 {
            report.fail(
                Check::ResumeSucceeds,
                format!(
                    "with nothing to resume, the v2 sync exited {}: {}",
                    run.code,
                    one_line(&sources.scrub(&run.stderr))
                ),
            );
        }
    }
    let resume_log = take_logs(&emu);
    let write_only = |platform: &str, key: &str| {
        v1.write_only(platform, key) || want_v2.write_only(platform, key)
    };
    let (outside, inside) = repeats(&killed_log, &resume_log, journal.as_ref(), &write_only);
    report.repeated = outside.len();
    report.in_window = inside.len();
    report.in_window_readable = inside.iter().filter(|(_, readable)| *readable).count();
    report.in_window_writes = inside
        .into_iter()
        .map(|(label, readable)| {
            if readable {
                format!("{label} [readable]")
            } else {
                label
            }
        })
        .collect();
    if std::env::var_os("BRIDGE_CRASH_VERBOSE").is_some() {
        report.sequences = Some(format!(
            "  killed sync wrote: {}\n  then {} wrote: {}",
            requests_all(&killed_log),
            if resumed {
                "the resume"
            } else {
                "the v2 sync again"
            },
            requests_all(&resume_log)
        ));
    }
    if !outside.is_empty() {
        report.fail(Check::NoRepeatedWrites, list(&outside, 12));
    }

    // The journal a rollback should undo: the one the resume (or the sync again) finished.
    let v2_applied = last_journal_id(&s);

    // A further sync finds nothing left to write.
    for p in PLATFORMS {
        reset(&emu, p);
    }
    let again = s.run(&SYNC_V2);
    let writes: u64 = PLATFORMS.iter().map(|p| stats_writes(&emu, p)).sum();
    let again_log = take_logs(&emu);
    report.next_sync_writes = writes;
    if again.code != 0 || writes != 0 {
        report.fail(
            Check::NextSyncWritesNothing,
            format!(
                "exit {}, {writes} writes: {}",
                again.code,
                requests(&again_log)
            ),
        );
    }

    // What the platforms hold, and what Bridge recorded.
    let got = Snapshot::of(&emu);
    for p in PLATFORMS {
        let diff = want_v2.differences(&got, p);
        if !diff.is_empty() {
            report.fail(Check::PlatformsEqualV2, format!("{p}: {}", list(&diff, 12)));
        }
    }
    let got_records = records(&s);
    let missing: Vec<_> = want_records.difference(&got_records).collect();
    let stale: Vec<_> = got_records.difference(&want_records).collect();
    report.records_missing = missing.len();
    report.records_stale = stale.len();
    if !missing.is_empty() || !stale.is_empty() {
        report.fail(
            Check::RecordsEqualReference,
            records_diff(&want_records, &got_records),
        );
    }

    check_rollbacks(&s, &emu, &v1, v2_applied, &sources, &mut report);
    probe_refusal(&s, &emu, &timing, &mut rng, &mut report);
    rt.block_on(emu.shutdown());
    report
}

/// Rolling each target back undoes the v2 apply: the platform holds v1 again.
fn check_rollbacks(
    s: &Sandbox,
    emu: &Emulators,
    v1: &Snapshot,
    v2_applied: i64,
    sources: &Sources,
    report: &mut TrialReport,
) {
    for p in PLATFORMS {
        let run = s.run(&["env", "rollback", "--target", p, "--yes"]);
        if run.code != 0 {
            report.fail(
                Check::RollbackRestoresV1,
                format!(
                    "env rollback --target {p} exited {} (the v2 apply is journal \
                     {v2_applied}): {}",
                    run.code,
                    one_line(&sources.scrub(&run.all()))
                ),
            );
        }
        let diff = v1.differences(&Snapshot::of(emu), p);
        if !diff.is_empty() {
            report.fail(
                Check::RollbackRestoresV1,
                format!("{p} after its rollback: {}", list(&diff, 12)),
            );
        }
    }
}

/// A second v2 sync is killed among its writes; while its journal has writes left on a
/// target, a sync to that target must refuse.
fn probe_refusal(
    s: &Sandbox,
    emu: &Emulators,
    timing: &Timing,
    rng: &mut Rng,
    report: &mut TrialReport,
) {
    let before = last_journal_id(s);
    kill_after(s, &SYNC_V2, timing.among_writes(rng));
    take_logs(emu);
    let Some(j) = journals_after(s, before)
        .into_iter()
        .next()
        .filter(|j| !j.finished())
    else {
        return;
    };
    // A target is held while the journal has writes left on it; one whose every op is done
    // has nothing a later resume would write over a new sync.
    let held: BTreeSet<&str> = j
        .targets
        .iter()
        .filter(|(_, state)| matches!(state.as_str(), "applying" | "failed"))
        .map(|(identity, _)| platform_of(identity))
        .filter(|p| j.ops.iter().any(|op| op.platform == *p && !op.done))
        .collect();
    if held.is_empty() {
        return;
    }
    let run = s.run(&SYNC_V2);
    let log = take_logs(emu);
    let written: Vec<WriteRecord> = log
        .into_iter()
        .filter(|(p, _)| held.contains(p))
        .flat_map(|(_, records)| records)
        .collect();
    let journalled: Vec<String> = journals_after(s, j.id)
        .iter()
        .flat_map(|later| later.targets.keys())
        .filter(|identity| held.contains(platform_of(identity)))
        .cloned()
        .collect();
    let refused = run.code != 0 && written.is_empty() && journalled.is_empty();
    report.probe = Some(refused);
    if !refused {
        report.fail(
            Check::SyncRefusesWhileUnfinished,
            format!(
                "journal {} has {} ops left on {}: the sync exited {}, journalled {:?}, sent \
                 {} writes to those targets",
                j.id,
                j.ops.iter().filter(|op| !op.done).count(),
                held.iter().copied().collect::<Vec<_>>().join(","),
                run.code,
                journalled,
                written.len()
            ),
        );
    }
}

/// What an uninterrupted v1-then-v2 run leaves, in its own sandbox and emulators.
struct Reference {
    timing: Timing,
    platforms: Snapshot,
    records: BTreeSet<Record>,
}

fn reference(rt: &Handle, sources: &Sources, setup: &dyn Fn(&str, Option<&Run>)) -> Reference {
    let emu = start(rt);
    let s = sandbox(&emu, &sources.v1);
    let run = s.run(&SYNC_V1);
    if run.code != 0 {
        setup("the reference v1 sync failed", Some(&run));
    }
    s.file(".env", &dotenv(&sources.v2));
    let timing = timed(&s, &emu);
    if timing.code != 0 {
        let run = s.run(&SYNC_V2);
        setup("the reference v2 sync failed", Some(&run));
    }
    let platforms = Snapshot::of(&emu);
    if let Err(why) = platforms.holds(&sources.v2) {
        setup(&format!("the reference v2 sync left {why}"), None);
    }
    let records = records(&s);
    rt.block_on(emu.shutdown());
    Reference {
        timing,
        platforms,
        records,
    }
}

/// A run the trial builds on (not one under test) failed: the trial cannot go on.
fn setup_failure(index: usize, seed: u64, what: &str, run: Option<&Run>, sources: &Sources) -> ! {
    let output = run.map_or(String::new(), |run| {
        format!(" (exit {}):\n{}", run.code, sources.scrub(&run.all()))
    });
    panic!(
        "crash trial {index} (BRIDGE_CRASH_SEED={seed:#x} BRIDGE_CRASH_TRIALS=1): {what}{output}"
    )
}

// ---------------------------------------------------------------------------------------
// The source.

type Env = BTreeMap<String, String>;

struct Sources {
    v1: Env,
    v2: Env,
}

impl Sources {
    fn new(rng: &mut Rng) -> Self {
        let n = 40 + rng.below(21) as usize;
        let v1: Env = (0..n).map(|i| (key_name(rng, i), value(rng))).collect();
        let mut v2 = v1.clone();
        let keys: Vec<String> = v1.keys().cloned().collect();
        let mut removed = BTreeSet::new();
        while removed.len() < 5 {
            removed.insert(keys[rng.below(keys.len() as u64) as usize].clone());
        }
        for key in &removed {
            v2.remove(key);
        }
        for v in v2.values_mut() {
            if rng.below(3) == 0 {
                *v = value(rng);
            }
        }
        for i in n..n + 10 {
            v2.insert(key_name(rng, i), value(rng));
        }
        Self { v1, v2 }
    }

    /// `text` with every value of either version replaced, for printing.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in self.v1.values().chain(self.v2.values()) {
            out = out.replace(v.as_str(), "<value>");
        }
        out
    }
}

fn key_name(rng: &mut Rng, i: usize) -> String {
    const SECRET: [&str; 3] = ["API_TOKEN", "SECRET", "PASSWORD"];
    const PUBLIC: [&str; 6] = ["URL", "LOG_LEVEL", "REGION", "PORT", "MODE", "TIMEOUT_MS"];
    if rng.below(3) == 0 {
        format!("SVC{i:03}_{}", SECRET[rng.below(3) as usize])
    } else {
        format!("APP{i:03}_{}", PUBLIC[rng.below(6) as usize])
    }
}

fn value(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let len = 12 + rng.below(13) as usize;
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn dotenv(env: &Env) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// xorshift64, seeded through splitmix64 so that neighbouring seeds diverge at once.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

// ---------------------------------------------------------------------------------------
// Emulators, sandboxes and processes.

fn start(rt: &Handle) -> Emulators {
    rt.block_on(bridge_emulators::start(EmulatorConfig {
        latency: LATENCY,
        ..EmulatorConfig::default()
    }))
    .expect("emulators start")
}

fn sandbox(emu: &Emulators, env: &Env) -> Sandbox {
    let mut s = Sandbox::new();
    s.file(".env", &dotenv(env));
    for (k, v) in emu.exports() {
        s.env(&k, &v);
    }
    s
}

fn micros(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// When an uninterrupted v2 sync wrote, from its start.
struct Timing {
    code: i32,
    /// The first write request left the client (it landed one latency later).
    first_write: Duration,
    /// The last write landed.
    last_write: Duration,
    total: Duration,
}

impl Timing {
    /// Three kills in four land among the writes; the rest anywhere from the start to the
    /// exit (before the journal, between the last write and the exit).
    fn kill_delay(&self, rng: &mut Rng) -> Duration {
        if rng.below(4) == 0 {
            span(Duration::ZERO, self.total, rng)
        } else {
            self.among_writes(rng)
        }
    }

    /// A moment among the writes (the last one's request included).
    fn among_writes(&self, rng: &mut Rng) -> Duration {
        span(self.first_write, self.last_write + LATENCY, rng)
    }
}

/// Uniform in `from..to`.
fn span(from: Duration, to: Duration, rng: &mut Rng) -> Duration {
    let width = to.saturating_sub(from).as_micros() as u64;
    from + micros(rng.below(width))
}

/// Runs the v2 sync uninterrupted, watching the emulators' write counters as it goes.
fn timed(s: &Sandbox, emu: &Emulators) -> Timing {
    let writes = || -> u64 { PLATFORMS.iter().map(|p| stats_writes(emu, p)).sum() };
    let base = writes();
    let started = Instant::now();
    let mut child = s
        .command(&SYNC_V2)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns genesisctl");
    let (mut first, mut last, mut seen) = (None, Duration::ZERO, base);
    let status = loop {
        let exited = child.try_wait().expect("polls the child");
        let now = writes();
        if now != seen {
            seen = now;
            last = started.elapsed();
            first.get_or_insert(last);
        }
        if let Some(status) = exited {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let total = started.elapsed();
    Timing {
        code: status.code().unwrap_or(-1),
        first_write: first.unwrap_or(total).saturating_sub(LATENCY),
        last_write: last,
        total,
    }
}

/// Runs `args` and kills it with SIGKILL after `delay`, then lets what it had in flight
/// land. Returns whether it had exited before the kill.
fn kill_after(s: &Sandbox, args: &[&str], delay: Duration) -> bool {
    let started = Instant::now();
    let mut child = s
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns genesisctl");
    std::thread::sleep(delay.saturating_sub(started.elapsed()));
    let exited = child.try_wait().expect("polls the child").is_some();
    if !exited {
        // SIGKILL; an error means it exited in between, which the wait below settles.
        let _ = child.kill();
    }
    let status = child.wait().expect("waits for the child");
    std::thread::sleep(SETTLE);
    exited || status.code().is_some()
}

fn take_logs(emu: &Emulators) -> Vec<(&'static str, Vec<WriteRecord>)> {
    vec![
        ("render", emu.render().unwrap().take_write_log()),
        ("netlify", emu.netlify().unwrap().take_write_log()),
        ("github", emu.github().unwrap().take_write_log()),
    ]
    .into_iter()
    .filter(|(_, log)| !log.is_empty())
    .collect()
}

fn reset(emu: &Emulators, platform: &str) {
    match platform {
        "render" => emu.render().unwrap().reset_stats(),
        "netlify" => emu.netlify().unwrap().reset_stats(),
        _ => emu.github().unwrap().reset_stats(),
    }
}

fn stats_writes(emu: &Emulators, platform: &str) -> u64 {
    match platform {
        "render" => emu.render().unwrap().stats().writes,
        "netlify" => emu.netlify().unwrap().stats().writes,
        _ => emu.github().unwrap().stats().writes,
    }
}

/// `METHOD path status` of the requests, in order (by platform), for a report.
fn requests(log: &[(&'static str, Vec<WriteRecord>)]) -> String {
    list(&request_lines(log), 12)
}

fn requests_all(log: &[(&'static str, Vec<WriteRecord>)]) -> String {
    list(&request_lines(log), usize::MAX)
}

fn request_lines(log: &[(&'static str, Vec<WriteRecord>)]) -> Vec<String> {
    log.iter()
        .flat_map(|(_, records)| records)
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

// ---------------------------------------------------------------------------------------
// What the platforms hold.

/// Every place's contents, by place: `render`, `netlify:<context>`, `netlify:secret` (which
/// keys are secret), `github:secrets`, `github:variables`. Holds values: never printed.
struct Snapshot(BTreeMap<String, Env>);

impl Snapshot {
    fn of(emu: &Emulators) -> Self {
        let mut places = BTreeMap::new();
        places.insert("render".to_owned(), emu.render().unwrap().vars());
        let netlify = emu.netlify().unwrap();
        for context in NETLIFY_CONTEXTS {
            places.insert(format!("netlify:{context}"), netlify.vars(context));
        }
        let keys: BTreeSet<String> = NETLIFY_CONTEXTS
            .iter()
            .flat_map(|c| netlify.vars(c).into_keys())
            .collect();
        let secret = keys
            .into_iter()
            .map(|k| {
                let is = netlify.is_secret(&k).unwrap_or(false);
                (k, is.to_string())
            })
            .collect();
        places.insert("netlify:secret".to_owned(), secret);
        let github = emu.github().unwrap();
        places.insert("github:secrets".to_owned(), github.secrets(None));
        places.insert("github:variables".to_owned(), github.variables(None));
        Self(places)
    }

    /// Whether the snapshot holds `env` everywhere: a sanity check of a run not under test.
    fn holds(&self, env: &Env) -> Result<(), String> {
        let mut github = self.0["github:secrets"].clone();
        github.extend(self.0["github:variables"].clone());
        for (place, got) in [
            ("render", &self.0["render"]),
            ("netlify:production", &self.0["netlify:production"]),
            ("github", &github),
        ] {
            if got != env {
                return Err(format!("{place} not holding the source"));
            }
        }
        Ok(())
    }

    /// Whether `platform` keeps `key` write-only: a GitHub secret, a Netlify secret.
    fn write_only(&self, platform: &str, key: &str) -> bool {
        match platform {
            "github" => self.0["github:secrets"].contains_key(key),
            "netlify" => self.0["netlify:secret"]
                .get(key)
                .is_some_and(|s| s == "true"),
            _ => false,
        }
    }

    /// How `got` differs from `self` on `platform`, key by key (with the places, where
    /// not all of the platform's), never a value.
    fn differences(&self, got: &Snapshot, platform: &str) -> Vec<String> {
        let places: Vec<&String> = self.0.keys().filter(|p| p.starts_with(platform)).collect();
        let empty = Env::new();
        let mut by_key: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for place in &places {
            let want = &self.0[*place];
            let have = got.0.get(*place).unwrap_or(&empty);
            for key in want.keys().chain(have.keys()).collect::<BTreeSet<_>>() {
                let what = match (want.get(key), have.get(key)) {
                    (Some(a), Some(b)) if a == b => continue,
                    (Some(_), Some(_)) => "differs",
                    (Some(_), None) => "missing",
                    (None, _) => "extra",
                };
                let short = place.split_once(':').map_or(place.as_str(), |(_, p)| p);
                by_key.entry((key, what)).or_default().push(short);
            }
        }
        by_key
            .into_iter()
            .map(|((key, what), at)| {
                if at.len() == places.len() || places.len() == 1 {
                    format!("{key} {what}")
                } else {
                    format!("{key} {what} in {}", at.join("+"))
                }
            })
            .collect()
    }
}

/// A command's output on one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// At most `max` of `items`, joined, with how many were left out.
fn list(items: &[String], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        text.push_str(&format!(", ... {} more", items.len() - max));
    }
    text
}

// ---------------------------------------------------------------------------------------
// The state store.

fn state_db(s: &Sandbox) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(s.path(".bridge/state.db")).expect("opens state.db");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// `(target, key, fingerprint)` of a write record.
type Record = (String, String, String);

/// Every write record.
fn records(s: &Sandbox) -> BTreeSet<Record> {
    let conn = state_db(s);
    let mut stmt = conn
        .prepare("SELECT target, key, fingerprint FROM write_records")
        .expect("write_records");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("reads write_records")
        .collect::<Result<_, _>>()
        .expect("reads write_records")
}

/// How the records differ, by `platform:key`: an older fingerprint than the reference's,
/// no record where the reference has one, or a record the reference does not have.
fn records_diff(want: &BTreeSet<Record>, got: &BTreeSet<Record>) -> String {
    let by_key = |set: &BTreeSet<Record>| -> BTreeMap<(String, String), String> {
        set.iter()
            .map(|(t, k, fp)| ((t.clone(), k.clone()), fp.clone()))
            .collect()
    };
    let (want, got) = (by_key(want), by_key(got));
    let name = |(t, k): &(String, String)| format!("{}:{k}", platform_of(t));
    let (mut other, mut absent, mut extra) = (Vec::new(), Vec::new(), Vec::new());
    for (key, fp) in &want {
        match got.get(key) {
            Some(g) if g == fp => {}
            Some(_) => other.push(name(key)),
            None => absent.push(name(key)),
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(*k)) {
        extra.push(name(key));
    }
    format!(
        "{} with another fingerprint [{}]; {} without a record [{}]; {} recorded but not in \
         the reference [{}]",
        other.len(),
        list(&other, 10),
        absent.len(),
        list(&absent, 10),
        extra.len(),
        list(&extra, 10)
    )
}

fn last_journal_id(s: &Sandbox) -> i64 {
    state_db(s)
        .query_row("SELECT COALESCE(MAX(id), 0) FROM journals", [], |row| {
            row.get(0)
        })
        .expect("reads journals")
}

struct Journal {
    id: i64,
    state: String,
    /// Target identity → its state.
    targets: BTreeMap<String, String>,
    ops: Vec<Op>,
}

impl Journal {
    fn finished(&self) -> bool {
        !matches!(self.state.as_str(), "applying" | "failed")
    }
}

struct Op {
    platform: &'static str,
    key: String,
    change: String,
    done: bool,
}

/// The journals after `id`, oldest first.
fn journals_after(s: &Sandbox, id: i64) -> Vec<Journal> {
    let conn = state_db(s);
    let heads: Vec<(i64, String)> = conn
        .prepare("SELECT id, state FROM journals WHERE id > ?1 ORDER BY id")
        .expect("journals")
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("reads journals")
        .collect::<Result<_, _>>()
        .expect("reads journals");
    heads
        .into_iter()
        .map(|(id, state)| {
            let targets = conn
                .prepare("SELECT target, state FROM journal_targets WHERE journal_id = ?1")
                .expect("journal_targets")
                .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("reads journal_targets")
                .collect::<Result<_, _>>()
                .expect("reads journal_targets");
            let ops = conn
                .prepare(
                    "SELECT target, key, change, done FROM journal_ops WHERE journal_id = ?1
                     ORDER BY target, seq",
                )
                .expect("journal_ops")
                .query_map([id], |row| {
                    Ok(Op {
                        platform: platform_of(&row.get::<_, String>(0)?),
                        key: row.get(1)?,
                        change: row.get(2)?,
                        done: row.get::<_, i64>(3)? != 0,
                    })
                })
                .expect("reads journal_ops")
                .collect::<Result<_, _>>()
                .expect("reads journal_ops");
            Journal {
                id,
                state,
                targets,
                ops,
            }
        })
        .collect()
}

/// `render`, `netlify` or `github`, from a target identity such as `github:o/r`.
fn platform_of(identity: &str) -> &'static str {
    match identity.split(':').next() {
        Some("render") => "render",
        Some("netlify") => "netlify",
        Some("github") => "github",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------
// Repeated writes.

/// One write as the platform saw it; a request repeated within one phase (Netlify sets a
/// secret's value context by context, on one path) is one write.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Sent {
    platform: &'static str,
    method: String,
    path: String,
    key: Option<String>,
}

fn sent(log: &[(&'static str, Vec<WriteRecord>)]) -> BTreeSet<Sent> {
    log.iter()
        .flat_map(|(platform, records)| {
            records.iter().map(|r| Sent {
                platform,
                method: r.method.clone(),
                path: r.path.clone(),
                key: r.key.clone(),
            })
        })
        .collect()
}

/// The journal ops a write carries: its key's, or a bulk write's (Render's replace-all
/// carries every op on Render, Netlify's create every create).
fn carried<'j>(w: &Sent, journal: Option<&'j Journal>) -> Vec<&'j Op> {
    journal
        .iter()
        .flat_map(|j| &j.ops)
        .filter(|op| op.platform == w.platform)
        .filter(|op| match &w.key {
            Some(key) => &op.key == key,
            None if w.platform == "netlify" && w.method == "POST" => op.change == "create",
            None => true,
        })
        .collect()
}

/// The resume's writes that repeat one of the killed sync's — the same request, or the
/// same key by another request (a create become an update) — or that write a key whose op
/// was done at the kill: `(outside the in-flight window, inside it)`, as `METHOD path`,
/// those inside with whether the value is readable (a bulk write counts as readable): a
/// resume that reads the target first has no reason to send those again.
fn repeats(
    killed: &[(&'static str, Vec<WriteRecord>)],
    resumed: &[(&'static str, Vec<WriteRecord>)],
    journal: Option<&Journal>,
    write_only: &dyn Fn(&str, &str) -> bool,
) -> (Vec<String>, Vec<(String, bool)>) {
    let killed = sent(killed);
    let killed_keys: BTreeSet<(&str, &str)> = killed
        .iter()
        .flat_map(|w| carried(w, journal))
        .map(|op| (op.platform, op.key.as_str()))
        .collect();
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    for w in sent(resumed) {
        let ops = carried(&w, journal);
        let done = ops.iter().any(|op| op.done);
        let same = killed.contains(&w);
        let same_key = ops
            .iter()
            .any(|op| killed_keys.contains(&(op.platform, op.key.as_str())));
        let label = format!("{} {}", w.method, w.path);
        let readable = w.key.as_deref().is_none_or(|k| !write_only(w.platform, k));
        if same && ops.is_empty() {
            outside.push(format!("{label} (sent again; no journal op carries it)"));
        } else if done && (same || w.key.is_some()) {
            outside.push(format!("{label} (its op was done at the kill)"));
        } else if same {
            inside.push((label, readable));
        } else if same_key {
            inside.push((
                format!("{label} (the key again, by another request)"),
                readable,
            ));
        }
    }
    (outside, inside)
}

// ---------------------------------------------------------------------------------------
// The summary.

#[derive(Default)]
struct Summary {
    trials: usize,
    mismatches: usize,
    failing_trials: usize,
    records_missing: usize,
    records_stale: usize,
    repeated: usize,
    in_window: usize,
    in_window_readable: usize,
    next_sync_writes: u64,
    probes: usize,
    not_refused: usize,
    kills: BTreeMap<&'static str, usize>,
}

impl Summary {
    fn of(reports: &[TrialReport]) -> Self {
        let mut s = Summary {
            trials: reports.len(),
            ..Summary::default()
        };
        for r in reports {
            s.mismatches += r.mismatches.len();
            s.failing_trials += usize::from(!r.mismatches.is_empty());
            s.records_missing += r.records_missing;
            s.records_stale += r.records_stale;
            s.repeated += r.repeated;
            s.in_window += r.in_window;
            s.in_window_readable += r.in_window_readable;
            s.next_sync_writes += r.next_sync_writes;
            s.probes += usize::from(r.probe.is_some());
            s.not_refused += usize::from(r.probe == Some(false));
            *s.kills.entry(r.kill.name()).or_default() += 1;
        }
        s
    }

    fn line(&self) -> String {
        let kills: Vec<String> = self.kills.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!(
            "crash: trials={} mismatches={} (in {} trials) records_missing={} records_stale={} \
             repeated_writes={} in_window_repeats={} (of readable values: {}) next_sync_writes={} \
             syncs_not_refused={}/{} kills[{}]",
            self.trials,
            self.mismatches,
            self.failing_trials,
            self.records_missing,
            self.records_stale,
            self.repeated,
            self.in_window,
            self.in_window_readable,
            self.next_sync_writes,
            self.not_refused,
            self.probes,
            kills.join(" ")
        )
    }

    fn per_check(&self, reports: &[TrialReport]) -> String {
        let counts: Vec<String> = Check::ALL
            .iter()
            .map(|check| {
                let n = reports
                    .iter()
                    .filter(|r| r.mismatches.iter().any(|(c, _)| c == check))
                    .count();
                format!("{} {n}/{}", check.name(), self.trials)
            })
            .collect();
        format!("crash: failing trials by check: {}", counts.join(", "))
    }
}
