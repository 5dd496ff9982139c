//! One JSON line per request, written by a dedicated thread.
//!
//! Request threads only format the line and hand it over through a bounded channel, so a slow
//! disk or a blocked stdout pipe can never stall proxying; if the writer falls behind, lines are
//! dropped and counted rather than queued without bound. The writer thread is started on first
//! use, which is after Pingora has daemonized (threads do not survive the fork).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Fields of one access-log line. Deliberately has no place for headers, so neither the
/// Authorization header nor a token can ever be logged; the path is the canonical path without
/// its query, since queries may carry `access_token=`.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub client_ip: String,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub upstream: Option<&'a str>,
    pub peer: Option<&'a str>,
    pub duration_ms: f64,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'a str>,
    /// The W3C trace id the request belongs to (conf/README.md §9), to find its spans.
    pub trace_id: &'a str,
}

pub struct AccessLog {
    target: Option<PathBuf>,
    sender: OnceLock<SyncSender<String>>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// `target`: a file to append to, or `None` for stdout.
    pub fn new(target: Option<PathBuf>) -> AccessLog {
        AccessLog {
            target,
            sender: OnceLock::new(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn log(&self, entry: &Entry<'_>) {
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        let sender = self.sender.get_or_init(|| self.start_writer());
        if let Err(TrySendError::Full(_)) = sender.try_send(line) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("access log writer is behind; {n} lines dropped so far");
            }
        }
    }

    fn start_writer(&self) -> SyncSender<String> {
        let (tx, rx) = sync_channel::<String>(16 * 1024);
        let target = self.target.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer_loop(rx, target));
        if let Err(e) = spawned {
            log::error!("cannot start the access-log writer: {e}");
        }
        tx
    }
}

fn writer_loop(rx: Receiver<String>, target: Option<PathBuf>) {
    let sink: Box<dyn Write> = match &target {
        None => Box::new(std::io::stdout()),
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                log::error!(
                    "cannot open access log {}: {e}; logging to stdout",
                    path.display()
                );
                Box::new(std::io::stdout())
            }
        },
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let _ = out.write_all(line.as_bytes());
                // Drain what is already queued, then flush once: one syscall per burst.
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(more.as_bytes());
                }
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds, the access log's `time` field.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, now.subsec_nanos())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
        assert_eq!(&t[10..11], "T");
    }
}
