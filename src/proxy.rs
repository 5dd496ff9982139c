//! The Pingora `ProxyHttp` implementation: a thin sequence of calls into hygiene, routing,
//! forwarding and upstream selection, in the order of SPEC §3. Decisions live in those modules;
//! this file only moves data between them and Pingora.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::access_log::{self, AccessLog};
use crate::auth::gate::{self, Decision};
use crate::auth::verifier::VerifiedToken;
use crate::config::validate::STANDARD_METHODS;
use crate::config::AuthMode;
use crate::forwarding::{self, ForwardedFor};
use crate::head_timeout;
use crate::hygiene::{self, RequestTarget};
use crate::issuer;
use crate::metric_handles;
use crate::metrics;
use crate::rate_limit::{RateKey, RateLimiter};
use crate::respond::{self, CommonHeaders, LocalResponse};
use crate::revocation::service::Revocations;
use crate::routing::RouteMatch;
use crate::runtime::{Persistent, Route, Snapshot};
use crate::upstream::{HashKey, Tried};

/// Which listener a proxy service serves; decides redirects, HSTS and internal-route visibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Http,
    Https,
    Internal,
}

/// State shared by every proxy service and the admin API; replaced piecewise on reload.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub keep: Persistent,
    pub revocations: Revocations,
    pub access_log: Option<AccessLog>,
    /// What `reload` re-reads.
    pub config_path: std::path::PathBuf,
    /// Sections a reload may not change, as first loaded.
    pub pinned: Vec<(&'static str, String)>,
    pub reload_lock: parking_lot::Mutex<()>,
}

pub struct Gateway {
    pub listener: ListenerKind,
    pub shared: Arc<Shared>,
}

/// Per-request state. The snapshot is pinned at the start so a reload mid-request cannot mix
/// two configs within one request.
pub struct Ctx {
    start: Instant,
    snap: Option<Arc<Snapshot>>,
    route: Option<usize>,
    path: String,
    /// Path and query to send upstream when they differ from what the client sent.
    upstream_target: Option<String>,
    client_ip: IpAddr,
    peer_trusted: bool,
    host: Option<String>,
    request_id: String,
    peer: Option<usize>,
    tried: Tried,
    connect_failures: u32,
    upstream_status: Option<u16>,
    upstream_start: Option<Instant>,
    body_bytes: u64,
    verified: Option<Arc<VerifiedToken>>,
    auth_label: Option<&'static str>,
    query_token: bool,
}

/// What the request filter decided.
enum Verdict {
    Proxy,
    Respond(LocalResponse),
    Issuer(IssuerEndpoint),
}

/// The built-in token issuer's endpoints under its `path_prefix`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IssuerEndpoint {
    Token,
    Revoke,
    Jwks,
}

/// Form bodies for the issuer are small; anything bigger is refused before parsing.
const MAX_ISSUER_BODY: usize = 16 * 1024;

