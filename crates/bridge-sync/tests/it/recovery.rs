//! Journals, resume, rollback and write-only drift, on the in-memory platform.

use std::sync::Arc;

use bridge_core::FingerprintKey;
use bridge_core::diff::{DeletionGuard, Deletions, DiffOptions};
use bridge_platforms::{PlatformError, PlatformSpec};
use bridge_sync::sealing::Sealer;
use bridge_sync::store::StateStore;
use bridge_sync::{Mode, SyncJob, SyncOptions, Target, TargetStatus, resume, rollback, run};

use crate::fake::FakePlatform;

struct Fixture {
    _dir: tempfile::TempDir,
    source_path: std::path::PathBuf,
    store: Arc<StateStore>,
    fake: Arc<FakePlatform>,
}

fn fixture(write_only: bool, source: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("src.env");
    std::fs::write(&source_path, source).unwrap();
    let (_, sealer) = Sealer::generate();
    let store = Arc::new(StateStore::open_sqlite(&dir.path().join("state.db"), sealer).unwrap());
    Fixture {
        _dir: dir,
        source_path,
        store,
        fake: Arc::new(FakePlatform::new(write_only)),
    }
}

const KEY: [u8; 32] = [5; 32];

impl Fixture {
    fn target(&self) -> Target {
        Target {
            label: "fake".into(),
            platform: self.fake.clone(),
        }
    }

    fn job(&self, deletions: Deletions) -> SyncJob {
        let spec = PlatformSpec::local(&self.source_path);
        SyncJob {
            source: bridge_platforms::open(&spec, &Default::default()).unwrap(),
            targets: vec![self.target()],
            options: SyncOptions {
                mode: Mode::Apply,
                diff: DiffOptions {
                    deletions,
                    ..DiffOptions::default()
                },
                guard: Some(DeletionGuard { max_share: 1.0 }),
                allow_empty_source: false,
                fingerprints: FingerprintKey::from_bytes(KEY),
                protect: vec!["PLATFORM_MANAGED".into()],
            },
            store: Some(self.store.clone()),
            fence: None,
            observer: None,
        }
    }

    fn write_source(&self, text: &str) {
        std::fs::write(&self.source_path, text).unwrap();
    }
}

fn expect(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn write_only_values_are_judged_from_records_and_stamps() {
    let f = fixture(true, "A=1\nB=2\n");
    // Before any write of ours, the existing value is unknown: not equal, not different.
    // With --unknown=skip it is only reported.
    f.fake.set("A", "1");
    let mut skip = f.job(Deletions::Keep);
    skip.options.diff.unknown = bridge_core::diff::UnknownPolicy::Report;
    skip.options.mode = Mode::DryRun;
    let out = run(skip).await.unwrap();
    let plan = out.targets[0].plan.as_ref().unwrap();
    assert_eq!(plan.summary().unknown, 1);
    assert_eq!(plan.summary().create, 1);
    // By default it is written (the source is canonical: a fresh runner must still
    // propagate a rotated secret), and from then on it is on record.
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    let plan = out.targets[0].plan.as_ref().unwrap();
    assert_eq!(plan.ops[0].op_name(), "write_unknown");
    assert_eq!(plan.summary().unknown, 0);
    assert_eq!(f.fake.writes(), 2);

    // Once A and B are written, their fingerprints and stamps are on record: a repeat
    // writes nothing.
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(out.targets[0].status, TargetStatus::InSync));
    assert_eq!(f.fake.writes(), 2);

    // Change the source: B is updated, judged by fingerprint.
    f.write_source("A=1\nB=3\n");
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(
        out.targets[0].status,
        TargetStatus::Applied { writes: 1 }
    ));
    assert_eq!(f.fake.vars()["B"], "3");

    // Someone changes B on the platform: its stamp moves, so it is drift, and it is healed.
    f.fake.set("B", "tampered");
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    let op = &out.targets[0].plan.as_ref().unwrap().ops[1];
    assert_eq!(
        op.reason,
        Some(bridge_core::diff::UpdateReason::ChangedOutOfBand)
    );
    assert_eq!(f.fake.vars()["B"], "3");
}

