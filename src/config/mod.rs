//! The YAML configuration (conf/README.md §2) as typed structs.
//!
//! These structs describe what the operator wrote and nothing more; the runtime state the proxy
//! reads (route tables, load balancers, key sets) is built from them in `crate::runtime`. Every
//! struct denies unknown keys so a typo is an error with its key path, not a silent default.

mod duration;
mod parse;
pub mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use http::HeaderName;
use ipnet::IpNet;
use pingora::server::configuration::ServerConf;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::alg::Alg;
use crate::rate_limit::RateKey;

pub use duration::{parse_duration, Dur, DurationError};
pub use parse::{parse, parse_and_validate};
pub use validate::validate;
pub use values::{is_claim_path, parse_cidr, HashKey};

/// Not `Clone`: Pingora's `ServerConf` is not (see [`PinnedSections::of`]).
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pingora's own server settings, passed through but for one default
    /// ([`server_with_defaults`]).
    #[serde(default = "default_server", deserialize_with = "server_with_defaults")]
    pub server: ServerConf,
    pub listeners: Listeners,
    #[serde(default)]
    pub https_redirect: HttpsRedirect,
    #[serde(default)]
    pub hsts: Hsts,
    #[serde(default, deserialize_with = "values::cidrs")]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub providers: Vec<ProviderConf>,
    #[serde(default)]
    pub token_cache: TokenCacheConf,
    #[serde(default)]
    pub revocation: RevocationConf,
    /// The Redis several instances share (revocations, shared rate limits, login throttle).
    #[serde(default)]
    pub redis: Option<RedisConf>,
    /// claim (dotted path) -> header name sent upstream.
    #[serde(
        default = "default_identity_headers",
        deserialize_with = "values::header_names"
    )]
    pub identity_headers: BTreeMap<String, HeaderName>,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default)]
    pub admin: AdminConf,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConf>,
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    #[serde(default)]
    pub issuer: Option<IssuerConf>,
    #[serde(default)]
    pub access_log: AccessLogConf,
    #[serde(default)]
    pub tracing: TracingConf,
}

