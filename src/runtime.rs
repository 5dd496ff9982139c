//! The runtime snapshot the proxy reads: everything derived from one config file, built once per
//! (re)load and published atomically through an `ArcSwap`, so a request sees one consistent
//! config from start to end and never takes a lock to read it.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::{self, AuthMode, LoadedConfig, Visibility};
use crate::routing::{RouteSpec, RouteTable};
use crate::upstream::{HealthRegistry, Upstream};

pub struct Route {
    pub name: String,
    pub prefix: String,
    pub strip_prefix: bool,
    pub upstream: Arc<Upstream>,
    pub allow_cidrs: Vec<IpNet>,
    pub auth_mode: AuthMode,
}

pub struct Redirect {
    pub enabled: bool,
    pub status: u16,
    /// `:8443`, or empty for 443.
    pub port_suffix: String,
    pub exempt_prefixes: Vec<String>,
}

/// An identity header: the claim path it carries and the header name it is sent under.
pub struct IdentityHeader {
    pub claim_path: Vec<String>,
    pub header: HeaderName,
}

pub struct Snapshot {
    pub config_hash: String,
    pub routes: Vec<Route>,
    pub table: RouteTable,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub redirect: Redirect,
    pub hsts: Option<HeaderValue>,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: config::Limits,
    pub identity_headers: Vec<IdentityHeader>,
    /// Just the names, for stripping client copies.
    pub identity_names: Vec<HeaderName>,
    pub forward_authorization: bool,
}

impl Snapshot {
    pub fn build(loaded: &LoadedConfig, health: &HealthRegistry) -> Result<Snapshot, Vec<String>> {
        let c = &loaded.config;
        let mut errors = Vec::new();
        let mut upstreams = HashMap::new();
        for (name, conf) in &c.upstreams {
            match Upstream::build(name, conf, health) {
                Ok(u) => {
                    upstreams.insert(name.clone(), Arc::new(u));
                }
                Err(e) => errors.push(e),
            }
        }
        let mut routes = Vec::with_capacity(c.routes.len());
        let mut specs = Vec::with_capacity(c.routes.len());
        for (i, r) in c.routes.iter().enumerate() {
            let Some(upstream) = upstreams.get(&r.upstream) else {
                errors.push(format!(
                    "routes[{i}].upstream: unknown upstream {:?}",
                    r.upstream
                ));
                continue;
            };
            specs.push(RouteSpec {
                host: r.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
                path_prefix: r.matcher.path_prefix.clone(),
                methods: r.matcher.methods.clone(),
                internal: r.visibility == Visibility::Internal,
            });
            routes.push(Route {
                name: r.name.clone(),
                prefix: r.matcher.path_prefix.clone(),
                strip_prefix: r.strip_prefix,
                upstream: Arc::clone(upstream),
                allow_cidrs: r
                    .allow_cidrs
                    .iter()
                    .filter_map(|s| config::parse_cidr(s))
                    .collect(),
                auth_mode: r.auth.mode,
            });
        }
        let identity_headers: Vec<IdentityHeader> = c
            .identity_headers
            .iter()
            .filter_map(|(claim, header)| {
                Some(IdentityHeader {
                    claim_path: claim.split('.').map(str::to_string).collect(),
                    header: HeaderName::from_bytes(header.as_bytes()).ok()?,
                })
            })
            .collect();
        let hsts = c.hsts.enabled.then(|| {
            let mut v = format!("max-age={}", c.hsts.max_age);
            if c.hsts.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if c.hsts.preload {
                v.push_str("; preload");
            }
            HeaderValue::from_str(&v).ok()
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        let r = &c.https_redirect;
        Ok(Snapshot {
            config_hash: loaded.hash.clone(),
            table: RouteTable::new(&specs),
            routes,
            upstreams,
            redirect: Redirect {
                enabled: r.enabled,
                status: r.status,
                port_suffix: if r.https_port == 443 {
                    String::new()
                } else {
                    format!(":{}", r.https_port)
                },
                exempt_prefixes: r.exempt_paths.clone(),
            },
            hsts: hsts.flatten(),
            trusted_proxies: c
                .trusted_proxies
                .iter()
                .filter_map(|s| config::parse_cidr(s))
                .collect(),
            limits: c.limits.clone(),
            identity_names: identity_headers.iter().map(|h| h.header.clone()).collect(),
            identity_headers,
            forward_authorization: c.forward_authorization,
        })
    }
}
