//! Assembles the Pingora server from a validated config: one proxy service per public/internal
//! listener (each knows which listener it serves), the admin and metrics apps, and the
//! background loops.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceReadyNotifier;
use pingora::tls::ssl::SslMode;

use crate::access_log::AccessLog;
use crate::admin::{AdminApp, MetricsApp};
use crate::auth::provider::ProviderRuntime;
use crate::clock::unix_now;
use crate::config::{LoadedConfig, PinnedSections, ServerConfCopyError};
use crate::connection::{ConnectionCap, ConnectionGuard};
use crate::pipeline::ListenerKind;
use crate::proxy::Gateway;
use crate::redis_link::{self, LinkError, RedisLink};
use crate::reload;
use crate::revocation::service::{OpenError, Revocations};
use crate::runtime::Persistent;
use crate::runtime::Snapshot;
use crate::shutdown::DrainThenExit;
use crate::state::Shared;
use crate::telemetry::{self, SpanQueue};
use crate::upstream::{HealthLoop, Upstream};

/// Runs the health probes of whatever upstreams the current snapshot holds.
struct HealthService {
    shared: Arc<Shared>,
}

impl HealthService {
    fn health_loop(&self) -> HealthLoop<impl Fn() -> Vec<Arc<Upstream>> + Send + Sync + '_> {
        HealthLoop {
            upstreams: move || {
                self.shared
                    .snapshot
                    .load()
                    .upstreams
                    .values()
                    .cloned()
                    .collect()
            },
        }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let lp = self.health_loop();
        // Proxies wait for this: serving before the first probe round would answer 503 for
        // peers that are in fact up.
        lp.first_round().await;
        ready.notify_ready();
        lp.run(shutdown).await;
    }
}

/// Periodic chores off the request path: applying revocations another process appended to the
/// log (the other side of a graceful upgrade), sweeping expired revocations and expired cache
/// entries, and reloading the config on SIGHUP.
struct Housekeeping {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot listen for SIGHUP ({e}); reload with POST /admin/reload");
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let shared = Arc::clone(&self.shared);
                    // Reload reads files; keep it off this runtime's worker.
                    let _ = tokio::task::spawn_blocking(move || reload::reload(&shared)).await;
                }
                _ = tick.tick() => {
                    let shared = Arc::clone(&self.shared);
                    // Reads the revocation log; keep it off this runtime's worker.
                    let _ = tokio::task::spawn_blocking(move || shared.revocations.follow()).await;
                    let now = unix_now();
                    self.shared.revocations.sweep(now);
                    if let Some(auth) = &self.shared.snapshot.load().auth {
                        auth.cache().sweep(now);
                    }
                }
            }
        }
    }
}

/// Runs the JWKS refresh loop of every provider the current snapshot uses. It polls the snapshot,
/// so a reload that adds or replaces a provider needs no signalling; a loop whose provider left
/// the config is told to stop.
struct KeyRefreshService {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for KeyRefreshService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running: Vec<(Arc<ProviderRuntime>, tokio::sync::watch::Sender<bool>)> = Vec::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            let current = self.shared.snapshot.load().provider_runtimes.clone();
            running.retain(|(rt, stop)| {
                let keep = current.iter().any(|c| Arc::ptr_eq(c, rt));
                if !keep {
                    let _ = stop.send(true);
                }
                keep
            });
            for rt in current {
                if running.iter().any(|(r, _)| Arc::ptr_eq(r, &rt)) {
                    continue;
                }
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(rt.on_key_changes(
                    stop_rx.clone(),
                    drop_stale_cache_entries(Arc::clone(&self.shared)),
                ));
                tokio::spawn(Arc::clone(&rt).run(stop_rx));
                running.push((rt, stop_tx));
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    for (_, stop) in &running {
                        let _ = stop.send(true);
                    }
                    return;
                }
                _ = tick.tick() => {}
            }
        }
    }
}

/// Frees cache entries verified by keys that just left a provider's key set. Lookups already
/// ignore such entries; this only gives the memory back promptly.
fn drop_stale_cache_entries(shared: Arc<Shared>) -> impl FnMut(&ProviderRuntime) + Send + 'static {
    move |rt| {
        let live = rt.keys().uids();
        if let Some(auth) = &shared.snapshot.load().auth {
            auth.cache().retain_provider_keys(rt.name(), &live);
        }
    }
}

