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
    let store = Arc::new(StateStore::open(&dir.path().join("state.db"), sealer).unwrap());
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
    let resumed = resume(&f.store, &open, &FingerprintKey::from_bytes(KEY))
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
        resume(&f.store, &open, &FingerprintKey::from_bytes(KEY))
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