#[tokio::test]
async fn deletions_touch_only_owned_keys_and_never_protected_ones() {
    let f = fixture(false, "A=1\nB=2\nPLATFORM_MANAGED=mine\n");
    f.fake.set("DATABASE_URL", "set by the platform");
    f.fake.set("PLATFORM_MANAGED", "platform's");
    run(f.job(Deletions::Allow)).await.unwrap();
    // Not created by Bridge, so not deleted; protected, so not overwritten.
    assert_eq!(
        f.fake.vars(),
        expect(&[
            ("A", "1"),
            ("B", "2"),
            ("DATABASE_URL", "set by the platform"),
            ("PLATFORM_MANAGED", "platform's")
        ])
    );
    // Bridge wrote B, so removing it from the source deletes it.
    f.write_source("A=1\n");
    let out = run(f.job(Deletions::Allow)).await.unwrap();
    let plan = out.targets[0].plan.as_ref().unwrap();
    assert_eq!(plan.summary().delete, 1);
    let reasons: Vec<_> = plan
        .skipped
        .iter()
        .map(|s| (s.key.as_str(), s.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("DATABASE_URL", bridge_core::diff::SkipReason::NotOwned),
            ("PLATFORM_MANAGED", bridge_core::diff::SkipReason::Protected)
        ]
    );
    assert!(!f.fake.vars().contains_key("B"));
}

#[tokio::test]
async fn a_failure_after_k_writes_resumes_without_repeating_and_rolls_back_exactly() {
    let f = fixture(false, "A=1\nB=2\nC=3\nD=4\nE=5\n");
    f.fake.set("B", "old-b");
    f.fake.set("X", "untouched");
    let before = f.fake.vars();
    f.fake.fail_after(Some(2));
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(out.targets[0].status, TargetStatus::Failed(_)));
    assert_eq!(f.fake.writes(), 2);
    let journal = out.journal.expect("journalled");
    f.fake.fail_after(None);

    // Rollback restores exactly what was there before.
    let back = rollback(
        &f.store,
        &f.target(),
        Some(journal),
        &FingerprintKey::from_bytes(KEY),
    )
    .await
    .unwrap()
    .expect("journal found");
    assert!(back.is_ok(), "{back:?}");
    assert_eq!(f.fake.vars(), before);

    // Run again, fail again after 2 writes, then resume: the 3 remaining ops run once each.
    let writes_before = f.fake.writes();
    f.fake.fail_after(Some(writes_before + 2));
    run(f.job(Deletions::Keep)).await.unwrap();
    f.fake.fail_after(None);
    let open =
        |_: &bridge_sync::store::JournalTarget| -> Result<Target, PlatformError> { Ok(f.target()) };
    let resumed = resume(&f.store, &open, &FingerprintKey::from_bytes(KEY), None)
        .await
        .unwrap()
        .expect("something to resume");
    assert_eq!(resumed.targets[0].already_done, 2);
    assert_eq!(resumed.targets[0].writes, 3);
    assert_eq!(f.fake.writes(), writes_before + 5, "no write repeated");
    assert_eq!(
        f.fake.vars(),
        expect(&[
            ("A", "1"),
            ("B", "2"),
            ("C", "3"),
            ("D", "4"),
            ("E", "5"),
            ("X", "untouched")
        ])
    );
    // Nothing left to resume, and a repeat sync writes nothing.
    assert!(
        resume(&f.store, &open, &FingerprintKey::from_bytes(KEY), None)
            .await
            .unwrap()
            .is_none()
    );
    let out = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(out.targets[0].status, TargetStatus::InSync));
}

#[tokio::test]
async fn rollback_of_write_only_values_restores_what_bridge_wrote() {
    let f = fixture(true, "T=v1\n");
    run(f.job(Deletions::Keep)).await.unwrap();
    f.write_source("T=v2\n");
    run(f.job(Deletions::Keep)).await.unwrap();
    assert_eq!(f.fake.vars()["T"], "v2");
    let back = rollback(
        &f.store,
        &f.target(),
        None,
        &FingerprintKey::from_bytes(KEY),
    )
    .await
    .unwrap()
    .expect("journal");
    assert!(back.targets[0].unrestorable.is_empty());
    assert_eq!(
        f.fake.vars()["T"],
        "v1",
        "restored from the sealed record of our last write"
    );
}

/// A rollback is itself an apply: rolling back twice returns to where you were, never past
/// the first sync to an empty service; and the rollback is journalled like any apply.
#[tokio::test]
async fn rolling_back_twice_returns_to_where_you_started() {
    let f = fixture(false, "A=1\nB=2\n");
    f.fake.set("KEEP", "theirs");
    let key = FingerprintKey::from_bytes(KEY);
    // First sync: A, B created. Second: B changes.
    run(f.job(Deletions::Keep)).await.unwrap();
    std::fs::write(&f.source_path, "A=1\nB=3\n").unwrap();
    run(f.job(Deletions::Keep)).await.unwrap();
    let after_both = f.fake.vars();

    // Undo the latest apply: B goes back to 2.
    let first = rollback(&f.store, &f.target(), None, &key)
        .await
        .unwrap()
        .expect("an apply to undo");
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(f.fake.vars()["B"], "2");
    assert!(
        first.written_as.is_some(),
        "the rollback was not journalled"
    );

    // Undo the latest apply again: that is the rollback, so B is 3 again, and A and KEEP
    // are still there.
    let second = rollback(&f.store, &f.target(), None, &key)
        .await
        .unwrap()
        .expect("an apply to undo");
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(second.journal, first.written_as.unwrap());
    assert_eq!(f.fake.vars(), after_both);
}

