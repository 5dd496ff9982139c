//! Cross-checks that serde cannot express: references between sections, address syntax, files
//! that must exist. Every problem is collected (not just the first) so an operator fixes a
//! file in one pass, and each line starts with the key path it is about.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;

use super::{
    is_claim_path, resolve_path, AuthMode, Config, Dur, HealthCheckKind, HttpsRedirect, IssuerConf,
    Limits, Listeners, ProviderConf, RevocationStoreKind, RouteConf, TracingConf, UpstreamConf,
    UpstreamProtocol,
};

/// Re-exported for the request filter, which still imports it from here.
use crate::routing::STANDARD_METHODS;

/// Headers the gateway itself owns or that frame the message; an identity header may not reuse them.
const RESERVED_HEADERS: [&str; 14] = [
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

pub fn validate(c: &Config, base: &Path) -> Vec<String> {
    let mut errs = Errors {
        base,
        list: Vec::new(),
    };
    let issuer = c.issuer.as_ref().filter(|i| i.enabled);
    listeners(&mut errs, &c.listeners);
    redirect(&mut errs, &c.https_redirect);
    limits(&mut errs, &c.limits);
    let mut provider_names = HashSet::new();
    for (i, p) in c.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        errs.name(&at, &p.name, &mut provider_names, "provider");
        if p.name == "issuer" && issuer.is_some() {
            errs.add(
                format_args!("{at}.name"),
                "\"issuer\" is reserved for the built-in token issuer",
            );
        }
        provider(&mut errs, &at, p);
    }
    redis_section(&mut errs, c);
    if let Some(file) = &c.admin.token_file {
        errs.file("admin.token_file", file);
    }
    for (claim, header) in &c.identity_headers {
        let at = format!("identity_headers.{claim}");
        if !is_claim_path(claim) {
            errs.add(&at, "invalid claim path");
        }
        if RESERVED_HEADERS.contains(&header.as_str()) {
            errs.add(
                &at,
                format_args!("{header} is managed by the gateway and cannot carry a claim"),
            );
        }
    }
    for (name, u) in &c.upstreams {
        upstream(&mut errs, &format!("upstreams.{name}"), u);
    }
    let providers = Providers {
        names: provider_names,
        issuer: issuer.is_some(),
    };
    let mut route_names = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        errs.name(&format!("routes[{i}]"), &r.name, &mut route_names, "route");
        route(
            &mut errs,
            &format!("routes[{i}]"),
            r,
            &c.upstreams,
            &providers,
        );
    }
    if let Some(iss) = issuer {
        issuer_section(&mut errs, iss);
    }
    tracing_section(&mut errs, &c.tracing);
    errs.list
}

/// The `redis:` block, and the settings that need it (conf/README.md §7).
fn redis_section(errs: &mut Errors<'_>, c: &Config) {
    if let Some(r) = &c.redis {
        match r.url.split_once("://") {
            Some(("redis" | "rediss", _)) => {
                if redis::Client::open(r.url.as_str()).is_err() {
                    errs.add("redis.url", "not a valid redis:// or rediss:// URL");
                }
            }
            // The URL may hold a password: it is never repeated in the message.
            _ => errs.add("redis.url", "must start with redis:// or rediss://"),
        }
        if let Some(var) = &r.password_env {
            if var.is_empty() {
                errs.add("redis.password_env", "must not be empty");
            } else if std::env::var_os(var).is_none() {
                errs.add(
                    "redis.password_env",
                    format_args!("environment variable {var} is not set"),
                );
            }
        }
        errs.positive(
            "redis",
            &[
                ("connect_timeout", r.connect_timeout),
                ("command_timeout", r.command_timeout),
            ],
        );
    }
    if c.redis.is_none() {
        if c.revocation.store == RevocationStoreKind::Redis {
            errs.add(
                "revocation.store",
                "redis needs a top-level redis: block (redis.url)",
            );
        }
        for (i, r) in c.routes.iter().enumerate() {
            if r.rate_limit.as_ref().is_some_and(|rl| rl.shared) {
                errs.add(
                    format_args!("routes[{i}].rate_limit.shared"),
                    "needs a top-level redis: block (redis.url)",
                );
            }
        }
    }
}

