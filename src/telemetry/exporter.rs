//! The span exporter: a bounded queue that request threads hand finished requests to, and a
//! background loop that sends them in batches to the OTLP/HTTP endpoint.
//!
//! A request never waits for the collector. Handing over is a `try_send` on a bounded channel;
//! when the queue is full (a slow or hanging collector), the request's spans are dropped and
//! counted in `portcullis_trace_spans_dropped_total`, as are the spans of a batch the collector
//! refused or did not take within [`EXPORT_TIMEOUT`]. One export is in flight at a time, so a
//! dead collector costs one connection attempt per batch, not one per request.

use std::time::Duration;

use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use tokio::sync::mpsc::{self, error::TrySendError, Receiver, Sender};

use super::otlp;
use super::span::{Outcome, Recorded, RequestTrace};
use crate::config::TracingConf;
use crate::metrics;

/// Finished requests (each up to three spans) waiting for export.
pub const QUEUE_CAPACITY: usize = 4096;
/// Requests per export request.
const MAX_BATCH: usize = 1024;
/// How long the first span of a batch waits for company before the batch is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// An export the collector has not answered by then is abandoned and its spans counted dropped.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SpanQueue {
    tx: Sender<Recorded>,
    /// Taken once by the export loop.
    rx: Mutex<Option<Receiver<Recorded>>>,
}

impl Default for SpanQueue {
    fn default() -> Self {
        SpanQueue::new(QUEUE_CAPACITY)
    }
}

impl SpanQueue {
    pub fn new(capacity: usize) -> SpanQueue {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        // Registered up front, so the series exists at 0 before anything is dropped.
        std::sync::LazyLock::force(&metrics::TRACE_SPANS_DROPPED);
        SpanQueue {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Hands a finished request's spans to the exporter, if the request is recorded. Never
    /// blocks: a full queue drops them.
    pub fn submit(&self, trace: &RequestTrace, outcome: &Outcome<'_>) {
        if !trace.recording {
            return;
        }
        let rec = Recorded::new(trace, outcome);
        let spans = rec.span_count();
        match self.tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => dropped(spans),
        }
    }

    /// The receiving end, for the one export loop.
    pub fn take_receiver(&self) -> Option<Receiver<Recorded>> {
        self.rx.lock().take()
    }
}

fn dropped(spans: u64) {
    let before = metrics::TRACE_SPANS_DROPPED.get();
    metrics::TRACE_SPANS_DROPPED.inc_by(spans);
    let after = before + spans;
    // A log line on the first drop and then at every power of two, not one per span.
    if before == 0 || after.ilog2() != before.ilog2() {
        log::warn!("trace export is behind or failing; {after} spans dropped so far");
    }
}

/// Batches and sends until shutdown; `settings` is read per batch, so a reload that changes the
/// endpoint or service name applies from the next batch.
pub async fn run(
    mut rx: Receiver<Recorded>,
    settings: impl Fn() -> TracingConf,
    mut shutdown: ShutdownWatch,
) {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(EXPORT_TIMEOUT)
        .no_proxy()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("cannot build the trace exporter's HTTP client: {e}; spans are dropped");
            None
        }
    };
    let mut batch: Vec<Recorded> = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        export(client.as_ref(), &settings(), &batch).await;
        batch.clear();
    }
    // What was queued at shutdown gets one last attempt, bounded by the export timeout.
    while let Ok(r) = rx.try_recv() {
        batch.push(r);
    }
    if !batch.is_empty() {
        export(client.as_ref(), &settings(), &batch).await;
    }
}

async fn export(client: Option<&reqwest::Client>, settings: &TracingConf, batch: &[Recorded]) {
    let spans: u64 = batch.iter().map(Recorded::span_count).sum();
    let Some(client) = client else {
        return dropped(spans);
    };
    let body = otlp::encode(batch, &settings.service_name);
    let sent = client
        .post(&settings.otlp_endpoint)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => {
            // Read the (small) answer so the connection can be reused.
            let _ = resp.bytes().await;
        }
        Ok(resp) => {
            log::debug!("trace collector answered {}", resp.status());
            dropped(spans);
        }
        Err(e) => {
            log::debug!("trace export failed: {e}");
            dropped(spans);
        }
    }
}
