//! Cross-checks that serde cannot express: references between sections, address and CIDR syntax,
//! files that must exist. Every problem is collected (not just the first) so an operator fixes a
//! file in one pass, and each line starts with the key path it is about.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use super::{is_claim_path, resolve_path, AuthMode, Config, HealthCheckKind, RevocationStoreKind};

/// Re-exported for the request filter, which still imports it from here.
pub use crate::routing::STANDARD_METHODS;

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
    let mut errs = Vec::new();
    let mut e = |path: String, msg: String| errs.push(format!("{path}: {msg}"));

    // listeners
    let l = &c.listeners;
    if l.http.is_none() && l.https.is_none() {
        e(
            "listeners".into(),
            "at least one of http or https is required".into(),
        );
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
        match addr.parse::<SocketAddr>() {
            Ok(sa) => {
                if let Some((_, other)) = seen_addrs.iter().find(|(a, _)| *a == sa) {
                    e(
                        format!("listeners.{name}.addr"),
                        format!("{addr} is already used by listeners.{other}"),
                    );
                }
                seen_addrs.push((sa, name));
            }
            Err(_) => e(
                format!("listeners.{name}.addr"),
                format!("invalid address {addr:?} (expected IP:port)"),
            ),
        }
    }
    if let Some(https) = &l.https {
        for (key, p) in [("cert", &https.cert), ("key", &https.key)] {
            let full = resolve_path(base, p);
            if !full.is_file() {
                e(
                    format!("listeners.https.{key}"),
                    format!("file not found: {}", full.display()),
                );
            }
        }
    }

    // redirect, hsts, limits
    let r = &c.https_redirect;
    if ![301, 302, 303, 307, 308].contains(&r.status) {
        e(
            "https_redirect.status".into(),
            format!(
                "{} is not a redirect status (301, 302, 303, 307, 308)",
                r.status
            ),
        );
    }
    if r.https_port == 0 {
        e("https_redirect.https_port".into(), "must be 1-65535".into());
    }
    for (i, p) in r.exempt_paths.iter().enumerate() {
        if !p.starts_with('/') {
            e(
                format!("https_redirect.exempt_paths[{i}]"),
                "must start with /".into(),
            );
        }
    }
    let lim = &c.limits;
    if lim.max_header_bytes < 1024 {
        e(
            "limits.max_header_bytes".into(),
            "must be at least 1024".into(),
        );
    }
    if lim.max_token_bytes < 64 || lim.max_token_bytes > lim.max_header_bytes {
        e(
            "limits.max_token_bytes".into(),
            "must be between 64 and limits.max_header_bytes".into(),
        );
    }
    for (key, d) in [
        ("header_read_timeout", lim.header_read_timeout),
        ("keepalive_timeout", lim.keepalive_timeout),
    ] {
        if d.get().is_zero() {
            e(format!("limits.{key}"), "must be greater than zero".into());
        }
    }

    // providers
    let mut provider_names = HashSet::new();
    for (i, p) in c.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if p.name.is_empty() {
            e(format!("{at}.name"), "must not be empty".into());
        } else if !provider_names.insert(p.name.as_str()) {
            e(
                format!("{at}.name"),
                format!("duplicate provider name {:?}", p.name),
            );
        }
        if p.name == "issuer" && c.issuer.as_ref().is_some_and(|i| i.enabled) {
            e(
                format!("{at}.name"),
                "\"issuer\" is reserved for the built-in token issuer".into(),
            );
        }
        if p.issuer.is_empty() {
            e(format!("{at}.issuer"), "must not be empty".into());
        }
        if p.audiences.is_empty() {
            e(
                format!("{at}.audiences"),
                "at least one audience is required".into(),
            );
        }
        if p.algorithms.is_empty() {
            e(
                format!("{at}.algorithms"),
                "at least one algorithm is required".into(),
            );
        }
        let j = &p.jwks;
        let sources =
            usize::from(j.url.is_some()) + usize::from(j.file.is_some()) + usize::from(j.discovery);
        if sources != 1 {
            e(
                format!("{at}.jwks"),
                "exactly one of url, file or discovery: true is required".into(),
            );
        }
        if let Some(url) = &j.url {
            if let Err(msg) = check_fetch_url(url) {
                e(format!("{at}.jwks.url"), msg.to_string());
            }
        }
        if j.discovery {
            if let Err(msg) = check_fetch_url(&p.issuer) {
                e(
                    format!("{at}.issuer"),
                    format!("discovery needs a fetchable issuer URL: {msg}"),
                );
            }
        }
        if let Some(file) = &j.file {
            let full = resolve_path(base, file);
            if !full.is_file() {
                e(
                    format!("{at}.jwks.file"),
                    format!("file not found: {}", full.display()),
                );
            }
        }
        if j.min_refresh > j.refresh_interval {
            e(
                format!("{at}.jwks.min_refresh"),
                "must not exceed jwks.refresh_interval".into(),
            );
        }
        for (key, d) in [
            ("refresh_interval", j.refresh_interval),
            ("min_refresh", j.min_refresh),
            ("fetch_timeout", j.fetch_timeout),
            ("max_stale", j.max_stale),
        ] {
            if d.get().is_zero() {
                e(
                    format!("{at}.jwks.{key}"),
                    "must be greater than zero".into(),
                );
            }
        }
        if p.leeway.get().as_secs() > 300 {
            e(format!("{at}.leeway"), "must be at most 5m".into());
        }
        if p.max_lifetime.is_some_and(|d| d.get().is_zero()) {
            e(
                format!("{at}.max_lifetime"),
                "must be greater than zero".into(),
            );
        }
    }

    if c.revocation.store == RevocationStoreKind::Redis {
        e(
            "revocation.store".into(),
            "redis is not available in this version; use file or memory".into(),
        );
    }
    if let Some(file) = &c.admin.token_file {
        let full = resolve_path(base, file);
        if !full.is_file() {
            e(
                "admin.token_file".into(),
                format!("file not found: {}", full.display()),
            );
        }
    }

    for (claim, header) in &c.identity_headers {
        let at = format!("identity_headers.{claim}");
        if !is_claim_path(claim) {
            e(at.clone(), "invalid claim path".into());
        }
        if RESERVED_HEADERS.contains(&header.as_str()) {
            e(
                at,
                format!("{header} is managed by the gateway and cannot carry a claim"),
            );
        }
    }

    // upstreams
    for (name, u) in &c.upstreams {
        let at = format!("upstreams.{name}");
        if u.peers.is_empty() {
            e(
                format!("{at}.peers"),
                "at least one peer is required".into(),
            );
        }
        let mut seen = HashSet::new();
        for (i, p) in u.peers.iter().enumerate() {
            if p.addr.parse::<SocketAddr>().is_err() {
                e(
                    format!("{at}.peers[{i}].addr"),
                    format!(
                        "invalid address {:?} (expected IP:port; host names are not resolved)",
                        p.addr
                    ),
                );
            } else if !seen.insert(p.addr.as_str()) {
                e(
                    format!("{at}.peers[{i}].addr"),
                    format!("duplicate peer {}", p.addr),
                );
            }
            if p.weight == 0 || p.weight > 1000 {
                e(format!("{at}.peers[{i}].weight"), "must be 1-1000".into());
            }
        }
        if let Some(sni) = &u.tls.sni {
            if http::HeaderValue::from_str(sni).is_err() || sni.is_empty() {
                e(
                    format!("{at}.tls.sni"),
                    format!("invalid server name {sni:?}"),
                );
            }
        }
        for (key, d) in [
            ("connect", u.timeouts.connect),
            ("read", u.timeouts.read),
            ("write", u.timeouts.write),
        ] {
            if d.get().is_zero() {
                e(
                    format!("{at}.timeouts.{key}"),
                    "must be greater than zero".into(),
                );
            }
        }
        let hc = &u.health_check;
        if hc.kind != HealthCheckKind::None {
            if hc.kind == HealthCheckKind::Http
                && (!hc.path.starts_with('/')
                    || http::uri::PathAndQuery::try_from(hc.path.as_str()).is_err())
            {
                e(
                    format!("{at}.health_check.path"),
                    "must be a path starting with /".into(),
                );
            }
            if hc.expect_status.iter().any(|s| !(100..=599).contains(s))
                || hc.expect_status.is_empty()
            {
                e(
                    format!("{at}.health_check.expect_status"),
                    "must list HTTP statuses (100-599)".into(),
                );
            }
            if hc.interval.get().is_zero() || hc.timeout.get().is_zero() {
                e(
                    format!("{at}.health_check"),
                    "interval and timeout must be greater than zero".into(),
                );
            }
            if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
                e(
                    format!("{at}.health_check"),
                    "thresholds must be at least 1".into(),
                );
            }
        }
        if u.retries > 16 {
            e(format!("{at}.retries"), "must be at most 16".into());
        }
    }

    // routes
    let have_provider = !c.providers.is_empty() || c.issuer.as_ref().is_some_and(|i| i.enabled);
    let mut route_names = HashSet::new();
    for (i, route) in c.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if route.name.is_empty() {
            e(format!("{at}.name"), "must not be empty".into());
        } else if !route_names.insert(route.name.as_str()) {
            e(
                format!("{at}.name"),
                format!("duplicate route name {:?}", route.name),
            );
        }
        let m = &route.matcher;
        if let Err(msg) = check_path_prefix(&m.path_prefix) {
            e(format!("{at}.match.path_prefix"), msg.to_string());
        }
        if let Some(host) = &m.host {
            if let Err(msg) = check_host(host) {
                e(format!("{at}.match.host"), msg.to_string());
            }
        }
        if let Some(methods) = &m.methods {
            if methods.is_empty() {
                e(
                    format!("{at}.match.methods"),
                    "must not be empty (omit it to allow every method)".into(),
                );
            }
            for (j, method) in methods.iter().enumerate() {
                if !STANDARD_METHODS.contains(&method.as_str()) || method == "CONNECT" {
                    e(
                        format!("{at}.match.methods[{j}]"),
                        format!("unsupported method {method:?} (methods are upper-case; CONNECT is refused)"),
                    );
                }
            }
        }
        if !c.upstreams.contains_key(&route.upstream) {
            e(
                format!("{at}.upstream"),
                format!("unknown upstream {:?}", route.upstream),
            );
        }
        let auth = &route.auth;
        if auth.mode != AuthMode::None && !have_provider {
            e(
                format!("{at}.auth"),
                format!(
                    "mode {} needs a token provider, but no providers are configured (use auth: {{mode: none}} for an open route)",
                    if auth.mode == AuthMode::Required { "required" } else { "optional" }
                ),
            );
        }
        if let Some(names) = &auth.providers {
            for (j, n) in names.iter().enumerate() {
                let known = provider_names.contains(n.as_str())
                    || (n == "issuer" && c.issuer.as_ref().is_some_and(|x| x.enabled));
                if !known {
                    e(
                        format!("{at}.auth.providers[{j}]"),
                        format!("unknown provider {n:?}"),
                    );
                }
            }
        }
        if let Some(roles) = &auth.roles {
            if !is_claim_path(&roles.claim) {
                e(
                    format!("{at}.auth.roles.claim"),
                    "invalid claim path".into(),
                );
            }
            if roles.any_of.is_empty() {
                e(
                    format!("{at}.auth.roles.any_of"),
                    "at least one role is required".into(),
                );
            }
        }
        for (claim, value) in &auth.claims {
            if !is_claim_path(claim) {
                e(
                    format!("{at}.auth.claims"),
                    format!("invalid claim path {claim:?}"),
                );
            }
            if value.is_object() || value.is_array() || value.is_null() {
                e(
                    format!("{at}.auth.claims.{claim}"),
                    "must be a string, number or boolean".into(),
                );
            }
        }
        for (scope_key, list) in [("scopes", &auth.scopes), ("any_scopes", &auth.any_scopes)] {
            for (j, s) in list.iter().enumerate() {
                if s.is_empty()
                    || s.bytes()
                        .any(|b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
                {
                    e(
                        format!("{at}.auth.{scope_key}[{j}]"),
                        format!("invalid scope {s:?}"),
                    );
                }
            }
        }
        if let Some(rl) = &route.rate_limit {
            if rl.rps == 0 {
                e(
                    format!("{at}.rate_limit.rps"),
                    "must be greater than zero".into(),
                );
            }
            if rl.burst == Some(0) {
                e(
                    format!("{at}.rate_limit.burst"),
                    "must be greater than zero".into(),
                );
            }
        }
    }

    if let Some(iss) = c.issuer.as_ref().filter(|i| i.enabled) {
        if let Err(msg) = check_path_prefix(&iss.path_prefix) {
            e("issuer.path_prefix".into(), msg.to_string());
        }
        if iss.issuer.is_empty() {
            e("issuer.issuer".into(), "must not be empty".into());
        }
        let key = resolve_path(base, &iss.signing_key);
        if !key.is_file() {
            e(
                "issuer.signing_key".into(),
                format!("file not found: {}", key.display()),
            );
        }
        for (k, f) in [
            ("users_file", &iss.users_file),
            ("clients_file", &iss.clients_file),
        ] {
            if let Some(f) = f {
                let full = resolve_path(base, f);
                if !full.is_file() {
                    e(
                        format!("issuer.{k}"),
                        format!("file not found: {}", full.display()),
                    );
                }
            }
        }
        if iss.max_failed_logins == 0 {
            e(
                "issuer.max_failed_logins".into(),
                "must be at least 1".into(),
            );
        }
    }
    errs
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
        let joined = errs.join("\n");
        assert!(
            joined.contains("trusted_proxies[0]: invalid CIDR"),
            "{joined}"
        );
        assert!(
            joined.contains("routes[0].upstream: unknown upstream \"billing\""),
            "{joined}"
        );
        assert!(
            joined.contains("routes[1].name: duplicate route name"),
            "{joined}"
        );
        assert!(joined.contains("routes[1].allow_cidrs[0]"), "{joined}");
        assert!(
            joined.contains("routes[2].auth: mode required needs a token provider"),
            "{joined}"
        );
    }

    #[test]
    fn refuses_symmetric_algorithms_and_plain_http_jwks() {
        let errs = errors(&format!(
            "{BASE}providers:\n  - {{name: p, issuer: 'https://id', algorithms: [HS256], jwks: {{url: 'http://id.example.com/jwks'}}}}\n"
        ));
        let joined = errs.join("\n");
        assert!(
            joined.contains("providers[0].algorithms[0]: HS256 is refused"),
            "{joined}"
        );
        assert!(joined.contains("providers[0].jwks.url"), "{joined}");
    }

    #[test]
    fn loopback_http_is_allowed() {
        assert!(check_fetch_url("http://127.0.0.1:9000/jwks.json").is_ok());
        assert!(check_fetch_url("http://localhost/jwks.json").is_ok());
        assert!(check_fetch_url("http://[::1]:80/x").is_ok());
        assert!(check_fetch_url("http://10.0.0.1/x").is_err());
        assert!(check_fetch_url("ftp://x/y").is_err());
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
