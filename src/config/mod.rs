//! The YAML configuration (SPEC §2) as typed structs.
//!
//! These structs describe what the operator wrote and nothing more; the runtime state the proxy
//! reads (route tables, load balancers, key sets) is built from them in `crate::runtime`. Every
//! struct denies unknown keys so a typo is an error with its key path, not a silent default.

mod duration;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use duration::{parse_duration, Dur, DurationError};
pub use validate::{parse_cidr, validate};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pingora's own server settings, passed through untouched.
    #[serde(default)]
    pub server: pingora::server::configuration::ServerConf,
    pub listeners: Listeners,
    #[serde(default)]
    pub https_redirect: HttpsRedirect,
    #[serde(default)]
    pub hsts: Hsts,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub providers: Vec<ProviderConf>,
    #[serde(default)]
    pub token_cache: TokenCacheConf,
    #[serde(default)]
    pub revocation: RevocationConf,
    /// claim (dotted path) -> header name sent upstream.
    #[serde(default = "default_identity_headers")]
    pub identity_headers: BTreeMap<String, String>,
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
}

fn default_identity_headers() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("sub".into(), "X-Auth-Subject".into()),
        ("scope".into(), "X-Auth-Scopes".into()),
        ("iss".into(), "X-Auth-Issuer".into()),
    ])
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    pub http: Option<PlainListener>,
    pub https: Option<TlsListener>,
    pub internal: Option<PlainListener>,
    pub admin: Option<PlainListener>,
    pub metrics: Option<PlainListener>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainListener {
    pub addr: String,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_token_bytes: usize,
    pub max_body_bytes: u64,
    pub header_read_timeout: Dur,
    pub keepalive_timeout: Dur,
    pub keepalive_requests: u32,
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConf {
    pub name: String,
    pub issuer: String,
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
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
fn default_algorithms() -> Vec<String> {
    vec!["ES256".into(), "RS256".into(), "EdDSA".into()]
}
fn default_leeway() -> Dur {
    Dur::secs(30)
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConf {
    pub url: String,
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
}

fn default_redis_prefix() -> String {
    "portcullis:".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    pub peers: Vec<PeerConf>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default = "default_hash_key")]
    pub hash_key: String,
    #[serde(default)]
    pub tls: UpstreamTls,
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    #[serde(default)]
    pub health_check: HealthCheckConf,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_hash_key() -> String {
    "client_ip".into()
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
    None,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConf>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthConf {
    pub mode: AuthMode,
    pub providers: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub roles: Option<RolesConf>,
    pub claims: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConf {
    pub rps: u32,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default = "default_hash_key")]
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// Parses YAML into typed structs. When that fails, every section (and every route, provider
/// and upstream) is parsed again on its own, so one file's structural errors are all reported
/// at once rather than one per run.
pub fn parse(text: &[u8]) -> Result<Config, Vec<String>> {
    let de = serde_yaml::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let first = describe_parse_error(&path, &inner);
        let mut all = structural_errors(text);
        if all.is_empty() {
            all.push(first);
        }
        all
    })
}

/// Like [`parse`] followed by [`validate`], but when the file has structural errors it also
/// reports the semantic ones: each offending key is dropped (falling back to its default) and
/// parsing is retried, so an unknown upstream is still named next to a bad duration.
pub fn parse_and_validate(text: &[u8], base: &Path) -> Result<Config, Vec<String>> {
    use serde_path_to_error::Segment;
    let config = match parse(text) {
        Ok(c) => c,
        Err(structural) => {
            let Ok(mut value) = serde_yaml::from_slice::<serde_yaml::Value>(text) else {
                return Err(structural);
            };
            for _ in 0..64 {
                match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                    Ok(best_effort) => {
                        let mut all = structural;
                        all.extend(validate(&best_effort, base));
                        return Err(all);
                    }
                    Err(e) => {
                        let segments: Vec<Segment> = e.path().iter().cloned().collect();
                        if !remove_at(&mut value, &segments) {
                            break;
                        }
                    }
                }
            }
            return Err(structural);
        }
    };
    let errors = validate(&config, base);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Removes the mapping key a parse error points at; false when the path names no such key
/// (e.g. a missing required field), which ends the best-effort pass.
fn remove_at(value: &mut serde_yaml::Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    use serde_yaml::Value;
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(s)) => match s.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

fn structural_errors(text: &[u8]) -> Vec<String> {
    use serde_yaml::Value;
    let Ok(Value::Mapping(root)) = serde_yaml::from_slice::<Value>(text) else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    fn check<T: serde::de::DeserializeOwned>(at: &str, v: &Value, errs: &mut Vec<String>) {
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(v.clone()) {
            let inner = e.path().to_string();
            let path = match inner.as_str() {
                "." | "" => at.to_string(),
                p if p.starts_with('[') => format!("{at}{p}"),
                p => format!("{at}.{p}"),
            };
            errs.push(describe_parse_error(&path, &e.into_inner().to_string()));
        }
    }
    if !root.contains_key("listeners") {
        errs.push("listeners: required".into());
    }
    for (k, v) in &root {
        let Some(key) = k.as_str() else {
            errs.push(format!("{k:?}: keys must be strings"));
            continue;
        };
        match key {
            "server" => check::<pingora::server::configuration::ServerConf>(key, v, &mut errs),
            "listeners" => check::<Listeners>(key, v, &mut errs),
            "https_redirect" => check::<HttpsRedirect>(key, v, &mut errs),
            "hsts" => check::<Hsts>(key, v, &mut errs),
            "trusted_proxies" => check::<Vec<String>>(key, v, &mut errs),
            "limits" => check::<Limits>(key, v, &mut errs),
            "token_cache" => check::<TokenCacheConf>(key, v, &mut errs),
            "revocation" => check::<RevocationConf>(key, v, &mut errs),
            "identity_headers" => check::<BTreeMap<String, String>>(key, v, &mut errs),
            "forward_authorization" => check::<bool>(key, v, &mut errs),
            "admin" => check::<AdminConf>(key, v, &mut errs),
            "issuer" => check::<Option<IssuerConf>>(key, v, &mut errs),
            "access_log" => check::<AccessLogConf>(key, v, &mut errs),
            "routes" | "providers" => match v {
                Value::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{key}[{i}]");
                        if key == "routes" {
                            check::<RouteConf>(&at, item, &mut errs);
                        } else {
                            check::<ProviderConf>(&at, item, &mut errs);
                        }
                    }
                }
                _ => errs.push(format!("{key}: must be a list")),
            },
            "upstreams" => match v {
                Value::Mapping(ups) => {
                    for (name, u) in ups {
                        let at = format!("upstreams.{}", name.as_str().unwrap_or("?"));
                        check::<UpstreamConf>(&at, u, &mut errs);
                    }
                }
                _ => errs.push("upstreams: must be a map of name -> upstream".into()),
            },
            other => errs.push(format!("{other}: unknown key")),
        }
    }
    errs
}