/// The problems found so far, each `key.path: message`, and where relative paths start.
struct Errors<'a> {
    base: &'a Path,
    list: Vec<String>,
}

impl Errors<'_> {
    fn add(&mut self, path: impl Display, message: impl Display) {
        self.list.push(format!("{path}: {message}"));
    }

    /// A file the config names must exist (relative to the config file's directory).
    fn file(&mut self, path: impl Display, file: &Path) {
        let full = resolve_path(self.base, file);
        if !full.is_file() {
            self.add(path, format_args!("file not found: {}", full.display()));
        }
    }

    /// Timeouts and intervals of zero would spin or fail every operation at once.
    fn positive(&mut self, at: &str, durations: &[(&str, Dur)]) {
        for (key, d) in durations {
            if d.get().is_zero() {
                self.add(format_args!("{at}.{key}"), "must be greater than zero");
            }
        }
    }

    /// Names label metrics and logs and are referred to by other sections, so each one is
    /// required and unique among its kind.
    fn name<'n>(&mut self, at: &str, name: &'n str, seen: &mut HashSet<&'n str>, kind: &str) {
        if name.is_empty() {
            self.add(format_args!("{at}.name"), "must not be empty");
        } else if !seen.insert(name) {
            self.add(
                format_args!("{at}.name"),
                format_args!("duplicate {kind} name {name:?}"),
            );
        }
    }
}

fn listeners(errs: &mut Errors<'_>, l: &Listeners) {
    if l.http.is_none() && l.https.is_none() {
        errs.add("listeners", "at least one of http or https is required");
    }
    let mut seen_addrs: Vec<(SocketAddr, &str)> = Vec::new();
    let plain = [
        ("http", l.http.as_ref().map(|x| &x.addr)),
        ("https", l.https.as_ref().map(|x| &x.addr)),
        ("internal", l.internal.as_ref().map(|x| &x.addr)),
        ("admin", l.admin.as_ref().map(|x| &x.addr)),
        ("metrics", l.metrics.as_ref().map(|x| &x.addr)),
    ];
    for (name, addr) in plain {
        let Some(addr) = addr else { continue };
        let at = format!("listeners.{name}.addr");
        match addr.parse::<SocketAddr>() {
            Ok(sa) => {
                if let Some((_, other)) = seen_addrs.iter().find(|(a, _)| *a == sa) {
                    errs.add(
                        &at,
                        format_args!("{addr} is already used by listeners.{other}"),
                    );
                }
                seen_addrs.push((sa, name));
            }
            Err(_) => errs.add(
                &at,
                format_args!("invalid address {addr:?} (expected IP:port)"),
            ),
        }
    }
    if let Some(https) = &l.https {
        errs.file("listeners.https.cert", &https.cert);
        errs.file("listeners.https.key", &https.key);
    }
}

fn redirect(errs: &mut Errors<'_>, r: &HttpsRedirect) {
    if ![301, 302, 303, 307, 308].contains(&r.status) {
        errs.add(
            "https_redirect.status",
            format_args!(
                "{} is not a redirect status (301, 302, 303, 307, 308)",
                r.status
            ),
        );
    }
    if r.https_port == 0 {
        errs.add("https_redirect.https_port", "must be 1-65535");
    }
    for (i, p) in r.exempt_paths.iter().enumerate() {
        if !p.starts_with('/') {
            errs.add(
                format_args!("https_redirect.exempt_paths[{i}]"),
                "must start with /",
            );
        }
    }
}

