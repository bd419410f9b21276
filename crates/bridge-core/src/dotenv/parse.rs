//! The `.env` parser.
//!
//! It works on bytes: every character with a meaning in the grammar is ASCII, and UTF-8 never
//! uses ASCII bytes inside a multi-byte character, so byte offsets of those characters are
//! always char boundaries. Most lines of a real file are `KEY=plain`, which takes a fast path
//! that allocates just the key and the value; escapes and `$` expansion take the slow path.
//! Line numbers of entries are counted as we go, but columns (which count chars, not bytes)
//! are only worked out when a warning or an error needs one.
//!
//! Duplicate keys are found after the scan by one sort of the entries by key, which the
//! result's `BTreeMap` needs anyway; a lookup table of keys is only built for files that use
//! `$` references. Together these keep the cost per line close to its three allocations (the
//! entry's key, the value, the set's key).
//!
//! Besides the public [`Parsed`], the parser can report which earlier entry each `$`
//! reference resolved to ([`Detailed`]): `apply_edits` uses that to find the lines whose
//! value would change under an edit of a key they refer to.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use zeroize::Zeroizing;

use crate::envset::EnvSet;
use crate::secret::SecretValue;

/// How [`parse`] resolves `$NAME` references.
#[derive(Clone, Copy, Default)]
pub struct ParseOptions<'a> {
    /// Consulted for `$VAR` references not defined earlier in the file. `None` (the default)
    /// means references resolve only against keys defined earlier in the same file (so a sync
    /// never depends on the host it runs on). The CLI sets this for `--interpolate-env`.
    // Spelled out rather than aliased so callers see the signature they must provide.
    #[allow(clippy::type_complexity)]
    pub env_fallback: Option<&'a dyn Fn(&str) -> Option<String>>,
}

impl fmt::Debug for ParseOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fallback = if self.env_fallback.is_some() {
            "Some(<fn>)"
        } else {
            "None"
        };
        f.debug_struct("ParseOptions")
            .field("env_fallback", &format_args!("{fallback}"))
            .finish()
    }
}

/// What a file defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The variables; when a key is defined twice, the last definition wins.
    pub vars: EnvSet,
    /// Every assignment in file order, duplicates included.
    pub entries: Vec<Entry>,
    /// Things worth telling the user that do not stop the parse, e.g. duplicate keys.
    pub warnings: Vec<Warning>,
}

/// One assignment as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// 1-based line on which the assignment starts.
    pub line: usize,
    /// Byte range of the whole assignment in the parsed text: from its first non-blank
    /// character (`export ` included) to the end of its value or trailing comment, excluding
    /// the line terminator. A multi-line value is included whole.
    pub span: Range<usize>,
    pub exported: bool,
}

/// A problem that does not stop the parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Why a file could not be parsed. `line` and `column` are 1-based and `column` counts
/// chars; the caller prefixes the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Whether `key` is a valid key name: `[A-Za-z_][A-Za-z0-9_.-]*`.
#[must_use]
pub fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.first().is_some_and(|&b| is_key_start(b)) && bytes.iter().all(|&b| is_key_char(b))
}

/// Parses a `.env` file. See the [module docs](super) for the dialect.
///
/// # Errors
///
/// A [`ParseError`] at the first thing that does not fit the dialect: an invalid key, a
/// missing `=`, an unterminated quote or `${`, text after a closing quote, or a reference to
/// a name that is neither defined earlier in the file nor supplied by `env_fallback`.
pub fn parse(text: &str, options: &ParseOptions<'_>) -> Result<Parsed, ParseError> {
    Ok(parse_detailed(text, options)?.into_parsed())
}

/// The parse with the per-entry facts [`Parsed`] does not expose.
#[derive(Debug)]
pub(super) struct Detailed {
    pub(super) entries: Vec<Entry>,
    /// Value of `entries[i]` as parsed at that point of the file.
    pub(super) values: Vec<SecretValue>,
    /// Whether a later definition of the same key overrides `entries[i]`.
    pub(super) superseded: Vec<bool>,
    /// The entries not superseded, in key order.
    live: Vec<usize>,
    /// Where the value of `entries[i]` ends (after a closing quote): what follows up to the
    /// end of the span is blanks and maybe a `# comment`, which an edit keeps.
    pub(super) value_ends: Vec<usize>,
    /// `(i, j)`: a reference in the value of `entries[i]` resolved to `entries[j]`.
    pub(super) refs: Vec<(usize, usize)>,
    pub(super) warnings: Vec<Warning>,
}

