//! Bridge's domain core: what a set of environment variables is, how a `.env` file reads and
//! writes, which values are secret, how two sets differ, whether N places agree, whether
//! a set satisfies its schema, and how bytes and instants are spelled (`hex`, `time`: RFC 3339
//! from a time the caller read).
//!
//! This crate performs no I/O and knows nothing of HTTP, stores, async runtimes or the CLI:
//! everything here is a pure function of its inputs, which is what makes it cheap to test
//! exhaustively (property tests live beside each module).

pub mod diff;
pub mod dotenv;
pub mod envset;
pub mod filter;
pub mod hex;
pub mod parity;
pub mod redact;
pub mod schema;
pub mod secret;
pub mod suggest;
pub mod time;

pub use envset::EnvSet;
pub use secret::{Fingerprint, FingerprintKey, SecretClassifier, SecretValue};
