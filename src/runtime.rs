//! The runtime snapshot the proxy reads: everything derived from one config file, built once per
//! (re)load and published atomically through an `ArcSwap`, so a request sees one consistent
//! config from start to end and never takes a lock to read it.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::auth::alg::Alg;
use crate::auth::authenticator::{Authenticator, KeySource, Provider};
use crate::auth::cache::TokenCache;
use crate::auth::claims::ValidationPolicy;
use crate::auth::gate::RouteAuth;
use crate::auth::jwk::parse_jwks;
use crate::auth::policy::AccessPolicy;
use crate::auth::provider::{JwksSettings, JwksSource, ProviderRuntime};
use crate::config::{self, LoadedConfig, ProviderConf, TokenCacheConf, Visibility};
use crate::issuer::Issuer;
use crate::metric_handles::RouteMetrics;
use crate::rate_limit::RateLimiter;
use crate::routing::{RouteSpec, RouteTable};
use crate::upstream::{HealthRegistry, Upstream};

/// State that outlives any one config: reloads reuse these instead of starting cold, so a reload
/// keeps peer health, verified tokens and fetched key sets. (Revocations live in the
/// revocation service, which no reload replaces.)
pub struct Persistent {
    pub health: HealthRegistry,
    token_cache: Mutex<Option<FilledCache>>,
    providers: Mutex<HashMap<String, Arc<ProviderRuntime>>>,
    /// The issuer in force, whose login-throttle counters a reload must not reset.
    issuer: Mutex<Option<Arc<Issuer>>>,
}

/// A token cache with the settings and validation policies it was filled under.
struct FilledCache {
    conf: TokenCacheConf,
    policies: Vec<ValidationPolicy>,
    cache: Arc<TokenCache>,
}

impl Default for Persistent {
    fn default() -> Persistent {
        Persistent {
            health: HealthRegistry::default(),
            token_cache: Mutex::new(None),
            providers: Mutex::new(HashMap::new()),
            issuer: Mutex::new(None),
        }
    }
}

impl Persistent {
    /// Reused across a reload only while the cache settings and every provider's validation
    /// policy are unchanged: an entry verified under the old audience, leeway or algorithms
    /// must not outlive them.
    fn token_cache(
        &self,
        conf: &TokenCacheConf,
        policies: Vec<ValidationPolicy>,
    ) -> Arc<TokenCache> {
        let mut slot = self.token_cache.lock();
        if let Some(filled) = slot.as_ref() {
            if filled.conf == *conf && filled.policies == policies {
                return Arc::clone(&filled.cache);
            }
        }
        let cache = Arc::new(TokenCache::new(
            conf.max_entries,
            conf.max_ttl.get().as_secs() as i64,
        ));
        *slot = Some(FilledCache {
            conf: conf.clone(),
            policies,
            cache: Arc::clone(&cache),
        });
        cache
    }

    /// The runtime for a provider, reused when its JWKS settings are unchanged so a reload does
    /// not refetch keys (or lose them if the IdP is down at that moment).
    fn provider_runtime(&self, name: &str, settings: JwksSettings) -> Arc<ProviderRuntime> {
        match self.providers.lock().get(name) {
            Some(rt) if *rt.settings() == settings => Arc::clone(rt),
            _ => ProviderRuntime::new(name, settings),
        }
    }

    /// Makes `snapshot`'s key-set runtimes and issuer the ones the next build starts from.
    /// Called only once a snapshot is in force: a build that fails part-way (a refused reload)
    /// then cannot displace what the running config uses. Runtimes left out stop their
    /// refresh loops when they notice.
    pub fn adopt(&self, snapshot: &Snapshot) {
        *self.providers.lock() = snapshot
            .provider_runtimes
            .iter()
            .map(|rt| (rt.name().to_string(), Arc::clone(rt)))
            .collect();
        *self.issuer.lock() = snapshot.issuer.clone();
    }
}

pub struct Route {
    pub name: String,
    pub prefix: String,
    pub strip_prefix: bool,
    pub upstream: Arc<Upstream>,
    pub allow_cidrs: Vec<IpNet>,
    pub auth: RouteAuth,
    pub rate_limit: Option<RateLimiter>,
    pub metrics: RouteMetrics,
    /// `websocket`: upgrades allowed.
    pub websocket: bool,
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
    /// `None` when no provider is configured (then every route is `auth: none`).
    pub auth: Option<Arc<Authenticator>>,
    /// Key-set runtimes whose refresh loops must run while this snapshot is current.
    pub provider_runtimes: Vec<Arc<ProviderRuntime>>,
    /// The built-in token issuer, when enabled.
    pub issuer: Option<Arc<Issuer>>,
    /// SHA-256 of the admin token; `None` disables `/admin/*` (403).
    pub admin_token_digest: Option<Vec<u8>>,
    /// Span export and sampling; trace context is propagated regardless.
    pub tracing: config::TracingConf,
}

