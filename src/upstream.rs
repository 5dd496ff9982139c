//! Upstream pools: peer selection over health-checked peers.
//!
//! Pingora's `LoadBalancer` assumes new backends are healthy and owns its health loop; we need the
//! opposite (a peer that never passed a check gets no traffic) and health state that survives a
//! config reload. So we keep Pingora's selection algorithms and probes, and own the health state:
//! one `PeerHealth` per (upstream, peer, check settings), read with an atomic load per pick.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;
use prometheus::IntGauge;

/// Parsed with the config; re-exported because the proxy reads it from the upstream.
pub use crate::config::HashKey;
use crate::config::{Balance, HealthCheckConf, HealthCheckKind, UpstreamConf, UpstreamProtocol};
use crate::metric_handles::PeerMetrics;
use crate::metrics;

/// Health of one peer, shared between the prober and every snapshot that contains the peer.
pub struct PeerHealth {
    healthy: AtomicBool,
    /// Set once the peer has passed a check; until then one success is enough to take traffic,
    /// so a fresh gateway serves as soon as its first probe round answers.
    ever_passed: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    /// Monotonic milliseconds (since `EPOCH`) at which the next probe is due.
    next_due_ms: AtomicU64,
    probing: AtomicBool,
    gauge: IntGauge,
    /// The last probe: when (Unix seconds) and what it found, for `/admin/status`.
    last_check: Mutex<Option<LastCheck>>,
}

/// One probe's outcome as an operator reads it: `200`, `503`, `connected`, `connection
/// refused`, `timeout`, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastCheck {
    pub at: i64,
    pub result: String,
}

tokio::task_local! {
    /// The status an HTTP probe saw, set by its validator. Pingora's check reports only
    /// pass/fail; the status is what tells an operator why.
    static PROBE_STATUS: std::cell::Cell<Option<u16>>;
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

impl PeerHealth {
    fn new(upstream: &str, peer: &str, checked: bool) -> Arc<PeerHealth> {
        let gauge = metrics::PEER_HEALTHY.with_label_values(&[upstream, peer]);
        // Without a health check a peer is trusted until a connect fails; with one it must earn it.
        gauge.set(i64::from(!checked));
        Arc::new(PeerHealth {
            healthy: AtomicBool::new(!checked),
            ever_passed: AtomicBool::new(!checked),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            next_due_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            gauge,
            last_check: Mutex::new(None),
        })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// `None` before the first probe, and always without a health check.
    pub fn last_check(&self) -> Option<LastCheck> {
        self.last_check.lock().clone()
    }

    /// Applies one probe result with the configured thresholds; returns the new state if it flipped.
    fn record(&self, ok: bool, conf: &HealthCheckConf) -> Option<bool> {
        let was = self.is_healthy();
        let now = if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
            let first = !self.ever_passed.swap(true, Ordering::Relaxed);
            was || first || n >= conf.healthy_threshold
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            was && n < conf.unhealthy_threshold
        };
        if now == was {
            return None;
        }
        self.healthy.store(now, Ordering::Relaxed);
        self.gauge.set(i64::from(now));
        Some(now)
    }
}

/// Everything that decides what "healthy" means for one peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HealthKey {
    upstream: String,
    peer: String,
    kind: HealthCheckKind,
    path: String,
    expect_status: Vec<u16>,
    tls: bool,
}

/// Keeps `PeerHealth` objects across reloads, keyed by [`HealthKey`], so an unchanged peer keeps
/// its state and a changed check starts afresh.
#[derive(Default)]
pub struct HealthRegistry {
    entries: Mutex<HashMap<HealthKey, Arc<PeerHealth>>>,
}

impl HealthRegistry {
    fn get(&self, upstream: &str, u: &UpstreamConf, peer: &str) -> Arc<PeerHealth> {
        let hc = &u.health_check;
        let key = HealthKey {
            upstream: upstream.to_string(),
            peer: peer.to_string(),
            kind: hc.kind,
            path: hc.path.clone(),
            expect_status: hc.expect_status.clone(),
            tls: u.tls.enabled,
        };
        let checked = hc.kind != HealthCheckKind::None;
        self.entries
            .lock()
            .entry(key)
            .or_insert_with(|| PeerHealth::new(upstream, peer, checked))
            .clone()
    }

    /// Forgets peers no snapshot uses any more (called after a reload is published).
    pub fn retain_used(&self, in_use: &[Arc<Upstream>]) {
        let mut entries = self.entries.lock();
        entries.retain(|_, h| {
            let used = in_use
                .iter()
                .any(|u| u.peers.iter().any(|p| Arc::ptr_eq(&p.health, h)));
            if !used {
                h.gauge.set(0);
            }
            used
        });
    }
}

