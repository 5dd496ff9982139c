//! Stopping without waiting out the whole grace period.
//!
//! Pingora's graceful stop (SIGTERM, and the old process of a SIGQUIT upgrade) stops accepting,
//! then sleeps `server.grace_period_seconds` unconditionally before it shuts the runtimes down:
//! an idle gateway would sit there for the full period, and a busy one would wait for it long
//! after its last request finished. This service watches the client connections instead
//! (idle keep-alive connections close as soon as the stop begins, see `crate::connection`) and
//! ends the process once none is left. The grace period stays the ceiling: a connection still
//! open when it runs out is left to Pingora, which then cancels what remains within
//! `graceful_shutdown_timeout_seconds`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::connection::ConnectionCap;

/// How often the open-connection count is looked at during a stop. Short enough that a drained
/// gateway exits promptly, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

/// Lets the access-log writer thread (which drains its queue on every wake-up) write the lines
/// of the last requests before the process ends.
const LOG_FLUSH: Duration = Duration::from_millis(200);

/// Ends the process once a graceful stop has no client connection left to wait for.
pub struct DrainThenExit {
    pub connections: Arc<ConnectionCap>,
    /// `server.grace_period_seconds`: the longest the stop waits for connections to finish.
    pub grace: Duration,
}

#[async_trait]
impl BackgroundService for DrainThenExit {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let began = Instant::now();
        if wait_for_drain(&self.connections, self.grace).await {
            log::info!(
                "graceful stop: every client connection is finished after {:?}; exiting",
                began.elapsed()
            );
            tokio::time::sleep(LOG_FLUSH).await;
            std::process::exit(0);
        }
        log::warn!(
            "graceful stop: {} client connections still open after the grace period of {:?}",
            self.connections.open(),
            self.grace
        );
    }
}

/// True once no client connection is open (seen twice in a row, so a connection accepted just
/// before the listeners stopped has had time to count itself); false if `grace` ran out first.
async fn wait_for_drain(connections: &ConnectionCap, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    let mut seen_empty = false;
    loop {
        if connections.open() == 0 {
            if seen_empty {
                return true;
            }
            seen_empty = true;
        } else {
            seen_empty = false;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drained_as_soon_as_no_connection_is_left() {
        let cap = Arc::new(ConnectionCap::new(10));
        let slot = cap.acquire_for_test().unwrap();
        let waiting = tokio::spawn({
            let cap = Arc::clone(&cap);
            async move { wait_for_drain(&cap, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !waiting.is_finished(),
            "must wait while a connection is open"
        );
        let released = Instant::now();
        drop(slot);
        assert!(waiting.await.unwrap());
        assert!(released.elapsed() <= POLL * 3, "{:?}", released.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_is_the_ceiling() {
        let cap = ConnectionCap::new(10);
        let _slot = cap.acquire_for_test().unwrap();
        let began = Instant::now();
        assert!(!wait_for_drain(&cap, Duration::from_secs(3)).await);
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_means_done_within_two_polls() {
        let cap = ConnectionCap::new(10);
        let began = Instant::now();
        assert!(wait_for_drain(&cap, Duration::from_secs(30)).await);
        assert!(began.elapsed() <= POLL * 2);
    }
}
