//! The connection to the Redis that several instances share (conf/README.md §7), and what the
//! admin status, `/metrics` and the logs say about it.
//!
//! One process talks to one Redis, so the link is process-wide like the metrics registry: the
//! revocation follower, the shared rate limits and the login throttle all reach it through
//! [`link`] instead of threading it through every config snapshot. The client is built at start
//! (no I/O); the command connection is created by the Redis background service on its own
//! runtime, which lives as long as the process, and reconnects by itself with back-off.
//!
//! The password (from the URL or `password_env`) lives only inside the client: the URL is never
//! logged, and errors are the client library's own messages, which do not carry it.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisResult};

use crate::config::RedisConf;
use crate::metrics;

/// The longest pause between two reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

static LINK: OnceLock<Arc<RedisLink>> = OnceLock::new();

/// The process's link, once a `redis:` block has been configured at start.
pub fn link() -> Option<&'static Arc<RedisLink>> {
    LINK.get()
}

/// Makes `link` the process's link; only the first call counts (the block is read at start).
pub fn install(link: Arc<RedisLink>) {
    let _ = LINK.set(link);
}

/// Why the `redis:` block cannot be used; the messages name the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("redis.url: not a valid redis:// or rediss:// URL")]
    Url,
    #[error("redis.password_env: environment variable {0} is not set")]
    PasswordEnv(String),
}

pub struct RedisLink {
    client: Client,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// Set once by the Redis background service (see the module docs).
    commands: OnceLock<ConnectionManager>,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RedisLink {
    /// Builds the client; connects nothing yet.
    pub fn open(conf: &RedisConf) -> Result<RedisLink, LinkError> {
        let scheme_ok = matches!(conf.url.split_once("://"), Some(("redis" | "rediss", _)));
        if !scheme_ok {
            return Err(LinkError::Url);
        }
        let mut info = conf
            .url
            .as_str()
            .into_connection_info()
            .map_err(|_| LinkError::Url)?;
        if let Some(var) = &conf.password_env {
            let password = std::env::var(var).map_err(|_| LinkError::PasswordEnv(var.clone()))?;
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(|_| LinkError::Url)?;
        metrics::REDIS_UP.set(0);
        Ok(RedisLink {
            client,
            prefix: conf.prefix.clone(),
            connect_timeout: conf.connect_timeout.get(),
            command_timeout: conf.command_timeout.get(),
            commands: OnceLock::new(),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    /// Creates the shared command connection on the calling (long-lived) runtime.
    pub fn start_commands(&self) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_max_delay(MAX_BACKOFF);
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            Ok(manager) => {
                let _ = self.commands.set(manager);
            }
            Err(e) => self.failed("connect", &e),
        }
    }

    /// A handle on the shared command connection (cheap to clone), once it exists.
    pub fn commands(&self) -> Option<ConnectionManager> {
        self.commands.get().cloned()
    }

    /// Sends a PING on the shared command connection, so that after Redis came back it notices
    /// a dropped connection and reconnects now rather than on (and failing) the next command.
    pub async fn refresh_commands(&self) {
        if let Some(mut con) = self.commands() {
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut con);
            let _ = tokio::time::timeout(self.connect_timeout + self.command_timeout, ping).await;
        }
    }

    /// A connection of its own, for a blocking read that must not hold up other commands.
    pub async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// `prefix` + `name`: every key this gateway uses starts with the configured prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Redis answered: the link is up.
    pub fn up(&self) {
        if !self.connected.swap(true, Ordering::Relaxed) {
            log::info!("redis: connected");
        }
        metrics::REDIS_UP.set(1);
    }

    /// Redis did not answer `op` (or refused it): counted, remembered for the status, and the
    /// link is reported down until it answers again.
    pub fn down(&self, op: &str, error: &dyn Display) {
        self.failed(op, error);
        if self.connected.swap(false, Ordering::Relaxed) {
            log::error!("redis: connection lost ({error}); reconnecting");
        }
        metrics::REDIS_UP.set(0);
    }

    /// One operation failed without saying anything about the link as a whole (a slow answer to
    /// one command, a script error).
    pub fn failed(&self, op: &str, error: &dyn Display) {
        metrics::REDIS_ERRORS.with_label_values(&[op]).inc();
        *self.last_error.lock() = Some(format!("{op}: {error}"));
    }

    /// Whether the background service last found Redis answering.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// `(connected, last_error)` for `/admin/status`.
    pub fn status(&self) -> (bool, Option<String>) {
        (
            self.connected.load(Ordering::Relaxed),
            self.last_error.lock().clone(),
        )
    }
}
