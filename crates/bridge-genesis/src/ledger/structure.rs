//! What [`verify_file`](super::verify_file) checks of an SQLite ledger file beyond its rows:
//! the bytes no leaf hash or signature covers, yet which decide what the rows say or whether
//! the ledger can go on.
//!
//! - SQLite's own `integrity_check`: b-tree pages, cell pointers, freeblocks, the freelist,
//!   and that every index holds exactly its table's rows (a flipped key in the bus-sequence
//!   index would let an event be recorded twice);
//! - the header fields SQLite reads without judging them: the file-format versions (a version
//!   past 2 makes the file read-only or unreadable), the text encoding (the ledger writes
//!   UTF-8) and the schema format (past 4, SQLite refuses the file with a bare error);
//! - the schema of the ledger's objects, text for text, as [`SCHEMA`] creates them;
//! - the bookkeeping rows: the origin the file was created for; checkpoint ids, which run 1,
//!   2, 3, ... since none is ever deleted; and the AUTOINCREMENT counter, which equals the
//!   last id (ahead of it, checkpoints were cut off the end).
//!
//! The rest of the header (change counter, page-cache hint, schema cookie, user version,
//! application id, the library version that last wrote, the reserved bytes) changes nothing
//! the ledger reads; `docs/genesis.md` lists them.

use std::io::Read as _;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};

use super::LedgerError;
use super::sqlite::SCHEMA;
use super::verify::Problem;

/// The length of SQLite's file header.
const HEADER: usize = 100;

/// Objects a file may lack: the bus-sequence index came after the first ledgers were made,
/// and is added by the next open for writing.
const OPTIONAL: &[&str] = &["ledger_entries_by_seq"];

/// What SQLite stores for the table AUTOINCREMENT creates.
const SEQUENCE_SQL: &str = "CREATE TABLE sqlite_sequence(name,seq)";

/// Adds every structural or bookkeeping problem of the file behind `conn` to `problems`.
pub(crate) fn check(
    conn: &Connection,
    origin: &str,
    problems: &mut Vec<Problem>,
) -> Result<(), LedgerError> {
    // A header SQLite cannot work with fails every query after it; it says enough.
    if !header(conn, problems)? {
        return Ok(());
    }
    integrity(conn, problems)?;
    // With a wrong schema the queries below may not even prepare; the schema says enough.
    if schema(conn, problems)? {
        bookkeeping(conn, origin, problems)?;
    }
    Ok(())
}

fn structure(detail: String) -> Problem {
    Problem::Structure { detail }
}

fn unsigned(what: String) -> Problem {
    Problem::Unsigned { what }
}

/// The header bytes SQLite reads but does not judge. False if SQLite cannot even load the
/// schema, so that nothing else can be checked.
fn header(conn: &Connection, problems: &mut Vec<Problem>) -> Result<bool, LedgerError> {
    // Loading the schema is where SQLite reads page 1; a schema format past 4 fails it with
    // a bare "unsupported file format", which on this file can only mean damage.
    if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())) {
        return match LedgerError::from(e) {
            LedgerError::Storage(e) if e.sqlite_error_code() == Some(ErrorCode::Unknown) => {
                problems.push(structure(format!("SQLite cannot read its schema: {e}")));
                Ok(false)
            }
            e => Err(e),
        };
    }
    // Asked of SQLite, not read from the file: in WAL mode the newest page 1 may be in the
    // WAL, and SQLite takes the encoding from only two bits of its field.
    let encoding: String = conn.query_row("PRAGMA encoding", [], |r| r.get(0))?;
    if encoding != "UTF-8" {
        problems.push(structure(format!(
            "its text encoding is {encoding}, not the UTF-8 the ledger writes"
        )));
    }
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else {
        return Ok(true);
    };
    // The format versions are read from the main file: they are written there when the
    // journal mode is set, before any page goes to the WAL, and are the same in both.
    let mut head = Vec::with_capacity(HEADER);
    std::fs::File::open(path)?
        .take(HEADER as u64)
        .read_to_end(&mut head)?;
    if let (Some(&write), Some(&read)) = (head.get(18), head.get(19))
        && head.len() == HEADER
        && (!matches!(write, 1 | 2) || !matches!(read, 1 | 2))
    {
        // Past 2, SQLite treats the file as read-only (write) or unreadable (read).
        problems.push(structure(format!(
            "its header gives file-format versions {write} (write) and {read} (read), not 1 \
             (rollback journal) or 2 (WAL)"
        )));
    }
    Ok(true)
}

fn integrity(conn: &Connection, problems: &mut Vec<Problem>) -> Result<(), LedgerError> {
    // The first message is enough to name the damage; the rest would only cost time.
    let first: String = conn.query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))?;
    if first != "ok" {
        problems.push(structure(format!("SQLite's integrity check: {first}")));
    }
    Ok(())
}

