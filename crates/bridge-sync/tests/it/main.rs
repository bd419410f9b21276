//! The engine end to end over real `.env` files: plans, applies, guards, isolation.

#![allow(unreachable_pub)]
// A test binary: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

mod fake;
mod recovery;

use std::fs;
use std::path::Path;

use bridge_core::diff::{DeletionGuard, Deletions, DiffOptions};
use bridge_core::filter::KeyFilter;
use bridge_core::parity::RowStatus;
use bridge_core::{FingerprintKey, SecretClassifier};
use bridge_platforms::{OpenContext, PlatformSpec};
use bridge_sync::{Mode, SyncError, SyncJob, SyncOptions, Target, TargetStatus, run, verify};

fn place(path: &Path, label: &str) -> Target {
    let spec = PlatformSpec::local(path);
    Target {
        label: label.into(),
        platform: bridge_platforms::open(&spec, &OpenContext::default()).expect("opens"),
    }
}

fn options(mode: Mode, deletions: Deletions) -> SyncOptions {
    SyncOptions {
        mode,
        diff: DiffOptions {
            deletions,
            ..DiffOptions::default()
        },
        guard: Some(DeletionGuard::default()),
        allow_empty_source: false,
        fingerprints: FingerprintKey::from_bytes([9; 32]),
        protect: Vec::new(),
    }
}

fn job(source: &Path, targets: &[&Path], options: SyncOptions) -> SyncJob {
    SyncJob {
        source: place(source, "source").platform,
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, p)| place(p, &format!("t{i}")))
            .collect(),
        options,
        store: None,
        fence: None,
        observer: None,
    }
}

#[tokio::test]
async fn dry_run_writes_nothing_and_apply_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let a = dir.path().join("a.env");
    let b = dir.path().join("b.env");
    fs::write(&src, "A=1\nB=2\nC=3\n").expect("write");
    fs::write(&a, "# keep me\nA=1\nB=old\n").expect("write");

    let outcome = run(job(&src, &[&a, &b], options(Mode::DryRun, Deletions::Keep)))
        .await
        .expect("runs");
    assert!(outcome.has_pending_changes());
    assert!(matches!(outcome.targets[0].status, TargetStatus::Planned));
    assert_eq!(
        fs::read_to_string(&a).expect("read"),
        "# keep me\nA=1\nB=old\n"
    );
    assert!(!b.exists(), "a dry run creates nothing");

    let outcome = run(job(&src, &[&a, &b], options(Mode::Apply, Deletions::Keep)))
        .await
        .expect("runs");
    let writes: Vec<_> = outcome
        .targets
        .iter()
        .map(|t| match t.status {
            TargetStatus::Applied { writes } => writes,
            ref other => panic!("expected applied, got {other:?}"),
        })
        .collect();
    assert_eq!(writes, [2, 3]);
    assert_eq!(
        fs::read_to_string(&a).expect("read"),
        "# keep me\nA=1\nB=2\nC=3\n"
    );

    // A repeated sync has nothing to write.
    let again = run(job(&src, &[&a, &b], options(Mode::Apply, Deletions::Keep)))
        .await
        .expect("runs");
    assert!(
        again
            .targets
            .iter()
            .all(|t| matches!(t.status, TargetStatus::InSync))
    );
    assert!(!again.has_pending_changes());
}

#[tokio::test]
async fn empty_source_and_self_sync_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let a = dir.path().join("a.env");
    fs::write(&src, "# nothing yet\n").expect("write");
    fs::write(&a, "A=1\nB=2\n").expect("write");
    let err = run(job(&src, &[&a], options(Mode::Apply, Deletions::Allow)))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, SyncError::EmptySource { .. }), "{err}");
    assert_eq!(fs::read_to_string(&a).expect("read"), "A=1\nB=2\n");

    let mut opts = options(Mode::Apply, Deletions::Allow);
    opts.guard = None;
    opts.allow_empty_source = true;
    let outcome = run(job(&src, &[&a], opts)).await.expect("runs");
    assert!(matches!(
        outcome.targets[0].status,
        TargetStatus::Applied { writes: 2 }
    ));

    fs::write(&src, "A=1\n").expect("write");
    let err = run(job(&src, &[&src], options(Mode::Apply, Deletions::Keep)))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, SyncError::SourceIsTarget { .. }), "{err}");
}

