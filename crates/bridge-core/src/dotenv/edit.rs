//! In-place editing of an existing `.env` file.
//!
//! A sync into a hand-maintained file must look like a careful human edit: comments, blank
//! lines, key order, quoting and line endings of every line it does not need to touch stay
//! byte for byte. So [`apply_edits`] splices the changed assignments into the original text
//! instead of re-rendering it, and keeps a trailing `# comment` of a line it rewrites.
//!
//! Expansion makes this subtle: `URL=${HOST}/x` changes meaning when `HOST` is edited or
//! removed. The intended result is the original variables with the edits applied, nothing
//! more, so such a line is rewritten as the literal value it had. The parser reports which
//! entry each reference resolved to, which finds those lines up front; the result is then
//! re-parsed and compared with the intended set, repairing any difference, as a safety net.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::parse::{Detailed, Entry, ParseError, ParseOptions, parse_detailed};
use super::render::{RenderError, check_value, render_line, render_line_with};
use crate::envset::EnvSet;
use crate::secret::SecretValue;

/// One change to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Define `key` as `value`: in place if it is defined already, else at the end.
    Set {
        key: &'a str,
        value: &'a SecretValue,
    },
    /// Delete every definition of `key`.
    Remove { key: &'a str },
}

/// Why a file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The original does not parse (or, a bug, the result would not).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A value to write, or one that must be rewritten literally, has no form that Bridge,
    /// python-dotenv and Node's dotenv read alike. Nothing was changed.
    #[error(transparent)]
    Unwritable(#[from] RenderError),
}

/// How many rounds of re-parse-and-repair to allow. The first round should already match;
/// each repair makes the lines it touches literal, so a second one settles anything left.
const MAX_ROUNDS: usize = 4;

/// Applies `edits` to `original`, changing only the lines they require.
///
/// - `Set` of an existing key rewrites its last definition (keeping `export ` and a trailing
///   `# comment`), unless the value is already the same; `Set` of a new key appends a line,
///   using the file's line ending (that of its first line).
/// - `Remove` deletes every definition of the key, whole lines with their terminators.
/// - A line whose value came from a reference to an edited key is rewritten as its literal
///   value, so it keeps the value it had.
///
/// Later edits of the same key override earlier ones.
///
/// # Errors
///
/// [`EditError::Parse`] for those of [`parse`](fn@super::parse) on `original` (or, which should
/// not happen, a result that does not parse back to the intended variables);
/// [`EditError::Unwritable`] for a value that cannot be written alike for every parser.
pub fn apply_edits(
    original: &str,
    edits: &[Edit<'_>],
    options: &ParseOptions<'_>,
) -> Result<String, EditError> {
    let before = parse_detailed(original, options)?;
    let vars = before.vars();

    // The net effect on each key: `Some(value)` to set, `None` to remove.
    let mut ops: HashMap<&str, Option<&SecretValue>> = HashMap::new();
    // Keys to append, in the order they were first set.
    let mut new_keys: Vec<&str> = Vec::new();
    for edit in edits {
        let (key, op) = match *edit {
            Edit::Set { key, value } => (key, Some(value)),
            Edit::Remove { key } => (key, None),
        };
        if ops.insert(key, op).is_none() && !vars.contains_key(key) {
            new_keys.push(key);
        }
    }
    // Refuse a value that cannot be written alike before anything is worked out.
    let mut sets: Vec<(&str, &SecretValue)> = ops
        .iter()
        .filter_map(|(&key, op)| Some((key, (*op)?)))
        .collect();
    sets.sort_unstable_by_key(|&(key, _)| key);
    for (key, value) in sets {
        check_value(value.expose()).map_err(|reason| RenderError {
            key: key.to_owned(),
            reason,
        })?;
    }
    let mut intended = vars.clone();
    for (&key, op) in &ops {
        match op {
            Some(value) => intended.insert(key, (*value).clone()),
            None => intended.remove(key),
        };
    }

    let eol = line_ending(original);
    let mut text = splice(original, &edits_in_place(original, &before, &vars, &ops)?);
    for key in new_keys {
        if let Some(Some(value)) = ops.get(key) {
            append(&mut text, &render_line(key, value.expose())?, eol);
        }
    }

    let mut mismatch = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let after = parse_detailed(&text, options).map_err(|e| ParseError {
            message: format!(
                "after applying the edits the file no longer parses: {}",
                e.message
            ),
            ..e
        })?;
        let (repairs, missing) = repairs(&text, &after, &intended)?;
        if repairs.is_empty() && missing.is_empty() {
            return Ok(text);
        }
        mismatch = mismatched_keys(&after, &intended);
        text = splice(&text, &repairs);
        for key in missing {
            if let Some(value) = intended.get(key) {
                append(&mut text, &render_line(key, value.expose())?, eol);
            }
        }
    }
    Err(EditError::Parse(ParseError {
        line: 1,
        column: 1,
        message: format!(
            "could not edit the file so that it defines the intended values (of {}); \
             this is a bug in Bridge",
            mismatch.join(", ")
        ),
    }))
}

