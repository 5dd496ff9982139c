//! Route table (conf/README.md §3.3, "Routing order").
//!
//! A route is a candidate when both its host and its segment-aware `path_prefix` match. The
//! candidates are ranked by host class first (exact host, then the longest matching `*.`
//! wildcard, then the routes without a host) and by prefix length second; the first one decides,
//! and only then do visibility and methods. So a host-specific route never hides a host-less route
//! it does not match (`{host: api.example.com, path_prefix: /hosted}` leaves `/public` with
//! `{path_prefix: /public}`), while choosing the prefix before looking at methods or visibility is
//! what makes a hidden route and a wrong method answer the same way for every method, so neither
//! can be probed by falling through to a shorter prefix.
//!
//! Everything that depends only on the config (host classes, prefix order, `Allow` values) is
//! computed once in [`RouteTable::new`]; [`RouteTable::lookup`] runs on every request and does
//! not allocate.

use std::collections::HashMap;
use std::sync::LazyLock;

/// One route's match criteria, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Exact `"api.example.com"` or wildcard `"*.example.com"`; `None` = any host.
    pub host: Option<String>,
    /// Starts with `/`.
    pub path_prefix: String,
    /// `None` = every method; otherwise exact, case-sensitive tokens.
    pub methods: Option<Vec<String>>,
    /// `visibility: internal`.
    pub internal: bool,
}

/// Outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch<'t> {
    /// Index into the slice given to [`RouteTable::new`].
    Found(usize),
    /// No route: 404. Also the answer for a route hidden from this listener.
    NotFound,
    /// The path has a route but the method is not allowed: 405 with this `Allow` value.
    MethodNotAllowed { allow: &'t str },
}

/// Immutable, precomputed routing index over a list of [`RouteSpec`]s.
#[derive(Debug)]
pub struct RouteTable {
    /// Keyed by lower-cased host.
    exact: HashMap<String, HostClass>,
    /// Keyed by the suffix including its leading dot (`.example.com`), longest suffix first, so
    /// the first match is the most specific.
    wildcards: Vec<(String, HostClass)>,
    /// Routes without a host; `None` when there are none.
    any_host: Option<HostClass>,
}

/// The routes of one host class, grouped by identical prefix.
#[derive(Debug)]
struct HostClass {
    /// Longest prefix first: two distinct prefixes of equal length cannot both match one path, so
    /// the first group that matches is the longest match.
    groups: Vec<PrefixGroup>,
}

#[derive(Debug)]
struct PrefixGroup {
    prefix: String,
    /// In config order.
    routes: Vec<Candidate>,
    has_public: bool,
    /// `Allow` value seen on public listeners: public routes only, so internal methods never leak.
    allow_public: String,
    /// `Allow` value seen on the internal listener: every route of the group.
    allow_all: String,
}

#[derive(Debug)]
struct Candidate {
    index: usize,
    methods: Option<Vec<String>>,
    internal: bool,
}

impl Candidate {
    fn visible(&self, internal_listener: bool) -> bool {
        internal_listener || !self.internal
    }

    fn allows(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    }
}

/// The standard methods (RFC 9110 §9 plus PATCH) in the order `Allow` lists them; other tokens
/// follow in first-seen order. The one list the gateway has: config validation, the request
/// filter and the metric cells all read it, so they can never disagree on what is standard.
pub const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The `Allow` value for `OPTIONS *`: every standard method except CONNECT, which the gateway
/// refuses before routing. Derived from [`STANDARD_METHODS`] so the two cannot drift apart.
#[must_use]
pub fn allow_every_routable_method() -> &'static str {
    static ALLOW: LazyLock<String> = LazyLock::new(|| {
        STANDARD_METHODS
            .iter()
            .copied()
            .filter(|m| *m != "CONNECT")
            .collect::<Vec<_>>()
            .join(", ")
    });
    &ALLOW
}

