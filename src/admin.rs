//! The admin listener: liveness and readiness probes (and, later, the authenticated admin API).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::Shared;

pub struct AdminApp {
    pub shared: Arc<Shared>,
}

pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    let bytes = body.to_string().into_bytes();
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
    if let Ok(len) = http::HeaderValue::from_str(&resp.body().len().to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, len);
    }
    resp
}

impl AdminApp {
    /// Ready once every provider holds a usable key set; with no providers, at once.
    fn readiness(&self) -> Response<Vec<u8>> {
        let snap = self.shared.snapshot.load();
        let waiting: Vec<String> = snap
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
        if waiting.is_empty() {
            json_response(StatusCode::OK, serde_json::json!({"status": "ready"}))
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "not_ready", "reasons": waiting}),
            )
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        match (req.method.as_str(), path) {
            ("GET", "/healthz") => {
                json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            ("GET", "/readyz") => self.readiness(),
            _ => json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found", "error_description": "no such endpoint"}),
            ),
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
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            if let Ok(len) = http::HeaderValue::from_str(&resp.body().len().to_string()) {
                resp.headers_mut().insert(http::header::CONTENT_LENGTH, len);
            }
            return resp;
        }
        json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found", "error_description": "try GET /metrics"}),
        )
    }
}
