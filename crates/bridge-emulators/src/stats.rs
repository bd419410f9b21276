//! Request and write counters of one emulator, as exposed by the handles and
//! by `GET /_emulator/stats`.

use std::collections::BTreeMap;

/// What one emulator has seen since it started or since the last reset.
///
/// `by_route` keys are `"METHOD /path/template"`, for example
/// `"PUT /v1/services/{serviceId}/env-vars"`, so tests can assert on the
/// shape of the traffic without caring about concrete ids. Requests that
/// matched no route are counted under `"METHOD <unmatched>"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Every request that reached the emulator, including the ones answered
    /// 401, 429 or with an injected failure; `/_emulator/*` is not counted.
    pub requests: u64,
    /// Successful (2xx) env-var writes; this is also the counter that
    /// `fail_after_writes` compares against.
    pub writes: u64,
    /// Request count per `"METHOD /template"`.
    pub by_route: BTreeMap<String, u64>,
}

impl Stats {
    pub(crate) fn record_request(&mut self, route: String) {
        self.requests += 1;
        *self.by_route.entry(route).or_insert(0) += 1;
    }

    pub(crate) fn record_write(&mut self) {
        self.writes += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route() {
        let mut s = Stats::default();
        s.record_request("GET /a".into());
        s.record_request("GET /a".into());
        s.record_request("PUT /a".into());
        s.record_write();
        assert_eq!(s.requests, 3);
        assert_eq!(s.writes, 1);
        assert_eq!(s.by_route.get("GET /a"), Some(&2));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["by_route"]["PUT /a"], 1);
    }
}