/// The ledger's objects as [`SCHEMA`] creates them: SQLite keeps each statement's text from
/// the object's name on, after `CREATE TABLE` or `CREATE INDEX`.
fn expected_schema() -> Vec<(&'static str, String, String, Option<String>)> {
    let mut out = Vec::new();
    for stmt in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (kind, rest) = match stmt.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
            Some(rest) => ("table", rest),
            None => match stmt.strip_prefix("CREATE INDEX IF NOT EXISTS ") {
                Some(rest) => ("index", rest),
                None => continue,
            },
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        let table = match kind {
            "index" => rest
                .split_once(" ON ")
                .and_then(|(_, t)| t.split_whitespace().next())
                .unwrap_or_default(),
            _ => name,
        };
        let sql = format!("CREATE {} {rest}", kind.to_uppercase());
        out.push((kind, name.to_owned(), table.to_owned(), Some(sql)));
    }
    // The index behind ledger_meta's TEXT PRIMARY KEY, and AUTOINCREMENT's table.
    out.push((
        "index",
        "sqlite_autoindex_ledger_meta_1".into(),
        "ledger_meta".into(),
        None,
    ));
    out.push((
        "table",
        "sqlite_sequence".into(),
        "sqlite_sequence".into(),
        Some(SEQUENCE_SQL.into()),
    ));
    out
}

/// Compares the schema rows of the ledger's objects with [`expected_schema`]; true if they
/// match. Objects of other stores sharing the file are left alone.
fn schema(conn: &Connection, problems: &mut Vec<Problem>) -> Result<bool, LedgerError> {
    let expected = expected_schema();
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema
         WHERE name LIKE '%ledger\\_%' ESCAPE '\\' OR tbl_name LIKE '%ledger\\_%' ESCAPE '\\'
            OR name = 'sqlite_sequence' ORDER BY rowid",
    )?;
    let mut rows = stmt.query([])?;
    let text = |v: ValueRef<'_>| match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        _ => None,
    };
    let before = problems.len();
    let mut seen = Vec::new();
    while let Some(row) = rows.next()? {
        let (kind, name, table, sql) = (
            text(row.get_ref(0)?),
            text(row.get_ref(1)?),
            text(row.get_ref(2)?),
            text(row.get_ref(3)?),
        );
        let name = name.unwrap_or_default();
        let found = expected.iter().find(|e| e.1 == name);
        match found {
            Some(e) if kind.as_deref() == Some(e.0) && table.as_deref() == Some(&e.2) => {
                if sql != e.3 {
                    problems.push(structure(format!(
                        "the schema of {name} is not the one the ledger creates"
                    )));
                }
                seen.push(name);
            }
            Some(_) => problems.push(structure(format!(
                "the schema entry of {name} is not the one the ledger creates"
            ))),
            // Another store's object whose name merely contains the word.
            None if !name.starts_with("ledger_")
                && !name.starts_with("sqlite_autoindex_ledger_")
                && table.as_deref().is_none_or(|t| !t.starts_with("ledger_")) => {}
            None => problems.push(structure(format!(
                "it holds {} {name:?}, which the ledger does not create",
                kind.as_deref().unwrap_or("an object")
            ))),
        }
    }
    for (_, name, _, _) in &expected {
        if !seen.contains(name) && !OPTIONAL.contains(&name.as_str()) {
            problems.push(structure(format!("the ledger's {name} is missing")));
        }
    }
    Ok(problems.len() == before)
}

/// The rows no signature covers but the ledger relies on.
fn bookkeeping(
    conn: &Connection,
    origin: &str,
    problems: &mut Vec<Problem>,
) -> Result<(), LedgerError> {
    let mut stmt = conn.prepare("SELECT key, value FROM ledger_meta ORDER BY rowid")?;
    let mut rows = stmt.query([])?;
    let mut recorded = None;
    while let Some(row) = rows.next()? {
        match (row.get_ref(0)?, row.get_ref(1)?) {
            (ValueRef::Text(b"origin"), ValueRef::Text(v)) => {
                recorded = Some(String::from_utf8_lossy(v).into_owned());
            }
            _ => problems.push(unsigned(
                "ledger_meta holds a row the ledger does not write".into(),
            )),
        }
    }
    match recorded {
        None => problems.push(unsigned("the file records no origin".into())),
        Some(found) if found != origin => problems.push(unsigned(format!(
            "the file records origin {found:?}, not {origin:?}"
        ))),
        Some(_) => {}
    }

    let (count, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), min(id), max(id) FROM ledger_checkpoints",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // Ids are given 1, 2, 3, ... and no checkpoint is ever deleted, so they run from 1 to
    // their count; anything else is a checkpoint removed, or an id rewritten.
    if count > 0 && (first != Some(1) || last != Some(count)) {
        problems.push(unsigned(format!(
            "the ids of the {count} checkpoints run from {} to {}, not 1 to {count}",
            first.unwrap_or_default(),
            last.unwrap_or_default()
        )));
    }
    let counters: Vec<Option<i64>> = conn
        .prepare("SELECT seq FROM sqlite_sequence WHERE name = 'ledger_checkpoints'")?
        .query_map([], |r| match r.get_ref(0)? {
            ValueRef::Integer(i) => Ok(Some(i)),
            _ => Ok(None),
        })?
        .collect::<Result<_, _>>()?;
    // The counter moves with each id given and never back, so it names the last checkpoint
    // ever stored: ahead of the last id left, checkpoints were cut off the end.
    let last = last.unwrap_or(0);
    let fine = match counters.as_slice() {
        // No checkpoint was ever stored.
        [] => count == 0,
        [Some(n)] => *n == last,
        _ => false,
    };
    if !fine {
        let shown: Vec<String> = counters
            .iter()
            .map(|c| c.map_or_else(|| "not an integer".to_owned(), |n| n.to_string()))
            .collect();
        problems.push(unsigned(format!(
            "the checkpoint id counter in sqlite_sequence is [{}], not the last id {last}",
            shown.join(", ")
        )));
    }
    Ok(())
}