/// The replacements that carry out `ops` on `original`, and keep the values of lines that
/// refer to what they change.
fn edits_in_place(
    original: &str,
    before: &Detailed,
    vars: &EnvSet,
    ops: &HashMap<&str, Option<&SecretValue>>,
) -> Result<Vec<(Range<usize>, String)>, RenderError> {
    let count = before.entries.len();
    // `changed[i]`: entry `i` is removed or gets a new value; `removed[i]`: the former.
    let mut changed = vec![false; count];
    let mut removed = vec![false; count];
    let mut replacements = Vec::new();
    for (i, entry) in before.entries.iter().enumerate() {
        match ops.get(entry.key.as_str()) {
            Some(None) => {
                changed[i] = true;
                removed[i] = true;
                replacements.push((whole_lines(original, &entry.span), String::new()));
            }
            Some(Some(value)) if !before.superseded[i] && vars.get(&entry.key) != Some(*value) => {
                changed[i] = true;
                let line = assignment(original, before, i, value.expose())?;
                replacements.push((entry.span.clone(), line));
            }
            _ => {}
        }
    }
    let mut referenced = vec![false; count];
    for &(_, j) in &before.refs {
        referenced[j] = true;
    }
    // A line written literally has the value it had whatever it referred to, so lines that
    // refer to *it* need nothing: no need to follow references further. A definition that
    // is overridden later and that nothing refers to may change value unobserved, so it is
    // left alone, unless what it refers to is removed (the reference would not resolve).
    let mut literal = vec![false; count];
    for &(i, j) in &before.refs {
        let unobserved = before.superseded[i] && !referenced[i] && !removed[j];
        if changed[j] && !changed[i] && !literal[i] && !unobserved {
            literal[i] = true;
            let line = assignment(original, before, i, before.values[i].expose())?;
            replacements.push((before.entries[i].span.clone(), line));
        }
    }
    Ok(replacements)
}

/// Replacements that make `text` (parsed as `after`) define exactly `intended`, and the
/// intended keys it lacks altogether.
type Repairs<'i> = (Vec<(Range<usize>, String)>, Vec<&'i str>);

fn repairs<'i>(
    text: &str,
    after: &Detailed,
    intended: &'i EnvSet,
) -> Result<Repairs<'i>, RenderError> {
    let mut replacements = Vec::new();
    for (i, entry) in after.entries.iter().enumerate() {
        match intended.get(&entry.key) {
            None => replacements.push((whole_lines(text, &entry.span), String::new())),
            Some(value) if !after.superseded[i] && after.values[i] != *value => {
                let line = assignment(text, after, i, value.expose())?;
                replacements.push((entry.span.clone(), line));
            }
            Some(_) => {}
        }
    }
    let present: HashSet<&str> = after.entries.iter().map(|e| e.key.as_str()).collect();
    let missing = intended
        .keys()
        .filter(|key| !present.contains(key))
        .collect();
    Ok((replacements, missing))
}

fn mismatched_keys(after: &Detailed, intended: &EnvSet) -> Vec<String> {
    let got = after.vars();
    let mut keys: Vec<String> = intended
        .iter()
        .filter(|(key, value)| got.get(key) != Some(value))
        .map(|(key, _)| format!("`{key}`"))
        .collect();
    keys.extend(
        got.keys()
            .filter(|key| !intended.contains_key(key))
            .map(|key| format!("`{key}`")),
    );
    keys
}

/// Entry `i` of `parsed` (a parse of `text`) rewritten to define `value` literally, keeping
/// its `export ` and a trailing comment.
fn assignment(text: &str, parsed: &Detailed, i: usize, value: &str) -> Result<String, RenderError> {
    let entry: &Entry = &parsed.entries[i];
    let mut line = String::new();
    if entry.exported {
        line.push_str("export ");
    }
    let tail = &text[parsed.value_ends[i]..entry.span.end];
    let comment = tail.contains('#');
    // An empty value before a comment is written `''`: python-dotenv reads `K= # c` as `# c`.
    line.push_str(&render_line_with(&entry.key, value, comment)?);
    if comment {
        // A `#` only starts a comment after a blank, and a bare value may now precede it.
        if !tail.starts_with([' ', '\t']) {
            line.push(' ');
        }
        line.push_str(tail);
    }
    Ok(line)
}

/// The whole lines `span` covers, with the line terminator after them.
pub(super) fn whole_lines(text: &str, span: &Range<usize>) -> Range<usize> {
    let body_start = bom_len(text);
    let bytes = text.as_bytes();
    let start = bytes[body_start..span.start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body_start, |i| body_start + i + 1);
    let rest = &text[span.end..];
    let end = if rest.starts_with("\r\n") {
        span.end + 2
    } else if rest.starts_with('\n') {
        span.end + 1
    } else {
        span.end
    };
    start..end
}

/// `text` with each range replaced. The ranges are disjoint (each belongs to one entry).
fn splice(text: &str, replacements: &[(Range<usize>, String)]) -> String {
    let mut order: Vec<&(Range<usize>, String)> = replacements.iter().collect();
    order.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (range, with) in order {
        out.push_str(&text[copied..range.start]);
        out.push_str(with);
        copied = range.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Appends an assignment as a new line, terminating the last line first if needed.
fn append(text: &mut String, line: &str, eol: &str) {
    if text.len() > bom_len(text) && !text.ends_with('\n') {
        text.push_str(eol);
    }
    text.push_str(line);
    text.push_str(eol);
}

/// The file's line ending, judged by its first line: `\r\n` or `\n`.
fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    }
}

pub(super) fn bom_len(text: &str) -> usize {
    if text.starts_with('\u{feff}') { 3 } else { 0 }
}
