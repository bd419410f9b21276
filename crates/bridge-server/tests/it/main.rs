//! Integration tests of the control plane: handlers without a socket (`oneshot`), and a real
//! listener where a connection matters (the live stream, graceful shutdown).
#![allow(unreachable_pub, clippy::unwrap_used)]

mod bad_input;
mod connections;
mod contract;
mod harness;
mod openapi;
mod reads;
mod roles;
mod routes;
mod shutdown;
mod stream;
mod tokens;
mod webhooks;
