//! OTLP/HTTP protobuf encoding of finished requests: one `ExportTraceServiceRequest`
//! (opentelemetry-proto `collector/trace/v1`) per batch.
//!
//! Written against the wire format directly rather than through generated code: the gateway
//! sends one fixed message shape with a handful of fields, and a forty-line encoder is cheaper to
//! build and to read than `prost` plus `opentelemetry-proto` and their build-time code generation.
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`; the integration tests decode what
//! the gateway sends with the reference protobuf classes.

use super::span::{Recorded, UpstreamCall};
use super::SpanId;

/// `Span.SpanKind`.
#[derive(Clone, Copy)]
enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// `Status.StatusCode`: unset unless the span failed.
const STATUS_ERROR: u64 = 2;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// Appends protobuf fields to a buffer. Nested messages are written into a scratch buffer first
/// and copied behind their length; this runs off the request path, where simplicity wins.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn uint(&mut self, field: u32, v: u64) {
        self.tag(field, VARINT);
        self.varint(v);
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn message(&mut self, field: u32, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(field, &inner.0);
    }

    /// `KeyValue { key = 1; AnyValue value = 2 }` with `AnyValue.string_value = 1`.
    fn attr_str(&mut self, field: u32, key: &str, value: &str) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |v| v.string(1, value));
        });
    }

    /// `AnyValue.int_value = 3` (an int64, as a varint).
    fn attr_int(&mut self, field: u32, key: &str, value: i64) {
        self.message(field, |kv| {
            kv.string(1, key);
            kv.message(2, |v| v.uint(3, value as u64));
        });
    }
}

/// One span's envelope; attributes are added by the caller.
struct SpanHead<'a> {
    trace_id: &'a [u8; 16],
    span_id: &'a SpanId,
    parent: Option<&'a SpanId>,
    name: &'a str,
    kind: Kind,
    start_ns: u64,
    end_ns: u64,
    failed: bool,
}

fn span(out: &mut Writer, head: SpanHead<'_>, attrs: impl FnOnce(&mut Writer)) {
    // ScopeSpans.spans = 2
    out.message(2, |s| {
        s.bytes(1, head.trace_id);
        s.bytes(2, &head.span_id.0);
        if let Some(p) = head.parent {
            s.bytes(4, &p.0);
        }
        s.string(5, head.name);
        s.uint(6, head.kind as u64);
        s.fixed64(7, head.start_ns);
        s.fixed64(8, head.end_ns.max(head.start_ns));
        attrs(s); // Span.attributes = 9
        if head.failed {
            s.message(15, |st| st.uint(3, STATUS_ERROR));
        }
    });
}

/// The request body for one export: every span of `batch` under one resource and scope.
pub fn encode(batch: &[Recorded], service_name: &str) -> Vec<u8> {
    let mut req = Writer::default();
    // ExportTraceServiceRequest.resource_spans = 1
    req.message(1, |rs| {
        // ResourceSpans.resource = 1 { attributes = 1 }
        rs.message(1, |r| r.attr_str(1, "service.name", service_name));
        // ResourceSpans.scope_spans = 2
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.string(1, "portcullis");
                scope.string(2, env!("CARGO_PKG_VERSION"));
            });
            for r in batch {
                request_spans(ss, r);
            }
        });
    });
    req.0
}

fn request_spans(out: &mut Writer, r: &Recorded) {
    let name = match &r.route {
        Some(route) => format!("{} {route}", r.method),
        None => r.method.clone(),
    };
    let head = SpanHead {
        trace_id: &r.trace_id.0,
        span_id: &r.span_id,
        parent: r.parent.as_ref(),
        name: &name,
        kind: Kind::Server,
        start_ns: r.start_ns,
        end_ns: r.end_ns,
        failed: r.status == 0 || r.status >= 500,
    };
    span(out, head, |a| {
        a.attr_str(9, "http.request.method", &r.method);
        a.attr_str(9, "url.path", &r.path);
        if let Some(route) = &r.route {
            a.attr_str(9, "http.route", route);
        }
        if r.status > 0 {
            a.attr_int(9, "http.response.status_code", i64::from(r.status));
        }
        if let Some(result) = r.auth {
            a.attr_str(9, "portcullis.auth.result", result);
        }
    });
    if let Some((start_ns, end_ns)) = r.verification {
        let id = SpanId::random();
        let head = SpanHead {
            trace_id: &r.trace_id.0,
            span_id: &id,
            parent: Some(&r.span_id),
            name: "verify token",
            kind: Kind::Internal,
            start_ns,
            end_ns,
            failed: false,
        };
        span(out, head, |a| {
            a.attr_str(9, "portcullis.token_cache", "miss")
        });
    }
    if let Some(up) = &r.upstream {
        upstream_span(out, r, up);
    }
}

fn upstream_span(out: &mut Writer, r: &Recorded, up: &UpstreamCall) {
    let head = SpanHead {
        trace_id: &r.trace_id.0,
        span_id: &up.span_id,
        parent: Some(&r.span_id),
        name: &r.method,
        kind: Kind::Client,
        start_ns: up.start_ns,
        end_ns: up.end_ns,
        failed: up.status.is_none_or(|s| s >= 400),
    };
    span(out, head, |a| {
        a.attr_str(9, "http.request.method", &r.method);
        let (host, port) = up.peer.rsplit_once(':').unwrap_or((&up.peer, ""));
        a.attr_str(
            9,
            "server.address",
            host.trim_start_matches('[').trim_end_matches(']'),
        );
        if let Ok(port) = port.parse::<u16>() {
            a.attr_int(9, "server.port", i64::from(port));
        }
        a.attr_str(9, "portcullis.upstream", &up.upstream);
        if let Some(status) = up.status {
            a.attr_int(9, "http.response.status_code", i64::from(status));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_lengths() {
        let mut w = Writer::default();
        w.uint(1, 300);
        assert_eq!(w.0, [0x08, 0xac, 0x02]);
        let mut w = Writer::default();
        w.string(2, "hi");
        assert_eq!(w.0, [0x12, 0x02, b'h', b'i']);
        let mut w = Writer::default();
        w.fixed64(7, 1);
        assert_eq!(w.0, [0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
        let mut w = Writer::default();
        w.attr_int(9, "k", -1);
        // A negative int64 is ten varint bytes.
        assert_eq!(w.0.len(), 2 + 3 + 2 + 1 + 10);
    }
}
