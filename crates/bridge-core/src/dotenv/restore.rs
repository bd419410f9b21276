//! Undoing an edit of a `.env` file byte for byte.
//!
//! A rollback that wrote the old *values* back would re-render their lines: `A="x y"` could
//! come back as `A='x y'`, `URL=${HOST}/x` as the literal it expanded to, a deleted line at
//! the end of the file. [`restore_edits`] instead puts back the lines themselves, from the
//! text the edit started from, wherever the file still holds what the edit wrote there; a
//! key whose lines were changed since is undone by value, as before.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use super::edit::{Edit, EditError, apply_edits, bom_len, whole_lines};
use super::parse::{Detailed, ParseOptions, parse_detailed};

/// Undoes an edit: `before` is the text the edit started from, `written` the text it wrote,
/// `current` what the file holds now, and `edits` the same undo as values (what
/// [`apply_edits`] on `current` would write without `before`).
///
/// The result is `current` where every key whose lines the edit changed, and that still
/// reads as the edit wrote them, has its lines back as they were in `before`, byte for byte:
/// a rewritten line as it was (quoting, `export `, comment, a `${REF}` that the edit had made
/// literal), a created line gone, a deleted one back in its place — after the comments and
/// blank lines that preceded it, when they are still there, else right after the assignment
/// before it. When the file holds exactly what the edit wrote, the result is `before`.
///
/// A key changed since the edit (its lines are not the edit's) is undone by value, and the
/// result always defines what `apply_edits(current, edits)` would: a key whose restored
/// lines would define anything else (a `${REF}` put back whose target was changed since) is
/// undone by value too, and should that not settle it, the result is that text.
///
/// # Errors
///
/// Those of [`apply_edits`] on `current`.
pub fn restore_edits(
    before: &str,
    written: &str,
    current: &str,
    edits: &[Edit<'_>],
    options: &ParseOptions<'_>,
) -> Result<String, EditError> {
    let by_value = apply_edits(current, edits, options)?;
    let defines = |text: &str| parse_detailed(text, options).map(|p| p.vars()).ok();
    let Some(intended) = defines(&by_value) else {
        return Ok(by_value);
    };
    // Keys whose lines are not put back, though the edit changed them.
    let mut by_value_only: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let merged = if current == written && by_value_only.is_empty() {
            Some(before.to_owned())
        } else {
            merge(before, written, current, &by_value_only, options)
        };
        let Some(merged) = merged else {
            break;
        };
        // Keys changed since the edit get their values; restored lines already have theirs,
        // and `apply_edits` leaves a line alone whose value is already the one to set.
        let Some(candidate) = apply_edits(&merged, edits, options).ok() else {
            break;
        };
        let Some(got) = defines(&candidate) else {
            break;
        };
        let wrong: Vec<String> = intended
            .iter()
            .filter(|(key, value)| got.get(key) != Some(*value))
            .map(|(key, _)| key.clone())
            .chain(
                got.keys()
                    .filter(|key| !intended.contains_key(key))
                    .map(str::to_owned),
            )
            .collect();
        if wrong.is_empty() {
            return Ok(candidate);
        }
        let known = by_value_only.len();
        by_value_only.extend(wrong);
        if by_value_only.len() == known {
            break;
        }
    }
    Ok(by_value)
}

/// How many times a merge is tried, each time leaving to be undone by value the keys whose
/// restored lines defined the wrong value. Most need one.
const MAX_ROUNDS: usize = 4;

/// Whole-line ranges of each key's definitions, in file order.
fn blocks<'t>(text: &str, parsed: &'t Detailed) -> HashMap<&'t str, Vec<Range<usize>>> {
    let mut out: HashMap<&str, Vec<Range<usize>>> = HashMap::new();
    for entry in &parsed.entries {
        out.entry(entry.key.as_str())
            .or_default()
            .push(whole_lines(text, &entry.span));
    }
    out
}

fn block_text(text: &str, ranges: Option<&Vec<Range<usize>>>) -> String {
    ranges
        .into_iter()
        .flatten()
        .map(|r| &text[r.clone()])
        .collect()
}

