//! Integration tests of the HTTP adapters (`render`, `netlify`, `github`) against the
//! in-memory emulators of `bridge-emulators`: the same conformance suite for every platform,
//! call counts, pagination, rate limits, failures part-way, and error hygiene; and the
//! general-purpose client against a scripted server on loopback.

mod client;
mod conformance;
mod errors;
mod github;
mod netlify;
mod render;
mod support;
