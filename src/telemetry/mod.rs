//! Tracing (conf/README.md §9): W3C trace context on every request, and, with
//! `tracing.enabled`, spans exported over OTLP/HTTP.
//!
//! - [`context`]: `traceparent` parsing and formatting, ids.
//! - [`span`]: a request's trace ([`RequestTrace`], kept in the request context) and what is
//!   recorded when it finishes.
//! - [`otlp`]: the protobuf encoding of a batch.
//! - [`exporter`]: the bounded queue and the background export loop.
//!
//! **Why hand-rolled and not the OpenTelemetry SDK.** The `opentelemetry` /
//! `opentelemetry_sdk` / `opentelemetry-otlp` stack would put its own machinery on the request
//! path: a `Context` carried through thread-locals, a span object with a lock and attribute
//! vectors built for every sampled request, a span processor behind a trait object, plus a few
//! dozen crates (prost, tonic or hyper glue) to build. What the gateway needs is narrower: ids
//! in a fixed-size struct that costs nothing when nothing is recorded, a plain struct of the
//! few attributes handed to a bounded channel when something is, and one message shape encoded
//! off the request path. So the request path holds only [`RequestTrace`] (arrays and flags), the
//! exporter reuses the `reqwest` client the JWKS fetcher already brings, and the protobuf
//! encoding is written against the wire format ([`otlp`]), which the integration tests decode
//! with the reference `opentelemetry-proto` classes.
//!
//! No span attribute holds a header value: the server span has the method, the canonical path
//! (never the query), the route name, the status and the authentication result, so a token or
//! an `Authorization` value cannot reach a collector.

pub mod context;
pub mod exporter;
pub mod otlp;
pub mod span;

pub use context::{SpanId, TraceId};
pub use exporter::SpanQueue;
pub use span::{Outcome, RequestTrace, UpstreamOutcome};

use pingora::http::RequestHeader;

/// Sets the `traceparent` the upstream receives; `tracestate` is left exactly as the client
/// sent it.
pub fn inject(upstream_request: &mut RequestHeader, trace: &RequestTrace) -> pingora::Result<()> {
    upstream_request.insert_header("traceparent", trace.upstream_traceparent())
}
