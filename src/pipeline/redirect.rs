//! Step 3: on the plain-HTTP listener, everything not exempt is redirected to HTTPS before any
//! route or token is looked at, so no credential is ever accepted over plain HTTP.

use http::header::HeaderValue;

use crate::pipeline::head::CheckedHead;
use crate::pipeline::ListenerKind;
use crate::respond::LocalResponse;
use crate::runtime::Redirect;

/// `Err` carries the redirect (or a 400 when there is no host to redirect to).
pub fn to_https(
    listener: ListenerKind,
    redirect: &Redirect,
    head: &CheckedHead<'_>,
) -> Result<(), LocalResponse> {
    let applies = listener == ListenerKind::Http
        && redirect.enabled
        && !redirect
            .exempt_prefixes
            .iter()
            .any(|p| head.path.starts_with(p.as_str()));
    if !applies {
        return Ok(());
    }
    let hostname = head.hostname();
    if hostname.is_empty() {
        return Err(LocalResponse::bad_request("missing Host"));
    }
    let mut location = format!("https://{hostname}{}{}", redirect.port_suffix, head.path);
    if let Some(q) = head.query {
        location.push('?');
        location.push_str(q);
    }
    Err(match HeaderValue::from_str(&location) {
        Ok(v) => LocalResponse::redirect(redirect.status, v),
        Err(_) => LocalResponse::bad_request("invalid Host"),
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn redirect() -> Redirect {
        Redirect {
            enabled: true,
            status: 308,
            port_suffix: ":8443".into(),
            exempt_prefixes: vec!["/.well-known/acme-challenge/".into()],
        }
    }

    fn head<'a>(path: &'a str, query: Option<&'a str>, host: Option<&'a str>) -> CheckedHead<'a> {
        CheckedHead {
            path: Cow::Borrowed(path),
            query,
            host,
        }
    }

    #[test]
    fn redirects_plain_http_with_path_and_query() {
        let r = redirect();
        let answer = to_https(
            ListenerKind::Http,
            &r,
            &head("/a", Some("x=1"), Some("h.com:80")),
        );
        let answer = answer.err().map(|a| (a.status, a.headers[0].1.clone()));
        assert_eq!(
            answer,
            Some((308, HeaderValue::from_static("https://h.com:8443/a?x=1")))
        );
    }

    #[test]
    fn exempt_paths_other_listeners_and_missing_host() {
        let r = redirect();
        let acme = head("/.well-known/acme-challenge/t", None, Some("h.com"));
        assert!(to_https(ListenerKind::Http, &r, &acme).is_ok());
        assert!(to_https(ListenerKind::Https, &r, &head("/a", None, Some("h"))).is_ok());
        assert!(to_https(ListenerKind::Internal, &r, &head("/a", None, Some("h"))).is_ok());
        let no_host = to_https(ListenerKind::Http, &r, &head("/a", None, None));
        assert_eq!(no_host.err().map(|a| a.status), Some(400));
    }
}
