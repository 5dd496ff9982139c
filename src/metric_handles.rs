//! Metric handles resolved ahead of time, so recording a request costs an atomic add instead of
//! hashing label values and taking the metric vector's lock on every request.
//!
//! Label sets are bounded (route or peer, method, and the statuses a gateway commonly answers),
//! so each cell is resolved once on first use; anything outside falls back to a label lookup.

use std::collections::HashMap;
use std::sync::OnceLock;

use http::StatusCode;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use crate::metrics;
use crate::routing::STANDARD_METHODS;

const STATUSES: [u16; 22] = [
    0, 200, 201, 202, 204, 206, 301, 302, 304, 308, 400, 401, 403, 404, 405, 413, 429, 431, 500,
    502, 503, 504,
];

fn status_index(status: u16) -> Option<usize> {
    STATUSES.iter().position(|&s| s == status)
}

/// `{labels..., status}` counters of one series for a fixed label prefix.
struct StatusCells {
    cells: Vec<OnceLock<IntCounter>>,
}

impl StatusCells {
    fn new(n: usize) -> StatusCells {
        StatusCells {
            cells: (0..n * STATUSES.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// `status` 0 means no response was sent.
    fn inc(&self, vec: &IntCounterVec, row: usize, prefix: &[&str], status: u16) {
        let cell = status_index(status).and_then(|col| self.cells.get(row * STATUSES.len() + col));
        let counter = || {
            let code = StatusCode::from_u16(status).ok();
            let label = code.as_ref().map_or("0", StatusCode::as_str);
            let labels: Vec<&str> = prefix.iter().copied().chain([label]).collect();
            vec.with_label_values(&labels)
        };
        match cell {
            Some(c) => c.get_or_init(counter).inc(),
            None => counter().inc(),
        }
    }
}

const AUTH_RESULTS: [&str; 12] = [
    "ok",
    "anonymous",
    "missing",
    "malformed",
    "bad_signature",
    "unknown_kid",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "revoked",
    "insufficient_scope",
];

/// `portcullis_requests_total`, `portcullis_request_duration_seconds` and
/// `portcullis_auth_decisions_total` for one route.
pub struct RouteMetrics {
    route: String,
    requests: StatusCells,
    auth: [OnceLock<IntCounter>; AUTH_RESULTS.len()],
    pub duration: Histogram,
    /// Resolved on the first upgrade, so routes without WebSockets export no series.
    websockets: OnceLock<IntGauge>,
}

impl RouteMetrics {
    pub fn new(route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_string(),
            requests: StatusCells::new(STANDARD_METHODS.len()),
            auth: std::array::from_fn(|_| OnceLock::new()),
            duration: metrics::REQUEST_DURATION.with_label_values(&[route]),
            websockets: OnceLock::new(),
        }
    }

    /// `portcullis_websocket_connections` of this route.
    pub fn websockets(&self) -> &IntGauge {
        self.websockets.get_or_init(|| {
            metrics::WEBSOCKET_CONNECTIONS.with_label_values(&[self.route.as_str()])
        })
    }

    pub fn auth_decision(&self, result: &str) {
        let labels = [self.route.as_str(), result];
        match AUTH_RESULTS
            .iter()
            .position(|&r| r == result)
            .and_then(|i| self.auth.get(i))
        {
            Some(c) => c
                .get_or_init(|| metrics::AUTH_DECISIONS.with_label_values(&labels))
                .inc(),
            None => metrics::AUTH_DECISIONS.with_label_values(&labels).inc(),
        }
    }

    /// `status` 0: the client got no response. A method outside the standard nine is counted
    /// as `other`: the method is the client's choice, and as a label value each new one would
    /// add a series for the life of the process.
    pub fn count(&self, method: &str, status: u16) {
        match STANDARD_METHODS.iter().position(|&m| m == method) {
            Some(row) => self
                .requests
                .inc(&metrics::REQUESTS, row, &[&self.route, method], status),
            None => {
                let code = StatusCode::from_u16(status).ok();
                let label = code.as_ref().map_or("0", StatusCode::as_str);
                metrics::REQUESTS
                    .with_label_values(&[&self.route, "other", label])
                    .inc();
            }
        }
    }
}

/// `portcullis_upstream_requests_total` for one peer.
pub struct PeerMetrics {
    upstream: String,
    peer: String,
    requests: StatusCells,
}

impl PeerMetrics {
    pub fn new(upstream: &str, peer: &str) -> PeerMetrics {
        PeerMetrics {
            upstream: upstream.to_string(),
            peer: peer.to_string(),
            requests: StatusCells::new(1),
        }
    }

    pub fn count(&self, status: u16) {
        self.requests.inc(
            &metrics::UPSTREAM_REQUESTS,
            0,
            &[&self.upstream, &self.peer],
            status,
        );
    }
}

/// Answers of one route since start, from `portcullis_requests_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
}

/// [`Answers`] per route name. Read from the request counter itself, which lives in the global
/// registry keyed by route name: counts survive reloads for a route of the same name, and
/// counting them cost the request path nothing extra.
#[must_use]
pub fn answers_by_route() -> HashMap<String, Answers> {
    let mut by_route: HashMap<String, Answers> = HashMap::new();
    for family in prometheus::core::Collector::collect(&*metrics::REQUESTS) {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
            };
            let (Some(route), Some(status)) = (label("route"), label("status")) else {
                continue;
            };
            // Counters are whole numbers kept as f64.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = m.get_counter().get_value() as u64;
            let a = by_route.entry(route).or_default();
            a.requests += n;
            match status.as_bytes().first() {
                Some(b'4') => a.client_errors += n,
                Some(b'5') => a.server_errors += n,
                _ => {}
            }
        }
    }
    by_route
}

/// The metrics of requests that matched no route (`route=""`).
pub fn unrouted() -> &'static RouteMetrics {
    static UNROUTED: OnceLock<RouteMetrics> = OnceLock::new();
    UNROUTED.get_or_init(|| RouteMetrics::new(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_route_name_across_rebuilds() {
        let first = RouteMetrics::new("answers-test");
        first.count("GET", 200);
        first.count("GET", 404);
        first.count("BREW", 503);
        drop(first);
        // A reload builds the route's handles again under the same name.
        let again = RouteMetrics::new("answers-test");
        again.count("POST", 429);
        again.count("GET", 101);
        let a = answers_by_route()["answers-test"];
        assert_eq!(
            a,
            Answers {
                requests: 5,
                client_errors: 2,
                server_errors: 1
            }
        );
    }

    #[test]
    fn cached_and_uncached_cells_count_the_same_series() {
        let m = RouteMetrics::new("metric-handles-test");
        m.count("GET", 200);
        m.count("GET", 200);
        m.count("PROPFIND", 207);
        m.count("GET", 299); // not a cached cell: looked up by label
        m.count("GET", 0);
        let get = metrics::REQUESTS.with_label_values(&["metric-handles-test", "GET", "200"]);
        assert_eq!(get.get(), 2);
        m.count("X-CHOSEN-BY-THE-CLIENT", 207);
        let odd = metrics::REQUESTS.with_label_values(&["metric-handles-test", "other", "207"]);
        assert_eq!(odd.get(), 2);
        let uncommon = metrics::REQUESTS.with_label_values(&["metric-handles-test", "GET", "299"]);
        assert_eq!(uncommon.get(), 1);
        let none = metrics::REQUESTS.with_label_values(&["metric-handles-test", "GET", "0"]);
        assert_eq!(none.get(), 1);
    }
}
