//! From YAML text to a typed [`Config`], listing every problem instead of the first.
//!
//! serde stops at the first error. So a document that fails is parsed again section by section
//! (each route, provider and upstream on its own), and within a section the offending key or
//! list item is dropped and parsing retried until what is left parses. Dropping the same way
//! over the whole document gives a best-effort config, whose cross-reference errors are then
//! listed beside the structural ones: an unknown upstream is named next to a bad duration.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::values::{Cidr, Header};
use super::{
    validate, AccessLogConf, AdminConf, Config, Hsts, HttpsRedirect, IssuerConf, Limits, Listeners,
    ProviderConf, RedisConf, RevocationConf, RouteConf, TokenCacheConf, TracingConf, UpstreamConf,
};

/// Drops per parse before giving up; a file with more problems than this is not being fixed by
/// hand one line at a time anyway.
const MAX_DROPS: usize = 64;

/// Parses YAML into typed structs; on failure, every structural problem, each prefixed with its
/// key path.
pub fn parse(text: &[u8]) -> Result<Config, Vec<String>> {
    let de = serde_yaml::Deserializer::from_slice(text);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let path = e.path().to_string();
        let first = describe_parse_error(&path, &e.into_inner().to_string());
        let mut all = structural_errors(text);
        if all.is_empty() {
            all.push(first);
        }
        all
    })
}

/// Like [`parse`] followed by [`validate`], but when the file has structural errors it also
/// reports the semantic ones found in the best-effort config.
pub fn parse_and_validate(text: &[u8], base: &Path) -> Result<Config, Vec<String>> {
    let structural = match parse(text) {
        Ok(config) => {
            let errors = validate(&config, base);
            return if errors.is_empty() {
                Ok(config)
            } else {
                Err(errors)
            };
        }
        Err(structural) => structural,
    };
    let Ok(value) = serde_yaml::from_slice::<Value>(text) else {
        return Err(structural);
    };
    let lenient = Lenient::<Config>::parse(value, "");
    let mut all = structural;
    if let Some(best_effort) = &lenient.value {
        let semantic = validate(best_effort, base);
        all.extend(semantic.into_iter().filter(|e| !lenient.dropped_under(e)));
    }
    Err(all)
}

/// The result of parsing with drops.
struct Lenient<T> {
    /// What was left once every offending node was dropped; `None` when a problem could not be
    /// dropped (a missing required key, a section of the wrong shape).
    value: Option<T>,
    /// Each problem, prefixed with its key path.
    errors: Vec<String>,
    /// Key paths of dropped keys, and of lists that lost an item. The best-effort value is not
    /// what the file says at and below these (a list's later items moved up), so a cross-check
    /// there would blame the wrong key or repeat what was already said.
    dropped: Vec<String>,
}

/// What [`drop_node`] removed.
enum Dropped {
    Key,
    Item,
}

impl<T: DeserializeOwned> Lenient<T> {
    /// Parses `value` (found at key path `at`), dropping what fails until the rest parses.
    fn parse(mut value: Value, at: &str) -> Lenient<T> {
        let mut out = Lenient {
            value: None,
            errors: Vec::new(),
            dropped: Vec::new(),
        };
        // Items dropped so far per list, so later items are still named by their index in the file.
        let mut shifted: HashMap<String, usize> = HashMap::new();
        for _ in 0..MAX_DROPS {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(parsed) => {
                    out.value = Some(parsed);
                    return out;
                }
                Err(err) => err,
            };
            let segments: Vec<Segment> = err.path().iter().cloned().collect();
            let dropped = drop_node(&mut value, &segments);
            let path = match (&dropped, segments.split_last()) {
                (Some(Dropped::Item), Some((Segment::Seq { index }, parent))) => {
                    let list = key_path(at, parent);
                    let before = shifted.entry(list.clone()).or_default();
                    let path = format!("{list}[{}]", index + *before);
                    *before += 1;
                    out.dropped.push(list);
                    path
                }
                _ => key_path(at, &segments),
            };
            if matches!(dropped, Some(Dropped::Key)) {
                out.dropped.push(path.clone());
            }
            // What cannot be dropped after a drop is a follow-up (the dropped key is now
            // missing) that says nothing new; the first problem is always reported.
            if dropped.is_some() || out.errors.is_empty() {
                out.errors
                    .push(describe_parse_error(&path, &err.into_inner().to_string()));
            }
            if dropped.is_none() {
                break;
            }
        }
        out
    }
}