fn limits(errs: &mut Errors<'_>, lim: &Limits) {
    if lim.max_header_bytes < 1024 {
        errs.add("limits.max_header_bytes", "must be at least 1024");
    }
    if lim.max_token_bytes < 64 || lim.max_token_bytes > lim.max_header_bytes {
        errs.add(
            "limits.max_token_bytes",
            "must be between 64 and limits.max_header_bytes",
        );
    }
    if lim.max_connections == 0 {
        errs.add("limits.max_connections", "must be greater than zero");
    }
    errs.positive(
        "limits",
        &[
            ("header_read_timeout", lim.header_read_timeout),
            ("keepalive_timeout", lim.keepalive_timeout),
        ],
    );
}

fn provider(errs: &mut Errors<'_>, at: &str, p: &ProviderConf) {
    if p.issuer.is_empty() {
        errs.add(format_args!("{at}.issuer"), "must not be empty");
    }
    if p.audiences.is_empty() {
        errs.add(
            format_args!("{at}.audiences"),
            "at least one audience is required",
        );
    }
    if p.algorithms.is_empty() {
        errs.add(
            format_args!("{at}.algorithms"),
            "at least one algorithm is required",
        );
    }
    let j = &p.jwks;
    let sources =
        usize::from(j.url.is_some()) + usize::from(j.file.is_some()) + usize::from(j.discovery);
    if sources != 1 {
        errs.add(
            format_args!("{at}.jwks"),
            "exactly one of url, file or discovery: true is required",
        );
    }
    if let Some(url) = &j.url {
        if let Err(why) = check_fetch_url(url) {
            errs.add(format_args!("{at}.jwks.url"), why);
        }
    }
    if j.discovery {
        if let Err(why) = check_fetch_url(&p.issuer) {
            errs.add(
                format_args!("{at}.issuer"),
                format_args!("discovery needs a fetchable issuer URL: {why}"),
            );
        }
    }
    if let Some(file) = &j.file {
        errs.file(format_args!("{at}.jwks.file"), file);
    }
    if j.min_refresh > j.refresh_interval {
        errs.add(
            format_args!("{at}.jwks.min_refresh"),
            "must not exceed jwks.refresh_interval",
        );
    }
    errs.positive(
        &format!("{at}.jwks"),
        &[
            ("refresh_interval", j.refresh_interval),
            ("min_refresh", j.min_refresh),
            ("fetch_timeout", j.fetch_timeout),
            ("max_stale", j.max_stale),
        ],
    );
    if p.leeway.get().as_secs() > 300 {
        errs.add(format_args!("{at}.leeway"), "must be at most 5m");
    }
    if let Some(max_lifetime) = p.max_lifetime {
        errs.positive(at, &[("max_lifetime", max_lifetime)]);
    }
}

fn upstream(errs: &mut Errors<'_>, at: &str, u: &UpstreamConf) {
    if u.peers.is_empty() {
        errs.add(format_args!("{at}.peers"), "at least one peer is required");
    }
    let mut seen = HashSet::new();
    for (i, p) in u.peers.iter().enumerate() {
        let addr = &p.addr;
        if addr.parse::<SocketAddr>().is_err() {
            errs.add(
                format_args!("{at}.peers[{i}].addr"),
                format_args!(
                    "invalid address {addr:?} (expected IP:port; host names are not resolved)"
                ),
            );
        } else if !seen.insert(addr.as_str()) {
            errs.add(
                format_args!("{at}.peers[{i}].addr"),
                format_args!("duplicate peer {addr}"),
            );
        }
        if p.weight == 0 || p.weight > 1000 {
            errs.add(format_args!("{at}.peers[{i}].weight"), "must be 1-1000");
        }
    }
    match (u.protocol, u.tls.enabled) {
        (UpstreamProtocol::H2, false) => errs.add(
            format_args!("{at}.protocol"),
            "h2 needs tls.enabled: true (HTTP/2 is negotiated with TLS ALPN); use h2c for cleartext HTTP/2",
        ),
        (UpstreamProtocol::H2c, true) => errs.add(
            format_args!("{at}.protocol"),
            "h2c is cleartext HTTP/2; with tls.enabled use h2",
        ),
        _ => {}
    }
    if let Some(sni) = &u.tls.sni {
        if http::HeaderValue::from_str(sni).is_err() || sni.is_empty() {
            errs.add(
                format_args!("{at}.tls.sni"),
                format_args!("invalid server name {sni:?}"),
            );
        }
    }
    let t = &u.timeouts;
    errs.positive(
        &format!("{at}.timeouts"),
        &[("connect", t.connect), ("read", t.read), ("write", t.write)],
    );
    let hc = &u.health_check;
    if hc.kind != HealthCheckKind::None {
        if hc.kind == HealthCheckKind::Http
            && (!hc.path.starts_with('/')
                || http::uri::PathAndQuery::try_from(hc.path.as_str()).is_err())
        {
            errs.add(
                format_args!("{at}.health_check.path"),
                "must be a path starting with /",
            );
        }
        if hc.expect_status.iter().any(|s| !(100..=599).contains(s)) || hc.expect_status.is_empty()
        {
            errs.add(
                format_args!("{at}.health_check.expect_status"),
                "must list HTTP statuses (100-599)",
            );
        }
        if hc.interval.get().is_zero() || hc.timeout.get().is_zero() {
            errs.add(
                format_args!("{at}.health_check"),
                "interval and timeout must be greater than zero",
            );
        }
        if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
            errs.add(
                format_args!("{at}.health_check"),
                "thresholds must be at least 1",
            );
        }
    }
    if u.retries > 16 {
        errs.add(format_args!("{at}.retries"), "must be at most 16");
    }
}