fn default_identity_headers() -> BTreeMap<String, HeaderName> {
    const SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
    const SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
    const ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");
    BTreeMap::from([
        ("sub".into(), SUBJECT),
        ("scope".into(), SCOPES),
        ("iss".into(), ISSUER),
    ])
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    pub http: Option<PlainListener>,
    pub https: Option<TlsListener>,
    pub internal: Option<PlainListener>,
    pub admin: Option<PlainListener>,
    pub metrics: Option<PlainListener>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainListener {
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListener {
    pub addr: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsRedirect {
    pub enabled: bool,
    pub status: u16,
    pub https_port: u16,
    pub exempt_paths: Vec<String>,
}

impl Default for HttpsRedirect {
    fn default() -> Self {
        HttpsRedirect {
            enabled: true,
            status: 308,
            https_port: 8443,
            exempt_paths: vec!["/.well-known/acme-challenge/".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hsts {
    pub enabled: bool,
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for Hsts {
    fn default() -> Self {
        Hsts {
            enabled: true,
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_token_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Dur,
    pub keepalive_timeout: Dur,
    pub keepalive_requests: u32,
    /// Client connections open at once over the http, https and internal listeners together;
    /// one more is closed at accept. Admin and metrics are not counted, so operators can look in.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32_768,
            max_token_bytes: 8_192,
            max_body_bytes: 10_485_760,
            header_read_timeout: Dur::secs(10),
            keepalive_timeout: Dur::secs(60),
            keepalive_requests: 1_000,
            max_connections: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConf {
    pub name: String,
    pub issuer: String,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    #[serde(
        default = "default_algorithms",
        deserialize_with = "values::algorithms"
    )]
    pub algorithms: Vec<Alg>,
    pub jwks: JwksConf,
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
    #[serde(default)]
    pub max_lifetime: Option<Dur>,
    #[serde(default)]
    pub require_jti: bool,
    #[serde(default)]
    pub accepted_types: Option<Vec<String>>,
}

fn default_audiences() -> Vec<String> {
    vec!["api".into()]
}
fn default_algorithms() -> Vec<Alg> {
    vec![Alg::ES256, Alg::RS256, Alg::EdDSA]
}
fn default_leeway() -> Dur {
    Dur::secs(30)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConf {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub discovery: bool,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: Dur,
    #[serde(default = "default_min_refresh")]
    pub min_refresh: Dur,
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout: Dur,
    #[serde(default = "default_max_stale")]
    pub max_stale: Dur,
}

fn default_refresh_interval() -> Dur {
    Dur::secs(300)
}
fn default_min_refresh() -> Dur {
    Dur::secs(30)
}
fn default_fetch_timeout() -> Dur {
    Dur::secs(5)
}
fn default_max_stale() -> Dur {
    Dur::secs(86_400)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConf {
    pub max_entries: usize,
    pub max_ttl: Dur,
}

impl Default for TokenCacheConf {
    fn default() -> Self {
        TokenCacheConf {
            max_entries: 100_000,
            max_ttl: Dur::secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStoreKind {
    Memory,
    File,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConf {
    pub store: RevocationStoreKind,
    pub path: PathBuf,
    pub redis: Option<RedisConf>,
}

impl Default for RevocationConf {
    fn default() -> Self {
        RevocationConf {
            store: RevocationStoreKind::File,
            path: PathBuf::from("data/revocations.jsonl"),
            redis: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    /// `redis://` or `rediss://` (TLS, certificate verified); may carry `user:password@`.
    pub url: String,
    /// The password from this environment variable instead of the URL, so it stays out of the
    /// config file.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout: Dur,
    /// Bounds every command, the shared rate limit's round trip on the request path included.
    #[serde(default = "default_redis_command_timeout")]
    pub command_timeout: Dur,
}

fn default_redis_connect_timeout() -> Dur {
    Dur::secs(1)
}

fn default_redis_command_timeout() -> Dur {
    Dur::millis(250)
}

fn default_redis_prefix() -> String {
    "portcullis:".into()
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl AdminConf {
    /// With neither key set, the token comes from `PORTCULLIS_ADMIN_TOKEN`.
    pub fn effective_token_env(&self) -> Option<&str> {
        match (&self.token_env, &self.token_file) {
            (Some(env), _) => Some(env),
            (None, None) => Some("PORTCULLIS_ADMIN_TOKEN"),
            (None, Some(_)) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    pub peers: Vec<PeerConf>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub hash_key: HashKey,
    #[serde(default)]
    pub tls: UpstreamTls,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    #[serde(default)]
    pub health_check: HealthCheckConf,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

/// How the gateway speaks to an upstream's peers (conf/README.md §8). gRPC needs HTTP/2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS, negotiated with ALPN; needs `tls.enabled`.
    H2,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
}

fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConf {
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    Consistent,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    pub enabled: bool,
    pub sni: Option<String>,
    pub verify: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            enabled: false,
            sni: None,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTimeouts {
    pub connect: Dur,
    pub read: Dur,
    pub write: Dur,
    pub idle: Dur,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Dur::secs(2),
            read: Dur::secs(30),
            write: Dur::secs(30),
            idle: Dur::secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConf {
    pub kind: HealthCheckKind,
    pub path: String,
    pub expect_status: Vec<u16>,
    pub interval: Dur,
    pub timeout: Dur,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConf {
    fn default() -> Self {
        HealthCheckConf {
            kind: HealthCheckKind::Http,
            path: "/healthz".into(),
            expect_status: vec![200],
            interval: Dur::secs(2),
            timeout: Dur::secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RouteMatchConf,
    pub upstream: String,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub auth: RouteAuthConf,
    #[serde(default)]
    pub visibility: Visibility,
    #[serde(default, deserialize_with = "values::cidrs")]
    pub allow_cidrs: Vec<IpNet>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConf>,
    /// WebSocket upgrades allowed on this route (conf/README.md §8).
    #[serde(default = "yes")]
    pub websocket: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatchConf {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

fn default_prefix() -> String {
    "/".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    #[default]
    Required,
    Optional,
    None,
}

impl AuthMode {
    /// As written in the config.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::None => "none",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthConf {
    pub mode: AuthMode,
    pub providers: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub roles: Option<RolesConf>,
    pub claims: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConf {
    pub claim: String,
    pub any_of: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Public,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConf {
    pub rps: u32,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub key: RateKey,
    /// The bucket lives in Redis, so all instances together admit what one would.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConf {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_issuer_prefix")]
    pub path_prefix: String,
    pub issuer: String,
    pub signing_key: PathBuf,
    #[serde(default = "default_issuer_audience")]
    pub audience: String,
    #[serde(default = "default_token_ttl")]
    pub token_ttl: Dur,
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    #[serde(default)]
    pub clients_file: Option<PathBuf>,
    #[serde(default = "default_max_failed_logins")]
    pub max_failed_logins: u32,
}

fn default_issuer_prefix() -> String {
    "/auth".into()
}
fn default_issuer_audience() -> String {
    "api".into()
}
fn default_token_ttl() -> Dur {
    Dur::secs(900)
}
fn default_max_failed_logins() -> u32 {
    5
}

/// An addition to the contract: where the one-JSON-line-per-request access log goes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConf {
    pub enabled: bool,
    /// Relative to the config file; absent means stdout.
    pub path: Option<PathBuf>,
}

impl Default for AccessLogConf {
    fn default() -> Self {
        AccessLogConf {
            enabled: true,
            path: None,
        }
    }
}

/// `tracing:` (conf/README.md §9): span export over OTLP/HTTP. Trace context (`traceparent`) is
/// propagated whether or not this is enabled. A reload may change every key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConf {
    pub enabled: bool,
    /// An OTLP/HTTP traces endpoint (protobuf), the full URL including `/v1/traces`.
    pub otlp_endpoint: String,
    pub service_name: String,
    /// The share of new traces that are sampled; an incoming sampled flag is always kept.
    pub sample_ratio: f64,
}

impl Default for TracingConf {
    fn default() -> Self {
        TracingConf {
            enabled: false,
            otlp_endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            service_name: "portcullis".into(),
            sample_ratio: 1.0,
        }
    }
}

/// The sections a reload cannot change: they are bound into the running process (sockets,
/// Pingora's server, the revocation store, the Redis connection, the access-log file), so a
/// reload that changes them is refused rather than half applied.
#[derive(Debug, PartialEq)]
pub struct PinnedSections {
    listeners: Listeners,
    server: ServerConf,
    revocation: RevocationConf,
    /// The connection is opened once at start, so a reload cannot move it.
    redis: Option<RedisConf>,
    access_log: AccessLogConf,
}

/// Pingora's settings could not be copied; see [`PinnedSections::of`].
#[derive(Debug, thiserror::Error)]
#[error("server: cannot keep a copy of the settings: {0}")]
pub struct ServerConfCopyError(#[from] serde_yaml::Error);

impl PinnedSections {
    /// A copy of `c`'s pinned sections, to compare later configs with. Pingora's `ServerConf`
    /// is not `Clone`; its serde form has every field and skips none, so a round trip through
    /// it is an exact copy.
    pub fn of(c: &Config) -> Result<PinnedSections, ServerConfCopyError> {
        Ok(PinnedSections {
            listeners: c.listeners.clone(),
            server: serde_yaml::from_value(serde_yaml::to_value(&c.server)?)?,
            revocation: c.revocation.clone(),
            redis: c.redis.clone(),
            access_log: c.access_log.clone(),
        })
    }

    /// The names of the sections `new` changes, in a fixed order.
    pub fn changed(&self, new: &Config) -> Vec<&'static str> {
        [
            ("listeners", self.listeners == new.listeners),
            ("server", self.server == new.server),
            ("revocation", self.revocation == new.revocation),
            ("redis", self.redis == new.redis),
            ("access_log", self.access_log == new.access_log),
        ]
        .into_iter()
        .filter_map(|(name, same)| (!same).then_some(name))
        .collect()
    }
}

/// The longest a graceful stop waits for in-flight requests when the file does not say
/// (Pingora's own default is 300 s). The process exits as soon as the last client connection is
/// done (`crate::shutdown`), so this is only the ceiling for slow requests; it leaves room for
/// `DEFAULT_SHUTDOWN_TIMEOUT_SECONDS` within systemd's default 90 s stop timeout.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;

/// After the grace period, how long Pingora lets the runtimes cancel what is left.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

fn default_server() -> ServerConf {
    let mut conf = ServerConf::default();
    apply_defaults(&mut conf, false);
    conf
}

/// Pingora's settings with the gateway's different defaults:
/// - with a single worker thread there is nothing to steal, and tokio's work-stealing scheduler
///   only adds cross-thread wake-ups, which cost about a quarter of the CPU per request side by
///   side (README, "Performance"). So unless the file sets `work_stealing`, one thread means
///   `false`;
/// - the stop timings above, unless the file sets them.
fn server_with_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ServerConf, D::Error> {
    let value = serde_yaml::Value::deserialize(d)?;
    let explicit = value.get("work_stealing").is_some();
    let mut conf: ServerConf = serde_yaml::from_value(value).map_err(serde::de::Error::custom)?;
    apply_defaults(&mut conf, explicit);
    Ok(conf)
}

fn apply_defaults(conf: &mut ServerConf, explicit_work_stealing: bool) {
    if !explicit_work_stealing && conf.threads == 1 {
        conf.work_stealing = false;
    }
    conf.grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    conf.graceful_shutdown_timeout_seconds
        .get_or_insert(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS);
}

/// A parsed and validated config, with what is needed to resolve its relative paths.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: Config,
    pub base_dir: PathBuf,
    /// SHA-256 of the file's bytes, reported by `/admin/reload` and `/admin/status`.
    pub hash: String,
}

impl LoadedConfig {
    /// Paths in the config are relative to the config file, not to the working directory, so a
    /// gateway started from anywhere (or daemonized) reads the same files.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve_path(&self.base_dir, p)
    }
}

pub fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads, parses and validates a config file. Every problem found is returned, each prefixed with
/// its key path (`routes[2].upstream: unknown upstream "billing"`).
pub fn load(path: &Path) -> Result<LoadedConfig, Vec<String>> {
    let text = std::fs::read(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let base_dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let config = parse_and_validate(&text, &base_dir)?;
    Ok(LoadedConfig {
        config,
        base_dir,
        hash: hex::encode(Sha256::digest(&text)),
    })
}

/// Test helper: each `wanted` fragment appears in the error listing (fragments may span lines).
#[cfg(test)]
fn assert_mentions(errors: &[String], wanted: &[&str]) {
    let listing = errors.join("\n") + "\n";
    for want in wanted {
        assert!(listing.contains(want), "{want} missing in\n{listing}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn one_thread_defaults_to_no_work_stealing_unless_set() {
        let server = |yaml: &str| {
            let text = format!("{yaml}\nlisteners: {{ http: {{ addr: \"127.0.0.1:1\" }} }}\nupstreams: {{}}\nroutes: []\n");
            super::parse(text.as_bytes()).unwrap().server
        };
        assert!(!server("").work_stealing);
        assert!(!server("server: { threads: 1 }").work_stealing);
        assert!(server("server: { threads: 1, work_stealing: true }").work_stealing);
        assert!(server("server: { threads: 2 }").work_stealing);
        assert!(!server("server: { threads: 2, work_stealing: false }").work_stealing);
    }

    #[test]
    fn stop_timings_default_to_a_bounded_drain_unless_set() {
        let server = |yaml: &str| {
            let text = format!("{yaml}\nlisteners: {{ http: {{ addr: \"127.0.0.1:1\" }} }}\nupstreams: {{}}\nroutes: []\n");
            super::parse(text.as_bytes()).unwrap().server
        };
        for conf in [server(""), server("server: { threads: 2 }")] {
            assert_eq!(
                conf.grace_period_seconds,
                Some(DEFAULT_GRACE_PERIOD_SECONDS)
            );
            assert_eq!(
                conf.graceful_shutdown_timeout_seconds,
                Some(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)
            );
        }
        let set =
            server("server: { grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1 }");
        assert_eq!(set.grace_period_seconds, Some(0));
        assert_eq!(set.graceful_shutdown_timeout_seconds, Some(1));
    }

    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(b"listeners: {http: {addr: '127.0.0.1:1'}}\n").unwrap();
        assert!(c.https_redirect.enabled);
        assert_eq!(c.https_redirect.status, 308);
        assert_eq!(c.limits.max_token_bytes, 8192);
        assert_eq!(c.token_cache.max_entries, 100_000);
        assert_eq!(c.identity_headers["sub"], "X-Auth-Subject");
        assert_eq!(c.revocation.store, RevocationStoreKind::File);
        assert_eq!(
            c.admin.effective_token_env(),
            Some("PORTCULLIS_ADMIN_TOKEN")
        );
        assert_eq!(c.providers, []);
        assert!(!c.tracing.enabled);
        assert_eq!(c.tracing.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(c.tracing.service_name, "portcullis");
        assert_eq!(c.tracing.sample_ratio, 1.0);
        let u = parse(b"listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams: {u: {peers: [{addr: '127.0.0.1:2'}]}}\nproviders: [{name: p, issuer: 'https://id', jwks: {discovery: true}}]\nroutes: [{name: r, match: {}, upstream: u, rate_limit: {rps: 1}}]\n").unwrap();
        assert_eq!(u.upstreams["u"].hash_key, HashKey::ClientIp);
        assert_eq!(
            u.providers[0].algorithms,
            [Alg::ES256, Alg::RS256, Alg::EdDSA]
        );
        let rl = u.routes[0].rate_limit.as_ref().unwrap();
        assert_eq!(rl.key, RateKey::ClientIp);
    }

    #[test]
    fn typed_values_are_parsed_where_they_stand() {
        let c = parse(b"listeners: {http: {addr: '127.0.0.1:1'}}\ntrusted_proxies: [10.1.2.3/8, '::1']\nidentity_headers: {sub: X-User}\nupstreams: {u: {peers: [{addr: '127.0.0.1:2'}], hash_key: 'header:X-Tenant'}}\nroutes: [{name: r, match: {}, upstream: u, allow_cidrs: [127.0.0.1], rate_limit: {rps: 1, key: 'claim:sub'}}]\n").unwrap();
        let nets = |v: &[&str]| -> Vec<IpNet> { v.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(c.trusted_proxies, nets(&["10.0.0.0/8", "::1/128"]));
        assert_eq!(c.routes[0].allow_cidrs, nets(&["127.0.0.1/32"]));
        assert_eq!(c.identity_headers["sub"], HeaderName::from_static("x-user"));
        assert_eq!(
            c.upstreams["u"].hash_key,
            HashKey::Header(HeaderName::from_static("x-tenant"))
        );
        assert_eq!(
            c.routes[0].rate_limit.as_ref().map(|r| r.key),
            Some(RateKey::Subject)
        );
    }

    #[test]
    fn pinned_sections_name_what_changed() {
        let text = "listeners: {http: {addr: '127.0.0.1:1'}}\nserver: {threads: 2}\n";
        let old = parse(text.as_bytes()).unwrap();
        let pinned = PinnedSections::of(&old).unwrap();
        assert_eq!(pinned.server, old.server, "the copy is exact");
        assert!(pinned.changed(&old).is_empty());
        let new = parse(b"listeners: {http: {addr: '127.0.0.1:2'}}\nserver: {threads: 3}\naccess_log: {enabled: false}\n").unwrap();
        assert_eq!(pinned.changed(&new), ["listeners", "server", "access_log"]);
    }
}
