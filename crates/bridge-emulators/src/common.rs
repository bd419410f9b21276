//! Small helpers the platform modules share: the handler result type,
//! poison-tolerant locking, timestamps, JSON body parsing and random bytes.

use std::sync::{Mutex, MutexGuard};

use axum::response::{IntoResponse, Response};

use crypto_box::aead::OsRng;
use crypto_box::aead::rand_core::RngCore;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

/// An error answer already in the platform's shape. Boxed because a
/// `Response` is large and handlers pass rejections around in `Result`s.
#[derive(Debug)]
pub(crate) struct Reject(Box<Response>);

impl From<Response> for Reject {
    fn from(r: Response) -> Self {
        Self(Box::new(r))
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What every handler returns: success or a platform-shaped error.
pub(crate) type Reply = Result<Response, Reject>;

/// Locks, ignoring poisoning: a panicking test thread must not turn every
/// later request into a second panic, and the guarded data stays consistent
/// because no invariant spans a panic point.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the precision GitHub reports.
pub(crate) fn now_seconds() -> String {
    bridge_core::time::rfc3339_seconds(OffsetDateTime::now_utc())
}

/// RFC 3339 with milliseconds, as Netlify reports `updated_at`.
pub(crate) fn now_millis() -> String {
    bridge_core::time::rfc3339_millis(OffsetDateTime::now_utc())
}

/// Parses a request body; the error text is safe to show a client.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shapes() {
        let s = now_seconds();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T');
        let m = now_millis();
        assert_eq!(m.len(), 24, "{m}");
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    }
}