/// The providers a route may name: the configured ones, and `issuer` when it is enabled.
struct Providers<'c> {
    names: HashSet<&'c str>,
    issuer: bool,
}

impl Providers<'_> {
    fn any(&self) -> bool {
        !self.names.is_empty() || self.issuer
    }

    fn knows(&self, name: &str) -> bool {
        self.names.contains(name) || (name == "issuer" && self.issuer)
    }
}

fn route(
    errs: &mut Errors<'_>,
    at: &str,
    route: &RouteConf,
    upstreams: &BTreeMap<String, UpstreamConf>,
    providers: &Providers<'_>,
) {
    let m = &route.matcher;
    if let Err(why) = check_path_prefix(&m.path_prefix) {
        errs.add(format_args!("{at}.match.path_prefix"), why);
    }
    if let Some(host) = &m.host {
        if let Err(why) = check_host(host) {
            errs.add(format_args!("{at}.match.host"), why);
        }
    }
    if let Some(methods) = &m.methods {
        if methods.is_empty() {
            errs.add(
                format_args!("{at}.match.methods"),
                "must not be empty (omit it to allow every method)",
            );
        }
        for (j, method) in methods.iter().enumerate() {
            if !STANDARD_METHODS.contains(&method.as_str()) || method == "CONNECT" {
                errs.add(
                    format_args!("{at}.match.methods[{j}]"),
                    format_args!("unsupported method {method:?} (methods are upper-case; CONNECT is refused)"),
                );
            }
        }
    }
    if !upstreams.contains_key(&route.upstream) {
        errs.add(
            format_args!("{at}.upstream"),
            format_args!("unknown upstream {:?}", route.upstream),
        );
    }
    let auth = &route.auth;
    if auth.mode != AuthMode::None && !providers.any() {
        errs.add(
            format_args!("{at}.auth"),
            format_args!(
                "mode {} needs a token provider, but no providers are configured (use auth: {{mode: none}} for an open route)",
                if auth.mode == AuthMode::Required { "required" } else { "optional" }
            ),
        );
    }
    for (j, n) in auth.providers.iter().flatten().enumerate() {
        if !providers.knows(n) {
            errs.add(
                format_args!("{at}.auth.providers[{j}]"),
                format_args!("unknown provider {n:?}"),
            );
        }
    }
    if let Some(roles) = &auth.roles {
        if !is_claim_path(&roles.claim) {
            errs.add(format_args!("{at}.auth.roles.claim"), "invalid claim path");
        }
        if roles.any_of.is_empty() {
            errs.add(
                format_args!("{at}.auth.roles.any_of"),
                "at least one role is required",
            );
        }
    }
    for (claim, value) in &auth.claims {
        if !is_claim_path(claim) {
            errs.add(
                format_args!("{at}.auth.claims"),
                format_args!("invalid claim path {claim:?}"),
            );
        }
        if value.is_object() || value.is_array() || value.is_null() {
            errs.add(
                format_args!("{at}.auth.claims.{claim}"),
                "must be a string, number or boolean",
            );
        }
    }
    for (scope_key, list) in [("scopes", &auth.scopes), ("any_scopes", &auth.any_scopes)] {
        for (j, s) in list.iter().enumerate() {
            if s.is_empty()
                || s.bytes()
                    .any(|b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
            {
                errs.add(
                    format_args!("{at}.auth.{scope_key}[{j}]"),
                    format_args!("invalid scope {s:?}"),
                );
            }
        }
    }
    if let Some(rl) = &route.rate_limit {
        if rl.rps == 0 {
            errs.add(
                format_args!("{at}.rate_limit.rps"),
                "must be greater than zero",
            );
        }
        if rl.burst == Some(0) {
            errs.add(
                format_args!("{at}.rate_limit.burst"),
                "must be greater than zero",
            );
        }
    }
}

fn issuer_section(errs: &mut Errors<'_>, iss: &IssuerConf) {
    if let Err(why) = check_path_prefix(&iss.path_prefix) {
        errs.add("issuer.path_prefix", why);
    }
    if iss.issuer.is_empty() {
        errs.add("issuer.issuer", "must not be empty");
    }
    errs.file("issuer.signing_key", &iss.signing_key);
    if let Some(f) = &iss.users_file {
        errs.file("issuer.users_file", f);
    }
    if let Some(f) = &iss.clients_file {
        errs.file("issuer.clients_file", f);
    }
    if iss.max_failed_logins == 0 {
        errs.add("issuer.max_failed_logins", "must be at least 1");
    }
}

/// Checked whether or not tracing is enabled, so turning it on later cannot surface an old typo.
fn tracing_section(errs: &mut Errors<'_>, t: &TracingConf) {
    let endpoint_ok = t.otlp_endpoint.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    });
    if !endpoint_ok {
        errs.add(
            "tracing.otlp_endpoint",
            format_args!("{:?} is not an http:// or https:// URL", t.otlp_endpoint),
        );
    }
    if t.service_name.is_empty() {
        errs.add("tracing.service_name", "must not be empty");
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        errs.add(
            "tracing.sample_ratio",
            format_args!("{} is outside [0, 1]", t.sample_ratio),
        );
    }
}