impl RouteTable {
    /// Builds the index. Route hosts are lower-cased here; a host is a wildcard only in the form
    /// `*.suffix`, anything else (validation's job to refuse) is taken as an exact host.
    #[must_use]
    pub fn new(routes: &[RouteSpec]) -> RouteTable {
        let mut exact: HashMap<String, Vec<(usize, &RouteSpec)>> = HashMap::new();
        let mut wildcards: Vec<(String, Vec<(usize, &RouteSpec)>)> = Vec::new();
        let mut any_host = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let Some(host) = &route.host else {
                any_host.push((index, route));
                continue;
            };
            let host = host.to_ascii_lowercase();
            match host
                .strip_prefix('*')
                .filter(|suffix| suffix.starts_with('.'))
            {
                Some(suffix) => match wildcards.iter_mut().find(|(s, _)| s == suffix) {
                    Some((_, members)) => members.push((index, route)),
                    None => wildcards.push((suffix.to_owned(), vec![(index, route)])),
                },
                None => exact.entry(host).or_default().push((index, route)),
            }
        }
        // Stable sort: suffixes of equal length are distinct and cannot both match one host.
        wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        RouteTable {
            exact: exact
                .into_iter()
                .map(|(host, members)| (host, HostClass::new(&members)))
                .collect(),
            wildcards: wildcards
                .into_iter()
                .map(|(suffix, members)| (suffix, HostClass::new(&members)))
                .collect(),
            any_host: (!any_host.is_empty()).then(|| HostClass::new(&any_host)),
        }
    }

    /// `host`: request host, already lower-cased and without port (may be `""`). `path`:
    /// canonical path (see `hygiene`). `method`: as received. Internal routes are visible only
    /// when `internal_listener` is true; elsewhere they answer exactly like no route.
    #[must_use]
    pub fn lookup(
        &self,
        host: &str,
        path: &str,
        method: &str,
        internal_listener: bool,
    ) -> RouteMatch<'_> {
        let Some(group) = self.host_classes(host).find_map(|class| {
            class
                .groups
                .iter()
                .find(|g| prefix_matches(&g.prefix, path))
        }) else {
            return RouteMatch::NotFound;
        };
        if !internal_listener && !group.has_public {
            return RouteMatch::NotFound;
        }
        if let Some(route) = group
            .routes
            .iter()
            .find(|route| route.visible(internal_listener) && route.allows(method))
        {
            return RouteMatch::Found(route.index);
        }
        RouteMatch::MethodNotAllowed {
            allow: if internal_listener {
                &group.allow_all
            } else {
                &group.allow_public
            },
        }
    }

    /// Every host class whose host matches `host`, most specific first.
    fn host_classes<'t, 'h>(
        &'t self,
        host: &'h str,
    ) -> impl Iterator<Item = &'t HostClass> + use<'t, 'h> {
        let wildcards = self
            .wildcards
            .iter()
            // `*.example.com` needs at least one label before the suffix: not `example.com`.
            .filter(move |(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, class)| class);
        self.exact
            .get(host)
            .into_iter()
            .chain(wildcards)
            .chain(self.any_host.as_ref())
    }
}

impl HostClass {
    fn new(members: &[(usize, &RouteSpec)]) -> HostClass {
        let mut groups: Vec<PrefixGroup> = Vec::new();
        for &(index, route) in members {
            let candidate = Candidate {
                index,
                methods: route.methods.clone(),
                internal: route.internal,
            };
            match groups.iter_mut().find(|g| g.prefix == route.path_prefix) {
                Some(group) => group.routes.push(candidate),
                None => groups.push(PrefixGroup {
                    prefix: route.path_prefix.clone(),
                    routes: vec![candidate],
                    has_public: false,
                    allow_public: String::new(),
                    allow_all: String::new(),
                }),
            }
        }
        for group in &mut groups {
            group.has_public = group.routes.iter().any(|r| !r.internal);
            group.allow_public = allow_value(group.routes.iter().filter(|r| !r.internal));
            group.allow_all = allow_value(group.routes.iter());
        }
        groups.sort_by_key(|group| std::cmp::Reverse(group.prefix.len()));
        HostClass { groups }
    }
}