#[tokio::test]
async fn the_deletion_guard_stops_a_mass_delete_before_any_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let a = dir.path().join("a.env");
    fs::write(&src, "A=changed\n").expect("write");
    let original = "A=1\nB=2\nC=3\nD=4\n";
    fs::write(&a, original).expect("write");
    let outcome = run(job(&src, &[&a], options(Mode::Apply, Deletions::Allow)))
        .await
        .expect("runs");
    assert!(matches!(
        outcome.targets[0].status,
        TargetStatus::Refused(_)
    ));
    assert_eq!(fs::read_to_string(&a).expect("read"), original);
}

#[tokio::test]
async fn a_failing_target_does_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let broken = dir.path().join("broken.env");
    let good = dir.path().join("good.env");
    fs::write(&src, "A=1\n").expect("write");
    fs::write(&broken, "A='unterminated\n").expect("write");
    let outcome = run(job(
        &src,
        &[&broken, &good],
        options(Mode::Apply, Deletions::Keep),
    ))
    .await
    .expect("runs");
    match &outcome.targets[0].status {
        TargetStatus::Failed(e) => assert!(e.to_string().contains("broken.env:1:3"), "{e}"),
        other => panic!("expected failure, got {other:?}"),
    }
    assert!(matches!(
        outcome.targets[1].status,
        TargetStatus::Applied { writes: 1 }
    ));
    assert_eq!(outcome.failures().count(), 1);
}

#[tokio::test]
async fn filters_keep_out_of_scope_keys_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let a = dir.path().join("a.env");
    fs::write(&src, "APP_A=1\nOTHER=x\n").expect("write");
    fs::write(&a, "APP_OLD=1\nUNRELATED=keep\n").expect("write");
    let mut opts = options(Mode::Apply, Deletions::Allow);
    opts.guard = None;
    opts.diff.filter = KeyFilter::new(vec!["APP_".into()], vec![]);
    run(job(&src, &[&a], opts)).await.expect("runs");
    assert_eq!(
        fs::read_to_string(&a).expect("read"),
        "UNRELATED=keep\nAPP_A=1\n"
    );
}

#[tokio::test]
async fn verify_lines_up_every_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.env");
    let b = dir.path().join("b.env");
    let c = dir.path().join("c.env");
    fs::write(&a, "X=1\nY=2\n").expect("write");
    fs::write(&b, "X=1\nY=3\n").expect("write");
    fs::write(&c, "X=1\n").expect("write");
    let places = [place(&a, "a"), place(&b, "b"), place(&c, "c")];
    let matrix = verify(
        &places,
        &KeyFilter::default(),
        &SecretClassifier::default(),
        None,
        None,
        &[],
    )
    .await
    .expect("verifies");
    assert_eq!(matrix.rows.len(), 2);
    assert_eq!(matrix.rows[0].status, RowStatus::InParity);
    assert_eq!(matrix.rows[1].status, RowStatus::Drift);
    assert_eq!(matrix.drift_count(), 1);

    let missing = place(&dir.path().join("nope/x.env"), "gone");
    // A missing file reads as empty (it is a target that does not exist yet)…
    let m = verify(
        &[places[0].clone(), missing],
        &KeyFilter::default(),
        &SecretClassifier::default(),
        None,
        None,
        &[],
    )
    .await
    .expect("verifies");
    assert_eq!(m.drift_count(), 2);
    // …but an unreadable one is an error naming it.
    fs::write(&c, "1BAD=x\n").expect("write");
    let err = verify(
        &places,
        &KeyFilter::default(),
        &SecretClassifier::default(),
        None,
        None,
        &[],
    )
    .await
    .expect_err("fails");
    assert_eq!(err.label, "c");
    assert!(err.to_string().contains("c.env:1:1"), "{err}");
}

/// A fence that no longer stands: the lock was broken before the apply began.
#[derive(Debug)]
struct Broken;

#[async_trait::async_trait]
impl bridge_sync::Fence for Broken {
    async fn check(&self) -> Result<(), String> {
        Err("the apply lock on t0 was broken".into())
    }
}

/// An apply whose lock was broken before its first write (its holder sat at the prompt)
/// writes nothing and says why.
#[tokio::test]
async fn an_apply_whose_lock_was_broken_before_it_began_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.env");
    let a = dir.path().join("a.env");
    fs::write(&src, "A=1\nB=2\n").expect("write");
    fs::write(&a, "A=old\n").expect("write");
    let fenced = SyncJob {
        fence: Some(std::sync::Arc::new(Broken)),
        ..job(&src, &[&a], options(Mode::Apply, Deletions::Keep))
    };
    let outcome = run(fenced).await;
    assert_eq!(fs::read_to_string(&a).expect("read"), "A=old\n");
    let text = match outcome {
        Err(e) => e.to_string(),
        Ok(o) => format!("{:?}", o.targets[0].status),
    };
    assert!(text.contains("was broken"), "{text}");
}