impl Detailed {
    // Both build the set from `live`, which is in key order: the `BTreeMap` then finds its
    // input already sorted instead of sorting it again.

    pub(super) fn vars(&self) -> EnvSet {
        self.live
            .iter()
            .map(|&i| (self.entries[i].key.clone(), self.values[i].clone()))
            .collect()
    }

    pub(super) fn into_parsed(self) -> Parsed {
        let mut values = self.values;
        let vars = self
            .live
            .iter()
            .map(|&i| (self.entries[i].key.clone(), std::mem::take(&mut values[i])))
            .collect();
        Parsed {
            vars,
            entries: self.entries,
            warnings: self.warnings,
        }
    }
}

pub(super) fn parse_detailed(
    text: &str,
    options: &ParseOptions<'_>,
) -> Result<Detailed, ParseError> {
    let body_start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    // Most lines are assignments: sizing for all of them up front beats growing the vectors.
    // (Capped, so that a text of nothing but newlines does not reserve many times its size.)
    let lines = (1 + count_newlines(text.as_bytes())).min(text.len() / 8 + 1);
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: body_start,
        line: 1,
        body_start,
        options,
        index: HashMap::default(),
        indexed: 0,
        out: Detailed {
            entries: Vec::with_capacity(lines),
            values: Vec::with_capacity(lines),
            superseded: Vec::new(),
            live: Vec::new(),
            value_ends: Vec::with_capacity(lines),
            refs: Vec::new(),
            warnings: Vec::new(),
        },
    };
    // No environment can hold a NUL (variables are C strings): a platform would cut the
    // value there or refuse it. One scan up front, so no value carries one on.
    if let Some(at) = parser.bytes.iter().position(|&b| b == 0) {
        return Err(parser.error_at(
            at,
            "a NUL byte: no environment variable can hold one; remove it".to_owned(),
        ));
    }
    // A carriage return not followed by a line feed ends the line for python-dotenv and
    // Node's dotenv (and for an editor showing old Mac line endings), while a line feed is
    // what ends one here: the same file would define other keys. Refused rather than guessed.
    if let Some(at) = lone_carriage_return(parser.bytes) {
        return Err(parser.error_at(
            at,
            "a carriage return without a line feed: other dotenv parsers end the line here; \
             use LF or CRLF line endings, or write `\\r` inside double quotes"
                .to_owned(),
        ));
    }
    parser.run()?;
    parser.find_duplicates()?;
    Ok(parser.out)
}

/// Offset of the first `\r` that is not the start of a `\r\n`.
fn lone_carriage_return(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'\r') {
        let at = from + at;
        if bytes.get(at + 1) != Some(&b'\n') {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

pub(super) fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(super) fn is_key_char(b: u8) -> bool {
    KEY_CHARS[usize::from(b)]
}

/// `is_key_char` as a table: keys are scanned a byte at a time on every line.
static KEY_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-';
        b += 1;
    }
    table
};

