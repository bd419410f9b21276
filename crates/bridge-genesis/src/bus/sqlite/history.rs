//! History reads: [`HistoryQuery`] as SQL that never sorts.
//!
//! Every answer comes in `seq` order, and `seq` is the rowid, so a query either walks the
//! rowid (no topic, or a pattern matching very many topics) or walks the topic index, whose
//! entries for one topic are in rowid order too. A wildcard pattern (`deploy.*`) is the
//! topics it matches, read one by one through the index and merged here. A range of the
//! topic index (`topic >= 'deploy.'`) would not do: its entries are in (topic, seq) order,
//! so SQLite sorts every event of every matching topic, however few the query wants, which
//! made a consumer near the head of a long history pay for all of it, on every poll.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::{from_sql, sqlite_error, to_sql};
use crate::bus::event::{Event, Payload, from_unix_micros, unix_micros};
use crate::bus::store::{HistoryQuery, Order, StoreError};
use crate::bus::topic::TopicPattern;

/// Past this many matching topics, one walk of the rowid with the pattern checked per row
/// is cheaper than a walk of the index per topic.
const MAX_TOPIC_WALKS: usize = 64;

const COLUMNS: &str = "seq, topic, at_us, who, payload";

/// The events `q` asks for, in its order.
pub(super) fn read_events(
    conn: &Connection,
    store: &str,
    q: &HistoryQuery,
) -> Result<Vec<Event>, StoreError> {
    let err = |e| sqlite_error(store, "read history", e);
    let limit = q.effective_limit();
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One snapshot for every statement below: a topic first stored between the list of
    // topics and the walks would otherwise be missed while later events of others were not.
    let tx = conn.unchecked_transaction().map_err(err)?;
    let range = seq_range(&tx, q).map_err(err)?;
    let events = match &q.pattern {
        None => read_rows(&tx, store, &range, q.order, Rows::All, limit)?,
        Some(p) if p.as_str() == ">" => read_rows(&tx, store, &range, q.order, Rows::All, limit)?,
        Some(p) => match p.as_literal() {
            Some(topic) => read_rows(&tx, store, &range, q.order, Rows::Topic(topic), limit)?,
            None => read_pattern(&tx, store, &range, q.order, p, limit)?,
        },
    };
    tx.commit().map_err(err)?;
    Ok(events)
}

/// The events of a wildcard pattern: one walk of the topic index per matching topic, merged.
fn read_pattern(
    conn: &Connection,
    store: &str,
    range: &SeqRange,
    order: Order,
    pattern: &TopicPattern,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let err = |e| sqlite_error(store, "read history", e);
    let topics = matching_topics(conn, pattern).map_err(err)?;
    if topics.len() > MAX_TOPIC_WALKS {
        return read_rows(conn, store, range, order, Rows::Matching(pattern), limit);
    }
    let mut seqs = Vec::new();
    for topic in &topics {
        seqs.extend(read_seqs(conn, range, order, topic, limit).map_err(err)?);
    }
    match order {
        Order::Ascending => seqs.sort_unstable(),
        Order::Descending => seqs.sort_unstable_by(|a, b| b.cmp(a)),
    }
    seqs.truncate(limit);
    read_by_seq(conn, store, &seqs)
}

/// A query's bounds as sequence numbers: `after < seq <= until`.
#[derive(Debug, Default)]
struct SeqRange {
    after: Option<u64>,
    until: Option<u64>,
}

/// `q`'s bounds as a [`SeqRange`]. A time bound becomes a sequence bound through the time
/// index, because stamps never go backwards along the sequence (a store invariant); kept as
/// a time condition, it would tempt SQLite to walk the time index and sort.
fn seq_range(conn: &Connection, q: &HistoryQuery) -> rusqlite::Result<SeqRange> {
    let mut range = SeqRange {
        after: q.after_seq,
        until: q.until_seq,
    };
    if let Some(from) = q.from_time {
        let last_before: Option<i64> = conn
            .prepare_cached(LAST_BEFORE_SQL)?
            .query_row([unix_micros(from)], |row| row.get(0))
            .optional()?;
        if let Some(seq) = last_before.map(from_sql) {
            range.after = Some(range.after.map_or(seq, |a| a.max(seq)));
        }
    }
    if let Some(to) = q.to_time {
        let first_at_or_after: Option<i64> = conn
            .prepare_cached(FIRST_FROM_SQL)?
            .query_row([unix_micros(to)], |row| row.get(0))
            .optional()?;
        if let Some(seq) = first_at_or_after.map(from_sql) {
            let last = seq.saturating_sub(1);
            range.until = Some(range.until.map_or(last, |u| u.min(last)));
        }
    }
    Ok(range)
}