/// Segment-aware prefix match: `/users` matches `/users`, `/users/` and `/users/1` but not
/// `/usersx`; a prefix ending in `/` matches whatever starts with it (so `/api/` does not match
/// `/api`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The `Allow` value for a set of routes that all restrict methods (a route without `methods`
/// would have matched): the deduplicated union, standard methods first in their usual order.
fn allow_value<'a>(routes: impl Iterator<Item = &'a Candidate>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for method in routes.filter_map(|r| r.methods.as_ref()).flatten() {
        if !seen.contains(&method.as_str()) {
            seen.push(method);
        }
    }
    let standard = STANDARD_METHODS
        .iter()
        .copied()
        .filter(|m| seen.contains(m));
    let others = seen
        .iter()
        .copied()
        .filter(|m| !STANDARD_METHODS.contains(m));
    standard.chain(others).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use RouteMatch::{Found, MethodNotAllowed, NotFound};

    fn route(
        host: Option<&str>,
        prefix: &str,
        methods: Option<&[&str]>,
        internal: bool,
    ) -> RouteSpec {
        RouteSpec {
            host: host.map(str::to_owned),
            path_prefix: prefix.to_owned(),
            methods: methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect()),
            internal,
        }
    }

    fn public(host: Option<&str>, prefix: &str, methods: Option<&[&str]>) -> RouteSpec {
        route(host, prefix, methods, false)
    }

    fn internal(host: Option<&str>, prefix: &str, methods: Option<&[&str]>) -> RouteSpec {
        route(host, prefix, methods, true)
    }

    /// Checks lookups written one a line, like a request and its answer:
    /// `METHOD [host]/path [(internal)] -> outcome`, where the outcome is `#i` (route i), `404`,
    /// or `405 ALLOW` (the `Allow` value, which may be empty). `//` starts a comment line.
    fn check(table: &RouteTable, lookups: &str) {
        let lines = lookups.lines().map(str::trim);
        for line in lines.filter(|l| !l.is_empty() && !l.starts_with("//")) {
            let (request, want) = line.split_once(" -> ").expect("`request -> outcome`");
            let (request, internal) = match request.strip_suffix(" (internal)") {
                Some(request) => (request, true),
                None => (request, false),
            };
            let (method, target) = request.split_once(' ').expect("`METHOD target`");
            let (host, path) = target.split_at(target.find('/').expect("a path"));
            let got = match table.lookup(host, path, method, internal) {
                Found(i) => format!("#{i}"),
                NotFound => "404".to_owned(),
                MethodNotAllowed { allow } => format!("405 {allow}").trim_end().to_owned(),
            };
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let table = RouteTable::new(&[
            public(None, "/", None),
            public(Some("*.example.com"), "/", None),
            public(Some("api.example.com"), "/", None),
        ]);
        check(
            &table,
            "
            GET api.example.com/x -> #2
            GET web.example.com/x -> #1
            GET a.b.example.com/x -> #1
            GET example.com/x -> #0
            GET notexample.com/x -> #0
            GET other.org/x -> #0
            GET /x -> #0
            ",
        );
    }

    #[test]
    fn config_order_does_not_change_host_precedence() {
        let table = RouteTable::new(&[
            public(Some("api.example.com"), "/", None),
            public(Some("*.example.com"), "/", None),
            public(None, "/", None),
        ]);
        check(
            &table,
            "
            GET api.example.com/ -> #0
            GET www.example.com/ -> #1
            GET x.org/ -> #2
            ",
        );
    }

    #[test]
    fn route_hosts_are_case_insensitive() {
        let table = RouteTable::new(&[
            public(Some("API.Example.COM"), "/", None),
            public(Some("*.Example.Org"), "/", None),
        ]);
        check(
            &table,
            "
            GET api.example.com/ -> #0
            GET www.example.org/ -> #1
            ",
        );
    }

    #[test]
    fn longer_wildcard_beats_shorter() {
        let table = RouteTable::new(&[
            public(Some("*.example.com"), "/", None),
            public(Some("*.b.example.com"), "/", None),
        ]);
        check(
            &table,
            "
            GET a.b.example.com/ -> #1
            GET x.a.b.example.com/ -> #1
            GET a.c.example.com/ -> #0
            GET b.example.com/ -> #0
            GET example.com/ -> 404
            GET .example.com/ -> 404
            ",
        );
    }

    #[test]
    fn the_most_specific_host_among_candidates_wins_then_the_prefix() {
        let table = RouteTable::new(&[
            public(None, "/", None),
            public(Some("*.example.com"), "/wild", None),
            public(Some("api.example.com"), "/users", None),
            public(None, "/users/admin", None),
        ]);
        check(
            &table,
            "
            GET api.example.com/users/1 -> #2
            // the exact host outranks a longer prefix of a host-less route
            GET api.example.com/users/admin -> #2
            // a host-specific route never hides a less specific route it does not match
            GET api.example.com/wild -> #1
            GET api.example.com/other -> #0
            GET www.example.com/other -> #0
            GET www.example.com/users/admin -> #3
            GET other.org/users/1 -> #0
            ",
        );
    }

    #[test]
    fn a_host_route_does_not_hide_a_hostless_prefix() {
        let table = RouteTable::new(&[
            public(Some("api.example.com"), "/hosted", None),
            public(None, "/public", None),
        ]);
        check(
            &table,
            "
            GET api.example.com/public/x -> #1
            GET api.example.com/hosted -> #0
            GET api.example.com/nothing -> 404
            GET other.org/hosted -> 404
            ",
        );
    }

    #[test]
    fn longest_prefix_wins_segment_aware() {
        let table = RouteTable::new(&[
            public(None, "/", None),
            public(None, "/users/admin", None),
            public(None, "/users", None),
        ]);
        check(
            &table,
            "
            GET /users -> #2
            GET /users/ -> #2
            GET /users/1 -> #2
            GET /users/admin -> #1
            GET /users/admin/ -> #1
            GET /users/admin/x -> #1
            GET /users/adminx -> #2
            GET /usersx -> #0
            GET / -> #0
            GET /anything/else -> #0
            ",
        );
    }

    #[test]
    fn prefix_without_catch_all() {
        let table = RouteTable::new(&[public(None, "/users", None)]);
        check(
            &table,
            "
            GET /users -> #0
            GET /usersx -> 404
            GET /user -> 404
            GET / -> 404
            // matching is case-sensitive
            GET /Users -> 404
            ",
        );
    }

    #[test]
    fn prefix_with_trailing_slash() {
        let table = RouteTable::new(&[public(None, "/api/", None)]);
        check(
            &table,
            "
            GET /api/ -> #0
            GET /api/x -> #0
            GET /api -> 404
            GET /apix -> 404
            ",
        );
        let both = RouteTable::new(&[public(None, "/api", None), public(None, "/api/", None)]);
        check(
            &both,
            "
            GET /api -> #0
            GET /api/ -> #1
            GET /api/x -> #1
            ",
        );
    }

    #[test]
    fn first_route_in_config_order_among_same_prefix() {
        let table = RouteTable::new(&[
            public(None, "/x", Some(&["GET"])),
            public(None, "/x", Some(&["GET", "POST"])),
            public(None, "/x", None),
        ]);
        check(
            &table,
            "
            GET /x -> #0
            POST /x -> #1
            DELETE /x -> #2
            get /x -> #2
            ",
        );
    }

    #[test]
    fn method_not_allowed_lists_the_union_in_standard_order() {
        let table = RouteTable::new(&[
            public(None, "/x", Some(&["PATCH", "PURGE", "POST"])),
            public(None, "/x", Some(&["GET", "BREW", "POST", "PURGE"])),
            public(None, "/x", Some(&["OPTIONS", "HEAD"])),
        ]);
        check(
            &table,
            "
            PATCH /x -> #0
            BREW /x -> #1
            DELETE /x -> 405 GET, HEAD, POST, OPTIONS, PATCH, PURGE, BREW
            // methods are case-sensitive tokens, and GET does not imply HEAD
            get /x -> 405 GET, HEAD, POST, OPTIONS, PATCH, PURGE, BREW
            ",
        );
        let get_only = RouteTable::new(&[public(None, "/x", Some(&["GET"]))]);
        check(&get_only, "HEAD /x -> 405 GET");
    }

    #[test]
    fn method_mismatch_does_not_fall_back_to_a_shorter_prefix() {
        let table = RouteTable::new(&[public(None, "/", None), public(None, "/x", Some(&["GET"]))]);
        check(
            &table,
            "
            POST /x/1 -> 405 GET
            POST /y -> #0
            ",
        );
    }

    #[test]
    fn empty_methods_list_allows_nothing() {
        let table = RouteTable::new(&[public(None, "/x", Some(&[]))]);
        check(&table, "GET /x -> 405");
    }

    #[test]
    fn internal_routes_are_hidden_on_public_listeners() {
        let table = RouteTable::new(&[
            public(None, "/", None),
            internal(None, "/admin", Some(&["GET"])),
        ]);
        for method in ["GET", "POST", "DELETE", "get", "BREW"] {
            for path in ["/admin", "/admin/", "/admin/users"] {
                // exactly no route: neither 405 nor the public catch-all
                check(&table, &format!("{method} {path} -> 404"));
            }
        }
        check(
            &table,
            "
            GET /admin/users (internal) -> #1
            POST /admin (internal) -> 405 GET
            GET /adminx -> #0
            GET /public (internal) -> #0
            ",
        );
    }

    #[test]
    fn internal_host_routes_are_hidden_too() {
        let table = RouteTable::new(&[
            public(None, "/", None),
            internal(Some("internal.svc"), "/", None),
        ]);
        check(
            &table,
            "
            GET internal.svc/x -> 404
            GET internal.svc/x (internal) -> #1
            GET other/x -> #0
            ",
        );
    }

    #[test]
    fn mixed_public_and_internal_at_the_same_prefix() {
        let table = RouteTable::new(&[
            internal(None, "/x", Some(&["GET", "DELETE"])),
            public(None, "/x", Some(&["GET", "POST"])),
        ]);
        check(
            &table,
            "
            // public listener: the internal route does not exist, its methods do not leak
            GET /x -> #1
            POST /x -> #1
            DELETE /x -> 405 GET, POST
            // internal listener: both visible, config order decides
            GET /x (internal) -> #0
            DELETE /x (internal) -> #0
            POST /x (internal) -> #1
            PUT /x (internal) -> 405 GET, POST, DELETE
            ",
        );
    }

    #[test]
    fn empty_host() {
        let host_only = RouteTable::new(&[
            public(Some("api.example.com"), "/", None),
            public(Some("*.example.com"), "/", None),
        ]);
        check(&host_only, "GET / -> 404");
        let with_default = RouteTable::new(&[
            public(Some("api.example.com"), "/", None),
            public(None, "/", None),
        ]);
        check(&with_default, "GET / -> #1");
    }

    #[test]
    fn options_asterisk_allows_every_standard_method_but_connect() {
        assert_eq!(
            allow_every_routable_method(),
            "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"
        );
    }

    #[test]
    fn empty_table() {
        let table = RouteTable::new(&[]);
        check(
            &table,
            "
            GET / -> 404
            GET a.b/x (internal) -> 404
            ",
        );
    }

    #[test]
    fn allow_strings_are_borrowed_from_the_table() {
        let table = RouteTable::new(&[public(None, "/x", Some(&["POST"]))]);
        let first = table.lookup("", "/x", "GET", false);
        let second = table.lookup("", "/x", "PUT", false);
        match (first, second) {
            (MethodNotAllowed { allow: a }, MethodNotAllowed { allow: b }) => {
                assert_eq!(a.as_ptr(), b.as_ptr());
            }
            other => panic!("{other:?}"),
        }
    }
}
