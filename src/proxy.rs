//! The Pingora `ProxyHttp` implementation. `request_filter` runs the request pipeline
//! (`crate::pipeline`, in the order its module doc lists); the other phases pick the peer, shape
//! the upstream request and record the outcome. Decisions live in the step modules; this file
//! only moves data between them and Pingora.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use crate::access_log;
use crate::auth::gate::{self, Denial};
use crate::auth::verifier::VerifiedToken;
use crate::clock::unix_now;
use crate::config::{AuthMode, UpstreamProtocol};
use crate::connection;
use crate::forwarding::{self, ForwardedFor};
use crate::grpc;
use crate::metric_handles::{self, RouteMetrics};
use crate::pipeline::client::{self, Client};
use crate::pipeline::head::{self, CheckedHead};
use crate::pipeline::issuer_endpoints::{self, IssuerContext};
use crate::pipeline::{redirect, route, throttle, ListenerKind};
use crate::respond::{self, CommonHeaders, LocalResponse};
use crate::runtime::{Route, Snapshot};
use crate::state::Shared;
use crate::telemetry::{self, Outcome, RequestTrace, UpstreamOutcome};
use crate::upstream::{HashKey, Tried};
use crate::websocket;

pub struct Gateway {
    pub listener: ListenerKind,
    pub shared: Arc<Shared>,
}

/// Per-request state, grouped by the step that produces it.
pub struct Ctx {
    /// Pinned at the start so a reload mid-request cannot mix two configs within one request.
    snap: Option<Arc<Snapshot>>,
    client: Client,
    request: RequestFacts,
    /// Index into `snap.routes`, once routed.
    route: Option<usize>,
    identity: IdentityFacts,
    upstream: UpstreamAttempt,
    timings: Timings,
    trace: RequestTrace,
    /// The status of an answer the gateway wrote itself, as decided: a gRPC client gets it as a
    /// `grpc-status` inside an HTTP 200, but it is counted and logged as what it is.
    local_status: Option<u16>,
    /// Set for a WebSocket handshake that the pipeline let through.
    websocket: Option<WebSocket>,
}

#[derive(Default)]
struct WebSocket {
    /// `None` on routes that do not authenticate.
    lease: Option<websocket::Lease>,
    /// Counted from the upstream's `101` until the connection ends.
    open: Option<websocket::Open>,
}

impl WebSocket {
    fn quiet_limit(&self, idle: std::time::Duration) -> std::time::Duration {
        self.lease
            .as_ref()
            .map_or(idle, |l| l.quiet_limit(idle, unix_now()))
    }
}

#[derive(Default)]
struct RequestFacts {
    /// The canonical path, kept only for the access log.
    path: String,
    /// Path and query to send upstream when they differ from what the client sent.
    upstream_target: Option<String>,
    /// Request body bytes seen so far, against `limits.max_body_bytes`.
    body_bytes: u64,
}

#[derive(Default)]
struct IdentityFacts {
    token: Option<Arc<VerifiedToken>>,
    /// The `portcullis_auth_decisions_total` result, also written to the access log.
    auth_label: Option<&'static str>,
}

#[derive(Default)]
struct UpstreamAttempt {
    /// Index into the route's upstream peers, while connected or connecting.
    peer: Option<usize>,
    tried: Tried,
    connect_failures: u32,
    /// The upstream's own status, before any local rewrite.
    status: Option<u16>,
}

struct Timings {
    start: Instant,
    upstream_start: Option<Instant>,
}

impl Ctx {
    fn route(&self) -> Option<&Route> {
        self.snap.as_ref()?.routes.get(self.route?)
    }
}

impl Gateway {
    /// `Err` ends an open WebSocket whose token expired or was revoked.
    fn keep_websocket(&self, ws: &WebSocket) -> pingora::Result<()> {
        match ws
            .lease
            .as_ref()
            .map(|l| l.check(self.shared.revocations.list(), unix_now()))
        {
            Some(Err(why)) => Error::e_explain(ErrorType::HTTPStatus(401), why),
            _ => Ok(()),
        }
    }

