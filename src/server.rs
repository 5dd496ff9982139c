//! Assembles the Pingora server from a validated config: one proxy service per public/internal
//! listener (each knows which listener it serves), the admin and metrics apps, and the
//! background loops.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::Opt;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceReadyNotifier;

use crate::access_log::AccessLog;
use crate::admin::{AdminApp, MetricsApp};
use crate::auth::provider::ProviderRuntime;
use crate::config::LoadedConfig;
use crate::proxy::{Gateway, ListenerKind, Shared};
use crate::revocation::RevocationList;
use crate::runtime::Persistent;
use crate::runtime::Snapshot;
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
                tokio::spawn(Arc::clone(&rt).run(stop_rx));
                tokio::spawn(drop_stale_cache_entries(
                    Arc::clone(&self.shared),
                    Arc::clone(&rt),
                ));
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
async fn drop_stale_cache_entries(shared: Arc<Shared>, rt: Arc<ProviderRuntime>) {
    let mut changes = rt.subscribe();
    while changes.changed().await.is_ok() {
        let live = rt.keys().uids();
        if let Some(auth) = &shared.snapshot.load().auth {
            auth.cache().retain_provider_keys(rt.name(), &live);
        }
    }
}

pub fn run(opt: Opt, mut loaded: LoadedConfig) -> Result<(), String> {
    let keep = Persistent::new(Arc::new(RevocationList::new()));
    let snapshot = Snapshot::build(&loaded, &keep).map_err(|e| e.join("\n"))?;
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
        access_log,
    });

    let server_conf = std::mem::take(&mut loaded.config.server);
    let threads = server_conf.threads.max(1);
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    server.bootstrap();

    let health_handle = server.add_service(background_service(
        "upstream health",
        HealthService {
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
    server_options.keepalive_request_limit = Some(limits.keepalive_requests);
    server_options.h2_idle_timeout = Some(limits.keepalive_timeout.get());
    let proxy = |kind: ListenerKind, name: &str, threads: usize| {
        let gw = Gateway {
            listener: kind,
            shared: Arc::clone(&shared),
        };
        let mut svc = pingora::proxy::http_proxy_service_with_name(&server.configuration, gw, name);
        if let Some(app) = svc.app_logic_mut() {
            app.server_options = Some(server_options.clone());
        }
        svc.threads = Some(threads);
        svc
    };

    let mut services = Vec::new();
    if let Some(l) = &listeners.http {
        let mut svc = proxy(ListenerKind::Http, "http", threads);
        svc.add_tcp(&l.addr);
        services.push(svc);
    }
    if let Some(l) = &listeners.https {
        let cert = loaded.resolve(&l.cert);
        let key = loaded.resolve(&l.key);
        let mut tls = TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy())
            .map_err(|e| format!("listeners.https: cannot load certificate or key: {e}"))?;
        if l.http2 {
            tls.enable_h2();
        }
        let mut svc = proxy(ListenerKind::Https, "https", threads);
        svc.add_tls_with_settings(&l.addr, None, tls);
        services.push(svc);
    }
    if let Some(l) = &listeners.internal {
        let mut svc = proxy(ListenerKind::Internal, "internal", 1);
        svc.add_tcp(&l.addr);
        services.push(svc);
    }
    for svc in services {
        let handle = server.add_service(svc);
        handle.add_dependency(&health_handle);
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