pub struct Peer {
    /// The configured `addr` string: the metric label and the access-log value.
    pub addr: String,
    pub metrics: PeerMetrics,
    pub health: Arc<PeerHealth>,
    /// Prebuilt with timeouts and TLS settings; cloned per request.
    template: HttpPeer,
    backend: Backend,
}

enum Selector {
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Consistent(Arc<KetamaHashing>),
}

pub struct Upstream {
    pub name: String,
    pub duration: prometheus::Histogram,
    pub peers: Vec<Peer>,
    selector: Selector,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub retries: u32,
    pub protocol: UpstreamProtocol,
    /// `timeouts.idle`: also how long an upgraded (WebSocket) connection may stay silent.
    pub idle_timeout: Duration,
    health_conf: HealthCheckConf,
    probe: Option<Arc<dyn HealthCheck + Send + Sync>>,
}

/// Peer indexes already tried by one request (retries go to a different peer).
#[derive(Default, Clone, Debug)]
pub struct Tried(u64);

impl Tried {
    pub fn insert(&mut self, idx: usize) {
        if idx < 64 {
            self.0 |= 1 << idx;
        }
    }
    pub fn contains(&self, idx: usize) -> bool {
        idx < 64 && self.0 & (1 << idx) != 0
    }
}

#[derive(Clone, Copy)]
struct PeerIndex(usize);

/// A peer the config validated but Pingora still refuses; named by its key path, like every
/// config error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstreams.{upstream}.peers[{index}].addr: invalid address")]
    Address { upstream: String, index: usize },
    #[error("upstreams.{upstream}.peers[{index}].addr: {source}")]
    Backend {
        upstream: String,
        index: usize,
        source: Box<pingora::Error>,
    },
}

impl Upstream {
    pub fn build(
        name: &str,
        conf: &UpstreamConf,
        registry: &HealthRegistry,
    ) -> Result<Upstream, UpstreamError> {
        let mut peers = Vec::with_capacity(conf.peers.len());
        let mut backends = BTreeSet::new();
        for (i, p) in conf.peers.iter().enumerate() {
            let addr: SocketAddr = p.addr.parse().map_err(|_| UpstreamError::Address {
                upstream: name.to_string(),
                index: i,
            })?;
            let mut backend =
                Backend::new_with_weight(&p.addr, p.weight as usize).map_err(|source| {
                    UpstreamError::Backend {
                        upstream: name.to_string(),
                        index: i,
                        source,
                    }
                })?;
            backend.ext.insert(PeerIndex(i));
            let sni = conf.tls.sni.clone().unwrap_or_default();
            let mut template = HttpPeer::new(addr, conf.tls.enabled, sni);
            let o = &mut template.options;
            o.connection_timeout = Some(conf.timeouts.connect.get());
            o.total_connection_timeout = Some(conf.timeouts.connect.get());
            o.read_timeout = Some(conf.timeouts.read.get());
            o.write_timeout = Some(conf.timeouts.write.get());
            o.idle_timeout = Some(conf.timeouts.idle.get());
            o.verify_cert = conf.tls.verify;
            o.verify_hostname = conf.tls.verify;
            speak(conf.protocol, o);
            peers.push(Peer {
                metrics: PeerMetrics::new(name, &p.addr),
                addr: p.addr.clone(),
                health: registry.get(name, conf, &p.addr),
                template,
                backend: backend.clone(),
            });
            backends.insert(backend);
        }
        let selector = match conf.balance {
            Balance::RoundRobin => Selector::RoundRobin(Arc::new(RoundRobin::build(&backends))),
            Balance::Random => Selector::Random(Arc::new(Random::build(&backends))),
            Balance::Consistent => Selector::Consistent(Arc::new(KetamaHashing::build(&backends))),
        };
        Ok(Upstream {
            duration: metrics::UPSTREAM_DURATION.with_label_values(&[name]),
            name: name.to_string(),
            peers,
            selector,
            balance: conf.balance,
            hash_key: conf.hash_key.clone(),
            retries: conf.retries,
            protocol: conf.protocol,
            idle_timeout: conf.timeouts.idle.get(),
            probe: build_probe(conf),
            health_conf: conf.health_check.clone(),
        })
    }