impl Gateway {
    fn hsts<'a>(&self, snap: &'a Snapshot) -> Option<&'a HeaderValue> {
        (self.listener == ListenerKind::Https)
            .then_some(snap.hsts.as_ref())
            .flatten()
    }

    /// SPEC §3 steps 1–3 (and the limits): everything decided from the request head alone.
    fn inspect(&self, session: &Session, ctx: &mut Ctx, snap: &Snapshot) -> Verdict {
        let req = session.req_header();
        let method = req.method.as_str();
        if req.method == http::Method::CONNECT {
            return Verdict::Respond(LocalResponse::bad_framing("CONNECT is not supported"));
        }
        if !STANDARD_METHODS.contains(&method) {
            return Verdict::Respond(LocalResponse::bad_request("unsupported method"));
        }
        if head_size(req) > snap.limits.max_header_bytes {
            return Verdict::Respond(LocalResponse::for_status(431));
        }
        let (path, query) = match hygiene::canonicalize_target(req.raw_path()) {
            Ok(RequestTarget::Origin { path, query }) => (path, query),
            Ok(RequestTarget::Asterisk) if req.method == http::Method::OPTIONS => {
                let mut r = LocalResponse::error(200, "ok", "");
                r.body = Bytes::new();
                r.headers.clear();
                return Verdict::Respond(r.with_header(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
                ));
            }
            Ok(RequestTarget::Asterisk) => {
                return Verdict::Respond(LocalResponse::bad_request("asterisk-form target"))
            }
            Err(e) => return Verdict::Respond(LocalResponse::bad_request(e.description())),
        };
        ctx.path = path.to_string();
        let host = match request_host(req) {
            Ok(h) => h,
            Err(msg) => return Verdict::Respond(LocalResponse::bad_request(msg)),
        };
        if req.headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
            // Two lengths, even equal ones, are a framing ambiguity (request smuggling).
            return Verdict::Respond(LocalResponse::bad_framing("more than one Content-Length"));
        }
        if nominates_forwarding_header(req) {
            return Verdict::Respond(LocalResponse::bad_request(
                "Connection must not name Host or X-Forwarded-* headers",
            ));
        }
        if req.headers.contains_key(header::CONTENT_LENGTH)
            && req.headers.contains_key(header::TRANSFER_ENCODING)
        {
            // CL.TE / TE.CL: refuse rather than pick one, and never read what follows as a
            // pipelined request (RFC 9112 §6.1).
            return Verdict::Respond(LocalResponse::bad_framing(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if let Some(len) = content_length(req) {
            if len > snap.limits.max_body_bytes {
                return Verdict::Respond(LocalResponse::for_status(413));
            }
        }

        if self.listener == ListenerKind::Http
            && snap.redirect.enabled
            && !snap
                .redirect
                .exempt_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
        {
            let hostname = host.as_deref().map(strip_port).unwrap_or_default();
            if hostname.is_empty() {
                return Verdict::Respond(LocalResponse::bad_request("missing Host"));
            }
            let mut location = format!("https://{hostname}{}{path}", snap.redirect.port_suffix);
            if let Some(q) = query {
                location.push('?');
                location.push_str(q);
            }
            return match HeaderValue::from_str(&location) {
                Ok(v) => Verdict::Respond(LocalResponse::redirect(snap.redirect.status, v)),
                Err(_) => Verdict::Respond(LocalResponse::bad_request("invalid Host")),
            };
        }

        if let Some(iss) = &snap.issuer {
            let prefix = iss.path_prefix().trim_end_matches('/');
            let endpoint = match path.strip_prefix(prefix) {
                Some("/token") => Some(IssuerEndpoint::Token),
                Some("/revoke") => Some(IssuerEndpoint::Revoke),
                Some("/jwks.json") => Some(IssuerEndpoint::Jwks),
                _ => None,
            };
            if let Some(ep) = endpoint {
                let allowed = match ep {
                    IssuerEndpoint::Jwks => {
                        req.method == http::Method::GET || req.method == http::Method::HEAD
                    }
                    _ => req.method == http::Method::POST,
                };
                if !allowed {
                    let allow = if ep == IssuerEndpoint::Jwks {
                        "GET, HEAD"
                    } else {
                        "POST"
                    };
                    return Verdict::Respond(
                        LocalResponse::error(405, "method_not_allowed", "method not allowed")
                            .with_header(header::ALLOW, HeaderValue::from_static(allow)),
                    );
                }
                ctx.host = host;
                return Verdict::Issuer(ep);
            }
        }

        let lookup_host = host
            .as_deref()
            .map(strip_port)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let internal = self.listener == ListenerKind::Internal;
        let idx = match snap.table.lookup(&lookup_host, &path, method, internal) {
            RouteMatch::Found(i) => i,
            RouteMatch::NotFound => return Verdict::Respond(LocalResponse::not_found()),
            RouteMatch::MethodNotAllowed { allow } => {
                let r = LocalResponse::error(
                    405,
                    "method_not_allowed",
                    "method not allowed on this route",
                );
                return Verdict::Respond(match HeaderValue::from_str(allow) {
                    Ok(v) => r.with_header(header::ALLOW, v),
                    Err(_) => r,
                });
            }
        };
        let Some(route) = snap.routes.get(idx) else {
            return Verdict::Respond(LocalResponse::not_found());
        };
        if !route.allow_cidrs.is_empty()
            && !forwarding::is_trusted(ctx.client_ip, &route.allow_cidrs)
        {
            // Exactly the no-route answer: an allowlisted route must not reveal that it exists.
            return Verdict::Respond(LocalResponse::not_found());
        }
        ctx.query_token = query.is_some_and(has_access_token_param);
        ctx.route = Some(idx);
        ctx.host = host;

        // Canonicalisation borrows when the raw path was already canonical; then, unless a
        // prefix is stripped, the client's target goes upstream as it is and nothing is built.
        if !route.strip_prefix && matches!(path, std::borrow::Cow::Borrowed(_)) {
            return Verdict::Proxy;
        }
        let forwarded_path = if route.strip_prefix {
            strip_route_prefix(&path, &route.prefix)
        } else {
            &path
        };
        let mut target =
            String::with_capacity(forwarded_path.len() + query.map_or(0, |q| q.len() + 1));
        target.push_str(forwarded_path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        if target.as_bytes() != req.raw_path() {
            ctx.upstream_target = Some(target);
        }
        Verdict::Proxy
    }

    /// `POST {prefix}/token`, `POST {prefix}/revoke` (RFC 7009) and `GET {prefix}/jwks.json`.
    async fn issuer_endpoint(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        snap: &Snapshot,
        ep: IssuerEndpoint,
    ) -> LocalResponse {
        let Some(iss) = &snap.issuer else {
            return LocalResponse::not_found();
        };
        if ep == IssuerEndpoint::Jwks {
            return LocalResponse::new(
                200,
                vec![
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    ),
                ],
                Bytes::copy_from_slice(iss.jwks_json()),
            );
        }
        let body = match read_body(session, MAX_ISSUER_BODY).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let req = session.req_header();
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes);
        let now = unix_now();
        if ep == IssuerEndpoint::Revoke {
            // RFC 7009: holding the token is the credential; it is verified first so a forged
            // token revokes nothing, and the answer is 200 whatever happened.
            if let (Some(token), Some(auth)) =
                (issuer::revoke_form_token(&body, content_type), &snap.auth)
            {
                let only_issuer = ["issuer".to_string()];
                if let Ok(v) = auth.authenticate(&token, Some(&only_issuer), now).await {
                    if let Some(jti) = &v.valid.jti {
                        let revocations = &self.shared.revocations;
                        if let Err(e) = revocations.revoke_token(&v.iss, jti, v.valid.exp, 30).await
                        {
                            log::error!("token revocation not stored: {e}");
                            return LocalResponse::error(
                                503,
                                "temporarily_unavailable",
                                "revocation could not be stored",
                            );
                        }
                    }
                }
            }
            return LocalResponse::new(
                200,
                vec![
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::PRAGMA, HeaderValue::from_static("no-cache")),
                ],
                Bytes::new(),
            );
        }
        let authorization = req
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        // The throttle keys on the real client, not on a trusted proxy in front of it.
        let client_ip = ctx.client_ip;
        let r = iss
            .token_endpoint(&body, content_type, authorization, client_ip, now)
            .await;
        let mut headers = Vec::with_capacity(r.headers.len());
        for (name, value) in r.headers {
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.push((n, v));
            }
        }
        LocalResponse::new(r.status, headers, Bytes::from(r.body))
    }

    /// SPEC §3 steps 4-6 plus the route's rate limit: `Some(answer)` refuses the request.
    async fn admit(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        route: &Route,
    ) -> Option<LocalResponse> {
        let mut values: [&[u8]; 2] = [&[], &[]];
        let mut n = 0;
        for v in session.req_header().headers.get_all(header::AUTHORIZATION) {
            if let Some(slot) = values.get_mut(n) {
                *slot = v.as_bytes();
            }
            n += 1;
        }
        let values = values.get(..n.min(2)).unwrap_or_default();
        let decision = gate::decide(
            snap.auth.as_deref(),
            &route.auth,
            values,
            ctx.query_token,
            unix_now(),
        )
        .await;
        if let Some(label) = decision.label() {
            ctx.auth_label = Some(label);
            route.metrics.auth_decision(label);
        }
        match decision {
            Decision::Allowed(token) => ctx.verified = Some(token),
            Decision::Denied { response, .. } => return Some(response),
            Decision::Skipped | Decision::Anonymous => {}
        }
        let limiter = route.rate_limit.as_ref()?;
        let wait = rate_limited(limiter, ctx).err()?;
        metrics::RATE_LIMITED
            .with_label_values(&[route.name.as_str()])
            .inc();
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Some(
            LocalResponse::error(429, "rate_limited", "too many requests")
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1))),
        )
    }

    fn route_name<'a>(&self, ctx: &'a Ctx) -> &'a str {
        match (&ctx.snap, ctx.route) {
            (Some(s), Some(i)) => s.routes.get(i).map_or("", |r| r.name.as_str()),
            _ => "",
        }
    }
}