/// Sends recorded spans to the OTLP endpoint of the config in force (conf/README.md §9). Runs
/// whether or not tracing is enabled, so a reload can turn it on; idle, it waits on its queue.
struct TraceExport {
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for TraceExport {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(rx) = self.shared.spans.take_receiver() else {
            return;
        };
        let settings = || self.shared.snapshot.load().tracing.clone();
        telemetry::exporter::run(rx, settings, shutdown).await;
    }
}

/// Everything the gateway does with Redis in the background (conf/README.md §7): the shared
/// command connection, following the shared revocation list, and telling whether Redis is up.
struct RedisService {
    link: Arc<RedisLink>,
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for RedisService {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.link.start_commands();
        match self.shared.revocations.redis() {
            // Proxies wait for the first load attempt, so a fresh instance that can reach Redis
            // refuses revoked tokens from its first request; one that cannot still starts.
            Some(follower) => follower.follow(shutdown, || ready.notify_ready()).await,
            None => {
                ready.notify_ready();
                watch_link(&self.link, shutdown).await;
            }
        }
    }
}

/// Without a revocation follower, a PING a second keeps `portcullis_redis_up` and the status
/// current for the shared rate limits and login throttle.
async fn watch_link(link: &RedisLink, mut shutdown: ShutdownWatch) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let Some(mut con) = link.commands() else {
            continue;
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut con);
        match tokio::time::timeout(link.connect_timeout() + link.command_timeout(), ping).await {
            Ok(Ok(_)) => link.up(),
            Ok(Err(e)) => link.down("ping", &e),
            Err(_) => link.down("ping", &"timed out"),
        }
    }
}

