//! Reading, writing and editing `.env` files.
//!
//! The dialect is the common ground of python-dotenv, Node's `dotenv`, `dotenvy` and Docker
//! Compose, so a file Bridge writes means the same thing to every tool that later reads it:
//!
//! ```text
//! # a comment                     blank lines and full-line comments are ignored
//! export HOST=db.internal         `export ` is allowed and remembered
//! PORT = 5432                     spaces around `=` are allowed
//! URL=postgres://${HOST}:$PORT    unquoted: `# comment` after whitespace, `${..}`/`$..` expand
//! RAW='$literal\n'                single quotes: literal, may span lines
//! MSG="line1\nsaid \"hi\""        double quotes: escapes, expansion, may span lines
//! PASS=${DB_PASS:-changeme}       `:-` default when unset or empty, `-` when unset only
//! ```
//!
//! A `$NAME` reference resolves only against keys defined *earlier in the same file*, unless
//! the caller supplies [`ParseOptions::env_fallback`]: a sync must not silently depend on the
//! environment of the machine it runs on. An unresolvable reference is an error rather than
//! an empty string, because a `$` inside an unquoted password (`pa$word`) is far more often a
//! mistake than an intended expansion.
//!
//! The module is split by job:
//! - `parse.rs`: the parser ([`parse`](fn@parse), [`is_valid_key`]) and its result types. It
//!   is the hot path, so it scans bytes (a word at a time where it can), allocates little more
//!   than each key and value, and only works out columns when it has to report something.
//! - `render.rs`: [`render_line`] and [`render`](fn@render), which pick the least surprising
//!   quoting that [`parse`](fn@parse), python-dotenv and Node's dotenv all read back exactly,
//!   and refuse a value no quoting carries alike ([`RenderError`]).
//! - `edit.rs`: [`apply_edits`], which changes only the lines it must, so comments, order and
//!   formatting of a hand-written file survive a sync.
//! - `restore.rs`: [`restore_edits`], which undoes an edit by putting the file's own lines
//!   back, so a rollback returns the bytes, not only the values.
//! - `tests.rs`: tables of tricky inputs and errors, the editor on concrete files, and property
//!   tests that rendering, editing and parsing agree.
//!
//! Values travel as [`SecretValue`](crate::SecretValue), so `Debug` output never shows one,
//! and messages name keys and point at `line:column` instead of quoting the text. The only
//! text they repeat is the name in an unresolvable `${NAME}` (braces make it plainly a
//! reference); a bare `$name` is pointed at, not named, since it is as often part of a secret.

mod edit;
mod parse;
mod render;
mod restore;

#[cfg(test)]
mod tests;

pub use edit::{Edit, EditError, apply_edits};
pub use parse::{Entry, ParseError, ParseOptions, Parsed, Warning, is_valid_key, parse};
pub use render::{RenderError, check_value, render, render_line};
pub use restore::restore_edits;
