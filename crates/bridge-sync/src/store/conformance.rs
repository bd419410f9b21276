//! The suite every [`StateBackend`] must pass: SQLite here, PostgreSQL in
//! `bridge-genesis-scale`'s tests. Each check takes a fresh, empty store from `fresh` and
//! panics (as a test does) when the backend breaks a promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bridge_core::diff::Change;
use bridge_core::{FingerprintKey, SecretValue};

use super::*;
use crate::sealing::Sealer;

fn key() -> FingerprintKey {
    FingerprintKey::from_bytes([1; 32])
}

fn target(identity: &str, ops: Vec<JournalOp>) -> JournalTarget {
    JournalTarget {
        identity: identity.into(),
        spec: "render".into(),
        label: "render".into(),
        state: JournalState::Applying,
        error: None,
        untouched: Some("digest".into()),
        image: None,
        ops,
    }
}

fn op(key: &str, change: Change, after: Option<&str>, before: PreImage) -> JournalOp {
    JournalOp {
        key: key.into(),
        change,
        after: after.map(SecretValue::new),
        before,
        before_stamp: Some("stamp-0".into()),
        done: false,
    }
}

/// Runs every check, each on a store of its own.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StateBackend>>,
{
    let sealer = Sealer::generate().1;
    let store = |b| StateStore::new(b, sealer.clone());
    records_round_trip_and_deletions_forget(&store(fresh().await)).await;
    journals_keep_ops_values_and_progress(&store(fresh().await)).await;
    a_targets_image_round_trips_sealed(&store(fresh().await)).await;
    a_shared_stamp_advances_only_where_nothing_else_moved_it(&store(fresh().await)).await;
    the_first_fingerprint_key_is_kept(&store(fresh().await)).await;
    finished_and_rolled_back_journals_are_found_as_such(&store(fresh().await)).await;
    an_export_imports_whole_and_only_into_an_empty_store(
        &store(fresh().await),
        &store(fresh().await),
    )
    .await;
}

