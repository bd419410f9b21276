//! The scale-out backends against real services: the bus crate's conformance suite for each,
//! plus what only the networked stores promise (several writers, one gap-free sequence).

// Tests may unwrap (clippy.toml); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod ledger;
mod nats;
mod postgres;
mod proxy;
mod services;
mod state;
mod tokens;