    /// Picks a healthy peer not yet tried by this request. `key` matters only for consistent
    /// balancing. Never allocates; `None` means no healthy peer is left.
    pub fn select(&self, key: &[u8], tried: &Tried) -> Option<usize> {
        let usable = |b: &Backend| -> Option<usize> {
            let PeerIndex(i) = *b.ext.get::<PeerIndex>()?;
            let peer = self.peers.get(i)?;
            (peer.health.is_healthy() && !tried.contains(i)).then_some(i)
        };
        // The algorithms' iterators may revisit peers, so bound the walk, then fall back to a
        // scan: a healthy untried peer must be found if one exists.
        let budget = self.peers.len() * 4 + 8;
        let found = match &self.selector {
            Selector::RoundRobin(s) => first_usable(s.iter(key), budget, usable),
            Selector::Random(s) => first_usable(s.iter(key), budget, usable),
            Selector::Consistent(s) => first_usable(s.iter(key), budget, usable),
        };
        found.or_else(|| {
            (0..self.peers.len()).find(|&i| self.peers[i].health.is_healthy() && !tried.contains(i))
        })
    }

    pub fn http_peer(&self, idx: usize) -> Option<Box<HttpPeer>> {
        self.peers.get(idx).map(|p| Box::new(p.template.clone()))
    }

    /// Runs due probes; called by the health loop every tick. Probes run concurrently and each is
    /// bounded by the configured timeout.
    fn spawn_due_probes(self: &Arc<Self>) {
        let Some(probe) = &self.probe else { return };
        let now = now_ms();
        for (i, peer) in self.peers.iter().enumerate() {
            let h = &peer.health;
            if h.next_due_ms.load(Ordering::Relaxed) > now || h.probing.swap(true, Ordering::AcqRel)
            {
                continue;
            }
            let up = Arc::clone(self);
            let probe = Arc::clone(probe);
            tokio::spawn(async move {
                let Some(peer) = up.peers.get(i) else { return };
                let conf = &up.health_conf;
                let (outcome, status) = PROBE_STATUS
                    .scope(std::cell::Cell::new(None), async {
                        let outcome =
                            tokio::time::timeout(conf.timeout.get(), probe.check(&peer.backend))
                                .await;
                        (outcome, PROBE_STATUS.with(std::cell::Cell::get))
                    })
                    .await;
                let ok = matches!(outcome, Ok(Ok(())));
                *peer.health.last_check.lock() = Some(LastCheck {
                    at: crate::clock::unix_now(),
                    result: describe_probe(&outcome, status),
                });
                if let Some(now_healthy) = peer.health.record(ok, conf) {
                    if now_healthy {
                        log::info!("upstream {} peer {} is healthy", up.name, peer.addr);
                    } else {
                        log::warn!("upstream {} peer {} is unhealthy", up.name, peer.addr);
                    }
                }
                let interval = conf.interval.get().as_millis() as u64;
                peer.health
                    .next_due_ms
                    .store(now_ms() + interval, Ordering::Relaxed);
                peer.health.probing.store(false, Ordering::Release);
            });
        }
    }
}

fn first_usable<I: BackendIter>(
    mut it: I,
    budget: usize,
    usable: impl Fn(&Backend) -> Option<usize>,
) -> Option<usize> {
    for _ in 0..budget {
        let b = it.next()?;
        if let Some(i) = usable(b) {
            return Some(i);
        }
    }
    None
}

