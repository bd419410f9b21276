//! Prometheus metrics, kept by hand in a few counters and histograms rather than through a
//! metrics framework: the set is small and fixed, and recording a request must cost next to
//! nothing (one atomic add per histogram bucket, one short lock for the status count).
//!
//! Exposed at `GET /metrics` in the text exposition format 0.0.4:
//! `bridge_http_requests_total{route,method,status}`,
//! `bridge_http_request_duration_seconds{route,method}` (histogram),
//! `bridge_sync_operations_total{provider,mode,outcome}`, `bridge_drift_keys{platform}`,
//! `bridge_bus_last_seq`, `bridge_bus_consumer_pending{consumer}` (the bus lag).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bridge_genesis::bus::Health;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status codes 100..=599, one counter each: recording is one atomic add, no lock.
const STATUSES: usize = 500;

struct RouteMetrics {
    statuses: Box<[AtomicU64; STATUSES]>,
    /// Cumulative counts are computed at scrape time; each slot counts its own bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self {
            statuses: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl RouteMetrics {
    /// `(status, count)` of every status answered at least once.
    fn statuses(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.statuses
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 100, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
    }
}

/// Every metric the server keeps.
pub struct Metrics {
    routes: Vec<RouteMetrics>,
    /// Requests that matched no route.
    unmatched: Mutex<BTreeMap<u16, u64>>,
    sync_ops: Mutex<BTreeMap<(String, String, String), u64>>,
    drift: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Metrics {
    pub fn new(routes: usize) -> Self {
        Self {
            routes: (0..routes).map(|_| RouteMetrics::default()).collect(),
            unmatched: Mutex::new(BTreeMap::new()),
            sync_ops: Mutex::new(BTreeMap::new()),
            drift: Mutex::new(BTreeMap::new()),
        }
    }

    /// One answered request of route `index` (its place in [`crate::api::routes`]).
    pub fn record_request(&self, index: usize, status: u16, elapsed: Duration) {
        let Some(route) = self.routes.get(index) else {
            return;
        };
        if let Some(n) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| route.statuses.get(i))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        route.buckets[slot].fetch_add(1, Ordering::Relaxed);
        route
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        route.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_unmatched(&self, status: u16) {
        *lock(&self.unmatched).entry(status).or_default() += 1;
    }

    /// A dry run or apply finished with `outcome` (its status).
    /// Metrics for every route of the API.
    pub fn for_app() -> Self {
        Self::new(crate::api::routes().len())
    }

    pub fn record_sync(&self, provider: &str, mode: &str, outcome: &str) {
        *lock(&self.sync_ops)
            .entry((provider.to_owned(), mode.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// How many keys differ on `platform`, as last measured.
    pub fn set_drift(&self, platform: &str, keys: u64) {
        lock(&self.drift).insert(platform.to_owned(), keys);
    }

    /// The exposition text; `bus` adds the bus's sequence and consumer lag.
    pub fn render(&self, routes: &[(&str, &str)], bus: Option<&Health>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP bridge_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE bridge_http_requests_total counter\n");
        for (i, (method, path)) in routes.iter().enumerate() {
            let Some(route) = self.routes.get(i) else {
                continue;
            };
            for (status, n) in route.statuses() {
                let _ = writeln!(
                    out,
                    "bridge_http_requests_total{{route=\"{path}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        for (status, n) in lock(&self.unmatched).iter() {
            let _ = writeln!(
                out,
                "bridge_http_requests_total{{route=\"unmatched\",method=\"\",status=\"{status}\"}} {n}"
            );
        }

        out.push_str("# HELP bridge_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE bridge_http_request_duration_seconds histogram\n");
        for (i, (method, path)) in routes.iter().enumerate() {
            let Some(route) = self.routes.get(i) else {
                continue;
            };
            let count = route.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("route=\"{path}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (slot, bound) in BUCKETS.iter().enumerate() {
                cumulative += route.buckets[slot].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "bridge_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += route.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "bridge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let sum = route.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "bridge_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "bridge_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }

        out.push_str(
            "# HELP bridge_sync_operations_total Dry runs and applies, by provider, mode and outcome.\n",
        );
        out.push_str("# TYPE bridge_sync_operations_total counter\n");
        for ((provider, mode, outcome), n) in lock(&self.sync_ops).iter() {
            let _ = writeln!(
                out,
                "bridge_sync_operations_total{{provider=\"{}\",mode=\"{mode}\",outcome=\"{outcome}\"}} {n}",
                escape(provider)
            );
        }

        out.push_str(
            "# HELP bridge_drift_keys Keys that differ from the source, as last measured.\n",
        );
        out.push_str("# TYPE bridge_drift_keys gauge\n");
        for (platform, n) in lock(&self.drift).iter() {
            let _ = writeln!(
                out,
                "bridge_drift_keys{{platform=\"{}\"}} {n}",
                escape(platform)
            );
        }

        if let Some(health) = bus {
            out.push_str("# HELP bridge_bus_up Whether the event store answered.\n");
            out.push_str("# TYPE bridge_bus_up gauge\n");
            let _ = writeln!(out, "bridge_bus_up {}", u8::from(health.reachable));
            if let Some(seq) = health.last_seq {
                out.push_str("# HELP bridge_bus_last_seq The newest event's sequence number.\n");
                out.push_str("# TYPE bridge_bus_last_seq gauge\n");
                let _ = writeln!(out, "bridge_bus_last_seq {seq}");
            }
            out.push_str(
                "# HELP bridge_bus_consumer_pending Events a durable consumer has yet to acknowledge (bus lag).\n",
            );
            out.push_str("# TYPE bridge_bus_consumer_pending gauge\n");
            for c in &health.consumers {
                let _ = writeln!(
                    out,
                    "bridge_bus_consumer_pending{{consumer=\"{}\"}} {}",
                    escape(&c.name),
                    c.pending
                );
            }
        }
        out
    }
}

/// Label values escape backslash, quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every sync the operations run, whoever started it, is counted.
impl bridge_operations::SyncListener for Metrics {
    fn synced(
        &self,
        provider: &str,
        mode: bridge_operations::Mode,
        summary: &bridge_operations::Summary,
    ) {
        self.record_sync(provider, mode.as_str(), summary.status);
        self.set_drift(provider, summary.drift() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::new(1);
        m.record_request(0, 200, Duration::from_micros(300));
        m.record_request(0, 200, Duration::from_millis(3));
        m.record_request(0, 404, Duration::from_secs(10));
        m.record_sync("render", "dry-run", "planned");
        m.set_drift("ren\"der", 3);
        let text = m.render(&[("GET", "/x")], None);
        assert!(
            text.contains(
                "bridge_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("le=\"0.0005\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"5\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 3"));
        assert!(text.contains("_count{route=\"/x\",method=\"GET\"} 3"));
        assert!(text.contains("bridge_sync_operations_total{provider=\"render\",mode=\"dry-run\",outcome=\"planned\"} 1"));
        assert!(text.contains("bridge_drift_keys{platform=\"ren\\\"der\"} 3"));
    }
}