/// Takes a token from the route's bucket for this client (by `sub` when the route keys on it and
/// the request is authenticated, else by client IP).
fn rate_limited(limiter: &RateLimiter, ctx: &Ctx) -> Result<(), std::time::Duration> {
    let now = Instant::now();
    if let (RateKey::Subject, Some(token)) = (limiter.key, &ctx.verified) {
        return limiter.check(token.valid.sub.as_bytes(), now);
    }
    match ctx.client_ip {
        IpAddr::V4(v4) => limiter.check(&v4.octets(), now),
        IpAddr::V6(v6) => limiter.check(&v6.octets(), now),
    }
}

/// Pingora's upstream header policy refuses these nominations after connecting upstream; refuse
/// them here instead, with the contract's error and before any upstream work.
fn nominates_forwarding_header(req: &RequestHeader) -> bool {
    req.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            t.starts_with(b":")
                || [
                    &b"host"[..],
                    b"x-forwarded-for",
                    b"x-forwarded-host",
                    b"x-forwarded-proto",
                ]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p))
        })
    })
}

fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next().is_some_and(|k| k == "access_token"))
}

/// Reads a whole request body of at most `cap` bytes (413 beyond).
async fn read_body(session: &mut Session, cap: usize) -> Result<Vec<u8>, LocalResponse> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    session.set_keepalive(None);
                    return Err(LocalResponse::for_status(413));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(LocalResponse::bad_request(
                    "the request body could not be read",
                ))
            }
        }
    }
}

