//! `limits.header_read_timeout`: a bound on the *total* time a client may take to send a request
//! head (slowloris). Pingora only bounds each individual read (60 s on a new connection), so a
//! client dribbling one byte every few seconds could hold a connection forever.
//!
//! Pingora gives no hook between accept and a parsed head, so this wraps the proxy's
//! `ServerApp`: the connection's future runs under a deadline, and the request path marks, via a
//! task-local, when a head has been parsed (`request_started`) and when the response is done
//! (`request_finished`). HTTP/1 requests run inline in the connection's task, so the task-local
//! is visible there; HTTP/2 streams run in tasks of their own and are left to h2's own limits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

tokio::task_local! {
    static CONNECTION: Arc<ConnState>;
}

struct ConnState {
    opened: Instant,
    in_request: AtomicBool,
    served_any: AtomicBool,
    /// Milliseconds after `opened` when the last response finished.
    idle_since_ms: AtomicU64,
}

/// Called once the request head is parsed.
pub fn request_started() {
    let _ = CONNECTION.try_with(|c| c.in_request.store(true, Ordering::Relaxed));
}

/// Called when a request is done; the next head's clock starts now.
pub fn request_finished() {
    let _ = CONNECTION.try_with(|c| {
        c.idle_since_ms
            .store(c.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.served_any.store(true, Ordering::Relaxed);
        c.in_request.store(false, Ordering::Relaxed);
    });
}

pub struct HeadTimeout<A> {
    pub inner: Arc<A>,
    /// Budget for the first head on a connection.
    pub head: Duration,
    /// Budget for a later head: the keepalive idle time plus the head time.
    pub next_head: Duration,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadTimeout<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let state = Arc::new(ConnState {
            opened: Instant::now(),
            in_request: AtomicBool::new(false),
            served_any: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        });
        let work = CONNECTION.scope(Arc::clone(&state), self.inner.process_new(stream, shutdown));
        tokio::pin!(work);
        loop {
            let deadline = if state.in_request.load(Ordering::Relaxed) {
                // A request is being served; its own timeouts apply. Look again later.
                Instant::now() + self.head
            } else {
                let since = Duration::from_millis(state.idle_since_ms.load(Ordering::Relaxed));
                let budget = if state.served_any.load(Ordering::Relaxed) {
                    self.next_head
                } else {
                    self.head
                };
                state.opened + since + budget
            };
            tokio::select! {
                result = &mut work => return result,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if !state.in_request.load(Ordering::Relaxed) && Instant::now() >= deadline {
                        // Dropping the connection's future closes the socket.
                        return None;
                    }
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