/// Concurrent streams per HTTP/2 connection to a peer. Pingora's default of 1 would open a
/// connection per in-flight request, which defeats HTTP/2 (and long gRPC streams would pin them).
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// `protocol` as Pingora's peer options: ALPN `h2` only over TLS; with a minimum version of 2 on a
/// cleartext peer Pingora speaks h2c with prior knowledge.
fn speak(protocol: UpstreamProtocol, o: &mut pingora::upstreams::peer::PeerOptions) {
    match protocol {
        UpstreamProtocol::Http1 => {}
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
            o.alpn = pingora::protocols::ALPN::H2;
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
}

fn build_probe(conf: &UpstreamConf) -> Option<Arc<dyn HealthCheck + Send + Sync>> {
    let hc = &conf.health_check;
    let timeout = hc.timeout.get();
    let sni = conf.tls.sni.clone().unwrap_or_default();
    match hc.kind {
        HealthCheckKind::None => None,
        HealthCheckKind::Tcp => {
            let mut probe = if conf.tls.enabled {
                TcpHealthCheck::new_tls(&sni)
            } else {
                TcpHealthCheck::new()
            };
            probe.peer_template.options.connection_timeout = Some(timeout);
            probe.peer_template.options.total_connection_timeout = Some(timeout);
            probe.peer_template.options.verify_cert = conf.tls.verify;
            probe.peer_template.options.verify_hostname = conf.tls.verify;
            Some(Arc::new(*probe))
        }
        HealthCheckKind::Http => {
            // Host: the TLS name when there is one, else the first peer's address; both were
            // validated as header values, so the constructor's internal unwrap cannot fire.
            let host = conf
                .tls
                .sni
                .clone()
                .or_else(|| conf.peers.first().map(|p| p.addr.clone()))
                .unwrap_or_else(|| "localhost".into());
            let mut probe = HttpHealthCheck::new(&host, conf.tls.enabled);
            probe.peer_template.sni = sni;
            let o = &mut probe.peer_template.options;
            o.connection_timeout = Some(timeout);
            o.total_connection_timeout = Some(timeout);
            o.read_timeout = Some(timeout);
            o.write_timeout = Some(timeout);
            o.verify_cert = conf.tls.verify;
            o.verify_hostname = conf.tls.verify;
            speak(conf.protocol, o);
            let mut req =
                pingora::http::RequestHeader::build("GET", hc.path.as_bytes(), None).ok()?;
            req.insert_header(http::header::HOST, host.as_str()).ok()?;
            req.insert_header(http::header::USER_AGENT, "portcullis-health-check")
                .ok()?;
            probe.req = req;
            let expect = hc.expect_status.clone();
            probe.validator = Some(Box::new(move |resp| {
                let status = resp.status.as_u16();
                let _ = PROBE_STATUS.try_with(|s| s.set(Some(status)));
                if expect.contains(&status) {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::CustomCode("unexpected health-check status", status),
                        "health check",
                    )
                }
            }));
            Some(Arc::new(probe))
        }
    }
}

/// What an operator reads for one probe: the HTTP status when there was an answer, else what
/// went wrong, in a few words.
fn describe_probe(
    outcome: &Result<pingora::Result<()>, tokio::time::error::Elapsed>,
    status: Option<u16>,
) -> String {
    use pingora::ErrorType as E;
    if let Some(status) = status {
        return status.to_string();
    }
    match outcome {
        Ok(Ok(())) => "connected".into(),
        Err(_) => "timeout".into(),
        Ok(Err(e)) => match e.etype() {
            E::ConnectRefused => "connection refused".into(),
            E::ConnectTimedout | E::ReadTimedout | E::WriteTimedout => "timeout".into(),
            E::ConnectNoRoute => "no route to host".into(),
            E::TLSHandshakeFailure | E::TLSHandshakeTimedout | E::InvalidCert => {
                "TLS handshake failed".into()
            }
            E::ConnectionClosed => "connection closed".into(),
            other => other.as_str().to_owned(),
        },
    }
}

/// Drives every upstream's probes. It reads the current set of upstreams on each tick, so a
/// reload that adds, changes or removes upstreams needs no coordination with it.
pub struct HealthLoop<F> {
    pub upstreams: F,
}

