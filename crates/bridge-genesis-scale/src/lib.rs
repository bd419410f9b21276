//! The shared stores, for deployments of more than one process or machine:
//!
//! - the Genesis bus's [`PostgresStore`], where several processes append to one database,
//!   and [`NatsStore`], where the log is a NATS JetStream stream. Both implement
//!   [`bridge_genesis::bus::EventStore`] and pass the bus crate's conformance suite;
//! - the sync state on PostgreSQL, [`PostgresState`] (write records, ownership, journals),
//!   which passes the state store's conformance suite;
//! - the apply locks on PostgreSQL, [`PgLocks`] (advisory locks);
//! - the API's token hashes on PostgreSQL, [`PgTokens`] (`bridge_operations::tokens`).
//!
//! Errors are [`StoreError`]s, as for the embedded SQLite store, so callers handle every
//! backend alike. A failure of the database or the server is reported as
//! [`StoreError::Io`] whose source is a [`BackendError`] naming the client library's error.

mod ledger;
mod locks;
mod nats;
mod pg;
mod postgres;
mod state;
mod tokens;

use std::sync::Arc;

use bridge_genesis::bus::StoreError;

pub use self::ledger::PostgresLedgerRows;
pub use self::locks::PgLocks;
pub use self::nats::{DEFAULT_ACK_TIMEOUT, NatsOptions, NatsStore, PUBLISH_ATTEMPTS};
pub use self::postgres::{PostgresOptions, PostgresStore};
pub use self::state::{CALL_TIMEOUT, PostgresState, schema_version};
pub use self::tokens::PgTokens;

/// What the client library of a backend reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// Any async-nats error (the client has one error type per operation).
    #[error(transparent)]
    Nats(#[from] async_nats::Error),
}

/// Wraps a backend failure as the bus's error type: `StoreError` has no variant per network
/// backend, and `Io` (a failed exchange with something outside the process) is what it is.
pub(crate) fn backend_error(
    store: &str,
    op: &'static str,
    error: impl Into<BackendError>,
) -> StoreError {
    StoreError::Io {
        store: store.to_owned(),
        op,
        source: Arc::new(std::io::Error::other(error.into())),
    }
}

/// Sequence numbers are `u64` in the API and `bigint` in SQL; neither gets near the other's
/// limit, so saturating is only a guard.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// See [`to_i64`]; a negative value (only a hand-edited table has one) reads as 0.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Microseconds since the Unix epoch, the precision events are stamped with (the bus crate
/// keeps its own helper private).
pub(crate) fn unix_micros(at: time::OffsetDateTime) -> i64 {
    let micros = at.unix_timestamp_nanos() / 1_000;
    i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn from_unix_micros(micros: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()
}

/// The pattern as a POSIX regular expression for SQL's `~` (PostgreSQL) — segments are
/// `[a-z0-9_]+`, so only the dots need escaping.
pub(crate) fn pattern_regex(pattern: &bridge_genesis::bus::TopicPattern) -> String {
    let mut re = String::from("^");
    for (i, segment) in pattern.as_str().split('.').enumerate() {
        if i > 0 {
            re.push_str("\\.");
        }
        match segment {
            "*" => re.push_str("[^.]+"),
            ">" => re.push_str(".+"),
            literal => re.push_str(literal),
        }
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_genesis::bus::TopicPattern;

    #[test]
    fn regexes_follow_the_pattern_grammar() {
        let re = |p: &str| pattern_regex(&TopicPattern::parse(p).unwrap());
        assert_eq!(re("envsync.*"), "^envsync\\.[^.]+$");
        assert_eq!(re("deploy.>"), "^deploy\\..+$");
        assert_eq!(re(">"), "^.+$");
        assert_eq!(re("*.drift"), "^[^.]+\\.drift$");
    }

    #[test]
    fn micros_round_trip() {
        let at = from_unix_micros(1_760_222_580_123_456).unwrap();
        assert_eq!(unix_micros(at), 1_760_222_580_123_456);
    }
}