pub async fn records_round_trip_and_deletions_forget(s: &StateStore) {
    let v = SecretValue::new("v1");
    s.record(
        "gh",
        &[("A", key().fingerprint(&v), &v, Some("2026-01-01T00:00:00Z"))],
        &[],
        "now",
    )
    .await
    .unwrap();
    let r = s.records("gh").await.unwrap();
    assert_eq!(r["A"].fingerprint, key().fingerprint(&v));
    assert_eq!(r["A"].updated_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(s.recorded_value("gh", "A").await.unwrap(), Some(v.clone()));
    assert!(s.records("other").await.unwrap().is_empty());
    // A second write of the key replaces the first.
    let w = SecretValue::new("v2");
    s.record(
        "gh",
        &[("A", key().fingerprint(&w), &w, None)],
        &[],
        "later",
    )
    .await
    .unwrap();
    assert_eq!(s.recorded_value("gh", "A").await.unwrap(), Some(w));
    assert_eq!(s.records("gh").await.unwrap()["A"].updated_at, None);
    s.record("gh", &[], &["A"], "now").await.unwrap();
    assert!(s.records("gh").await.unwrap().is_empty());
    assert_eq!(s.recorded_value("gh", "A").await.unwrap(), None);
}

/// A `.env` target's image (its text before and after) comes back as it went in, sealed in
/// the backend's rows; a target without one reads as without.
pub async fn a_targets_image_round_trips_sealed(s: &StateStore) {
    let image = Image {
        before: SecretValue::new("export A=\"image-secret\"  # keep\r\n"),
        after: SecretValue::new("export A=z  # keep\r\n"),
    };
    let local = JournalTarget {
        image: Some(image.clone()),
        ..target(
            "local:/tmp/.env",
            vec![op(
                "A",
                Change::Update,
                Some("z"),
                PreImage::Value(SecretValue::new("image-secret")),
            )],
        )
    };
    let id = s
        .begin("src", "t0", &[local, target("render:srv-1", Vec::new())])
        .await
        .unwrap();
    let j = s.journal(id).await.unwrap();
    assert_eq!(j.targets[0].image.as_ref(), Some(&image));
    assert_eq!(j.targets[1].image, None);
    let row = s.backend().journal(id.0).await.unwrap().unwrap();
    let sealed = row.targets[0].image_before.as_deref().unwrap();
    assert!(!sealed.windows(12).any(|w| w == b"image-secret"));
    // Debug output of the journal never shows the text.
    assert!(!format!("{j:?}").contains("image-secret"));
}

pub async fn journals_keep_ops_values_and_progress(s: &StateStore) {
    let id = s
        .begin(
            "local:.env",
            "t0",
            &[target(
                "render:srv-1",
                vec![
                    op("A", Change::Create, Some("1"), PreImage::Absent),
                    op(
                        "B",
                        Change::Update,
                        Some("2"),
                        PreImage::Value(SecretValue::new("old")),
                    ),
                    op("C", Change::Delete, None, PreImage::Unknown),
                ],
            )],
        )
        .await
        .unwrap();
    let one = SecretValue::new("1");
    s.record(
        "render:srv-1",
        &[("C", key().fingerprint(&one), &one, Some("s"))],
        &[],
        "t",
    )
    .await
    .unwrap();
    assert_eq!(s.unfinished_on("render:srv-1").await.unwrap(), Some(id));
    assert_eq!(s.unfinished_on("render:other").await.unwrap(), None);
    let landed = [
        Landed::Written {
            key: "A",
            fingerprint: key().fingerprint(&one),
            value: &one,
        },
        Landed::Deleted { key: "C" },
    ];
    s.mark_done(id, "render:srv-1", &landed, "t1")
        .await
        .unwrap();
    // Marked done and recorded in one step: A is owned now, C forgotten.
    let records = s.records("render:srv-1").await.unwrap();
    assert_eq!(records.keys().collect::<Vec<_>>(), ["A"]);
    assert_eq!(records["A"].updated_at, None);
    let stamp = |v: &str| BTreeMap::from([("A".to_string(), v.to_string())]);
    s.set_stamps("render:srv-1", &stamp("s1"), true)
        .await
        .unwrap();
    s.set_stamps("render:srv-1", &stamp("s2"), true)
        .await
        .unwrap();
    let records = s.records("render:srv-1").await.unwrap();
    assert_eq!(records["A"].updated_at.as_deref(), Some("s1"));
    s.set_stamps("render:srv-1", &stamp("s3"), false)
        .await
        .unwrap();
    let records = s.records("render:srv-1").await.unwrap();
    assert_eq!(records["A"].updated_at.as_deref(), Some("s3"));

    let j = s.latest_unfinished().await.unwrap().unwrap();
    assert_eq!(j.id, id);
    assert_eq!(j.source, "local:.env");
    assert_eq!(j.created_at, "t0");
    let t = &j.targets[0];
    assert_eq!(t.untouched.as_deref(), Some("digest"));
    assert_eq!(
        t.ops
            .iter()
            .map(|o| (o.key.as_str(), o.done))
            .collect::<Vec<_>>(),
        [("A", true), ("B", false), ("C", true)]
    );
    assert_eq!(t.ops[1].after.as_ref().unwrap().expose(), "2");
    assert_eq!(t.ops[1].before, PreImage::Value(SecretValue::new("old")));
    assert_eq!(t.ops[2].before, PreImage::Unknown);
    assert_eq!(t.ops[2].change, Change::Delete);
    assert_eq!(t.ops[0].before_stamp.as_deref(), Some("stamp-0"));
    s.finish_target(id, "render:srv-1", JournalState::Failed, Some("boom"))
        .await
        .unwrap();
    let j = s.journal(id).await.unwrap();
    assert_eq!(j.targets[0].state, JournalState::Failed);
    assert_eq!(j.targets[0].error.as_deref(), Some("boom"));
    // Still unfinished: B was never written.
    assert_eq!(s.unfinished_on("render:srv-1").await.unwrap(), Some(id));
    s.finish(id, JournalState::Done).await.unwrap();
    assert!(s.latest_unfinished().await.unwrap().is_none());
    assert_eq!(s.unfinished_on("render:srv-1").await.unwrap(), None);
    assert_eq!(
        s.latest_for_target("render:srv-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(matches!(
        s.journal(JournalId(id.0 + 100)).await,
        Err(StoreError::NoJournal(_))
    ));
}

pub async fn a_shared_stamp_advances_only_where_nothing_else_moved_it(s: &StateStore) {
    let v = SecretValue::new("v1");
    for (target, stamp) in [
        ("netlify:site:production", "s1"),
        ("netlify:site:deploy-preview", "s0"),
        ("netlify:other:production", "s1"),
    ] {
        s.record(
            target,
            &[("T", key().fingerprint(&v), &v, Some(stamp))],
            &[],
            "now",
        )
        .await
        .unwrap();
    }
    let siblings = |t: &str| t.starts_with("netlify:site:");
    let moved = s
        .advance_shared_stamp("T", "s1", "s2", siblings)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let stamp = |records: BTreeMap<String, WriteRecord>| records["T"].updated_at.clone();
    let of = |t: &'static str| async move { stamp(s.records(t).await.unwrap()) };
    assert_eq!(of("netlify:site:production").await.as_deref(), Some("s2"));
    // Moved by someone else before our write: it keeps its stamp, and reads as such.
    assert_eq!(
        of("netlify:site:deploy-preview").await.as_deref(),
        Some("s0")
    );
    // Not a place that shares the stamp.
    assert_eq!(of("netlify:other:production").await.as_deref(), Some("s1"));
}

pub async fn the_first_fingerprint_key_is_kept(s: &StateStore) {
    s.check_fingerprint_key("aaaa").await.unwrap();
    s.check_fingerprint_key("aaaa").await.unwrap();
    let err = s.check_fingerprint_key("bbbb").await.unwrap_err();
    assert!(
        matches!(err, StoreError::FingerprintKeyMismatch { ref stored, .. } if stored == "aaaa"),
        "{err}"
    );
}

pub async fn finished_and_rolled_back_journals_are_found_as_such(s: &StateStore) {
    let first = s
        .begin(
            "src",
            "t0",
            &[target(
                "t",
                vec![op("A", Change::Create, Some("1"), PreImage::Absent)],
            )],
        )
        .await
        .unwrap();
    let second = s
        .begin(
            "src",
            "t1",
            &[target(
                "t",
                vec![op("A", Change::Update, Some("2"), PreImage::Absent)],
            )],
        )
        .await
        .unwrap();
    assert!(second > first, "journal ids increase");
    s.finish_target(second, "t", JournalState::RolledBack, None)
        .await
        .unwrap();
    s.finish(second, JournalState::RolledBack).await.unwrap();
    // The latest apply that still stands is the first one.
    assert_eq!(s.latest_for_target("t").await.unwrap().unwrap().id, first);
    let discarded = s.discard(first).await.unwrap();
    assert_eq!(discarded.id, first);
    assert_eq!(
        s.journal(first).await.unwrap().state,
        JournalState::Discarded
    );
    assert!(matches!(
        s.discard(first).await,
        Err(StoreError::Finished { .. })
    ));
    assert_eq!(s.unfinished_on("t").await.unwrap(), None);
}

pub async fn an_export_imports_whole_and_only_into_an_empty_store(
    from: &StateStore,
    to: &StateStore,
) {
    records_round_trip_and_deletions_forget(from).await;
    let v = SecretValue::new("kept");
    from.record(
        "gh",
        &[("K", key().fingerprint(&v), &v, Some("s"))],
        &[],
        "t",
    )
    .await
    .unwrap();
    from.check_fingerprint_key("abcd").await.unwrap();
    let id = from
        .begin(
            "src",
            "t0",
            &[JournalTarget {
                image: Some(Image {
                    before: SecretValue::new(""),
                    after: SecretValue::new("K=kept\n"),
                }),
                ..target(
                    "gh",
                    vec![op("K", Change::Create, Some("kept"), PreImage::Absent)],
                )
            }],
        )
        .await
        .unwrap();
    let dump = from.backend().export().await.unwrap();
    assert_eq!(dump.records.len(), 1);
    assert_eq!(dump.journals.len(), 1);
    to.backend().import(dump.clone()).await.unwrap();
    assert_eq!(to.recorded_value("gh", "K").await.unwrap(), Some(v));
    let imported = to.journal(id).await.unwrap();
    assert_eq!(imported.targets[0].ops[0].key, "K");
    let image = imported.targets[0].image.as_ref().unwrap();
    assert_eq!(image.after.expose(), "K=kept\n");
    assert_eq!(to.unfinished_on("gh").await.unwrap(), Some(id));
    to.check_fingerprint_key("abcd").await.unwrap();
    // A new journal after an import follows the imported ids.
    let next = to
        .begin("src", "t1", &[target("gh", vec![])])
        .await
        .unwrap();
    assert!(next > id, "{next} after {id}");
    // Importing again would mix histories.
    assert!(to.backend().import(dump).await.is_err());
}

/// `a` and `b` open one store twice (two processes, two machines): each sees the other's
/// writes and journals.
pub async fn two_handles_share_one_history(a: Arc<dyn StateBackend>, b: Arc<dyn StateBackend>) {
    let sealer = Sealer::generate().1;
    let a = StateStore::new(a, sealer.clone());
    let b = StateStore::new(b, sealer);
    let v = SecretValue::new("shared");
    a.record(
        "t",
        &[("K", key().fingerprint(&v), &v, Some("s"))],
        &[],
        "now",
    )
    .await
    .unwrap();
    assert_eq!(b.recorded_value("t", "K").await.unwrap(), Some(v));
    let id = b
        .begin(
            "src",
            "t0",
            &[target(
                "t",
                vec![op("K", Change::Update, Some("x"), PreImage::Absent)],
            )],
        )
        .await
        .unwrap();
    assert_eq!(a.unfinished_on("t").await.unwrap(), Some(id));
    a.discard(id).await.unwrap();
    assert_eq!(b.unfinished_on("t").await.unwrap(), None);
}