// Word-at-a-time search ("SWAR"): eight bytes are tested for a given byte value with a few
// integer operations, which makes finding the end of a line several times faster than a
// byte loop, with no `unsafe` and no dependency.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` equals `byte`. (The classic test can misreport a byte *after*
/// a match, never the absence of one, so "any" is exact.)
fn has_byte(word: u64, byte: u8) -> bool {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// Offset of the first byte at or after `from` that is one of `set`, or `bytes.len()`.
fn find_any<const N: usize>(bytes: &[u8], from: usize, set: [u8; N]) -> usize {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*chunk);
        if set.iter().any(|&b| has_byte(word, b)) {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !set.contains(&bytes[i]) {
        i += 1;
    }
    i
}

fn count_newlines(bytes: &[u8]) -> usize {
    let (chunks, rest) = bytes.as_chunks::<8>();
    let mut count = 0;
    for chunk in chunks {
        // Exact count of zero bytes in `x`: no borrow can cross bytes here.
        let x = u64::from_le_bytes(*chunk) ^ (ONES * u64::from(b'\n'));
        let t = ((x & !HIGHS) + !HIGHS) | x;
        count += (!t & HIGHS).count_ones() as usize;
    }
    count + rest.iter().filter(|&&b| b == b'\n').count()
}

/// Characters of a `$NAME` reference after the first (which is a key start character).
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

const INVALID_KEY: &str = "invalid key: a key starts with a letter or `_` and contains only \
                           letters, digits, `_`, `.` and `-`";

/// In a file full of references the index hashes every key, and SipHash (which guards
/// against inputs built to collide) would be a large part of the parse. A `.env` file is the
/// user's own, so a multiply-rotate hash over 8-byte words (as rustc's `FxHasher`) does.
type KeyHasher = BuildHasherDefault<WordHasher>;

#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut last = [0; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How `find_duplicates` packs an entry into a `u128`: this many leading bytes of its key,
/// and its position in the low `INDEX_BITS` bits (2^40 assignments would be terabytes).
const HEAD_BYTES: usize = 11;
const INDEX_BITS: u32 = 40;
const INDEX_MASK: u128 = (1 << INDEX_BITS) - 1;

/// A value as scanned: the value, where it ends in the text, and where its span ends.
struct Scanned {
    value: String,
    value_end: usize,
    span_end: usize,
}

/// Where a reference's value comes from. An entry is named by index rather than copied, so
/// a secret is not duplicated into a buffer that would not be zeroized.
enum Resolved {
    Entry(usize),
    Environment(Zeroizing<String>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Unquoted,
    Double,
}

struct Parser<'t, 'o> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    /// Line number of `pos`.
    line: usize,
    /// Where line 1 starts: after the BOM, which is no column of anything.
    body_start: usize,
    options: &'o ParseOptions<'o>,
    /// Latest definition of each key among `entries[..indexed]`, for `$` references. It is
    /// only brought up to date when a reference needs it, so files without references (the
    /// bulk of them) never pay for hashing. Keys borrow from the text.
    index: HashMap<&'t str, usize, KeyHasher>,
    indexed: usize,
    out: Detailed,
}

impl Parser<'_, '_> {
    fn run(&mut self) -> Result<(), ParseError> {
        let len = self.bytes.len();
        while self.pos < len {
            let start = self.skip_blanks(self.pos);
            match self.bytes.get(start) {
                None => break,
                Some(b'\n') => self.next_line(start),
                Some(b'\r') if self.bytes.get(start + 1) == Some(&b'\n') => {
                    self.next_line(start + 1);
                }
                Some(b'#') => {
                    let nl = self.find_newline(start);
                    self.next_line(nl);
                }
                Some(_) => self.assignment(start)?,
            }
        }
        Ok(())
    }

    /// Moves past the line terminator whose `\n` is at `nl` (or to the end of the text).
    fn next_line(&mut self, nl: usize) {
        if nl < self.bytes.len() {
            self.pos = nl + 1;
            self.line += 1;
        } else {
            self.pos = nl;
        }
    }

    fn skip_blanks(&self, mut p: usize) -> usize {
        while p < self.bytes.len() && is_blank(self.bytes[p]) {
            p += 1;
        }
        p
    }

    /// Offset of the next `\n` at or after `from`, or the text's length.
    fn find_newline(&self, from: usize) -> usize {
        find_any(self.bytes, from, [b'\n'])
    }

    /// End of a line's content given the `nl` that ends it: a `\r` of a `\r\n` is terminator.
    fn content_end(&self, line_from: usize, nl: usize) -> usize {
        if nl < self.bytes.len() && nl > line_from && self.bytes[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        }
    }

    fn assignment(&mut self, start: usize) -> Result<(), ParseError> {
        let bytes = self.bytes;
        let entry_line = self.line;
        let mut p = start;
        let mut exported = false;
        if bytes[p..].starts_with(b"export") && bytes.get(p + 6).copied().is_some_and(is_blank) {
            let after = self.skip_blanks(p + 6);
            // `export =1` defines a key named `export`, as the other parsers read it.
            if bytes.get(after).copied().is_some_and(is_key_start) {
                exported = true;
                p = after;
            }
        }

        let key_start = p;
        if !bytes.get(p).copied().is_some_and(is_key_start) {
            return Err(self.error_at(p, INVALID_KEY.to_owned()));
        }
        while p < bytes.len() && is_key_char(bytes[p]) {
            p += 1;
        }
        let key_end = p;
        let text = self.text;
        let key = &text[key_start..key_end];
        p = self.skip_blanks(p);
        if bytes.get(p) != Some(&b'=') {
            return Err(self.missing_equals(key, key_end, p));
        }

        let value_from = p + 1;
        let q = self.skip_blanks(value_from);
        let Scanned {
            value,
            value_end,
            span_end,
        } = match bytes.get(q) {
            Some(b'\'') => self.single_quoted(key, q)?,
            Some(b'"') => self.double_quoted(key, q)?,
            _ => self.unquoted(key, value_from)?,
        };

        self.out.entries.push(Entry {
            key: key.to_owned(),
            line: entry_line,
            span: start..span_end,
            exported,
        });
        self.out.values.push(SecretValue::new(value));
        self.out.value_ends.push(value_end);
        Ok(())
    }

    /// Where the key of `entry` starts: its span starts with it or with `export`.
    fn key_start(&self, entry: &Entry) -> usize {
        if entry.exported {
            self.skip_blanks(entry.span.start + "export".len())
        } else {
            entry.span.start
        }
    }

    /// Marks superseded definitions, warns about them, and lists the live ones in key order.
    /// Sorting the entries by (key, position) puts each key's definitions side by side in
    /// file order, and the set is built in key order anyway: one sort does both jobs, where
    /// a hash lookup per line would cost more.
    fn find_duplicates(&mut self) -> Result<(), ParseError> {
        let entries = &self.out.entries;
        if u64::try_from(entries.len()).map_or(true, |n| n >= 1 << INDEX_BITS) {
            let message = "too many assignments in one file".to_owned();
            return Err(self.error_at(self.body_start, message));
        }
        // Each entry becomes one integer: the key's first bytes on top, its position below.
        // Sorting plain integers is twice as fast as sorting by a comparison function, and
        // needs no access to the strings. Keys hold no NUL, so zero padding sorts a key
        // before its extensions.
        let mut order: Vec<u128> = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let mut head = [0; 16];
                let len = entry.key.len().min(HEAD_BYTES);
                head[..len].copy_from_slice(&entry.key.as_bytes()[..len]);
                u128::from_be_bytes(head) | i as u128
            })
            .collect();
        order.sort_unstable();
        // Equal heads are rare (a duplicate, or keys alike in their first bytes): only there
        // read the whole keys, which this order scatters in memory.
        let position = |packed: u128| (packed & INDEX_MASK) as usize;
        let head = |packed: u128| packed & !INDEX_MASK;
        let mut run = 0;
        while run < order.len() {
            let mut end = run + 1;
            while end < order.len() && head(order[end]) == head(order[run]) {
                end += 1;
            }
            if end - run > 1 {
                order[run..end].sort_by(|&a, &b| {
                    let key = |packed| entries[position(packed)].key.as_str();
                    key(a).cmp(key(b)).then(a.cmp(&b))
                });
            }
            run = end;
        }

        let mut superseded = vec![false; entries.len()];
        let mut live = Vec::with_capacity(order.len());
        let mut warnings = Vec::new();
        for pair in order.windows(2) {
            let (i, next) = (position(pair[0]), position(pair[1]));
            if head(pair[0]) != head(pair[1]) || entries[i].key != entries[next].key {
                live.push(i);
                continue;
            }
            let (earlier, later) = (&entries[i], &entries[next]);
            superseded[i] = true;
            warnings.push(Warning {
                line: later.line,
                column: self.column_at(self.key_start(later)),
                message: format!(
                    "duplicate key `{}`: this definition overrides the one on line {}",
                    later.key, earlier.line
                ),
            });
        }
        live.extend(order.last().map(|&packed| position(packed)));
        warnings.sort_by_key(|w: &Warning| (w.line, w.column));
        self.out.superseded = superseded;
        self.out.live = live;
        self.out.warnings = warnings;
        Ok(())
    }

    /// The error for a key not followed by `=`: `p` is the first non-blank after the key.
    fn missing_equals(&self, key: &str, key_end: usize, p: usize) -> ParseError {
        let nl = self.find_newline(p);
        let end = self.content_end(p, nl);
        let at_line_end = p >= end || self.bytes[p] == b'#';
        if !at_line_end && (p == key_end || self.bytes[p..end].contains(&b'=')) {
            // A stray character inside the key (`FO$O=1`), or a key with a space (`A B=1`).
            self.error_at(key_end, INVALID_KEY.to_owned())
        } else {
            // The "key" may be a stray line of a secret (a wrapped PEM line, say): point at it,
            // never repeat it.
            let _ = key;
            self.error_at(p, "expected `=` after the key".to_owned())
        }
    }

    fn unquoted(&mut self, key: &str, value_from: usize) -> Result<Scanned, ParseError> {
        let bytes = self.bytes;
        // Find the end of the line, noting on the way a comment and anything to expand.
        let mut comment = None;
        let mut plain = true;
        let mut i = value_from;
        let nl = loop {
            i = find_any(bytes, i, [b'\n', b'#', b'$', b'\\']);
            match bytes.get(i) {
                None | Some(b'\n') => break i,
                // `value_from` is just after the `=`, so `bytes[i - 1]` is always in range.
                Some(b'#') if is_blank(bytes[i - 1]) => {
                    comment = Some(i);
                    break self.find_newline(i);
                }
                Some(b'$' | b'\\') => plain = false,
                Some(_) => {}
            }
            i += 1;
        };
        let line_end = self.content_end(value_from, nl);
        let mut end = comment.unwrap_or(line_end);
        let start = self.skip_blanks(value_from).min(end);
        while end > start && is_blank(bytes[end - 1]) {
            end -= 1;
        }
        let value = if plain {
            self.text[start..end].to_owned()
        } else {
            self.expand(key, start, end, Quoting::Unquoted)?
        };
        self.next_line(nl);
        Ok(Scanned {
            value,
            value_end: end,
            span_end: line_end,
        })
    }

    fn single_quoted(&mut self, key: &str, quote: usize) -> Result<Scanned, ParseError> {
        let close = find_any(self.bytes, quote + 1, [b'\'']);
        if close == self.bytes.len() {
            return Err(self.error_at(
                quote,
                format!(
                    "unterminated single-quoted value of `{key}`: the quote opened here is \
                     never closed"
                ),
            ));
        }
        let raw = &self.text[quote + 1..close];
        self.line += raw.bytes().filter(|&b| b == b'\n').count();
        let value = if raw.contains('\r') {
            raw.replace("\r\n", "\n")
        } else {
            raw.to_owned()
        };
        let value_end = close + 1;
        let span_end = self.after_closing_quote(key, value_end)?;
        Ok(Scanned {
            value,
            value_end,
            span_end,
        })
    }

    fn double_quoted(&mut self, key: &str, quote: usize) -> Result<Scanned, ParseError> {
        let bytes = self.bytes;
        let mut i = quote + 1;
        let mut plain = true;
        let mut newlines = 0;
        loop {
            i = find_any(bytes, i, [b'"', b'\\', b'$', b'\r', b'\n']);
            let Some(&b) = bytes.get(i) else {
                return Err(self.error_at(
                    quote,
                    format!(
                        "unterminated double-quoted value of `{key}`: the quote opened here is \
                         never closed"
                    ),
                ));
            };
            match b {
                b'"' => break,
                b'\\' => {
                    plain = false;
                    if bytes.get(i + 1) == Some(&b'\n') {
                        newlines += 1;
                    }
                    i += 2;
                }
                b'$' | b'\r' => {
                    plain = false;
                    i += 1;
                }
                // `\n`, the only other byte `find_any` stops at.
                _ => {
                    newlines += 1;
                    i += 1;
                }
            }
        }
        let value = if plain {
            self.text[quote + 1..i].to_owned()
        } else {
            self.expand(key, quote + 1, i, Quoting::Double)?
        };
        self.line += newlines;
        let span_end = self.after_closing_quote(key, i + 1)?;
        Ok(Scanned {
            value,
            value_end: i + 1,
            span_end,
        })
    }

    /// Checks that only blanks and a comment follow a closing quote, moves to the next line
    /// and returns where the assignment's span ends.
    fn after_closing_quote(&mut self, key: &str, from: usize) -> Result<usize, ParseError> {
        let p = self.skip_blanks(from);
        let nl = self.find_newline(p);
        let end = self.content_end(p, nl);
        if p < end && self.bytes[p] != b'#' {
            return Err(self.error_at(
                p,
                format!(
                    "unexpected text after the closing quote of the value of `{key}`; only a \
                     `# comment` may follow it"
                ),
            ));
        }
        self.next_line(nl);
        Ok(end)
    }

    /// The slow path: escapes, `$` references and CRLF inside quotes, for `text[from..to]`.
    fn expand(
        &mut self,
        key: &str,
        from: usize,
        to: usize,
        quoting: Quoting,
    ) -> Result<String, ParseError> {
        let bytes = self.bytes;
        let mut out = String::with_capacity(to - from);
        let mut literal_from = from;
        let mut i = from;
        while i < to {
            let replacement = match bytes[i] {
                b'\\' if i + 1 < to => match (quoting, bytes[i + 1]) {
                    (_, b'$') => Some('$'),
                    (Quoting::Double, b'n') => Some('\n'),
                    (Quoting::Double, b'r') => Some('\r'),
                    (Quoting::Double, b't') => Some('\t'),
                    (Quoting::Double, b'"') => Some('"'),
                    (Quoting::Double, b'\\') => Some('\\'),
                    // Unknown escapes and every other backslash stay as written.
                    _ => None,
                },
                b'$' => {
                    out.push_str(&self.text[literal_from..i]);
                    i = self.reference(key, i, to, &mut out)?;
                    literal_from = i;
                    continue;
                }
                b'\r' if quoting == Quoting::Double && i + 1 < to && bytes[i + 1] == b'\n' => {
                    // The `\r` of a CRLF inside quotes is never part of a value.
                    out.push_str(&self.text[literal_from..i]);
                    i += 1;
                    literal_from = i;
                    continue;
                }
                _ => None,
            };
            match replacement {
                Some(c) => {
                    out.push_str(&self.text[literal_from..i]);
                    out.push(c);
                    i += 2;
                    literal_from = i;
                }
                None => i += 1,
            }
        }
        out.push_str(&self.text[literal_from..to]);
        Ok(out)
    }

    /// Expands the reference whose `$` is at `dollar` into `out`; returns where to go on.
    fn reference(
        &mut self,
        key: &str,
        dollar: usize,
        to: usize,
        out: &mut String,
    ) -> Result<usize, ParseError> {
        let bytes = self.bytes;
        let name_end = |from: usize| {
            let mut p = from;
            if p < to && is_key_start(bytes[p]) {
                p += 1;
                while p < to && is_name_char(bytes[p]) {
                    p += 1;
                }
            }
            p
        };
        let next = if dollar + 1 < to {
            bytes[dollar + 1]
        } else {
            0
        };

        if next == b'{' {
            let name_from = dollar + 2;
            let p = name_end(name_from);
            let name = &self.text[name_from..p];
            let Some(close) = bytes[p..to].iter().position(|&b| b == b'}').map(|i| p + i) else {
                return Err(self.error_at(
                    dollar,
                    format!("unterminated `${{` in the value of `{key}`: no closing `}}`"),
                ));
            };
            if name.is_empty() {
                return Err(self.error_at(
                    dollar,
                    format!(
                        "`${{` in the value of `{key}` must be followed by a variable name \
                         (a letter or `_`, then letters, digits or `_`)"
                    ),
                ));
            }
            // `(default, whether an empty value also takes the default)`
            let default = match bytes[p] {
                b'}' => None,
                b':' if bytes[p + 1] == b'-' => Some((p + 2, true)),
                b'-' => Some((p + 1, false)),
                _ => {
                    return Err(self.error_at(
                        p,
                        format!(
                            "in the value of `{key}`, `${{{name}` must continue with `}}`, \
                             `:-default}}` or `-default}}`"
                        ),
                    ));
                }
            };
            let resolved = self.resolve(name);
            match (&resolved, default) {
                (Some(value), Some((_, true))) if self.resolved(value).is_empty() => {}
                (Some(value), _) => {
                    out.push_str(self.resolved(value));
                    return Ok(close + 1);
                }
                (None, Some(_)) => {}
                (None, None) => {
                    return Err(self.undefined(key, dollar, &format!("${{{name}}}"), name));
                }
            }
            if let Some((default_from, _)) = default {
                let default = &self.text[default_from..close];
                if default.contains("\r\n") {
                    out.push_str(&default.replace("\r\n", "\n"));
                } else {
                    out.push_str(default);
                }
            }
            Ok(close + 1)
        } else if is_key_start(next) {
            let p = name_end(dollar + 1);
            let name = &self.text[dollar + 1..p];
            match self.resolve(name) {
                Some(value) => {
                    out.push_str(self.resolved(&value));
                    Ok(p)
                }
                None => Err(self.undefined(key, dollar, &format!("${name}"), name)),
            }
        } else {
            // `cost=$5`, `A=$`: nothing to expand.
            out.push('$');
            Ok(dollar + 1)
        }
    }

    /// What `name` refers to at this point of the file, recording which entry it was.
    fn resolve(&mut self, name: &str) -> Option<Resolved> {
        for k in self.indexed..self.out.entries.len() {
            let entry = &self.out.entries[k];
            let start = self.key_start(entry);
            self.index
                .insert(&self.text[start..start + entry.key.len()], k);
        }
        self.indexed = self.out.entries.len();
        if let Some(&j) = self.index.get(name) {
            let i = self.out.entries.len();
            self.out.refs.push((i, j));
            return Some(Resolved::Entry(j));
        }
        let fallback = self.options.env_fallback?;
        fallback(name).map(|value| Resolved::Environment(Zeroizing::new(value)))
    }

    fn resolved<'s>(&'s self, resolved: &'s Resolved) -> &'s str {
        match resolved {
            Resolved::Entry(j) => self.out.values[*j].expose(),
            Resolved::Environment(value) => value,
        }
    }

    fn undefined(&self, key: &str, dollar: usize, written: &str, name: &str) -> ParseError {
        let where_ = if self.options.env_fallback.is_some() {
            "which is neither defined earlier in this file nor set in the environment"
        } else {
            "which is not defined earlier in this file"
        };
        // `${NAME}` is plainly meant as a reference, so naming it helps. A bare `$name` is as
        // often the middle of a literal secret (`pa$word`), so it is only pointed at.
        let what = if written.starts_with("${") {
            format!("`{written}` refers to `{name}`, {where_}")
        } else {
            format!(
                "the `$` here starts a reference to a variable {}",
                &where_["which is ".len()..]
            )
        };
        let mut message = format!(
            "in the value of `{key}`, {what}; to keep the `$` literally use single quotes \
             ('…') or escape it as `\\$`"
        );
        if self.options.env_fallback.is_none() {
            message.push_str("; to read it from the environment pass --interpolate-env");
        }
        self.error_at(dollar, message)
    }

    /// An error at byte `offset`. Errors end the parse, so a scan from the start is fine.
    fn error_at(&self, offset: usize, message: String) -> ParseError {
        let offset = offset.max(self.body_start).min(self.bytes.len());
        let line = 1 + self.bytes[self.body_start..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ParseError {
            line,
            column: self.column_at(offset),
            message,
        }
    }

    /// 1-based char column of byte `offset`, scanning back only to the start of its line.
    fn column_at(&self, offset: usize) -> usize {
        let head = &self.bytes[self.body_start..offset];
        let line_start = head.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Counting the bytes that do not continue a UTF-8 sequence counts chars.
        1 + head[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
    }
}