impl<F> HealthLoop<F>
where
    F: Fn() -> Vec<Arc<Upstream>> + Send + Sync,
{
    const TICK: Duration = Duration::from_millis(50);

    /// One probe round for every checked peer, waiting (bounded by each check's timeout) until
    /// all have answered, so the proxy starts with known peer health.
    pub async fn first_round(&self) {
        let ups = (self.upstreams)();
        for u in &ups {
            u.spawn_due_probes();
        }
        let deadline = Instant::now()
            + ups
                .iter()
                .map(|u| u.health_conf.timeout.get())
                .max()
                .unwrap_or_default()
            + Duration::from_millis(200);
        while Instant::now() < deadline
            && ups.iter().any(|u| {
                u.probe.is_some()
                    && u.peers
                        .iter()
                        .any(|p| p.health.probing.load(Ordering::Acquire))
            })
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Self::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    for u in (self.upstreams)() {
                        u.spawn_due_probes();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn upstream(yaml: &str) -> Upstream {
        let c = parse(
            format!("listeners: {{http: {{addr: '127.0.0.1:1'}}}}\nupstreams:\n  u: {yaml}\n")
                .as_bytes(),
        )
        .unwrap();
        Upstream::build("u", &c.upstreams["u"], &HealthRegistry::default()).unwrap()
    }

    #[test]
    fn unchecked_peers_take_traffic_and_round_robin_spreads() {
        let u = upstream(
            "{peers: [{addr: '127.0.0.1:1'}, {addr: '127.0.0.1:2'}], health_check: {kind: none}}",
        );
        let mut counts = [0; 2];
        for _ in 0..100 {
            counts[u.select(b"", &Tried::default()).unwrap()] += 1;
        }
        assert_eq!(counts, [50, 50]);
    }

    #[test]
    fn checked_peers_start_without_traffic() {
        let u = upstream("{peers: [{addr: '127.0.0.1:1'}]}");
        assert_eq!(u.select(b"", &Tried::default()), None);
    }

    #[test]
    fn thresholds_apply_after_first_pass() {
        let u = upstream("{peers: [{addr: '127.0.0.1:1'}], health_check: {healthy_threshold: 2, unhealthy_threshold: 2}}");
        let h = &u.peers[0].health;
        let conf = &u.health_conf;
        assert_eq!(
            h.record(true, conf),
            Some(true),
            "first pass admits the peer"
        );
        assert_eq!(h.record(false, conf), None);
        assert_eq!(h.record(false, conf), Some(false));
        assert_eq!(
            h.record(true, conf),
            None,
            "one success is not enough to come back"
        );
        assert_eq!(h.record(true, conf), Some(true));
    }

    #[test]
    fn retries_skip_tried_peers() {
        let u = upstream(
            "{peers: [{addr: '127.0.0.1:1'}, {addr: '127.0.0.1:2'}], health_check: {kind: none}}",
        );
        let mut tried = Tried::default();
        let first = u.select(b"", &tried).unwrap();
        tried.insert(first);
        let second = u.select(b"", &tried).unwrap();
        assert_ne!(first, second);
        tried.insert(second);
        assert_eq!(u.select(b"", &tried), None);
    }

    #[test]
    fn consistent_hashing_is_sticky() {
        let u = upstream("{peers: [{addr: '127.0.0.1:1'}, {addr: '127.0.0.1:2'}, {addr: '127.0.0.1:3'}], balance: consistent, health_check: {kind: none}}");
        let a = u.select(b"10.1.2.3", &Tried::default()).unwrap();
        for _ in 0..20 {
            assert_eq!(u.select(b"10.1.2.3", &Tried::default()), Some(a));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod last_check_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::parse;

    fn upstream(kind: &str, peers: &[String]) -> Arc<Upstream> {
        let peers: Vec<String> = peers.iter().map(|a| format!("{{addr: '{a}'}}")).collect();
        let yaml = format!(
            "listeners: {{http: {{addr: '127.0.0.1:1'}}}}\nupstreams:\n  u: {{peers: [{}], health_check: {{kind: {kind}, timeout: 1s}}}}\n",
            peers.join(", ")
        );
        let c = parse(yaml.as_bytes()).unwrap();
        Arc::new(Upstream::build("u", &c.upstreams["u"], &HealthRegistry::default()).unwrap())
    }

    /// A peer that answers every request with `status`, and a port nobody listens on.
    async fn peers(status: u16) -> (String, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = sock.read(&mut buf).await;
                    let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down = closed.local_addr().unwrap().to_string();
        drop(closed);
        (up, down)
    }

    async fn probed(u: &Arc<Upstream>) -> Vec<LastCheck> {
        u.spawn_due_probes();
        for _ in 0..100 {
            let checks: Vec<_> = u
                .peers
                .iter()
                .filter_map(|p| p.health.last_check())
                .collect();
            if checks.len() == u.peers.len() {
                return checks;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the probes did not report");
    }

    #[tokio::test]
    async fn http_checks_report_the_status_or_what_failed() {
        let (up, down) = peers(503).await;
        let u = upstream("http", &[up, down]);
        assert!(u.peers.iter().all(|p| p.health.last_check().is_none()));
        let checks = probed(&u).await;
        assert_eq!(checks[0].result, "503");
        assert_eq!(checks[1].result, "connection refused");
        assert!(checks[0].at >= crate::clock::unix_now() - 5);
        assert!(!u.peers[0].health.is_healthy());
    }

    #[tokio::test]
    async fn tcp_checks_report_a_connection() {
        let (up, down) = peers(200).await;
        let u = upstream("tcp", &[up, down]);
        let checks = probed(&u).await;
        assert_eq!(checks[0].result, "connected");
        assert_eq!(checks[1].result, "connection refused");
    }

    #[tokio::test]
    async fn a_passing_http_check_reports_its_status() {
        let (up, _) = peers(200).await;
        let u = upstream("http", &[up]);
        assert_eq!(probed(&u).await[0].result, "200");
        assert!(u.peers[0].health.is_healthy());
    }

    #[test]
    fn without_a_health_check_there_is_no_last_check() {
        let u = upstream("none", &["127.0.0.1:1".to_owned()]);
        u.spawn_due_probes();
        assert!(u.peers[0].health.last_check().is_none());
    }
}