impl Snapshot {
    pub fn build(loaded: &LoadedConfig, keep: &Persistent) -> Result<Snapshot, Vec<String>> {
        let c = &loaded.config;
        let health = &keep.health;
        let mut errors = Vec::new();
        let mut upstreams = HashMap::new();
        for (name, conf) in &c.upstreams {
            match Upstream::build(name, conf, health) {
                Ok(u) => {
                    upstreams.insert(name.clone(), Arc::new(u));
                }
                Err(e) => errors.push(e.to_string()),
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
                metrics: RouteMetrics::new(&r.name),
                websocket: r.websocket,
                name: r.name.clone(),
                prefix: r.matcher.path_prefix.clone(),
                strip_prefix: r.strip_prefix,
                upstream: Arc::clone(upstream),
                allow_cidrs: r.allow_cidrs.clone(),
                auth: RouteAuth {
                    mode: r.auth.mode,
                    providers: r.auth.providers.clone(),
                    policy: AccessPolicy::new(
                        r.auth.scopes.clone(),
                        r.auth.any_scopes.clone(),
                        r.auth
                            .roles
                            .as_ref()
                            .map(|x| (x.claim.clone(), x.any_of.clone())),
                        r.auth
                            .claims
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                },
                rate_limit: r
                    .rate_limit
                    .as_ref()
                    .map(|rl| RateLimiter::new(rl.rps, rl.burst, rl.key).shared(rl.shared)),
            });
        }
        let identity_headers: Vec<IdentityHeader> = c
            .identity_headers
            .iter()
            .map(|(claim, header)| IdentityHeader {
                claim_path: claim.split('.').map(str::to_string).collect(),
                header: header.clone(),
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
        let mut providers = Vec::new();
        let mut provider_runtimes = Vec::new();
        for p in &c.providers {
            let settings = jwks_settings(loaded, p);
            let rt = keep.provider_runtime(&p.name, settings);
            provider_runtimes.push(Arc::clone(&rt));
            providers.push(Arc::new(Provider {
                policy: validation_policy(p),
                keys: KeySource::Fetched(rt),
            }));
        }
        let mut issuer = None;
        if let Some(conf) = c.issuer.as_ref().filter(|i| i.enabled) {
            match Issuer::load(conf, &loaded.base_dir) {
                Ok(iss) => {
                    let iss = Arc::new(iss);
                    match issuer_provider(&iss) {
                        Ok(p) => providers.push(Arc::new(p)),
                        Err(e) => errors.push(e.to_string()),
                    }
                    if let Some(prev) = keep.issuer.lock().as_ref() {
                        iss.inherit_state(prev);
                    }
                    issuer = Some(iss);
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let policies = providers.iter().map(|p| p.policy.clone()).collect();
        let auth = (!providers.is_empty()).then(|| {
            Arc::new(Authenticator::new(
                providers,
                keep.token_cache(&c.token_cache, policies),
                c.limits.max_token_bytes,
            ))
        });
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
            trusted_proxies: c.trusted_proxies.clone(),
            limits: c.limits.clone(),
            identity_names: identity_headers.iter().map(|h| h.header.clone()).collect(),
            identity_headers,
            forward_authorization: c.forward_authorization,
            auth,
            provider_runtimes,
            issuer,
            admin_token_digest: admin_token(loaded).map(|t| Sha256::digest(t.as_bytes()).to_vec()),
            tracing: c.tracing.clone(),
        })
    }
}

/// Why the issuer's own key cannot serve as its provider's key set.
#[derive(Debug, thiserror::Error)]
enum IssuerKeyError {
    #[error("issuer.signing_key: unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("issuer.signing_key: {0}")]
    Jwks(#[from] crate::auth::jwk::JwksError),
    #[error("issuer.signing_key: the public key is not usable")]
    Unusable,
}

/// The built-in issuer is a provider like any other (named "issuer"), with its own public key
/// as a fixed key set, so its tokens go through exactly the same verification path.
fn issuer_provider(iss: &Issuer) -> Result<Provider, IssuerKeyError> {
    let alg = Alg::parse(iss.algorithm()).ok_or(IssuerKeyError::UnsupportedAlgorithm)?;
    let parsed = parse_jwks(iss.jwks_json(), &[alg])?;
    if parsed.keys.is_empty() {
        return Err(IssuerKeyError::Unusable);
    }
    Ok(Provider {
        policy: ValidationPolicy {
            provider: Arc::from("issuer"),
            issuer: iss.issuer().to_string(),
            audiences: vec![iss.audience().to_string()],
            algorithms: vec![alg],
            leeway_secs: crate::auth::claims::DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: None,
            require_jti: true,
            accepted_types: Vec::new(),
        },
        keys: KeySource::Fixed(Arc::new(parsed.keys)),
    })
}

/// The admin token from `admin.token_file` (trimmed) or the `admin.token_env` variable. An empty
/// token counts as none, so a blank variable cannot open the API.
fn admin_token(loaded: &LoadedConfig) -> Option<String> {
    let admin = &loaded.config.admin;
    let token = match (&admin.token_file, admin.effective_token_env()) {
        (Some(file), _) => match std::fs::read_to_string(loaded.resolve(file)) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                log::error!("admin.token_file: {e}; the admin API stays disabled");
                return None;
            }
        },
        (None, Some(var)) => std::env::var(var).unwrap_or_default(),
        (None, None) => return None,
    };
    (!token.is_empty()).then_some(token)
}

fn validation_policy(p: &ProviderConf) -> ValidationPolicy {
    ValidationPolicy {
        provider: Arc::from(p.name.as_str()),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms: p.algorithms.clone(),
        leeway_secs: p.leeway.get().as_secs() as i64,
        max_lifetime_secs: p.max_lifetime.map(|d| d.get().as_secs() as i64),
        require_jti: p.require_jti,
        accepted_types: p.accepted_types.clone().unwrap_or_default(),
    }
}

fn jwks_settings(loaded: &LoadedConfig, p: &ProviderConf) -> JwksSettings {
    let j = &p.jwks;
    let source = match (&j.url, &j.file) {
        (Some(url), _) => JwksSource::Url(url.clone()),
        (None, Some(file)) => JwksSource::File(loaded.resolve(file)),
        (None, None) => JwksSource::Discovery {
            issuer: p.issuer.clone(),
        },
    };
    JwksSettings {
        source,
        refresh_interval: j.refresh_interval.get(),
        min_refresh: j.min_refresh.get(),
        fetch_timeout: j.fetch_timeout.get(),
        max_stale: j.max_stale.get(),
        algorithms: p.algorithms.clone(),
    }
}