/// `current` with the lines of `before` put back for every key whose lines read in
/// `current` as in `written` and differ from `before`, but those in `by_value_only`. `None`
/// when a text does not parse or the pieces would not fit together; the caller then undoes
/// by value.
fn merge(
    before: &str,
    written: &str,
    current: &str,
    by_value_only: &BTreeSet<String>,
    options: &ParseOptions<'_>,
) -> Option<String> {
    let (b, w, c) = (
        parse_detailed(before, options).ok()?,
        parse_detailed(written, options).ok()?,
        parse_detailed(current, options).ok()?,
    );
    let (bb, wb, cb) = (blocks(before, &b), blocks(written, &w), blocks(current, &c));
    let keys: BTreeSet<&str> = bb.keys().chain(wb.keys()).copied().collect();
    let mut replacements: Vec<(Range<usize>, String)> = Vec::new();
    // Keys whose definitions the edit deleted and that come back.
    let mut reinsert: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let (old, new, now) = (bb.get(key), wb.get(key), cb.get(key));
        let old_text = block_text(before, old);
        let new_text = block_text(written, new);
        if old_text == new_text
            || block_text(current, now) != new_text
            || by_value_only.contains(key)
        {
            // Untouched by the edit, changed since, or found to define the wrong value: not
            // ours to put back.
            continue;
        }
        let old = old.map_or(&[][..], Vec::as_slice);
        let now = now.map_or(&[][..], Vec::as_slice);
        if old.len() == now.len() {
            for (o, n) in old.iter().zip(now) {
                replacements.push((n.clone(), before[o.clone()].to_owned()));
            }
        } else if old.is_empty() {
            replacements.extend(now.iter().map(|n| (n.clone(), String::new())));
        } else if now.is_empty() {
            reinsert.insert(key);
        }
    }
    if !reinsert.is_empty() {
        replacements.extend(reinsertions(before, &b, current, &cb, &reinsert));
    }
    splice_checked(current, replacements)
}