/// Runs `job` until the fake platform "dies" (its apply never returns), as `kill -9` would
/// stop the process: the future is dropped mid-apply.
async fn run_until_crash(job: SyncJob) {
    let crashed = tokio::time::timeout(std::time::Duration::from_millis(500), run(job)).await;
    assert!(crashed.is_err(), "the apply was meant to crash");
}

const FIVE: &str = "A=1\nB=2\nC=3\nD=4\nE=5\n";

#[tokio::test]
async fn a_crash_leaves_a_record_for_every_confirmed_write_and_resume_repeats_none() {
    let f = fixture(false, FIVE);
    // Three writes confirmed, the fourth lands with its confirmation lost, then death.
    f.fake.crash_after(Some((3, true)));
    run_until_crash(f.job(Deletions::Keep)).await;
    let records = f.store.records("fake:1").await.unwrap();
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        ["A", "B", "C"],
        "every confirmed write is recorded, in the step that marks it done"
    );
    assert_eq!(f.fake.writes(), 4);

    f.fake.crash_after(None);
    let key = FingerprintKey::from_bytes(KEY);
    let open =
        |_: &bridge_sync::store::JournalTarget| -> Result<Target, PlatformError> { Ok(f.target()) };
    let outcome = resume(&f.store, &open, &key, None).await.unwrap().unwrap();
    // D landed before the crash: recorded, not written again; only E is written.
    assert_eq!(f.fake.writes(), 5, "a write was repeated");
    assert_eq!(outcome.targets[0].writes, 1);
    assert!(outcome.targets[0].resent.is_empty());
    assert_eq!(
        f.fake.vars(),
        expect(&[("A", "1"), ("B", "2"), ("C", "3"), ("D", "4"), ("E", "5")])
    );
    let records = f.store.records("fake:1").await.unwrap();
    assert_eq!(
        records.len(),
        5,
        "the state holds what an uninterrupted apply leaves"
    );
    for (k, v) in [("A", "1"), ("D", "4"), ("E", "5")] {
        assert_eq!(
            records[k].fingerprint,
            key.fingerprint(&bridge_core::SecretValue::new(v))
        );
    }
    // And the next sync has nothing to do.
    let again = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(again.targets[0].status, TargetStatus::InSync));
}

#[tokio::test]
async fn a_write_only_value_in_flight_at_the_crash_is_the_one_write_resume_may_repeat() {
    let f = fixture(true, FIVE);
    f.fake.crash_after(Some((3, true)));
    run_until_crash(f.job(Deletions::Keep)).await;
    f.fake.crash_after(None);
    let key = FingerprintKey::from_bytes(KEY);
    let open =
        |_: &bridge_sync::store::JournalTarget| -> Result<Target, PlatformError> { Ok(f.target()) };
    let outcome = resume(&f.store, &open, &key, None).await.unwrap().unwrap();
    // D cannot be read back, so it is sent again (same value); E for the first time.
    assert_eq!(outcome.targets[0].resent, ["D"]);
    assert_eq!(f.fake.writes(), 6);
    // Records written before the crash got their stamps from the resume's read.
    let records = f.store.records("fake:1").await.unwrap();
    assert_eq!(records.len(), 5);
    assert!(
        records.values().all(|r| r.updated_at.is_some()),
        "{records:?}"
    );
    let again = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(again.targets[0].status, TargetStatus::InSync));
}