impl<T> Lenient<T> {
    /// Whether an error's key path is at or below something that was dropped.
    fn dropped_under(&self, error: &str) -> bool {
        let path = error.split_once(": ").map_or(error, |(path, _)| path);
        self.dropped.iter().any(|d| {
            path.strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

/// `at` followed by `segments`, spelled the way error messages name keys (`routes[2].auth`).
fn key_path(at: &str, segments: &[Segment]) -> String {
    let mut path = at.to_string();
    for segment in segments {
        if !matches!(segment, Segment::Seq { .. }) && !path.is_empty() {
            path.push('.');
        }
        let _ = write!(path, "{segment}");
    }
    path
}

/// Removes the mapping key, or the scalar list item, a parse error points at; `None` when the
/// path names no such node (e.g. a missing required key), which ends the dropping. List items
/// that are mappings (a route, a provider) are never dropped: every later one would be renamed.
fn drop_node(value: &mut Value, path: &[Segment]) -> Option<Dropped> {
    let (last, parents) = path.split_last()?;
    let mut cur = value;
    for segment in parents {
        cur = match (segment, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index)?,
            _ => return None,
        };
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).map(|_| Dropped::Key),
        (Segment::Seq { index }, Value::Sequence(items))
            if items.get(*index).is_some_and(is_scalar) =>
        {
            items.remove(*index);
            Some(Dropped::Item)
        }
        _ => None,
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_))
}

fn structural_errors(text: &[u8]) -> Vec<String> {
    let Ok(Value::Mapping(root)) = serde_yaml::from_slice::<Value>(text) else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    fn check<T: DeserializeOwned>(at: &str, v: &Value, errs: &mut Vec<String>) {
        errs.extend(Lenient::<T>::parse(v.clone(), at).errors);
    }
    if !root.contains_key("listeners") {
        errs.push("listeners: required".into());
    }
    for (k, v) in &root {
        let Some(key) = k.as_str() else {
            errs.push(format!("{k:?}: keys must be strings"));
            continue;
        };
        match key {
            "server" => check::<pingora::server::configuration::ServerConf>(key, v, &mut errs),
            "listeners" => check::<Listeners>(key, v, &mut errs),
            "https_redirect" => check::<HttpsRedirect>(key, v, &mut errs),
            "hsts" => check::<Hsts>(key, v, &mut errs),
            "trusted_proxies" => check::<Vec<Cidr>>(key, v, &mut errs),
            "limits" => check::<Limits>(key, v, &mut errs),
            "token_cache" => check::<TokenCacheConf>(key, v, &mut errs),
            "revocation" => check::<RevocationConf>(key, v, &mut errs),
            "redis" => check::<Option<RedisConf>>(key, v, &mut errs),
            "identity_headers" => check::<BTreeMap<String, Header>>(key, v, &mut errs),
            "forward_authorization" => check::<bool>(key, v, &mut errs),
            "admin" => check::<AdminConf>(key, v, &mut errs),
            "issuer" => check::<Option<IssuerConf>>(key, v, &mut errs),
            "access_log" => check::<AccessLogConf>(key, v, &mut errs),
            "tracing" => check::<TracingConf>(key, v, &mut errs),
            "routes" | "providers" => match v {
                Value::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{key}[{i}]");
                        if key == "routes" {
                            check::<RouteConf>(&at, item, &mut errs);
                        } else {
                            check::<ProviderConf>(&at, item, &mut errs);
                        }
                    }
                }
                _ => errs.push(format!("{key}: must be a list")),
            },
            "upstreams" => match v {
                Value::Mapping(ups) => {
                    for (name, u) in ups {
                        let at = format!("upstreams.{}", name.as_str().unwrap_or("?"));
                        check::<UpstreamConf>(&at, u, &mut errs);
                    }
                }
                _ => errs.push("upstreams: must be a map of name -> upstream".into()),
            },
            other => errs.push(format!("{other}: unknown key")),
        }
    }
    errs
}

