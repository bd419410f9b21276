//! Integration tests of the bus and the ledger.

#![allow(unreachable_pub)]
#![allow(clippy::unwrap_used)]

mod bitflips;
mod bus;
mod deliveries;
mod feed;
mod ledger;
mod opening;
mod schedule;