/// The last event stamped before a time.
const LAST_BEFORE_SQL: &str =
    "SELECT seq FROM genesis_events WHERE at_us < ?1 ORDER BY at_us DESC, seq DESC LIMIT 1";
/// The first event stamped at or after a time.
const FIRST_FROM_SQL: &str =
    "SELECT seq FROM genesis_events WHERE at_us >= ?1 ORDER BY at_us ASC, seq ASC LIMIT 1";

/// The stored topics that `pattern` matches.
fn matching_topics(conn: &Connection, pattern: &TopicPattern) -> rusqlite::Result<Vec<String>> {
    // Every topic starting with "a.b." sorts in ["a.b.", "a.b/"): '/' follows '.'.
    let prefix = pattern.literal_prefix();
    let mut upper = prefix.clone();
    if upper.pop().is_some() {
        upper.push('/');
    } else {
        upper.push(char::MAX);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT topic FROM genesis_topic_counts WHERE topic >= ?1 AND topic < ?2",
    )?;
    let rows = stmt.query_map([&prefix, &upper], |row| row.get::<_, String>(0))?;
    let mut topics = Vec::new();
    for topic in rows {
        let topic = topic?;
        if pattern.matches(&topic) {
            topics.push(topic);
        }
    }
    Ok(topics)
}

/// `SELECT columns` over `range` (and one `topic`), in `order`, at most `limit` rows: the
/// statement and its arguments. Every history read is built here (their plans are checked by
/// a test).
fn select(
    columns: &str,
    range: &SeqRange,
    order: Order,
    topic: Option<&str>,
    limit: Option<usize>,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {columns} FROM genesis_events WHERE 1");
    let mut args = Vec::new();
    if let Some(after) = range.after {
        sql.push_str(" AND seq > ?");
        args.push(SqlValue::Integer(to_sql(after)));
    }
    if let Some(until) = range.until {
        sql.push_str(" AND seq <= ?");
        args.push(SqlValue::Integer(to_sql(until)));
    }
    if let Some(topic) = topic {
        sql.push_str(" AND topic = ?");
        args.push(SqlValue::Text(topic.to_owned()));
    }
    sql.push_str(match order {
        Order::Ascending => " ORDER BY seq ASC",
        Order::Descending => " ORDER BY seq DESC",
    });
    if let Some(limit) = limit {
        sql.push_str(" LIMIT ?");
        args.push(SqlValue::Integer(to_sql(limit as u64)));
    }
    (sql, args)
}

/// Up to `limit` sequence numbers of `topic` within `q`'s bounds, in `q`'s order.
fn read_seqs(
    conn: &Connection,
    range: &SeqRange,
    order: Order,
    topic: &str,
    limit: usize,
) -> rusqlite::Result<Vec<u64>> {
    let (sql, args) = select("seq", range, order, Some(topic), Some(limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |row| row.get(0).map(from_sql))?;
    rows.collect()
}

/// The events with these sequence numbers, in the order given.
fn read_by_seq(conn: &Connection, store: &str, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
    let err = |e| sqlite_error(store, "read history", e);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM genesis_events WHERE seq = ?1"
        ))
        .map_err(err)?;
    let mut events = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let mut rows = stmt.query([to_sql(seq)]).map_err(err)?;
        if let Some(row) = rows.next().map_err(err)? {
            events.push(decode_row(store, row)?);
        }
    }
    Ok(events)
}

