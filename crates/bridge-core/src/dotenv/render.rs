//! Writing values back as `.env` text.
//!
//! A file Bridge writes must mean the same to every tool that reads it later, so each value is
//! written in a form that Bridge's own parser, python-dotenv and Node's `dotenv` all read back
//! as exactly that value. Their rules differ:
//!
//! - python-dotenv decodes `\\` and `\'` inside single quotes; inside double quotes it decodes
//!   `\\ \' \" \a \b \f \n \r \t \v` and keeps other backslashes; an unquoted value ends at
//!   whitespace before `#`; and it expands `${NAME}` (and `${NAME:-default}`) in *every* value,
//!   single-quoted ones included, after decoding. It reads a file with universal newlines,
//!   so a lone carriage return anywhere becomes a line feed.
//! - Node's `dotenv` turns every `\r\n` and lone `\r` in the file into `\n` first; quotes are
//!   `'`, `"` or `` ` ``, and only inside double quotes does it turn `\n` and `\r` into line
//!   breaks: every other backslash, `\\` and `\"` included, stays as written. An unquoted value
//!   ends at the first `#`, and the value is trimmed.
//! - Bridge: single quotes are literal; double quotes decode `\n \r \t \" \\ \$` and expand
//!   `$NAME`; unquoted values expand `$NAME`, honour `\$`, and end at whitespace before `#`.
//!
//! So [`render_line`] tries, in order, the forms whose common ground covers the value:
//!
//! 1. bare, for values of only letters, digits and `_ . / : @ + , = % ^ -`;
//! 2. single quotes, when the value has no `'`, no carriage return, no `\\` and does not end
//!    with `\` (python-dotenv would decode those);
//! 3. double quotes, when the value has no `"` (Node keeps `\"` as two characters): a line
//!    feed is written `\n` and a carriage return `\r` (the only escapes all three decode);
//!    a backslash is written as itself, which is only possible when what follows it is no
//!    escape to any of them; a `$` likewise, when it does not start a reference for Bridge;
//! 4. bare after all, for a value the quotes cannot carry (both kinds of quote, or `\\`):
//!    it starts and ends with a visible ASCII character other than a quote, holds no `#` or
//!    line break, and no `$` that starts a reference for Bridge or follows a `\`.
//!
//! A value none of these carries, or one python-dotenv would expand (`${…}` with a closing
//! brace), is refused with a [`RenderError`] that names the key and never the value.

use crate::envset::EnvSet;

/// A value that no form of `.env` text gives back alike in Bridge, python-dotenv and Node's
/// dotenv. Names the key, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the value of `{key}` cannot be written to a .env file so that Bridge, python-dotenv and \
     Node's dotenv read it alike: {reason}"
)]
pub struct RenderError {
    pub key: String,
    pub reason: &'static str,
}

/// Why `value` cannot be written, if it cannot (see the [module docs](self)).
///
/// # Errors
///
/// The reason, which never quotes the value.
pub fn check_value(value: &str) -> Result<(), &'static str> {
    render_value(value, false).map(drop)
}

/// `KEY=value` (no line terminator), in the first form of the [module docs](self) that
/// Bridge's parser, python-dotenv and Node's dotenv all read back as exactly `value`, with no
/// interpolation. Keys are written as given: callers validate them.
///
/// # Errors
///
/// A [`RenderError`] naming `key` when no form reads the same in all three.
pub fn render_line(key: &str, value: &str) -> Result<String, RenderError> {
    render_line_with(key, value, false)
}

/// [`render_line`] for a line a `# comment` will follow: an empty value is written `''`,
/// since python-dotenv reads `K= # comment` as the value `# comment`.
pub(super) fn render_line_with(
    key: &str,
    value: &str,
    before_comment: bool,
) -> Result<String, RenderError> {
    let rendered = render_value(value, before_comment).map_err(|reason| RenderError {
        key: key.to_owned(),
        reason,
    })?;
    let mut line = String::with_capacity(key.len() + rendered.len() + 1);
    line.push_str(key);
    line.push('=');
    line.push_str(&rendered);
    Ok(line)
}

