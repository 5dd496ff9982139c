//! Step 5: the route. A route hidden from this listener, or one whose allowlist excludes the
//! client, answers exactly like no route at all, so its existence does not leak.

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{self, HeaderValue};

use crate::forwarding;
use crate::pipeline::head::CheckedHead;
use crate::pipeline::ListenerKind;
use crate::respond::LocalResponse;
use crate::routing::RouteMatch;
use crate::runtime::{Route, Snapshot};

pub struct Routed<'s> {
    pub index: usize,
    pub route: &'s Route,
    /// Path and query to send upstream when they differ from what the client sent.
    pub upstream_target: Option<String>,
    /// The query carries an `access_token`, which authentication refuses on routes that
    /// authenticate.
    pub query_token: bool,
}

pub fn select<'s>(
    snap: &'s Snapshot,
    listener: ListenerKind,
    head: &CheckedHead<'_>,
    method: &str,
    raw_target: &[u8],
    client_ip: IpAddr,
) -> Result<Routed<'s>, LocalResponse> {
    // Routes hold lower-case hosts; most clients already send one, so copy only when needed.
    let hostname = head.hostname();
    let host = if hostname.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(hostname.to_ascii_lowercase())
    } else {
        Cow::Borrowed(hostname)
    };
    let internal = listener == ListenerKind::Internal;
    let index = match snap.table.lookup(&host, &head.path, method, internal) {
        RouteMatch::Found(i) => i,
        RouteMatch::NotFound => return Err(LocalResponse::not_found()),
        RouteMatch::MethodNotAllowed { allow } => {
            let r = LocalResponse::error(
                405,
                "method_not_allowed",
                "method not allowed on this route",
            );
            return Err(match HeaderValue::from_str(allow) {
                Ok(v) => r.with_header(header::ALLOW, v),
                Err(_) => r,
            });
        }
    };
    let route = snap
        .routes
        .get(index)
        .ok_or_else(LocalResponse::not_found)?;
    if !route.allow_cidrs.is_empty() && !forwarding::is_trusted(client_ip, &route.allow_cidrs) {
        return Err(LocalResponse::not_found());
    }
    Ok(Routed {
        index,
        route,
        upstream_target: upstream_target(route, head, raw_target),
        query_token: head.query.is_some_and(has_access_token_param),
    })
}

/// `None` when the client's target can go upstream as it is: canonicalisation borrowed (the raw
/// path was already canonical) and no prefix is stripped, the common case, which builds nothing.
fn upstream_target(route: &Route, head: &CheckedHead<'_>, raw_target: &[u8]) -> Option<String> {
    if !route.strip_prefix && matches!(head.path, Cow::Borrowed(_)) {
        return None;
    }
    let path = if route.strip_prefix {
        strip_route_prefix(&head.path, &route.prefix)
    } else {
        &head.path
    };
    let mut target = String::with_capacity(path.len() + head.query.map_or(0, |q| q.len() + 1));
    target.push_str(path);
    if let Some(q) = head.query {
        target.push('?');
        target.push_str(q);
    }
    (target.as_bytes() != raw_target).then_some(target)
}

fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next().is_some_and(|k| k == "access_token"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(strip_route_prefix("/users/1", "/users"), "/1");
        assert_eq!(strip_route_prefix("/users", "/users"), "/");
        assert_eq!(strip_route_prefix("/api/x", "/api/"), "/x");
        assert_eq!(strip_route_prefix("/x", "/"), "/x");
    }

    #[test]
    fn access_token_in_the_query() {
        assert!(has_access_token_param("a=1&access_token=x"));
        assert!(has_access_token_param("access_token"));
        assert!(!has_access_token_param("my_access_token=x&b"));
    }
}
