//! Finding the services the backends need: PostgreSQL at its usual local address, or where
//! `BRIDGE_TEST_POSTGRES_URL` says. When one is
//! absent a test says so and passes, unless `BRIDGE_REQUIRE_SERVICES=1` (CI) makes that a
//! failure: a skipped backend must never look like a tested one there.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub(crate) const DEFAULT_POSTGRES_URL: &str = "host=127.0.0.1 user=postgres dbname=test";

fn required() -> bool {
    std::env::var("BRIDGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn unavailable(service: &str, url: &str, why: &str) -> Option<String> {
    if required() {
        panic!("{service} at {url} is required (BRIDGE_REQUIRE_SERVICES=1) but {why}");
    }
    eprintln!("skipped: {service} at {url} is not available ({why})");
    None
}

/// The PostgreSQL connection string, or `None` (after saying so) when it does not answer.
pub(crate) async fn postgres() -> Option<String> {
    let url = std::env::var("BRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    match attempt {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => unavailable("PostgreSQL", &url, &e.to_string()),
        Err(_) => unavailable("PostgreSQL", &url, "no answer within 5 s"),
    }
}

/// A name no other test (in this process or another run) uses: `<prefix>_<pid>_<n>`.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}