/// A whole new file for `set`: one line per key, in key order, ending with a newline.
///
/// # Errors
///
/// The [`RenderError`] of the first value that cannot be written.
pub fn render(set: &EnvSet) -> Result<String, RenderError> {
    let mut text = String::new();
    for (key, value) in set {
        text.push_str(&render_line(key, value.expose())?);
        text.push('\n');
    }
    Ok(text)
}

fn render_value(value: &str, before_comment: bool) -> Result<String, &'static str> {
    if value.contains('\0') {
        return Err("it holds a NUL byte, which no environment variable can hold");
    }
    if python_expands(value) {
        return Err(
            "python-dotenv would expand the `${…}` in it, whatever the quoting; \
                    no form keeps it literal there",
        );
    }
    if value.is_empty() {
        return Ok(if before_comment { "''" } else { "" }.to_owned());
    }
    if value.bytes().all(is_bare) {
        return Ok(value.to_owned());
    }
    if fits_single_quotes(value) {
        return Ok(format!("'{value}'"));
    }
    if let Some(quoted) = double_quoted(value) {
        return Ok(quoted);
    }
    if fits_bare_plainly(value) {
        return Ok(value.to_owned());
    }
    Err(
        "no quoting reads the same in all three: it combines quotes, backslashes, `$` or \
         line breaks in a way one of them reads differently",
    )
}

/// Bytes that mean nothing to any of the parsers anywhere in an unquoted value.
fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'_' | b'.' | b'/' | b':' | b'@' | b'+' | b',' | b'=' | b'%' | b'^' | b'-'
        )
}

/// Whether python-dotenv's interpolation (on by default) finds a reference in `value`: its
/// pattern is `\$\{[^}:]*(:-[^}]*)?\}`, tried at every `${`.
fn python_expands(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.windows(2).enumerate().any(|(i, pair)| {
        if pair != b"${" {
            return false;
        }
        let mut j = i + 2;
        while j < bytes.len() && bytes[j] != b'}' && bytes[j] != b':' {
            j += 1;
        }
        match bytes.get(j) {
            Some(b'}') => true,
            Some(b':') if bytes.get(j + 1) == Some(&b'-') => bytes[j + 2..].contains(&b'}'),
            _ => false,
        }
    })
}

/// Single quotes: literal in Bridge and Node; python-dotenv decodes `\\` and `\'` (and a
/// trailing `\` would escape the closing quote); no parser keeps a carriage return.
fn fits_single_quotes(value: &str) -> bool {
    !value.contains(['\'', '\r']) && !value.contains("\\\\") && !value.ends_with('\\')
}

/// Double quotes, or `None` when the value cannot be written in them for all three parsers.
fn double_quoted(value: &str) -> Option<String> {
    if value.contains('"') {
        return None;
    }
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            // A backslash is kept by all three only when what follows is no escape to any
            // of them (and is itself written as is).
            '\\' => match next {
                Some(n) if !"\\'\"abfnrtv$\n\r".contains(n) => out.push('\\'),
                _ => return None,
            },
            // Bridge expands `$NAME` and `${…}` in double quotes; python-dotenv has no `\$`.
            '$' if next.is_some_and(|n| n == '{' || n == '_' || n.is_ascii_alphabetic()) => {
                return None;
            }
            _ => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// Unquoted after all (`it's "x"`, `C:\\dir`): all three read an unquoted value literally
/// when it holds no `#` and no line break, and trim only its ends, so those must be visible
/// ASCII; it must not start with a quote. A backslash stays as written in all three (Bridge
/// decodes only `\$`), and a `$` too when it starts no reference for Bridge.
fn fits_bare_plainly(value: &str) -> bool {
    let visible = |c: char| c.is_ascii_graphic();
    let (Some(first), Some(last)) = (value.chars().next(), value.chars().last()) else {
        return false;
    };
    let chars: Vec<char> = value.chars().collect();
    let dollars_plain = chars.iter().enumerate().all(|(i, &c)| {
        c != '$'
            || (!chars
                .get(i + 1)
                .is_some_and(|&n| n == '{' || n == '_' || n.is_ascii_alphabetic())
                && (i == 0 || chars[i - 1] != '\\'))
    });
    visible(first)
        && visible(last)
        && !matches!(first, '\'' | '"' | '`')
        && !value.contains(['#', '\n', '\r'])
        && dollars_plain
}