/// Which events one walk returns.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Every event: a walk of the rowid.
    All,
    /// One topic's: a walk of the topic index.
    Topic(&'a str),
    /// Those whose topic matches: a walk of the rowid with each row's topic checked (for a
    /// pattern that matches very many topics).
    Matching(&'a TopicPattern),
}

/// Up to `limit` events of `rows` within `range`, in `order`.
fn read_rows(
    conn: &Connection,
    store: &str,
    range: &SeqRange,
    order: Order,
    rows: Rows<'_>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let err = |e| sqlite_error(store, "read history", e);
    let (sql, args) = match rows {
        Rows::All => select(COLUMNS, range, order, None, Some(limit)),
        Rows::Topic(topic) => select(COLUMNS, range, order, Some(topic), Some(limit)),
        // No SQL limit: rows of other topics are skipped here.
        Rows::Matching(_) => select(COLUMNS, range, order, None, None),
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
    let mut found = stmt.query(params_from_iter(args)).map_err(err)?;
    let mut events = Vec::new();
    while events.len() < limit {
        let Some(row) = found.next().map_err(err)? else {
            break;
        };
        if let Rows::Matching(pattern) = rows {
            let topic: String = row.get(1).map_err(err)?;
            if !pattern.matches(&topic) {
                continue;
            }
        }
        events.push(decode_row(store, row)?);
    }
    Ok(events)
}

/// One row of [`COLUMNS`] as an event.
fn decode_row(store: &str, row: &rusqlite::Row<'_>) -> Result<Event, StoreError> {
    let err = |e| sqlite_error(store, "read history", e);
    let seq = row.get(0).map(from_sql).map_err(err)?;
    let at_us: i64 = row.get(2).map_err(err)?;
    let corrupt = |what: String| StoreError::Corrupt {
        store: store.to_owned(),
        what,
    };
    let timestamp = from_unix_micros(at_us).ok_or_else(|| {
        corrupt(format!(
            "event {seq} has an impossible timestamp ({at_us} µs)"
        ))
    })?;
    let payload: String = row.get(4).map_err(err)?;
    let payload: Payload = serde_json::from_str(&payload).map_err(|e| {
        corrupt(format!(
            "event {seq} has a payload that is not a JSON object: {e}"
        ))
    })?;
    Ok(Event {
        seq,
        topic: row.get(1).map_err(err)?,
        timestamp,
        who: row.get(3).map_err(err)?,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str, args: &[SqlValue]) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = stmt
            .query_map(params_from_iter(args), |row| row.get::<_, String>(3))
            .expect("plan");
        rows.map(|r| r.expect("a plan row"))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn schema() -> Connection {
        let conn = Connection::open_in_memory().expect("memory");
        conn.execute_batch(super::super::schema::SCHEMA)
            .expect("schema");
        conn
    }

    /// Consumers read batches of different sizes through the same cached statements: with
    /// plans that depended on the bound `LIMIT`, each read with another size was parsed
    /// and planned again.
    #[test]
    fn rebinding_a_history_statement_does_not_replan_it() {
        use rusqlite::StatementStatus;
        let conn = schema();
        super::super::schema::stable_plans(&conn).expect("qpsg");
        conn.execute_batch(
            "INSERT INTO genesis_events VALUES (1, 'a.b', 1, 'system', '{}');
             INSERT INTO genesis_events VALUES (2, 'a.c', 2, 'system', '{}');
             INSERT INTO genesis_topic_counts VALUES ('a.b', 1), ('a.c', 1);",
        )
        .expect("rows");
        let pattern = TopicPattern::parse("a.*").expect("pattern");
        for round in 0..4 {
            for (limit, after) in [(16, 0), (1_000, 1), (3, round)] {
                let q = HistoryQuery::default()
                    .pattern(pattern.clone())
                    .after_seq(after)
                    .limit(limit);
                read_events(&conn, "test", &q).expect("read");
                let q = HistoryQuery::default().after_seq(after).limit(limit);
                read_events(&conn, "test", &q).expect("read");
            }
        }
        let range = SeqRange {
            after: Some(0),
            until: None,
        };
        for topic in [None, Some("a.b")] {
            let columns = if topic.is_some() { "seq" } else { COLUMNS };
            let (sql, _) = select(columns, &range, Order::Ascending, topic, Some(1));
            let stmt = conn.prepare_cached(&sql).expect("cached");
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }

    /// A consumer's poll (`seq > floor`, one topic) must walk the topic index from the floor
    /// in seq order: a sort would read every event of the topic on every poll.
    #[test]
    fn no_history_statement_sorts() {
        let conn = schema();
        let ranges = [
            SeqRange::default(),
            SeqRange {
                after: Some(7),
                until: None,
            },
            SeqRange {
                after: Some(7),
                until: Some(9),
            },
        ];
        for range in &ranges {
            for order in [Order::Ascending, Order::Descending] {
                // A consumer's poll of one topic of a wildcard pattern.
                let (sql, args) = select("seq", range, order, Some("a.b"), Some(10));
                let p = plan(&conn, &sql, &args);
                assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
                assert!(p.contains("genesis_events_by_topic"), "{sql}: {p}");
                for topic in [None, Some("a.b")] {
                    for limit in [Some(10), None] {
                        let (sql, args) = select(COLUMNS, range, order, topic, limit);
                        let p = plan(&conn, &sql, &args);
                        assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
                    }
                }
            }
        }
        for sql in [LAST_BEFORE_SQL, FIRST_FROM_SQL] {
            let p = plan(&conn, sql, &[SqlValue::Integer(1)]);
            assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
            assert!(p.contains("genesis_events_by_time"), "{sql}: {p}");
        }
    }
}
