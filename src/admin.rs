//! The admin listener: liveness/readiness probes and the authenticated admin API (conf/README.md §4):
//! revocations, reload and status.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::claims::DEFAULT_LEEWAY_SECS;
use crate::auth::verifier;
use crate::clock::unix_now;
use crate::metric_handles;
use crate::reload;
use crate::request_body::{read_capped, BodyError};
use crate::state::Shared;
use crate::status_page;

const MAX_BODY: usize = 64 * 1024;
pub struct AdminApp {
    pub shared: Arc<Shared>,
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response<Vec<u8>> {
    let bytes = body.to_string().into_bytes();
    let len = bytes.len();
    let mut resp = Response::new(bytes);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

fn error(status: StatusCode, code: &str, description: &str) -> Response<Vec<u8>> {
    json_response(
        status,
        json!({"error": code, "error_description": description}),
    )
}

/// The shared store did not acknowledge the change: not in force, and the client may retry.
fn unavailable(e: &dyn std::fmt::Display) -> Response<Vec<u8>> {
    log::error!("revocation change not stored: {e}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the shared revocation store is not reachable; the change was not made",
    )
}

fn empty(status: StatusCode) -> Response<Vec<u8>> {
    let mut resp = Response::new(Vec::new());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// One body shape for all three revocation forms; which fields are present decides the form.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevocationBody {
    token: Option<String>,
    iss: Option<String>,
    jti: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    before: Option<i64>,
}

enum Target {
    Jti {
        iss: String,
        jti: String,
        exp: Option<i64>,
    },
    Subject {
        iss: String,
        sub: String,
        before: i64,
    },
}

impl AdminApp {
    /// Ready once every provider holds a usable key set; with no providers, at once.
    fn readiness(&self) -> Response<Vec<u8>> {
        let snap = self.shared.snapshot.load();
        let mut waiting: Vec<String> = snap
            .auth
            .iter()
            .flat_map(|a| a.providers().iter())
            .filter(|p| !p.keys.is_ready())
            .map(|p| {
                let st = p.status();
                match st.last_error {
                    Some(e) => format!("provider {}: no usable keys ({e})", st.name),
                    None => format!("provider {}: no usable keys yet", st.name),
                }
            })
            .collect();
        if let Some(reason) = self.shared.revocations.not_ready() {
            waiting.push(reason.to_string());
        }
        if waiting.is_empty() {
            json_response(StatusCode::OK, json!({"status": "ready"}))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "reasons": waiting}),
            )
        }
    }

    /// `None` when the caller holds the admin token. Digests are compared in constant time, so
    /// neither the content nor the length of the token leaks through timing.
    fn refuse(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let snap = self.shared.snapshot.load();
        let Some(expected) = &snap.admin_token_digest else {
            return Some(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the admin API is disabled: no admin token is configured",
            ));
        };
        let mut values = session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter();
        let presented = match (values.next(), values.next()) {
            (Some(v), None) => v
                .as_bytes()
                .split_at_checked(7)
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
                .map(|(_, token)| token),
            _ => None,
        };
        let ok =
            presented.is_some_and(|t| bool::from(Sha256::digest(t).as_slice().ct_eq(expected)));
        if ok {
            return None;
        }
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required",
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Bearer realm="portcullis-admin""#),
        );
        Some(resp)
    }

    async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
        read_capped(session, MAX_BODY).await.map_err(|e| match e {
            BodyError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "body: larger than 64 KiB",
            ),
            BodyError::Unreadable => error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "body: could not be read",
            ),
        })
    }

    /// Turns a request body into what it names, with `<field>: <problem>` errors.
    fn target(&self, body: &[u8]) -> Result<Target, String> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let b: RevocationBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let msg = e.into_inner().to_string();
            // Drop serde_json's " at line 1 column N" tail: the field name says where.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            match msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split_once('`'))
            {
                Some((name, _)) => format!("{name}: unknown field"),
                None if field != "." && !field.is_empty() => format!("{field}: {msg}"),
                None => format!("body: invalid JSON ({msg})"),
            }
        })?;
        de.end()
            .map_err(|_| "body: trailing characters after the JSON object".to_string())?;
        if let Some(token) = b.token {
            if b.iss.is_some()
                || b.jti.is_some()
                || b.sub.is_some()
                || b.exp.is_some()
                || b.before.is_some()
            {
                return Err("token: cannot be combined with iss, jti, sub, exp or before".into());
            }
            return self.target_from_token(&token);
        }
        let iss = b.iss.filter(|s| !s.is_empty()).ok_or("iss: required")?;
        match (b.jti, b.sub) {
            (Some(_), Some(_)) => Err("jti: give either jti or sub, not both".into()),
            (Some(jti), None) if !jti.is_empty() => {
                if b.before.is_some() {
                    return Err("before: only applies with sub".into());
                }
                Ok(Target::Jti {
                    iss,
                    jti,
                    exp: b.exp,
                })
            }
            (None, Some(sub)) if !sub.is_empty() => {
                if b.exp.is_some() {
                    return Err("exp: only applies with jti".into());
                }
                Ok(Target::Subject {
                    iss,
                    sub,
                    before: b.before.unwrap_or_else(unix_now),
                })
            }
            (Some(_), None) => Err("jti: must not be empty".into()),
            (None, Some(_)) => Err("sub: must not be empty".into()),
            (None, None) => Err("jti: one of jti or sub is required".into()),
        }
    }

    /// The admin is trusted, so the token's signature is not required (its key may already be
    /// gone); its structure must be sound and it must name what to revoke.
    fn target_from_token(&self, token: &str) -> Result<Target, String> {
        let decoded =
            verifier::decode(token, 64 * 1024).map_err(|e| format!("token: {}", e.description))?;
        let claims = &decoded.claims;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
        let int_claim = |k: &str| claims.get(k).and_then(Value::as_i64);
        if let Some(jti) = str_claim("jti").filter(|j| !j.is_empty()) {
            return Ok(Target::Jti {
                iss: decoded.iss.clone(),
                jti,
                exp: int_claim("exp"),
            });
        }
        let sub = str_claim("sub").ok_or("token: has neither jti nor sub")?;
        Ok(Target::Subject {
            iss: decoded.iss.clone(),
            sub,
            before: int_claim("iat").map_or_else(unix_now, |iat| iat + 1),
        })
    }

    /// (leeway, max_lifetime) of the provider for `iss`, if one is configured.
    fn provider_times(&self, iss: &str) -> (i64, Option<i64>) {
        let snap = self.shared.snapshot.load();
        snap.auth
            .as_ref()
            .and_then(|a| a.provider_by_issuer(iss))
            .map_or((DEFAULT_LEEWAY_SECS, None), |p| {
                (p.policy.leeway_secs, p.policy.max_lifetime_secs)
            })
    }

    async fn revoke(&self, body: &[u8]) -> Response<Vec<u8>> {
        let target = match self.target(body) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e),
        };
        let revocations = &self.shared.revocations;
        let (stored, answer) = match target {
            Target::Jti { iss, jti, exp } => {
                let (leeway, _) = self.provider_times(&iss);
                let expires_at = exp.map(|e| e.saturating_add(leeway));
                let answer = json!({"iss": iss, "jti": jti, "expires_at": expires_at});
                (revocations.revoke_jti(&iss, &jti, expires_at).await, answer)
            }
            Target::Subject { iss, sub, before } => {
                // Kept until no token it covers can still be valid.
                let (leeway, max_lifetime) = self.provider_times(&iss);
                let expires_at =
                    max_lifetime.map(|m| before.saturating_add(m).saturating_add(leeway));
                let answer =
                    json!({"iss": iss, "sub": sub, "before": before, "expires_at": expires_at});
                let stored = revocations
                    .revoke_subject(&iss, &sub, before, expires_at)
                    .await;
                (stored, answer)
            }
        };
        match stored {
            Ok(()) => json_response(StatusCode::CREATED, answer),
            Err(e) if e.is_unavailable() => unavailable(&e),
            Err(e) => {
                log::error!("revocation not stored: {e}");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the revocation could not be stored",
                )
            }
        }
    }

    async fn unrevoke(&self, body: &[u8]) -> Response<Vec<u8>> {
        let revocations = &self.shared.revocations;
        let stored = match self.target(body) {
            Ok(Target::Jti { iss, jti, .. }) => revocations.unrevoke_jti(&iss, &jti).await,
            Ok(Target::Subject { iss, sub, .. }) => revocations.unrevoke_subject(&iss, &sub).await,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e),
        };
        match stored {
            Ok(()) => empty(StatusCode::NO_CONTENT),
            Err(e) if e.is_unavailable() => unavailable(&e),
            Err(e) => {
                log::error!("revocation removal not stored: {e}");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the change could not be stored",
                )
            }
        }
    }

    fn list_revocations(&self) -> Response<Vec<u8>> {
        let list = self.shared.revocations.list();
        let jti: Vec<Value> = list
            .jti_entries()
            .into_iter()
            .map(|(iss, jti, expires_at)| json!({"iss": iss, "jti": jti, "expires_at": expires_at}))
            .collect();
        let subjects: Vec<Value> = list
            .subject_entries()
            .into_iter()
            .map(|(iss, sub, before, expires_at)| {
                json!({"iss": iss, "sub": sub, "before": before, "expires_at": expires_at})
            })
            .collect();
        json_response(StatusCode::OK, json!({"jti": jti, "subjects": subjects}))
    }

    fn status(&self) -> Response<Vec<u8>> {
        let snap = self.shared.snapshot.load();
        let providers: Vec<Value> = snap
            .auth
            .iter()
            .flat_map(|a| a.providers().iter())
            .map(|p| {
                let st = p.status();
                json!({
                    "name": st.name,
                    "issuer": p.policy.issuer,
                    "keys": st.keys,
                    "last_refresh": st.last_refresh,
                    "last_error": st.last_error,
                })
            })
            .collect();
        let upstreams: serde_json::Map<String, Value> = snap
            .upstreams
            .iter()
            .map(|(name, u)| {
                let peers: Vec<Value> = u
                    .peers
                    .iter()
                    .map(|p| {
                        let last_check = p
                            .health
                            .last_check()
                            .map(|c| json!({"at": c.at, "result": c.result}));
                        json!({
                            "peer": p.addr,
                            "healthy": p.health.is_healthy(),
                            "last_check": last_check,
                        })
                    })
                    .collect();
                (name.clone(), Value::Array(peers))
            })
            .collect();
        let (jti, subject) = self.shared.revocations.list().counts();
        let counts = metric_handles::answers_by_route();
        let routes: Vec<Value> = snap
            .routes
            .iter()
            .map(|r| {
                let c = counts.get(r.name.as_str()).copied().unwrap_or_default();
                json!({
                    "name": r.name,
                    "host": r.host,
                    "path_prefix": r.prefix,
                    "upstream": r.upstream.name,
                    "auth": r.auth.mode.as_str(),
                    "visibility": if r.internal { "internal" } else { "public" },
                    "requests": c.requests,
                    "responses_4xx": c.client_errors,
                    "responses_5xx": c.server_errors,
                })
            })
            .collect();
        let last_reload = self.shared.last_reload.lock().clone().map(|r| {
            json!({
                "at": r.at,
                "result": if r.ok { "ok" } else { "error" },
                "config_hash": r.config_hash,
                "errors": r.errors,
            })
        });
        let mut body = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": self.shared.started_at,
                "last_reload": last_reload,
                "config_hash": snap.config_hash,
                "routes": routes,
                "providers": providers,
                "upstreams": upstreams,
                "revocations": {"jti": jti, "subject": subject},
        });
        if let (Some(link), Some(obj)) = (crate::redis_link::link(), body.as_object_mut()) {
            let (connected, last_error) = link.status();
            obj.insert(
                "redis".into(),
                json!({"connected": connected, "last_error": last_error}),
            );
        }
        json_response(StatusCode::OK, body)
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/healthz") => return json_response(StatusCode::OK, json!({"status": "ok"})),
            ("GET", "/readyz") => return self.readiness(),
            ("GET", _) => {
                if let Some(page) = status_page::asset(&path) {
                    return page;
                }
            }
            _ => {}
        }
        if !path.starts_with("/admin/") {
            return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        }
        if let Some(refusal) = self.refuse(session) {
            return refusal;
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/admin/revocations") => self.list_revocations(),
            ("POST" | "DELETE", "/admin/revocations") => {
                let body = match Self::read_body(session).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                if method == http::Method::POST {
                    self.revoke(&body).await
                } else {
                    self.unrevoke(&body).await
                }
            }
            ("POST", "/admin/reload") => match reload::reload(&self.shared) {
                Ok(hash) => json_response(StatusCode::OK, json!({"config_hash": hash})),
                Err(errors) => {
                    json_response(StatusCode::UNPROCESSABLE_ENTITY, json!({"errors": errors}))
                }
            },
            ("GET", "/admin/status") => self.status(),
            (_, "/admin/revocations" | "/admin/reload" | "/admin/status") => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        }
    }
}

/// `GET /metrics` on the metrics listener; every other path is a 404 so scrapers misconfigured
/// with a wrong path notice.
pub struct MetricsApp;

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method == http::Method::GET && req.uri.path() == "/metrics" {
            let body = crate::metrics::render();
            let len = body.len();
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
            return resp;
        }
        error(StatusCode::NOT_FOUND, "not_found", "try GET /metrics")
    }
}
