//! Writing values back as `.env` text.
//!
//! [`render_line`] picks the plainest form that [`parse`](fn@super::parse) reads back exactly,
//! with no expansion: bare for the common `KEY=value`, single quotes when anything else is in
//! the value (they are fully literal), double quotes with escapes only for values that single
//! quotes cannot carry (a `'` or a `\r`, which a CRLF file would otherwise swallow).

use crate::envset::EnvSet;

/// `KEY=value` (no line terminator), quoted minimally so that `parse` gives back exactly
/// `value`, with no interpolation. Keys are written as given: callers validate them.
#[must_use]
pub fn render_line(key: &str, value: &str) -> String {
    let mut line = String::with_capacity(key.len() + value.len() + 3);
    line.push_str(key);
    line.push('=');
    if value.bytes().all(is_bare) {
        line.push_str(value);
    } else if !value.contains(['\'', '\r']) {
        line.push('\'');
        line.push_str(value);
        line.push('\'');
    } else {
        line.push('"');
        for c in value.chars() {
            match c {
                '\\' => line.push_str("\\\\"),
                '"' => line.push_str("\\\""),
                '$' => line.push_str("\\$"),
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                _ => line.push(c),
            }
        }
        line.push('"');
    }
    line
}

/// A whole new file for `set`: one line per key, in key order, ending with a newline.
#[must_use]
pub fn render(set: &EnvSet) -> String {
    let mut text = String::new();
    for (key, value) in set {
        text.push_str(&render_line(key, value.expose()));
        text.push('\n');
    }
    text
}

/// Bytes that mean nothing to the parser anywhere in an unquoted value.
fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'.' | b'/' | b':' | b'@' | b'+' | b',' | b'=' | b'%' | b'^' | b'-'
        )
}