#[tokio::test]
async fn a_sync_refuses_while_a_journal_on_its_target_is_unfinished() {
    let f = fixture(false, FIVE);
    f.fake.crash_after(Some((2, false)));
    run_until_crash(f.job(Deletions::Keep)).await;
    f.fake.crash_after(None);
    let writes = f.fake.writes();
    let refused = run(f.job(Deletions::Keep)).await.err().expect("refused");
    let text = refused.to_string();
    assert!(
        matches!(refused, bridge_sync::SyncError::Unfinished { .. }),
        "{text}"
    );
    assert!(
        text.contains("journal 1") && text.contains("env resume --discard 1"),
        "{text}"
    );
    assert_eq!(f.fake.writes(), writes, "a refused sync wrote");
    // A dry run still plans.
    let mut dry = f.job(Deletions::Keep);
    dry.options.mode = Mode::DryRun;
    assert!(run(dry).await.is_ok());
    // Given up, the journal no longer stands in the way.
    f.store
        .discard(bridge_sync::store::JournalId(1))
        .await
        .unwrap();
    let after = run(f.job(Deletions::Keep)).await.unwrap();
    assert!(matches!(
        after.targets[0].status,
        TargetStatus::Applied { .. }
    ));
    assert!(
        f.store
            .discard(bridge_sync::store::JournalId(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn resume_refuses_a_journal_whose_target_changed_since() {
    for change in ["outside the journal", "a key the journal writes"] {
        let f = fixture(false, FIVE);
        f.fake.crash_after(Some((2, false)));
        run_until_crash(f.job(Deletions::Keep)).await;
        f.fake.crash_after(None);
        // Someone else writes there meanwhile.
        match change {
            "outside the journal" => f.fake.set("Z", "hand-made"),
            _ => f.fake.set("E", "newer"),
        }
        let writes = f.fake.writes();
        let key = FingerprintKey::from_bytes(KEY);
        let open = |_: &bridge_sync::store::JournalTarget| -> Result<Target, PlatformError> {
            Ok(f.target())
        };
        let err = resume(&f.store, &open, &key, None)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, bridge_sync::SyncError::StaleJournal { .. }),
            "{change}: {err}"
        );
        assert!(err.to_string().contains("--discard 1"), "{err}");
        assert_eq!(f.fake.writes(), writes, "{change}: a stale resume wrote");
    }
}

/// A rollback of a `.env` file cut short before its rename (its journal written, the file
/// untouched) is resumed to the very bytes the rollback meant to write: the file's own.
#[tokio::test]
async fn a_file_rollback_cut_short_resumes_to_the_files_own_bytes() {
    use bridge_core::SecretValue;
    use bridge_core::diff::{Change, PlanOp};
    use bridge_platforms::WriteRequest;
    use bridge_sync::store::{JournalOp, JournalState, JournalTarget, PreImage};

    let f = fixture(false, "A=changed\nB=b\n");
    let path = f._dir.path().join("t.env");
    let original = "export A=\"x y\"  # keep\nB=b\n";
    std::fs::write(&path, original).unwrap();
    let spec = PlatformSpec::local(&path);
    let target = Target {
        label: "t".into(),
        platform: bridge_platforms::open(&spec, &Default::default()).unwrap(),
    };
    let job = SyncJob {
        targets: vec![target.clone()],
        ..f.job(Deletions::Keep)
    };
    run(job).await.unwrap();
    let synced = std::fs::read_to_string(&path).unwrap();
    assert_eq!(synced, "export A=changed  # keep\nB=b\n");
    let identity = target.platform.identity();
    let sync = f.store.latest_for_target(&identity).await.unwrap().unwrap();
    let sync_image = sync.targets[0]
        .image
        .clone()
        .expect("a file's journal keeps its image");
    assert_eq!(sync_image.before.expose(), original);
    assert_eq!(sync_image.after.expose(), synced);

    // The rollback's journal, as `rollback` writes it before its one write, and no write.
    let undo = [PlanOp {
        key: "A".into(),
        change: Change::Update,
        before: None,
        after: Some(SecretValue::new("x y")),
        reason: None,
    }];
    let current = target.platform.read().await.unwrap();
    let request = WriteRequest {
        ops: &undo,
        current: &current,
        restore: Some(&sync_image),
    };
    let image = target.platform.image(request).await.unwrap();
    assert_eq!(image.as_ref().unwrap().after.expose(), original);
    let entry = JournalTarget {
        identity: identity.clone(),
        spec: spec.to_string(),
        label: "t".into(),
        state: JournalState::Applying,
        error: None,
        untouched: None,
        image,
        ops: vec![JournalOp {
            key: "A".into(),
            change: Change::Update,
            after: Some(SecretValue::new("x y")),
            before: PreImage::Value(SecretValue::new("changed")),
            before_stamp: None,
            done: false,
        }],
    };
    f.store.begin("rollback", "now", &[entry]).await.unwrap();

    let open = |_: &JournalTarget| -> Result<Target, PlatformError> { Ok(target.clone()) };
    let resumed = resume(&f.store, &open, &FingerprintKey::from_bytes(KEY), None)
        .await
        .unwrap()
        .expect("something to resume");
    assert!(resumed.is_ok(), "{resumed:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}
