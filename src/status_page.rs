//! The status page on the admin listener (conf/README.md §10): one HTML page, one stylesheet and
//! one script, built into the binary so the page works on a machine with no internet access and
//! the binary stays one file.
//!
//! The page holds no data and needs no token; it reads the admin API with the token the operator
//! types in. What keeps it safe is here, in the headers: a policy that allows only this origin's
//! own script and style (so no inline script, and nothing an injected value could load), no
//! framing, no MIME sniffing, no referrer.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

const INDEX_HTML: &str = include_str!("status_page/index.html");
const APP_CSS: &str = include_str!("status_page/app.css");
const APP_JS: &str = include_str!("status_page/app.js");

const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page or one of its assets for `GET path`, or `None` when `path` is not one of them.
#[must_use]
pub fn asset(path: &str) -> Option<Response<Vec<u8>>> {
    let (body, content_type) = match path {
        "/" | "/ui" | "/ui/" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/ui/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "/ui/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(body.as_bytes().to_vec());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // Revalidate every time: after an upgrade the page and its script must not mix versions.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    protect(h);
    Some(resp)
}

/// The headers every page answer carries (conf/README.md §10, "Safe by construction").
fn protect(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_carry_the_protective_headers() {
        for (path, ty) in [
            ("/", "text/html"),
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.css", "text/css"),
            ("/ui/app.js", "text/javascript"),
        ] {
            let resp = asset(path).unwrap();
            let h = resp.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty));
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert!(h.get("access-control-allow-origin").is_none());
        }
        assert!(asset("/ui/other.js").is_none());
        assert!(asset("/index.html").is_none());
    }

    #[test]
    fn the_page_loads_nothing_from_another_origin() {
        for text in [INDEX_HTML, APP_CSS, APP_JS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
