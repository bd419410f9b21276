//! `env rollback` of a `.env` target: the file gets its own bytes back, not a re-rendering
//! of its old values.

use crate::sandbox::Sandbox;

/// The target as it was: quoting, `export `, comments, references, an empty value, and a
/// line the sync deletes between comments.
const TARGET: &str = concat!(
    "# the target\n",
    "export A=\"x y\"  # keep\n",
    "B='single'\n",
    "C=${A}/path\n",
    "F=${A}-f\n",
    "D=\"plain\"\n",
    "E=\n",
    "\n",
    "# going away\n",
    "GONE=\"bye\" # old\n",
    "Z=last\n",
);

/// What the sync brings: A, B, C, D and E change, GONE goes, NEW comes; F keeps its value,
/// which the sync writes literally since A, which it refers to, changes.
const SOURCE: &str = concat!(
    "A=changed\n",
    "B=double\n",
    "C=other/path\n",
    "F='x y-f'\n",
    "D=plain2\n",
    "E=now-set\n",
    "Z=last\n",
    "NEW=fresh\n",
);

fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.file(".env", SOURCE);
    s.file("t.env", TARGET);
    s
}

fn sync(s: &Sandbox) -> String {
    let r = s.run(&[
        "env",
        "sync",
        "--from",
        "local:.env",
        "--target",
        "local:t.env",
        "--allow-deletions",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let after = s.read("t.env");
    assert!(!after.contains("GONE"), "{after}");
    assert!(after.contains("NEW=fresh"), "{after}");
    assert!(!after.contains("${A}"), "{after}");
    after
}

fn rollback(s: &Sandbox) {
    let r = s.run(&["env", "rollback", "--target", "local:t.env", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn rolling_back_a_local_file_restores_its_own_bytes() {
    let s = sandbox();
    let synced = sync(&s);
    rollback(&s);
    assert_eq!(s.read("t.env"), TARGET);
    // The rollback is an apply too: undoing it gives back the synced bytes.
    rollback(&s);
    assert_eq!(s.read("t.env"), synced);
}

/// A line changed by hand since the sync is not the sync's to put back: it gets its old
/// value, in the line's current form, as before. Lines added by hand stay.
#[test]
fn a_line_changed_since_the_sync_is_rolled_back_by_value() {
    let s = sandbox();
    let synced = sync(&s);
    let edited = format!(
        "# added by hand\n{}",
        synced.replace("D=plain2", "D=by-hand # mine")
    );
    s.file("t.env", &edited);
    rollback(&s);
    let expected = format!(
        "# added by hand\n{}",
        TARGET.replace("D=\"plain\"", "D=plain # mine")
    );
    assert_eq!(s.read("t.env"), expected);
}