/// Request line plus header lines, as `limits.max_header_bytes` counts them.
fn head_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |acc, (k, v)| acc + k.as_str().len() + v.len() + 4)
        + 2
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request's authority: the single Host header, or `:authority` on HTTP/2. Two Host headers,
/// a Host that disagrees with the authority, or a syntactically bad value are refused.
fn request_host(req: &RequestHeader) -> Result<Option<String>, &'static str> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let authority = req.uri.authority().map(|a| a.as_str());
    let host = match (header_host, authority) {
        (Some(h), Some(a)) => {
            let h = h.to_str().map_err(|_| "invalid Host")?;
            if !h.eq_ignore_ascii_case(a) {
                return Err("Host does not match the request authority");
            }
            h
        }
        (Some(h), None) => h.to_str().map_err(|_| "invalid Host")?,
        (None, Some(a)) => a,
        (None, None) => {
            return if req.version == http::Version::HTTP_11 {
                Err("missing Host")
            } else {
                Ok(None)
            }
        }
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    let port_ok = host_port_ok(host);
    if !valid || !port_ok {
        return Err("invalid Host");
    }
    Ok(Some(host.to_string()))
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, with a numeric port.
fn host_port_ok(host: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(bracketed) = host.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((_, "")) => true,
            Some((_, rest)) => rest.strip_prefix(':').is_some_and(port_ok),
            None => false,
        };
    }
    host.split_once(':').is_none_or(|(_, p)| port_ok(p))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn strip_route_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    let rest = path
        .strip_prefix(prefix.trim_end_matches('/'))
        .unwrap_or(path);
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn client_addr(session: &Session) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            snap: None,
            route: None,
            path: String::new(),
            upstream_target: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            host: None,
            request_id: String::new(),
            peer: None,
            tried: Tried::default(),
            connect_failures: 0,
            upstream_status: None,
            upstream_start: None,
            body_bytes: 0,
            verified: None,
            auth_label: None,
            query_token: false,
        }
    }

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        head_timeout::request_started();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        let snap = self.shared.snapshot.load_full();
        ctx.request_id = match session.req_header().headers.get("x-request-id") {
            Some(v) if forwarding::valid_request_id(v.as_bytes()) => {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
            _ => forwarding::new_request_id(),
        };
        let peer = client_addr(session);
        ctx.peer_trusted = forwarding::is_trusted(peer, &snap.trusted_proxies);
        ctx.client_ip = forwarding::client_ip(
            peer,
            session
                .req_header()
                .headers
                .get_all("x-forwarded-for")
                .iter(),
            &snap.trusted_proxies,
        );
        session.set_keepalive(Some(snap.limits.keepalive_timeout.whole_secs_ceil()));
        let mut verdict = self.inspect(session, ctx, &snap);
        ctx.snap = Some(Arc::clone(&snap));
        if let (Verdict::Proxy, Some(route)) =
            (&verdict, ctx.route.and_then(|i| snap.routes.get(i)))
        {
            if let Some(refusal) = self.admit(session, ctx, &snap, route).await {
                verdict = Verdict::Respond(refusal);
            }
        }
        if let Verdict::Issuer(ep) = verdict {
            verdict = Verdict::Respond(self.issuer_endpoint(session, ctx, &snap, ep).await);
        }
        match verdict {
            Verdict::Proxy | Verdict::Issuer(_) => Ok(false),
            Verdict::Respond(resp) => {
                let common = CommonHeaders {
                    request_id: Some(&ctx.request_id),
                    hsts: self.hsts(&snap),
                };
                respond::write_local(session, resp, &common).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let (Some(chunk), Some(snap)) = (body.as_ref(), &ctx.snap) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > snap.limits.max_body_bytes {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over limit");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let (Some(snap), Some(route_idx)) = (&ctx.snap, ctx.route) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let Some(route) = snap.routes.get(route_idx) else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let up = &route.upstream;
        let mut ip_buf = [0u8; 16];
        let key: &[u8] = match &up.hash_key {
            HashKey::ClientIp => match ctx.client_ip {
                IpAddr::V4(v4) => {
                    ip_buf[..4].copy_from_slice(&v4.octets());
                    &ip_buf[..4]
                }
                IpAddr::V6(v6) => {
                    ip_buf = v6.octets();
                    &ip_buf
                }
            },
            HashKey::Header(h) => session
                .req_header()
                .headers
                .get(h)
                .map_or(&[][..], |v| v.as_bytes()),
            HashKey::Claim(name) => ctx
                .verified
                .as_ref()
                .and_then(|t| t.claims.get(name.as_str()))
                .and_then(|v| v.as_str())
                .map_or(&[][..], str::as_bytes),
        };
        match up.select(key, &ctx.tried) {
            Some(i) => {
                ctx.tried.insert(i);
                ctx.peer = Some(i);
                ctx.upstream_start = Some(Instant::now());
                up.http_peer(i)
                    .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "peer vanished"))
            }
            // Nothing healthy at all is a 503; running out of peers after connect failures is a 502.
            None if ctx.connect_failures == 0 => {
                Error::e_explain(ErrorType::HTTPStatus(503), "no healthy peer")
            }
            None => Error::e_explain(ErrorType::HTTPStatus(502), "every peer failed to connect"),
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failures += 1;
        if let (Some(snap), Some(ri), Some(pi)) = (&ctx.snap, ctx.route, ctx.peer) {
            if let Some(route) = snap.routes.get(ri) {
                let up = &route.upstream;
                if let Some(p) = up.peers.get(pi) {
                    p.metrics.count("502");
                }
                // Nothing was sent yet, so moving to another peer can never replay a body.
                if ctx.connect_failures <= up.retries {
                    e.set_retry(true);
                }
            }
        }
        ctx.peer = None;
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        _ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        // Pingora may retry a request that failed on a stale pooled connection; only allow that
        // when there is no request body, so a body is never sent twice.
        e.retry
            .decide_reuse(client_reused && session.is_body_empty());
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let Some(snap) = &ctx.snap else { return Ok(()) };
        if let Some(target) = &ctx.upstream_target {
            let uri = http::Uri::try_from(target.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting the path", e))?;
            upstream_request.set_uri(uri);
        }
        let proto = if self.listener == ListenerKind::Https {
            "https"
        } else {
            "http"
        };
        let fwd = ForwardedFor {
            peer: client_addr(session),
            peer_trusted: ctx.peer_trusted,
            proto,
            host: ctx.host.as_deref(),
            request_id: &ctx.request_id,
        };
        let route = ctx.route.and_then(|i| snap.routes.get(i));
        let strip_auth =
            !snap.forward_authorization && route.is_some_and(|r| r.auth.mode != AuthMode::None);
        forwarding::sanitize_upstream_request(
            upstream_request,
            &snap.identity_names,
            strip_auth,
            &fwd,
        )?;
        if let Some(token) = &ctx.verified {
            for ih in &snap.identity_headers {
                if let Some(raw) = gate::identity_value(token, &ih.claim_path) {
                    upstream_request
                        .insert_header(ih.header.clone(), forwarding::encode_claim_value(&raw))?;
                }
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let Some(snap) = &ctx.snap else { return Ok(()) };
        let common = CommonHeaders {
            request_id: Some(&ctx.request_id),
            hsts: self.hsts(snap),
        };
        common.apply(upstream_response)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            let hsts = ctx.snap.as_ref().and_then(|s| self.hsts(s));
            let common = CommonHeaders {
                request_id: (!ctx.request_id.is_empty()).then_some(ctx.request_id.as_str()),
                hsts,
            };
            session.set_keepalive(None);
            if let Err(err) =
                respond::write_local(session, LocalResponse::for_status(code), &common).await
            {
                log::debug!("could not send the error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        // Statuses we chose ourselves are expected outcomes, not errors worth a log line.
        matches!(e.etype(), ErrorType::HTTPStatus(_))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        head_timeout::request_finished();
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or_else(|| match e.map(|e| e.etype()) {
                Some(ErrorType::HTTPStatus(c)) => Some(*c),
                _ => None,
            })
            .unwrap_or(0);
        let route = self.route_name(ctx);
        let method = session.req_header().method.as_str();
        let mut status_buf = itoa_buf(status);
        let routed = match (&ctx.snap, ctx.route) {
            (Some(s), Some(i)) => s.routes.get(i).map(|r| &r.metrics),
            _ => None,
        };
        let route_metrics: &metric_handles::RouteMetrics = match routed {
            Some(m) => m,
            None => metric_handles::unrouted(),
        };
        route_metrics.count(method, status_buf.as_str());
        let elapsed = ctx.start.elapsed();
        route_metrics.duration.observe(elapsed.as_secs_f64());

        let mut upstream_name = None;
        let mut peer_addr = None;
        if let (Some(snap), Some(ri), Some(pi)) = (&ctx.snap, ctx.route, ctx.peer) {
            if let Some(route) = snap.routes.get(ri) {
                let up = &route.upstream;
                if let Some(p) = up.peers.get(pi) {
                    upstream_name = Some(up.name.as_str());
                    peer_addr = Some(p.addr.as_str());
                    let ustatus = ctx.upstream_status.unwrap_or(status);
                    status_buf = itoa_buf(ustatus);
                    p.metrics.count(status_buf.as_str());
                    if let Some(t) = ctx.upstream_start {
                        up.duration.observe(t.elapsed().as_secs_f64());
                    }
                }
            }
        }

        if let Some(log) = &self.shared.access_log {
            log.log(&access_log::Entry {
                time: access_log::rfc3339_now(),
                request_id: &ctx.request_id,
                client_ip: ctx.client_ip.to_string(),
                method,
                path: &ctx.path,
                route,
                status,
                upstream: upstream_name,
                peer: peer_addr,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                bytes_sent: session.body_bytes_sent(),
                bytes_received: session.body_bytes_read(),
                auth: ctx.auth_label,
            });
        }
    }
}

/// Status codes as label strings without a heap allocation per request.
struct StatusBuf([u8; 3], usize);

impl StatusBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[..self.1]).unwrap_or("0")
    }
}

fn itoa_buf(status: u16) -> StatusBuf {
    if (100..1000).contains(&status) {
        let s = status;
        StatusBuf(
            [
                b'0' + (s / 100) as u8,
                b'0' + (s / 10 % 10) as u8,
                b'0' + (s % 10) as u8,
            ],
            3,
        )
    } else {
        StatusBuf([b'0', 0, 0], 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_host(&req), Err("missing Host"));
        req.append_header("host", "api.example.com:8443").unwrap();
        assert_eq!(
            request_host(&req).unwrap().as_deref(),
            Some("api.example.com:8443")
        );
        req.append_header("host", "evil.com").unwrap();
        assert_eq!(request_host(&req), Err("more than one Host header"));
        let mut bad = RequestHeader::build("GET", b"/", None).unwrap();
        bad.append_header("host", "a b@c").unwrap();
        assert_eq!(request_host(&bad), Err("invalid Host"));
        assert!(host_port_ok("[::1]") && host_port_ok("[::1]:80") && host_port_ok("a.com:443"));
        assert!(!host_port_ok("a.com:abc") && !host_port_ok("a.com:") && !host_port_ok("a:b:1"));
    }

    #[test]
    fn ports_and_prefixes() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_route_prefix("/users/1", "/users"), "/1");
        assert_eq!(strip_route_prefix("/users", "/users"), "/");
        assert_eq!(strip_route_prefix("/api/x", "/api/"), "/x");
        assert_eq!(strip_route_prefix("/x", "/"), "/x");
    }

    #[test]
    fn status_labels() {
        assert_eq!(itoa_buf(200).as_str(), "200");
        assert_eq!(itoa_buf(0).as_str(), "0");
        assert_eq!(itoa_buf(504).as_str(), "504");
    }
}
