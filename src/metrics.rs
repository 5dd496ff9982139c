//! Prometheus series named in the contract (conf/README.md §5), registered in the process-global default
//! registry. The registry is global on purpose: Pingora's own exporter reads the same one, and
//! series must survive config reloads without re-registration.

use std::sync::LazyLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
};

/// Buckets from 100 µs to 30 s: gateway-local answers land in the first few, upstream calls above.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

macro_rules! metric {
    ($name:ident, $ty:ty, $reg:ident, $metric:literal, $help:literal, [$($label:literal),*]) => {
        pub static $name: LazyLock<$ty> = LazyLock::new(|| {
            #[allow(clippy::expect_used)] // a duplicate static name is a programming error caught at start-up
            $reg!($metric, $help, &[$($label),*]).expect("metric registration")
        });
    };
    ($name:ident, $ty:ty, $reg:ident, $metric:literal, $help:literal, [$($label:literal),*], $buckets:expr) => {
        pub static $name: LazyLock<$ty> = LazyLock::new(|| {
            #[allow(clippy::expect_used)]
            $reg!($metric, $help, &[$($label),*], $buckets.to_vec()).expect("metric registration")
        });
    };
}

metric!(
    REQUESTS,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_requests_total",
    "Requests answered, by route, method and status.",
    ["route", "method", "status"]
);
metric!(
    REQUEST_DURATION,
    HistogramVec,
    register_histogram_vec,
    "portcullis_request_duration_seconds",
    "Time from request head to the end of the response, by route.",
    ["route"],
    LATENCY_BUCKETS
);
metric!(
    WEBSOCKET_CONNECTIONS,
    IntGaugeVec,
    register_int_gauge_vec,
    "portcullis_websocket_connections",
    "Open WebSocket connections, by route.",
    ["route"]
);
metric!(
    AUTH_DECISIONS,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_auth_decisions_total",
    "Authentication and authorization outcomes, by route and result.",
    ["route", "result"]
);
metric!(
    TOKEN_CACHE,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_token_cache_requests_total",
    "Verified-token cache lookups, by result (hit, miss).",
    ["result"]
);

/// The two [`TOKEN_CACHE`] series, resolved once: `with_label_values` hashes the labels and
/// takes a lock, and one of these is counted on every authenticated request.
pub static TOKEN_CACHE_HIT: LazyLock<IntCounter> =
    LazyLock::new(|| TOKEN_CACHE.with_label_values(&["hit"]));
pub static TOKEN_CACHE_MISS: LazyLock<IntCounter> =
    LazyLock::new(|| TOKEN_CACHE.with_label_values(&["miss"]));

metric!(
    UPSTREAM_REQUESTS,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_upstream_requests_total",
    "Requests sent to upstream peers, by upstream, peer and status.",
    ["upstream", "peer", "status"]
);
metric!(
    UPSTREAM_DURATION,
    HistogramVec,
    register_histogram_vec,
    "portcullis_upstream_duration_seconds",
    "Time from choosing a peer to the end of its response, by upstream.",
    ["upstream"],
    LATENCY_BUCKETS
);
metric!(
    PEER_HEALTHY,
    IntGaugeVec,
    register_int_gauge_vec,
    "portcullis_upstream_peer_healthy",
    "1 when the peer passes its health check and takes traffic, else 0.",
    ["upstream", "peer"]
);
metric!(
    JWKS_REFRESH,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_jwks_refresh_total",
    "JWKS fetches, by provider and result (ok, error, not_modified).",
    ["provider", "result"]
);
metric!(
    JWKS_KEYS,
    IntGaugeVec,
    register_int_gauge_vec,
    "portcullis_jwks_keys",
    "Usable verification keys currently held, by provider.",
    ["provider"]
);
metric!(
    JWKS_LAST_SUCCESS,
    GaugeVec,
    register_gauge_vec,
    "portcullis_jwks_last_success_timestamp_seconds",
    "Unix time of the last successful JWKS fetch, by provider.",
    ["provider"]
);
metric!(
    REVOCATIONS,
    IntGaugeVec,
    register_int_gauge_vec,
    "portcullis_revocations",
    "Revocation entries in force, by kind (jti, subject).",
    ["kind"]
);
metric!(
    CONFIG_RELOADS,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_config_reloads_total",
    "Config reload attempts, by result (ok, error).",
    ["result"]
);
metric!(
    RATE_LIMITED,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_rate_limited_total",
    "Requests refused with 429 by a route's rate limit.",
    ["route"]
);

metric!(
    DOWNSTREAM_CONNECTIONS,
    IntGaugeVec,
    register_int_gauge_vec,
    "portcullis_downstream_connections",
    "Client connections open, by listener (http, https, internal).",
    ["listener"]
);
metric!(
    CONNECTIONS_REJECTED,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_connections_rejected_total",
    "Client connections closed at once because limits.max_connections were open, by listener.",
    ["listener"]
);

metric!(
    RATE_LIMIT_FALLBACK,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_rate_limit_fallback_total",
    "Shared rate-limit checks answered by the local bucket because Redis did not, by route.",
    ["route"]
);
metric!(
    REDIS_ERRORS,
    IntCounterVec,
    register_int_counter_vec,
    "portcullis_redis_errors_total",
    "Redis operations that failed or timed out, by operation.",
    ["op"]
);

/// 1 while the shared Redis answers, 0 while it does not (conf/README.md §7); registered only
/// with a `redis:` block, so a single instance does not export a Redis it has not got.
pub static REDIS_UP: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    // a duplicate static name is a programming error caught at start-up
    prometheus::register_int_gauge!(
        "portcullis_redis_up",
        "1 while the shared Redis answers, 0 while it does not."
    )
    .expect("metric registration")
});

/// Spans the trace exporter gave up on: the queue was full, or the collector refused or did
/// not answer an export (conf/README.md §9).
pub static TRACE_SPANS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    // a duplicate static name is a programming error caught at start-up
    prometheus::register_int_counter!(
        "portcullis_trace_spans_dropped_total",
        "Trace spans dropped instead of exported (queue full, collector failing or slow)."
    )
    .expect("metric registration")
});

/// Renders every registered series in the Prometheus text format.
pub fn render() -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::with_capacity(16 * 1024);
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        log::error!("encoding metrics failed: {e}");
    }
    out
}