    fn hsts<'a>(&self, snap: &'a Snapshot) -> Option<&'a HeaderValue> {
        (self.listener == ListenerKind::Https)
            .then_some(snap.hsts.as_ref())
            .flatten()
    }

    /// The request pipeline, steps 2 to 7 (step 1, the client, is already in `ctx`; a client-IP
    /// rate limit runs right after routing, before any token work). `Err` is a
    /// local answer: the gateway responds itself and the request goes no further (a refusal, a
    /// redirect, or a built-in issuer endpoint's reply). `Ok` means: proxy it (step 8).
    async fn pipeline(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
    ) -> Result<(), LocalResponse> {
        let req = session.req_header();
        let (path, query) = head::target(req, &snap.limits)?;
        if self.shared.access_log.is_some() || ctx.trace.recording {
            ctx.request.path = path.to_string();
        }
        let host = head::framing(req, &snap.limits)?;
        let head = CheckedHead { path, query, host };

        redirect::to_https(self.listener, &snap.redirect, &head)?;

        let endpoint = issuer_endpoints::matching(snap.issuer.as_deref(), &head.path, &req.method)?;
        if let (Some(endpoint), Some(issuer)) = (endpoint, &snap.issuer) {
            let cx = IssuerContext {
                issuer,
                auth: snap.auth.as_deref(),
                revocations: &self.shared.revocations,
                client_ip: ctx.client.ip,
            };
            return Err(issuer_endpoints::serve(session, cx, endpoint).await);
        }

        let routed = route::select(
            snap,
            self.listener,
            &head,
            req.method.as_str(),
            req.raw_path(),
            ctx.client.ip,
        )?;
        ctx.route = Some(routed.index);
        ctx.request.upstream_target = routed.upstream_target;
        let route = routed.route;
        if websocket::requested(req) {
            // An upgrade cannot cross HTTP/2 to the upstream.
            if !route.websocket || route.upstream.protocol != UpstreamProtocol::Http1 {
                return Err(websocket::not_allowed());
            }
            ctx.websocket = Some(WebSocket::default());
        }

        throttle::before_auth(route, ctx.client.ip).await?;

        let (values, n) = gate::authorization_values(&req.headers);
        let authorization = values.get(..n).unwrap_or_default();
        let identity = gate::authenticate(
            snap.auth.as_deref(),
            &route.auth,
            authorization,
            routed.query_token,
            unix_now(),
            &mut ctx.trace.verification,
        )
        .await
        .map_err(|d| record_denial(ctx, &route.metrics, d))?;
        gate::check_revocation(self.shared.revocations.list(), &identity)
            .map_err(|d| record_denial(ctx, &route.metrics, d))?;
        gate::authorize(&route.auth, &identity)
            .map_err(|d| record_denial(ctx, &route.metrics, d))?;
        if let Some(label) = identity.label() {
            ctx.identity.auth_label = Some(label);
            route.metrics.auth_decision(label);
        }
        ctx.identity.token = identity.token().cloned();
        if let (Some(ws), Some(token)) = (&mut ctx.websocket, &ctx.identity.token) {
            let leeway = snap
                .auth
                .as_deref()
                .and_then(|a| a.provider(&token.provider))
                .map_or(0, |p| p.policy.leeway_secs);
            ws.lease = Some(websocket::Lease::new(Arc::clone(token), leeway));
        }

        throttle::after_auth(route, ctx.client.ip, ctx.identity.token.as_deref()).await
    }
}

