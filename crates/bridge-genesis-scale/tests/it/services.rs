//! Finding the services the backends need: PostgreSQL and NATS at their usual local
//! addresses, or where `BRIDGE_TEST_POSTGRES_URL` and `BRIDGE_TEST_NATS_URL` say. When one is
//! absent a test says so and passes, unless `BRIDGE_REQUIRE_SERVICES=1` (CI) makes that a
//! failure: a skipped backend must never look like a tested one there.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub(crate) const DEFAULT_POSTGRES_URL: &str = "host=127.0.0.1 user=postgres dbname=test";
pub(crate) const DEFAULT_NATS_URL: &str = "127.0.0.1:4222";

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

/// The NATS address, or `None` (after saying so) when it does not answer or has no
/// JetStream.
pub(crate) async fn nats() -> Option<String> {
    let url = std::env::var("BRIDGE_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
        let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
        // The raw account-info request: the client's typed `query_account` cannot parse a
        // 2.9 server's answer.
        let reply = client
            .request("$JS.API.INFO", "".into())
            .await
            .map_err(|e| format!("no JetStream: {e}"))?;
        if String::from_utf8_lossy(&reply.payload).contains("\"error\"") {
            return Err("JetStream is not enabled".to_owned());
        }
        Ok::<_, String>(())
    })
    .await;
    match attempt {
        Ok(Ok(())) => Some(url),
        Ok(Err(e)) => unavailable("NATS", &url, &e),
        Err(_) => unavailable("NATS", &url, "no answer within 5 s"),
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