/// Why one value was refused; the message follows the value's key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("must start with /")]
    NotRooted,
    #[error("{0:?} is not a canonical path (no //, dot segments, %-escapes, ; or spaces)")]
    NotCanonical(String),
    #[error("invalid host {0:?} (a name, or *.name for any subdomain; no port)")]
    Host(String),
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("{0:?}: http:// is only allowed for loopback hosts; use https://")]
    PlainHttp(String),
    #[error("{0:?}: must be an https:// URL")]
    NotHttps(String),
}

/// A route prefix must already be canonical, or it could never match a canonicalised request path.
fn check_path_prefix(p: &str) -> Result<(), InvalidValue> {
    if !p.starts_with('/') {
        return Err(InvalidValue::NotRooted);
    }
    let bad_byte = p
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b)));
    if bad_byte || p.contains("//") || p.split('/').any(|s| s == "." || s == "..") {
        return Err(InvalidValue::NotCanonical(p.to_string()));
    }
    Ok(())
}

fn check_host(h: &str) -> Result<(), InvalidValue> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::Host(h.to_string()))
    }
}

/// JWKS and discovery endpoints: plain http only on loopback, so keys can never be swapped by
/// anyone on the network path; everything else must be https.
pub fn check_fetch_url(url: &str) -> Result<(), InvalidValue> {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Err(InvalidValue::Url(url.to_string()));
    };
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(InvalidValue::PlainHttp(url.to_string())),
        _ => Err(InvalidValue::NotHttps(url.to_string())),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::assert_mentions;
    use super::*;
    use crate::config::parse_and_validate;

    /// Structural and semantic errors alike, as `portcullis -t` lists them.
    fn errors(yaml: &str) -> Vec<String> {
        parse_and_validate(yaml.as_bytes(), Path::new("/nonexistent")).unwrap_err()
    }

    const BASE: &str = "listeners: {http: {addr: '127.0.0.1:8080'}}\nupstreams: {u: {peers: [{addr: '127.0.0.1:7001'}]}}\n";

    #[test]
    fn lists_every_error_with_its_path() {
        let errs = errors(&format!(
            "{BASE}trusted_proxies: [10.0.0.0/33]\nroutes:\n  - {{name: a, match: {{path_prefix: /a}}, upstream: billing, auth: {{mode: none}}}}\n  - {{name: a, match: {{path_prefix: /b}}, upstream: u, allow_cidrs: [nope], auth: {{mode: none}}}}\n  - {{name: c, match: {{path_prefix: /c}}, upstream: u}}\n"
        ));
        assert_mentions(
            &errs,
            &[
                "trusted_proxies[0]: invalid CIDR",
                "routes[0].upstream: unknown upstream \"billing\"",
                "routes[1].name: duplicate route name",
                "routes[1].allow_cidrs[0]",
                "routes[2].auth: mode required needs a token provider",
            ],
        );
    }

    #[test]
    fn http2_protocols_must_match_the_upstream_tls_setting() {
        let errs = errors(
            "listeners: {http: {addr: '127.0.0.1:8080'}}\nupstreams:\n  a: {peers: [{addr: '127.0.0.1:7001'}], protocol: h2}\n  b: {peers: [{addr: '127.0.0.1:7002'}], protocol: h2c, tls: {enabled: true}}\n  c: {peers: [{addr: '127.0.0.1:7003'}], protocol: h3}\n",
        );
        assert_mentions(
            &errs,
            &[
                "upstreams.a.protocol: h2 needs tls.enabled",
                "upstreams.b.protocol: h2c is cleartext",
                "upstreams.c.protocol",
            ],
        );
        let ok = "listeners: {http: {addr: '127.0.0.1:8080'}}\nupstreams:\n  a: {peers: [{addr: '127.0.0.1:7001'}], protocol: h2, tls: {enabled: true}}\n  b: {peers: [{addr: '127.0.0.1:7002'}], protocol: h2c}\n";
        assert!(parse_and_validate(ok.as_bytes(), Path::new("/nonexistent")).is_ok());
    }

    #[test]
    fn refuses_symmetric_algorithms_and_plain_http_jwks() {
        let errs = errors(&format!(
            "{BASE}providers:\n  - {{name: p, issuer: 'https://id', algorithms: [HS256], jwks: {{url: 'http://id.example.com/jwks'}}}}\n"
        ));
        assert_mentions(
            &errs,
            &[
                "providers[0].algorithms[0]: HS256 is refused",
                "providers[0].jwks.url",
            ],
        );
    }

    #[test]
    fn plain_http_is_allowed_for_loopback_hosts_only() {
        for (url, allowed) in [
            ("http://127.0.0.1:9000/jwks.json", true),
            ("http://localhost/jwks.json", true),
            ("http://[::1]:80/x", true),
            ("http://10.0.0.1/x", false),
            ("ftp://x/y", false),
        ] {
            assert_eq!(check_fetch_url(url).is_ok(), allowed, "{url}");
        }
    }

    #[test]
    fn prefixes_must_be_canonical() {
        assert!(check_path_prefix("/users").is_ok());
        assert!(check_path_prefix("/api/").is_ok());
        for bad in ["users", "/a//b", "/a/../b", "/a%2Fb", "/a;b", "/a b"] {
            assert!(check_path_prefix(bad).is_err(), "{bad}");
        }
    }
}