/// Counts a refusal under its label and turns it into the answer.
fn record_denial(ctx: &mut Ctx, metrics: &RouteMetrics, denial: Denial) -> LocalResponse {
    ctx.identity.auth_label = Some(denial.label);
    metrics.auth_decision(denial.label);
    denial.response
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: None,
            client: Client::default(),
            request: RequestFacts::default(),
            route: None,
            identity: IdentityFacts::default(),
            upstream: UpstreamAttempt::default(),
            timings: Timings {
                start: Instant::now(),
                upstream_start: None,
            },
            local_status: None,
            websocket: None,
            trace: RequestTrace::default(),
        }
    }

    async fn early_request_filter(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        connection::request_started();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        let snap = self.shared.snapshot.load_full();
        ctx.client = client::identify(session, &snap.trusted_proxies);
        ctx.trace = RequestTrace::start(&session.req_header().headers, &snap.tracing);
        session.set_keepalive(Some(snap.limits.keepalive_timeout.whole_secs_ceil()));
        ctx.snap = Some(Arc::clone(&snap));
        let Err(answer) = self.pipeline(session, ctx, &snap).await else {
            return Ok(false);
        };
        let common = CommonHeaders {
            request_id: ctx.client.request_id.as_ref(),
            hsts: self.hsts(&snap),
        };
        ctx.local_status = Some(answer.status);
        respond::write_local(session, answer, &common).await?;
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        if let Some(ws) = &ctx.websocket {
            // Frames, not a request body: no size limit, but the token must still hold.
            return self.keep_websocket(ws);
        }
        if let (Some(chunk), Some(snap)) = (body.as_ref(), &ctx.snap) {
            ctx.request.body_bytes += chunk.len() as u64;
            if ctx.request.body_bytes > snap.limits.max_body_bytes {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over limit");
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if let Some(ws) = &ctx.websocket {
            self.keep_websocket(ws)?;
        }
        Ok(None)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        // Field by field, so the route can stay borrowed while the attempt is updated.
        let Some(route) = ctx
            .snap
            .as_ref()
            .zip(ctx.route)
            .and_then(|(s, i)| s.routes.get(i))
        else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let up = &route.upstream;
        let mut ip_buf = [0u8; 16];
        let key: &[u8] = match &up.hash_key {
            HashKey::ClientIp => match ctx.client.ip {
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
                .identity
                .token
                .as_ref()
                .and_then(|t| t.claims.get(name.as_str()))
                .and_then(|v| v.as_str())
                .map_or(&[][..], str::as_bytes),
        };
        match up.select(key, &ctx.upstream.tried) {
            Some(i) => {
                ctx.upstream.tried.insert(i);
                ctx.upstream.peer = Some(i);
                ctx.timings.upstream_start = Some(Instant::now());
                let mut peer = up
                    .http_peer(i)
                    .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(503), "peer vanished"))?;
                if let Some(ws) = &ctx.websocket {
                    // An upgraded connection ends after `timeouts.idle` of silence, or sooner
                    // when its token ends first.
                    peer.options.read_timeout = Some(ws.quiet_limit(up.idle_timeout));
                }
                Ok(peer)
            }
            // Nothing healthy at all is a 503; running out of peers after connect failures is a 502.
            None if ctx.upstream.connect_failures == 0 => {
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
        ctx.upstream.connect_failures += 1;
        if let Some(up) = ctx.route().map(|r| &r.upstream) {
            if let Some(p) = ctx.upstream.peer.and_then(|i| up.peers.get(i)) {
                p.metrics.count(502);
            }
            // Nothing was sent yet, so moving to another peer can never replay a body.
            if ctx.upstream.connect_failures <= up.retries {
                e.set_retry(true);
            }
        }
        ctx.upstream.peer = None;
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
        if let Some(target) = &ctx.request.upstream_target {
            let uri = http::Uri::try_from(target.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting the path", e))?;
            upstream_request.set_uri(uri);
        }
        let fwd = ForwardedFor {
            peer: ctx.client.peer,
            peer_trusted: ctx.client.peer_trusted,
            proto: if self.listener == ListenerKind::Https {
                "https"
            } else {
                "http"
            },
            host: head::authority(session.req_header()),
            request_id: ctx.client.request_id.as_ref(),
        };
        let strip_auth = !snap.forward_authorization
            && ctx.route().is_some_and(|r| r.auth.mode != AuthMode::None);
        let grpc_trailers = grpc::is_grpc(session.req_header())
            && ctx
                .route()
                .is_some_and(|r| r.upstream.protocol != UpstreamProtocol::Http1);
        forwarding::sanitize_upstream_request(
            upstream_request,
            &snap.identity_names,
            strip_auth,
            &fwd,
        )?;
        if ctx.websocket.is_some() {
            websocket::forward_upgrade(upstream_request)?;
        }
        if grpc_trailers {
            // `TE: trailers` is how a gRPC server tells a trailer-capable client from a proxy
            // that would drop `grpc-status`; HTTP/2 allows exactly this value end to end.
            upstream_request.insert_header(http::header::TE, "trailers")?;
        }
        telemetry::inject(upstream_request, &ctx.trace)?;
        if let Some(token) = &ctx.identity.token {
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
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.upstream.status = Some(status);
        if status == 101 {
            let route = ctx
                .snap
                .as_ref()
                .zip(ctx.route)
                .and_then(|(s, i)| s.routes.get(i));
            if let (Some(ws), Some(route)) = (&mut ctx.websocket, route) {
                ws.open = Some(websocket::Open::count(route.metrics.websockets()));
                session.set_read_timeout(Some(ws.quiet_limit(route.upstream.idle_timeout)));
            }
        }
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
            request_id: ctx.client.request_id.as_ref(),
            hsts: self.hsts(snap),
        };
        common.apply(upstream_response)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = status_for_error(e);
        if code > 0 && session.response_written().is_none() {
            let common = CommonHeaders {
                request_id: ctx.client.request_id.as_ref(),
                hsts: ctx.snap.as_ref().and_then(|s| self.hsts(s)),
            };
            session.set_keepalive(None);
            ctx.local_status = Some(code);
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
        connection::request_finished();
        let status = ctx
            .local_status
            .or_else(|| session.response_written().map(|r| r.status.as_u16()))
            .or_else(|| match e.map(|e| e.etype()) {
                Some(ErrorType::HTTPStatus(c)) => Some(*c),
                _ => None,
            })
            .unwrap_or(0);
        let route = ctx.route();
        let method = session.req_header().method.as_str();
        let route_metrics: &RouteMetrics = match route {
            Some(r) => &r.metrics,
            None => metric_handles::unrouted(),
        };
        route_metrics.count(method, status);
        let elapsed = ctx.timings.start.elapsed();
        route_metrics.duration.observe(elapsed.as_secs_f64());

        let upstream = route.map(|r| &r.upstream);
        let peer = upstream.and_then(|up| up.peers.get(ctx.upstream.peer?));
        if let (Some(up), Some(p)) = (upstream, peer) {
            p.metrics.count(ctx.upstream.status.unwrap_or(status));
            if let Some(t) = ctx.timings.upstream_start {
                up.duration.observe(t.elapsed().as_secs_f64());
            }
        }

        let trace_id = ctx.trace.trace_id.hex();
        if let Some(log) = &self.shared.access_log {
            log.log(&access_log::Entry {
                time: access_log::rfc3339_now(),
                request_id: ctx
                    .client
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
                client_ip: ctx.client.ip.to_string(),
                method,
                path: &ctx.request.path,
                route: route.map_or("", |r| r.name.as_str()),
                status,
                upstream: peer.and(upstream).map(|u| u.name.as_str()),
                peer: peer.map(|p| p.addr.as_str()),
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                bytes_sent: session.body_bytes_sent(),
                bytes_received: session.body_bytes_read(),
                auth: ctx.identity.auth_label,
                trace_id: trace_id.as_str(),
            });
        }
        let outcome = Outcome {
            method,
            path: &ctx.request.path,
            route: route.map(|r| r.name.as_str()),
            status,
            auth: ctx.identity.auth_label,
            started: ctx.timings.start,
            upstream: upstream
                .zip(peer)
                .zip(ctx.timings.upstream_start)
                .map(|((u, p), t)| UpstreamOutcome {
                    upstream: &u.name,
                    peer: &p.addr,
                    started: t,
                    status: ctx.upstream.status,
                }),
        };
        self.shared.spans.submit(&ctx.trace, &outcome);
    }
}

/// The status a proxy failure is answered with; 0 when the client is gone and nothing can be
/// sent.
fn status_for_error(e: &Error) -> u16 {
    match e.etype() {
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
    }
}
