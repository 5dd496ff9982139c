//! A request's trace: the ids it carries from the first filter to the access log, and, when it is
//! recorded, what its spans say once it is finished.

use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::HeaderValue;

use super::context::{self, SpanId, TraceId};
use crate::config::TracingConf;

/// Kept in the request context. Cheap to create: a few random numbers, no allocation.
#[derive(Clone, Debug, Default)]
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// The gateway's server span.
    pub span_id: SpanId,
    /// The client span of the upstream call: the parent the upstream sees in `traceparent`.
    pub upstream_span_id: SpanId,
    /// The caller's span, from a valid incoming `traceparent`.
    pub parent: Option<SpanId>,
    pub sampled: bool,
    /// Spans are exported for this request (tracing enabled and sampled).
    pub recording: bool,
    /// When a token signature was verified for this request (a token-cache miss).
    pub verification: Option<Range<Instant>>,
}

impl RequestTrace {
    /// Continues a valid incoming `traceparent` (its sampled flag kept as is), else starts a new
    /// trace, sampled at `tracing.sample_ratio` when tracing is enabled and unsampled otherwise
    /// (nothing records it).
    pub fn start(headers: &http::HeaderMap, tracing: &TracingConf) -> RequestTrace {
        let (trace_id, parent, sampled) = match context::incoming(headers) {
            Some(inc) => (inc.trace_id, Some(inc.parent), inc.sampled),
            None => (
                TraceId::random(),
                None,
                tracing.enabled
                    && (tracing.sample_ratio >= 1.0 || context::unit_draw() < tracing.sample_ratio),
            ),
        };
        RequestTrace {
            trace_id,
            span_id: SpanId::random(),
            upstream_span_id: SpanId::random(),
            parent,
            sampled,
            recording: sampled && tracing.enabled,
            verification: None,
        }
    }

    /// The `traceparent` the upstream receives: this trace, the gateway's client span as
    /// parent, the sampled flag as decided.
    pub fn upstream_traceparent(&self) -> HeaderValue {
        context::format_traceparent(&self.trace_id, &self.upstream_span_id, self.sampled)
    }
}

/// What the server span reports about a finished request. Borrowed from the request context;
/// copied only when the request is recorded.
pub struct Outcome<'a> {
    pub method: &'a str,
    /// The canonical path (never the query, which may hold an `access_token`).
    pub path: &'a str,
    pub route: Option<&'a str>,
    /// 0 when no response was sent.
    pub status: u16,
    /// The `portcullis_auth_decisions_total` result, on routes that authenticate.
    pub auth: Option<&'static str>,
    pub started: Instant,
    pub upstream: Option<UpstreamOutcome<'a>>,
}

pub struct UpstreamOutcome<'a> {
    pub upstream: &'a str,
    pub peer: &'a str,
    pub started: Instant,
    /// The upstream's status; `None` when it never answered.
    pub status: Option<u16>,
}

/// A finished, recorded request on its way to the exporter: up to three spans (server,
/// verification, upstream client), times in Unix nanoseconds.
pub struct Recorded {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    pub status: u16,
    pub auth: Option<&'static str>,
    pub verification: Option<(u64, u64)>,
    pub upstream: Option<UpstreamCall>,
}

pub struct UpstreamCall {
    pub span_id: SpanId,
    pub upstream: String,
    pub peer: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: Option<u16>,
}

impl Recorded {
    /// Wall-clock times are derived from one reading taken now and the monotonic instants the
    /// request kept, so a clock step mid-request cannot reorder its spans.
    pub fn new(trace: &RequestTrace, o: &Outcome<'_>) -> Recorded {
        let now = Instant::now();
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let at = |i: Instant| {
            let ago = u64::try_from(now.saturating_duration_since(i).as_nanos()).unwrap_or(0);
            now_ns.saturating_sub(ago)
        };
        Recorded {
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent: trace.parent,
            start_ns: at(o.started),
            end_ns: now_ns,
            method: o.method.to_string(),
            path: o.path.to_string(),
            route: o.route.map(str::to_string),
            status: o.status,
            auth: o.auth,
            verification: trace
                .verification
                .as_ref()
                .map(|r| (at(r.start), at(r.end))),
            upstream: o.upstream.as_ref().map(|u| UpstreamCall {
                span_id: trace.upstream_span_id,
                upstream: u.upstream.to_string(),
                peer: u.peer.to_string(),
                start_ns: at(u.started),
                end_ns: now_ns,
                status: u.status,
            }),
        }
    }

    pub fn span_count(&self) -> u64 {
        1 + u64::from(self.verification.is_some()) + u64::from(self.upstream.is_some())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(tp: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(tp).unwrap());
        h
    }

    fn tracing(enabled: bool, sample_ratio: f64) -> TracingConf {
        TracingConf {
            enabled,
            sample_ratio,
            ..TracingConf::default()
        }
    }

    #[test]
    fn continues_an_incoming_trace_and_keeps_its_flag() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (conf, recording) in [(tracing(true, 0.0), true), (tracing(false, 1.0), false)] {
            let t = RequestTrace::start(&headers(tp), &conf);
            assert_eq!(
                t.trace_id.hex().as_str(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert!(
                t.sampled,
                "an incoming sampled flag is kept whatever the ratio"
            );
            assert_eq!(t.recording, recording);
            let up = t.upstream_traceparent();
            let up = up.to_str().unwrap();
            assert!(
                up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{up}"
            );
            assert!(
                !up.contains("00f067aa0ba902b7"),
                "the gateway's span is the parent: {up}"
            );
            assert!(up.ends_with("-01"));
        }
        let unsampled = tp.replace("-01", "-00");
        let t = RequestTrace::start(&headers(&unsampled), &tracing(true, 1.0));
        assert!(!t.sampled && !t.recording);
        assert!(t.upstream_traceparent().to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn starts_new_traces_at_the_sample_ratio() {
        let none = http::HeaderMap::new();
        assert!(RequestTrace::start(&none, &tracing(true, 1.0)).recording);
        assert!(!RequestTrace::start(&none, &tracing(true, 0.0)).sampled);
        assert!(!RequestTrace::start(&none, &tracing(false, 1.0)).sampled);
        let bad = headers("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
        let t = RequestTrace::start(&bad, &tracing(false, 1.0));
        assert_ne!(t.trace_id, TraceId::default());
        assert!(t.parent.is_none());
        let half = (0..2000)
            .filter(|_| RequestTrace::start(&none, &tracing(true, 0.5)).recording)
            .count();
        assert!((800..1200).contains(&half), "{half} of 2000 sampled at 0.5");
    }
}