/// serde reports an unknown key at its parent's path; name the key itself instead, and drop
/// serde_yaml's "at line N column M" tail only when a key path already says where.
fn describe_parse_error(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    // serde_yaml prefixes some messages with its own (shorter) idea of the path.
    let message = match message.split_once(": ") {
        Some((p, rest)) if !p.contains(' ') && path.starts_with(p) => rest,
        _ => message,
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            // serde_path_to_error's path already ends with the unknown key; older shapes may not.
            let full = if path.ends_with(field) {
                path.to_string()
            } else if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            let allowed = tail.trim_start_matches(", ");
            return format!("{full}: unknown key ({allowed})");
        }
    }
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::assert_mentions;
    use super::*;

    #[test]
    fn unknown_key_names_its_full_path() {
        let err = parse(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nroutes:\n  - name: a\n    matchh: {}\n",
        )
        .unwrap_err();
        assert!(
            err[0].starts_with("routes[0].matchh: unknown key"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_duration_names_its_path() {
        let err = parse(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: 5x}\n",
        )
        .unwrap_err();
        assert!(err[0].starts_with("upstreams.u.timeouts.read:"), "{err:?}");
    }

    /// Every problem of a file is listed, each named by its key path; structural ones (that
    /// fail parsing) beside semantic ones (that fail the cross-checks).
    #[test]
    fn each_problem_is_named_by_its_key_path() {
        let cases: [(&str, &[&str]); 4] = [
            (
                "listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: 5x}\nroutes:\n  - {name: a, matchh: {}}\n  - {name: b, match: {}, upstream: u, visibility: secret}\nbogus: 1\n",
                &[
                    "upstreams.u.timeouts.read:",
                    "routes[0].matchh: unknown key",
                    "routes[1].visibility:",
                    "bogus: unknown key",
                ],
            ),
            (
                "listeners: {http: {addr: '127.0.0.1:1'}}\ntrusted_proxies: [nope]\nupstreams:\n  u:\n    peers: [{addr: '127.0.0.1:2'}]\n    timeouts: {read: soon}\nroutes:\n  - {name: a, match: {}, upstream: billing, auth: {mode: none}}\n",
                &[
                    "upstreams.u.timeouts.read:",
                    "trusted_proxies[0]",
                    "routes[0].upstream",
                ],
            ),
            // A bad list item is dropped and the list parsed again; later items keep their index.
            (
                "listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams: {u: {peers: [{addr: '127.0.0.1:2'}]}}\ntrusted_proxies: [nope, 10.0.0.0/8, 300.1.1.1/8, 10.0.0.0/33]\nroutes:\n  - {name: a, match: {}, upstream: billing, auth: {mode: none}}\n  - {name: a, match: {path_prefix: /x}, upstream: u, auth: {mode: none}, allow_cidrs: [1.2.3.4/99]}\n",
                &[
                    "trusted_proxies[0]: invalid CIDR \"nope\"\ntrusted_proxies[2]: invalid CIDR \"300.1.1.1/8\"\ntrusted_proxies[3]: invalid CIDR \"10.0.0.0/33\"\n",
                    "routes[0].upstream: unknown upstream \"billing\"",
                    "routes[1].name: duplicate route name",
                    "routes[1].allow_cidrs[0]: invalid CIDR",
                ],
            ),
            (
                "listeners: {http: {addr: '127.0.0.1:1'}}\nidentity_headers: {sub: 'X User'}\nproviders:\n  - {name: p, issuer: 'https://id', algorithms: [ES256, none], jwks: {discovery: true}}\nupstreams: {u: {peers: [{addr: '127.0.0.1:2'}], hash_key: 'claim:'}}\n",
                &[
                    "identity_headers.sub: invalid header name \"X User\"",
                    "providers[0].algorithms[1]: unknown algorithm `none`",
                    "upstreams.u.hash_key: \"claim:\" is not client_ip, header:NAME or claim:NAME",
                ],
            ),
        ];
        for (yaml, wanted) in cases {
            let errors = parse_and_validate(yaml.as_bytes(), Path::new("/nonexistent"));
            assert_mentions(&errors.unwrap_err(), wanted);
        }
    }

    #[test]
    fn a_dropped_value_does_not_also_fail_a_cross_check() {
        let errors = parse_and_validate(
            b"listeners: {http: {addr: '127.0.0.1:1'}}\nupstreams: {u: {peers: [{addr: '127.0.0.1:2'}]}}\nproviders:\n  - {name: p, issuer: 'https://id', algorithms: [HS256], jwks: {discovery: true}}\nroutes: [{name: r, match: {}, upstream: u, rate_limit: {rps: 0, key: cookie}}]\n",
            Path::new("/nonexistent"),
        );
        assert_eq!(
            errors.unwrap_err(),
            [
                "providers[0].algorithms[0]: HS256 is refused: only asymmetric algorithms are allowed",
                "routes[0].rate_limit.key: must be client_ip or claim:sub",
                "routes[0].rate_limit.rps: must be greater than zero",
            ],
        );
    }
}