/// serde reports an unknown key at its parent's path; name the key itself instead, and drop
/// serde_yaml's "at line N column M" tail only when a key path already says where.
fn describe_parse_error(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    // serde_yaml prefixes some messages with its own (shorter) idea of the path.
    let message = match message.split_once(": ") {
        Some((p, rest)) if !p.contains(' ') && path.starts_with(p) => rest,
        _ => message,
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            // serde_path_to_error's path already ends with the unknown key; older shapes may not.
            let full = if path.ends_with(field) {
                path.to_string()
            } else if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            let allowed = tail.trim_start_matches(", ");
            return format!("{full}: unknown key ({allowed})");
        }
    }
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_its_full_path() {
        let err = parse(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nroutes:\n  - name: a\n    matchh: {}\n",
        )
        .unwrap_err();
        assert!(
            err[0].starts_with("routes[0].matchh: unknown key"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_duration_names_its_path() {
        let err = parse(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: 5x}\n",
        )
        .unwrap_err();
        assert!(err[0].starts_with("upstreams.u.timeouts.read:"), "{err:?}");
    }

    #[test]
    fn every_structural_error_is_listed() {
        let err = parse(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: 5x}\nroutes:\n  - {name: a, matchh: {}}\n  - {name: b, match: {}, upstream: u, visibility: secret}\nbogus: 1\n",
        )
        .unwrap_err();
        let joined = err.join("\n");
        for want in [
            "upstreams.u.timeouts.read:",
            "routes[0].matchh: unknown key",
            "routes[1].visibility:",
            "bogus: unknown key",
        ] {
            assert!(joined.contains(want), "{want} missing in {joined}");
        }
    }

    #[test]
    fn semantic_errors_are_listed_beside_structural_ones() {
        let err = parse_and_validate(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\ntrusted_proxies: [nope]\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: soon}\nroutes:\n  - {name: a, match: {}, upstream: billing, auth: {mode: none}}\n",
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        let joined = err.join("\n");
        for want in [
            "upstreams.u.timeouts.read:",
            "trusted_proxies[0]",
            "routes[0].upstream",
        ] {
            assert!(joined.contains(want), "{want} missing in {joined}");
        }
    }

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
    }
}
