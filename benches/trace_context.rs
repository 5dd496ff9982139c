//! What W3C trace context costs a request that is not recorded (tracing off, the default): read
//! the incoming `traceparent`, draw the ids, and write the upstream's `traceparent`. The
//! comparison benchmark cannot resolve a difference this small on a shared machine, so the
//! per-request cost is measured here and set against the whole request's CPU (README,
//! "Performance").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;

use criterion::Criterion;
use pingora::http::RequestHeader;

use portcullis::config::TracingConf;
use portcullis::telemetry::{self, RequestTrace};

/// A typical proxied request head, as the upstream request filter sees it.
fn upstream_request(traceparent: Option<&str>) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/orders/42", None).unwrap();
    for (name, value) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-forwarded-for", "10.0.0.1"),
    ] {
        req.insert_header(name, value).unwrap();
    }
    if let Some(tp) = traceparent {
        req.insert_header("traceparent", tp).unwrap();
    }
    req
}

fn trace_context(c: &mut Criterion) {
    let off = TracingConf::default();
    let mut group = c.benchmark_group("trace_context");
    for (name, incoming) in [
        ("new_trace", None),
        (
            "continued",
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ),
    ] {
        let template = upstream_request(incoming);
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || template.clone(),
                |req| {
                    let trace = RequestTrace::start(&req.headers, black_box(&off));
                    telemetry::inject(req, &trace).unwrap();
                    black_box(trace.trace_id.hex().as_str().len())
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    // The same head without trace context, to subtract the clone that every iteration pays.
    let template = upstream_request(None);
    group.bench_function("baseline_clone", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |req| black_box(req.headers.len()),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

common::bench_main!(trace_context);
