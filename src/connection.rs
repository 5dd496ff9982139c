//! What the gateway does per client connection, around Pingora's HTTP app: the connection cap
//! (`limits.max_connections`), the open-connection gauge, and the whole-head deadline
//! (`limits.header_read_timeout`) that stops slowloris.
//!
//! Pingora bounds each individual read (60 s on a new connection), so a client dribbling one
//! byte every few seconds could otherwise hold a connection forever, and it gives no hook
//! between accept and a parsed head. So this wraps the proxy's `ServerApp`: it runs the
//! connection's whole keep-alive sequence of requests itself, under one deadline that the
//! request path moves through a task-local (`request_started` once a head is parsed,
//! `request_finished` when the response is done). HTTP/1 requests run inline in the
//! connection's task, so the task-local is visible there; HTTP/2 streams run in tasks of their
//! own and are left to h2's own limits.
//!
//! One state, one task-local scope and one timer serve every request on the connection (Pingora
//! would otherwise call the app once per request), so a request on a kept-alive connection
//! costs a few atomic stores, not an allocation and a timer.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;

use crate::metrics;

tokio::task_local! {
    static CONNECTION: Arc<ConnState>;
}

/// Per-connection state: written by the request path inside the connection's task, read by the
/// deadline loop around it.
struct ConnState {
    opened: Instant,
    in_request: AtomicBool,
    served_any: AtomicBool,
    /// Milliseconds after `opened` when the last response finished.
    idle_since_ms: AtomicU64,
}

impl ConnState {
    /// When the connection must have sent its next head, or `None` while a request is served.
    fn deadline(&self, head: Duration, next_head: Duration) -> Option<Instant> {
        if self.in_request.load(Ordering::Relaxed) {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        let budget = if self.served_any.load(Ordering::Relaxed) {
            next_head
        } else {
            head
        };
        Some(self.opened + since + budget)
    }
}

/// Called once the request head is parsed.
pub fn request_started() {
    let _ = CONNECTION.try_with(|c| c.in_request.store(true, Ordering::Relaxed));
}

/// Called when a request is done; the next head's clock starts now.
pub fn request_finished() {
    let _ = CONNECTION.try_with(|c| {
        let ms = u64::try_from(c.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        c.idle_since_ms.store(ms, Ordering::Relaxed);
        c.served_any.store(true, Ordering::Relaxed);
        c.in_request.store(false, Ordering::Relaxed);
    });
}

/// Open client connections over every proxy listener, against `limits.max_connections`.
pub struct ConnectionCap {
    open: AtomicUsize,
    max: usize,
}

impl ConnectionCap {
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Client connections open now; a graceful stop waits for this to reach zero.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn acquire_for_test(&self) -> Option<impl Drop + '_> {
        self.try_acquire()
    }

    fn try_acquire(&self) -> Option<Slot<'_>> {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self))
    }
}

/// A place under the cap, given back when the connection ends however it ends.
struct Slot<'a>(&'a ConnectionCap);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gauge, decremented on drop so a connection that panics or is cancelled is not counted
/// forever.
struct Counted<'a>(&'a IntGauge);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct ConnectionGuard<A> {
    inner: Arc<A>,
    /// Budget for the first head on a connection.
    head: Duration,
    /// Budget for a later head: the keepalive idle time plus the head time.
    next_head: Duration,
    cap: Arc<ConnectionCap>,
    open: IntGauge,
    rejected: IntCounter,
}

impl<A> ConnectionGuard<A> {
    /// `listener` labels this listener's series; `cap` is shared by every proxy listener.
    pub fn new(
        inner: A,
        listener: &str,
        head: Duration,
        next_head: Duration,
        cap: Arc<ConnectionCap>,
    ) -> ConnectionGuard<A> {
        ConnectionGuard {
            inner: Arc::new(inner),
            head,
            next_head,
            cap,
            open: metrics::DOWNSTREAM_CONNECTIONS.with_label_values(&[listener]),
            rejected: metrics::CONNECTIONS_REJECTED.with_label_values(&[listener]),
        }
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> ConnectionGuard<A> {
    /// Serves HTTP/1 requests on the connection until it closes or the head deadline passes.
    async fn serve_http1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let state = Arc::new(ConnState {
            opened: Instant::now(),
            in_request: AtomicBool::new(false),
            served_any: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        });
        let work = CONNECTION.scope(Arc::clone(&state), self.keepalive_loop(stream, shutdown));
        tokio::pin!(work);
        let timer = tokio::time::sleep(self.head);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                () = &mut work => return,
                () = &mut timer => {}
            }
            // The timer fired: close unless a request is being served (its own timeouts apply;
            // look again later) or the deadline moved on since the timer was set.
            let now = Instant::now();
            match state.deadline(self.head, self.next_head) {
                None => timer.as_mut().reset(now + self.head),
                Some(d) if d > now => timer.as_mut().reset(d),
                // Dropping the connection's future closes the socket.
                Some(_) => return,
            }
        }
    }

    /// Pingora's own HTTP/1 keep-alive loop, with one difference: between two requests only the
    /// socket is held. Pingora builds the next HTTP session and enters the proxy's request
    /// future (several KiB, sized for the whole proxy path) as soon as a response is done, so
    /// an idle keep-alive connection would keep both alive while it waits; here they are built
    /// when the next request's first byte arrives. Pipelining stays off, so no request bytes
    /// are ever carried over in the persistent settings.
    async fn keepalive_loop(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let reuses = self
            .inner
            .server_options()
            .and_then(|o| o.keepalive_request_limit);
        let mut next = Some((stream, None));
        while let Some((mut stream, settings)) = next {
            if !next_request_arrives(&mut stream, shutdown).await {
                return;
            }
            let mut session = ServerSession::new_http1(stream);
            match settings {
                Some(settings) => HttpPersistentSettings::apply_to_session(settings, &mut session),
                None => {
                    // Pingora's defaults for a new connection; the proxy sets the real
                    // keep-alive timeout per request.
                    session.set_keepalive((!*shutdown.borrow()).then_some(60));
                    session.set_keepalive_reuses_remaining(reuses);
                }
            }
            next = self
                .inner
                .process_new_http(session, shutdown)
                .await
                .map(ReusedHttpStream::consume);
        }
    }
}

/// Waits for the first byte of the next request with only the socket held. The HTTP session
/// and the proxy's per-request future (several KiB each) are built once there is a request to
/// serve, so an idle keep-alive connection costs little more than its socket. `false`: the
/// client closed, or the server is shutting down, so the idle connection is closed.
async fn next_request_arrives(stream: &mut Stream, shutdown: &ShutdownWatch) -> bool {
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow() {
        return false;
    }
    let mut first = [0u8; 1];
    tokio::select! {
        biased;
        // `try_peek` puts the byte back; a transport that cannot peek (TLS) answers at once.
        peeked = stream.try_peek(&mut first) => peeked.is_ok(),
        _ = shutdown.changed() => false,
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = self.cap.try_acquire() else {
            self.rejected.inc();
            // Dropping the stream closes it before a byte is read.
            return None;
        };
        self.open.inc();
        let _counted = Counted(&self.open);
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if h2c || matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes streams in tasks of their own; Pingora runs the connection.
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