/// Why the gateway could not start; each names the config section at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Revocations(#[from] OpenError),
    #[error(transparent)]
    Redis(#[from] LinkError),
    #[error("{}", .0.join("\n"))]
    Snapshot(Vec<String>),
    #[error("server: {0}")]
    Server(#[from] ServerConfCopyError),
    #[error("listeners.https: cannot load certificate or key: {0}")]
    Tls(Box<pingora::Error>),
}

pub fn run(opt: Opt, config_path: &Path, mut loaded: LoadedConfig) -> Result<(), StartError> {
    // Also with -u: the log's lock keeps the compaction from overtaking an append of the old
    // process, which keeps answering admin requests until the hand-over.
    let link = match &loaded.config.redis {
        Some(conf) => Some(Arc::new(RedisLink::open(conf)?)),
        None => None,
    };
    if let Some(l) = &link {
        redis_link::install(Arc::clone(l));
    }
    let revocations = Revocations::open(
        &loaded.config.revocation,
        &loaded.base_dir,
        unix_now(),
        link.as_ref(),
    )?;
    let keep = Persistent::default();
    let snapshot = Snapshot::build(&loaded, &keep).map_err(StartError::Snapshot)?;
    keep.adopt(&snapshot);
    let access_log = loaded.config.access_log.enabled.then(|| {
        AccessLog::new(
            loaded
                .config
                .access_log
                .path
                .as_ref()
                .map(|p| loaded.resolve(p)),
        )
    });
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        keep,
        revocations,
        access_log,
        spans: SpanQueue::default(),
        config_path: config_path.to_path_buf(),
        pinned: PinnedSections::of(&loaded.config)?,
        reload_lock: parking_lot::Mutex::new(()),
        started_at: crate::clock::unix_now(),
        last_reload: parking_lot::Mutex::new(None),
    });

    let server_conf = std::mem::take(&mut loaded.config.server);
    let threads = server_conf.threads.max(1);
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();
    // With -u, bootstrap returned when the old process handed its sockets over; apply what it
    // acknowledged until then before this process serves anything.
    shared.revocations.follow();

    let health_handle = server.add_service(background_service(
        "upstream health",
        HealthService {
            shared: Arc::clone(&shared),
        },
    ));

    server.add_service(background_service(
        "housekeeping",
        Housekeeping {
            shared: Arc::clone(&shared),
        },
    ));
    server.add_service(background_service(
        "trace export",
        TraceExport {
            shared: Arc::clone(&shared),
        },
    ));
    server.add_service(background_service(
        "jwks refresh",
        KeyRefreshService {
            shared: Arc::clone(&shared),
        },
    ));

    let listeners = &loaded.config.listeners;
    let limits = &loaded.config.limits;
    let mut server_options = HttpServerOptions::default();
    server_options.h2_idle_timeout = Some(limits.keepalive_timeout.get());
    // Pingora counts reuses, not requests: a limit of N requests is N - 1 reuses.
    server_options.keepalive_request_limit = Some(limits.keepalive_requests.saturating_sub(1));
    // Let CONNECT reach our request filter, which refuses it with the contract's JSON 400.
    server_options.allow_connect_method_proxying = true;
    let head = limits.header_read_timeout.get();
    let next_head = limits.keepalive_timeout.get() + head;
    let cap = Arc::new(ConnectionCap::new(limits.max_connections));
    server.add_service(background_service(
        "drain then exit",
        DrainThenExit {
            connections: Arc::clone(&cap),
            grace: Duration::from_secs(server.configuration.grace_period_seconds.unwrap_or(0)),
        },
    ));
    let proxy = |kind: ListenerKind, name: &str, threads: usize| {
        let gw = Gateway {
            listener: kind,
            shared: Arc::clone(&shared),
        };
        let mut app = pingora::proxy::http_proxy(&server.configuration, gw);
        app.server_options = Some(server_options.clone());
        let mut svc = Service::new(
            name.to_string(),
            ConnectionGuard::new(app, name, head, next_head, Arc::clone(&cap)),
        );
        svc.threads = Some(threads);
        svc
    };

    let mut services = Vec::new();
    if let Some(l) = &listeners.http {
        let mut svc = proxy(ListenerKind::Http, "http", threads);
        svc.add_listener(ListenerConfig::tcp(&l.addr).l4_buffer(plain_buffers()));
        services.push(svc);
    }
    if let Some(l) = &listeners.https {
        let cert = loaded.resolve(&l.cert);
        let key = loaded.resolve(&l.key);
        let mut tls = TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy())
            .map_err(StartError::Tls)?;
        if l.http2 {
            tls.enable_h2();
        }
        // OpenSSL keeps a read and a write buffer of over 16 KiB per connection; an idle
        // keep-alive connection does not need them, so they are freed while it waits.
        tls.set_mode(SslMode::RELEASE_BUFFERS);
        let mut svc = proxy(ListenerKind::Https, "https", threads);
        svc.add_listener(
            ListenerConfig::tcp(&l.addr)
                .tls(tls)
                .l4_buffer(tls_buffers()),
        );
        services.push(svc);
    }
    if let Some(l) = &listeners.internal {
        let mut svc = proxy(ListenerKind::Internal, "internal", 1);
        svc.add_listener(ListenerConfig::tcp(&l.addr).l4_buffer(plain_buffers()));
        services.push(svc);
    }
    let redis_handle = link.map(|link| {
        server.add_service(background_service(
            "redis",
            RedisService {
                link,
                shared: Arc::clone(&shared),
            },
        ))
    });
    for svc in services {
        let handle = server.add_service(svc);
        handle.add_dependency(&health_handle);
        if let Some(r) = &redis_handle {
            handle.add_dependency(r);
        }
    }
    if let Some(l) = &listeners.admin {
        let mut svc = Service::new(
            "admin".to_string(),
            AdminApp {
                shared: Arc::clone(&shared),
            },
        );
        svc.add_tcp(&l.addr);
        svc.threads = Some(1);
        server.add_service(svc);
    }
    if let Some(l) = &listeners.metrics {
        let mut svc = Service::new("metrics".to_string(), MetricsApp);
        svc.add_tcp(&l.addr);
        svc.threads = Some(1);
        server.add_service(svc);
    }
    server.run_forever()
}

/// Plain-HTTP listeners read through a 16 KiB buffer instead of Pingora's 64 KiB: a request
/// head rarely needs more, and a body streams through it in the same number of reads as it
/// arrives in TCP segments. Under jemalloc the untouched part of a buffer costs nothing, but
/// the smaller size bounds what one connection can keep resident (README, "Memory per
/// connection").
fn plain_buffers() -> L4BufferSettings {
    L4BufferSettings::default().read(16 * 1024)
}

/// TLS listeners keep Pingora's 64 KiB read buffer: OpenSSL reads whole 16 KiB records through
/// it, and a larger buffer takes several records per system call.
fn tls_buffers() -> L4BufferSettings {
    L4BufferSettings::default()
}