/// Where each definition in `reinsert` goes back into `current`, as empty ranges with their
/// text. Walking `before` in order, every assignment has a place in `current`: its own, if
/// it is there, else just after the place of the one before it and the comments and blank
/// lines that separated them, when `current` still has those there.
fn reinsertions(
    before: &str,
    b: &Detailed,
    current: &str,
    cb: &HashMap<&str, Vec<Range<usize>>>,
    reinsert: &BTreeSet<&str>,
) -> Vec<(Range<usize>, String)> {
    let eol = if current.contains("\r\n") || (current.is_empty() && before.contains("\r\n")) {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut place = bom_len(current);
    let mut prev_end = bom_len(before);
    for entry in &b.entries {
        let occurrence = seen.entry(entry.key.as_str()).or_default();
        let own = whole_lines(before, &entry.span);
        let gap = &before[prev_end..own.start];
        prev_end = own.end;
        if let Some(there) = cb.get(entry.key.as_str()).and_then(|v| v.get(*occurrence)) {
            place = there.end;
        } else {
            if current[place..].starts_with(gap) {
                place += gap.len();
            }
            if reinsert.contains(entry.key.as_str()) {
                let mut text = String::new();
                // Put back at the end of a file whose last line has no terminator.
                if place == current.len() && place > bom_len(current) && !current.ends_with('\n') {
                    text.push_str(eol);
                }
                text.push_str(&before[own.clone()]);
                if place < current.len() && !text.ends_with('\n') {
                    text.push_str(eol);
                }
                out.push((place..place, text));
            }
        }
        *occurrence += 1;
    }
    out
}

/// `text` with each range replaced, or `None` when two ranges overlap. Insertions (empty
/// ranges) at one place keep their order and go before a replacement starting there.
fn splice_checked(text: &str, mut replacements: Vec<(Range<usize>, String)>) -> Option<String> {
    replacements.sort_by_key(|(range, _)| (range.start, range.end));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (range, with) in replacements {
        if range.start < copied || range.end > text.len() {
            return None;
        }
        out.push_str(text.get(copied..range.start)?);
        out.push_str(&with);
        copied = range.end;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretValue;

    fn opts() -> ParseOptions<'static> {
        ParseOptions::default()
    }

    /// `(key, Some(value))` sets, `(key, None)` removes.
    fn edits<'a>(list: &'a [(&'a str, Option<SecretValue>)]) -> Vec<Edit<'a>> {
        list.iter()
            .map(|(key, value)| match value {
                Some(value) => Edit::Set { key, value },
                None => Edit::Remove { key },
            })
            .collect()
    }

    fn v(text: &str) -> Option<SecretValue> {
        Some(SecretValue::new(text))
    }

    const BEFORE: &str = concat!(
        "# app\n",
        "export A=\"x y\"  # keep\n",
        "B='single'\n",
        "C=${A}/path\n",
        "\n",
        "# going away\n",
        "GONE=\"bye\" # old\n",
        "D=plain\n",
        "E=\n",
    );

    /// The apply: A, B and E change, GONE goes, NEW comes; C refers to A, so it is made
    /// literal to keep its value.
    fn apply() -> (String, Vec<(&'static str, Option<SecretValue>)>) {
        let forward = [
            ("A", v("z")),
            ("B", v("double")),
            ("E", v("now set")),
            ("GONE", None),
            ("NEW", v("fresh")),
        ];
        let written = apply_edits(BEFORE, &edits(&forward), &opts()).expect("apply");
        // What a rollback writes by value: every old value back.
        let undo = vec![
            ("A", v("x y")),
            ("B", v("single")),
            ("E", v("")),
            ("GONE", v("bye")),
            ("NEW", None),
        ];
        (written, undo)
    }

    #[test]
    fn an_unchanged_file_gets_its_own_bytes_back() {
        let (written, undo) = apply();
        assert!(written.contains("C='x y/path'"), "{written}");
        let by_value = apply_edits(&written, &edits(&undo), &opts()).expect("by value");
        assert_ne!(by_value, BEFORE, "by value the bytes differ");
        let got = restore_edits(BEFORE, &written, &written, &edits(&undo), &opts()).expect("ok");
        assert_eq!(got, BEFORE);
    }

    #[test]
    fn lines_changed_elsewhere_stay_and_deleted_lines_return_in_place() {
        let (written, undo) = apply();
        // Someone adds a line at the top and changes D since the apply: neither is ours.
        let current = format!(
            "# added by hand\n{}",
            written.replace("D=plain", "D=edited")
        );
        let got = restore_edits(BEFORE, &written, &current, &edits(&undo), &opts()).expect("ok");
        let expected = format!("# added by hand\n{}", BEFORE.replace("D=plain", "D=edited"));
        assert_eq!(got, expected);
    }

    #[test]
    fn a_key_changed_since_is_undone_by_value() {
        let (written, undo) = apply();
        let current = written.replace("B=double", "B=\"by hand\" # mine");
        let got = restore_edits(BEFORE, &written, &current, &edits(&undo), &opts()).expect("ok");
        // B gets its old value in its current line's form; everything else its old bytes.
        let expected = BEFORE.replace("B='single'", "B=single # mine");
        assert_eq!(got, expected);
    }

    #[test]
    fn a_reference_whose_target_changed_since_is_not_put_back() {
        let before = "A=1\nC=${A}/p\n";
        let written = "A=2\nC=1/p\n";
        assert_eq!(
            apply_edits(before, &edits(&[("A", v("2"))]), &opts()).expect("apply"),
            written
        );
        // A changed since: restoring `C=${A}/p` would change C's value with it.
        let current = "A=3\nC=1/p\n";
        let undo = [("A", v("1"))];
        let got = restore_edits(before, written, current, &edits(&undo), &opts()).expect("ok");
        let by_value = apply_edits(current, &edits(&undo), &opts()).expect("by value");
        assert_eq!(got, by_value);
        assert_eq!(got, "A=1\nC=1/p\n");
    }

    #[test]
    fn only_the_key_whose_reference_would_change_value_is_undone_by_value() {
        let before = "A=1\nB='b'\nC=${A}/p\n";
        let forward = [("A", v("2")), ("B", v("x"))];
        let written = apply_edits(before, &edits(&forward), &opts()).expect("apply");
        assert_eq!(written, "A=2\nB=x\nC=1/p\n");
        let current = written.replace("A=2", "A=3");
        let undo = [("A", v("1")), ("B", v("b"))];
        let got = restore_edits(before, &written, &current, &edits(&undo), &opts()).expect("ok");
        // B has its bytes back; A (changed since) its value; C stays literal, keeping its.
        assert_eq!(got, "A=1\nB='b'\nC=1/p\n");
    }

    #[test]
    fn deleted_lines_come_back_in_order_between_their_comments() {
        let before = "P=1\n# one\nX=1\n# two\nY=2\nQ=3\n";
        let written =
            apply_edits(before, &edits(&[("X", None), ("Y", None)]), &opts()).expect("apply");
        assert_eq!(written, "P=1\n# one\n# two\nQ=3\n");
        let current = format!("{written}R=added\n");
        let undo = [("X", v("1")), ("Y", v("2"))];
        let got = restore_edits(before, &written, &current, &edits(&undo), &opts()).expect("ok");
        assert_eq!(got, format!("{before}R=added\n"));
    }

    #[test]
    fn a_file_without_a_final_newline_is_restored_exactly() {
        let before = "A=1\nB=2";
        let written = apply_edits(before, &edits(&[("N", v("3"))]), &opts()).expect("apply");
        assert_eq!(written, "A=1\nB=2\nN=3\n");
        let undo = [("N", None)];
        for current in [written.clone(), format!("# x\n{written}")] {
            let got =
                restore_edits(before, &written, &current, &edits(&undo), &opts()).expect("ok");
            let expected = if current.starts_with('#') {
                format!("# x\n{before}")
            } else {
                before.to_owned()
            };
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn crlf_files_keep_their_line_endings() {
        let before = "A='a'\r\nGONE=\"g\"\r\nB=b\r\n";
        let written =
            apply_edits(before, &edits(&[("GONE", None), ("A", v("z"))]), &opts()).expect("apply");
        let current = format!("# x\r\n{written}");
        let undo = [("GONE", v("g")), ("A", v("a"))];
        let got = restore_edits(before, &written, &current, &edits(&undo), &opts()).expect("ok");
        assert_eq!(got, format!("# x\r\n{before}"));
    }
}
