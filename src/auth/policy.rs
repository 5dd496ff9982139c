//! Route authorization (conf/README.md §3.6): scopes, roles and claims of a verified token.
//!
//! Matching is exact and by whole element everywhere: a scope is a word of the space-separated
//! `scope` (or an `scp` entry), never a substring (Z1: `read:admin` and `superadmin` do not
//! grant `admin`), and a role or claim value is a string/scalar or an element of an array of
//! them; nested arrays and objects never grant anything (Z2), because "`{"admin": true}` means
//! admin" is exactly the kind of shape confusion an attacker who controls one profile field
//! would use.

use serde_json::{Map, Value};

use super::verifier::VerifiedToken;

/// A claim location: the literal claim name first (IdPs such as Auth0 use dotted, URL-shaped
/// names like `https://example.com/roles`), else the dot-separated path into nested objects.
#[derive(Clone, Debug, PartialEq)]
struct ClaimPath {
    full: String,
    segments: Vec<String>,
}

impl ClaimPath {
    fn new(path: String) -> ClaimPath {
        let segments = path.split('.').map(str::to_owned).collect();
        ClaimPath {
            full: path,
            segments,
        }
    }

    fn lookup<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        if let Some(v) = claims.get(&self.full) {
            return Some(v);
        }
        if self.segments.len() < 2 {
            return None;
        }
        let (first, rest) = self.segments.split_first()?;
        let mut cur = claims.get(first)?;
        for seg in rest {
            cur = cur.as_object()?.get(seg)?;
        }
        Some(cur)
    }
}

/// What one route demands of a token.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessPolicy {
    scopes: Vec<String>,
    any_scopes: Vec<String>,
    roles: Option<(ClaimPath, Vec<String>)>,
    claims: Vec<(ClaimPath, Value)>,
    /// The `scope` attribute of the 403 challenge, built once.
    challenge: String,
}

impl AccessPolicy {
    /// `scopes`: all required. `any_scopes`: at least one required (when non-empty). `roles`:
    /// (dotted claim path, accepted roles), at least one must be held. `claims`: (dotted path,
    /// expected scalar), all must match; a non-scalar expected value never matches.
    pub fn new(
        scopes: Vec<String>,
        any_scopes: Vec<String>,
        roles: Option<(String, Vec<String>)>,
        claims: Vec<(String, Value)>,
    ) -> AccessPolicy {
        let challenge = if scopes.is_empty() {
            any_scopes.join(" ")
        } else {
            scopes.join(" ")
        };
        AccessPolicy {
            scopes,
            any_scopes,
            roles: roles.map(|(path, any_of)| (ClaimPath::new(path), any_of)),
            claims: claims
                .into_iter()
                .map(|(path, v)| (ClaimPath::new(path), v))
                .collect(),
            challenge,
        }
    }

    /// Nothing to check: any authenticated token passes.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
            && self.any_scopes.is_empty()
            && self.roles.is_none()
            && self.claims.is_empty()
    }

    /// `Err(scope)`: refuse with 403 `insufficient_scope`, `scope` being the value for the
    /// `WWW-Authenticate` `scope` attribute (the required scopes joined by spaces, or the
    /// `any_scopes` when no scope is required; possibly empty for a role/claim-only route).
    pub fn check(&self, token: &VerifiedToken) -> Result<(), &str> {
        let has = |s: &String| token.valid.scopes.iter().any(|t| t == s);
        let ok = self.scopes.iter().all(has)
            && (self.any_scopes.is_empty() || self.any_scopes.iter().any(has))
            && self
                .roles
                .as_ref()
                .is_none_or(|(path, any_of)| has_role(path.lookup(&token.claims), any_of))
            && self
                .claims
                .iter()
                .all(|(path, want)| claim_matches(path.lookup(&token.claims), want));
        if ok {
            Ok(())
        } else {
            Err(&self.challenge)
        }
    }
}

/// A role claim is a string or an array whose string elements are roles.
fn has_role(value: Option<&Value>, any_of: &[String]) -> bool {
    let held = |v: &Value| v.as_str().is_some_and(|r| any_of.iter().any(|a| a == r));
    match value {
        Some(v @ Value::String(_)) => held(v),
        Some(Value::Array(items)) => items.iter().any(held),
        _ => false,
    }
}

/// Scalar equality, or equality with an element of an array of scalars.
fn claim_matches(value: Option<&Value>, want: &Value) -> bool {
    if want.is_array() || want.is_object() {
        return false;
    }
    match value {
        Some(Value::Array(items)) => items.iter().any(|v| v == want),
        Some(v) => v == want,
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn token(claims: Value, scopes: &[&str]) -> VerifiedToken {
        VerifiedToken {
            provider: Arc::from("corp"),
            iss: "i".into(),
            valid: crate::auth::claims::ValidClaims {
                sub: "alice".into(),
                jti: None,
                iat: None,
                exp: 0,
                nbf: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            },
            claims: claims.as_object().unwrap().clone(),
            kid: "k".into(),
            key_uid: 1,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn empty_policy_passes_everything() {
        let p = AccessPolicy::new(vec![], vec![], None, vec![]);
        assert!(p.is_empty());
        assert_eq!(p.check(&token(json!({}), &[])), Ok(()));
    }

    #[test]
    fn z1_scopes_whole_word_only() {
        let p = AccessPolicy::new(s(&["admin"]), vec![], None, vec![]);
        assert!(!p.is_empty());
        assert_eq!(p.check(&token(json!({}), &["admin"])), Ok(()));
        for held in [
            &["read:admin"][..],
            &["superadmin"],
            &["admins"],
            &["Admin"],
            &["ADMIN"],
            &["admin:read"],
            &[],
            &["admin\tx"],
            &[" admin"],
        ] {
            assert_eq!(p.check(&token(json!({}), held)), Err("admin"), "{held:?}");
        }
    }

    #[test]
    fn all_scopes_and_any_scopes() {
        let p = AccessPolicy::new(s(&["a", "b"]), vec![], None, vec![]);
        assert_eq!(p.check(&token(json!({}), &["b", "x", "a"])), Ok(()));
        assert_eq!(p.check(&token(json!({}), &["a"])), Err("a b"));
        let p = AccessPolicy::new(vec![], s(&["x", "y"]), None, vec![]);
        assert_eq!(p.check(&token(json!({}), &["y"])), Ok(()));
        assert_eq!(p.check(&token(json!({}), &["z"])), Err("x y"));
        let p = AccessPolicy::new(s(&["a"]), s(&["x", "y"]), None, vec![]);
        assert_eq!(p.check(&token(json!({}), &["a", "x"])), Ok(()));
        assert_eq!(p.check(&token(json!({}), &["a"])), Err("a"));
        assert_eq!(p.check(&token(json!({}), &["x"])), Err("a"));
    }

    #[test]
    fn z2_roles_by_dotted_path_and_shape() {
        let p = AccessPolicy::new(
            vec![],
            vec![],
            Some(("realm_access.roles".into(), s(&["admin", "ops"]))),
            vec![],
        );
        let ok = |c: Value| p.check(&token(c, &[])).is_ok();
        assert!(ok(json!({"realm_access": {"roles": ["user", "admin"]}})));
        assert!(ok(json!({"realm_access": {"roles": "ops"}})));
        assert!(!ok(json!({"realm_access": {"roles": [["admin"]]}})));
        assert!(!ok(json!({"realm_access": {"roles": {"admin": true}}})));
        assert!(!ok(
            json!({"realm_access": {"roles": ["administrator", "Admin"]}})
        ));
        assert!(!ok(json!({"realm_access": {"roles": []}})));
        assert!(!ok(json!({"realm_access": {"roles": null}})));
        assert!(!ok(json!({"realm_access": ["admin"]})));
        assert!(!ok(json!({"realm_access": "admin"})));
        assert!(!ok(json!({"roles": ["admin"]})));
        assert!(!ok(json!({})));
        // Top-level claim.
        let p = AccessPolicy::new(
            vec![],
            vec![],
            Some(("roles".into(), s(&["admin"]))),
            vec![],
        );
        for (c, want) in [
            (json!({"roles": "admin"}), true),
            (json!({"roles": ["admin"]}), true),
            (json!({"roles": [["admin"]]}), false),
            (json!({"roles": {"admin": true}}), false),
            (json!({"roles": "admin user"}), false),
            (json!({"roles": [1, "admin"]}), true),
        ] {
            assert_eq!(p.check(&token(c.clone(), &[])).is_ok(), want, "{c}");
        }
        assert_eq!(p.check(&token(json!({}), &[])), Err(""));
        // A literal dotted claim name wins over the path (Auth0-style namespaced claims).
        let p = AccessPolicy::new(
            vec![],
            vec![],
            Some(("https://x.example/roles".into(), s(&["admin"]))),
            vec![],
        );
        assert!(p
            .check(&token(json!({"https://x.example/roles": ["admin"]}), &[]))
            .is_ok());
    }

    #[test]
    fn claims_equality() {
        let p = AccessPolicy::new(
            s(&["r"]),
            vec![],
            None,
            vec![
                ("tenant".into(), json!("acme")),
                ("org.level".into(), json!(3)),
                ("org.verified".into(), json!(true)),
            ],
        );
        let good = json!({"tenant": "acme", "org": {"level": 3, "verified": true}});
        assert_eq!(p.check(&token(good.clone(), &["r"])), Ok(()));
        assert_eq!(p.check(&token(good, &[])), Err("r"));
        for bad in [
            json!({"tenant": "ACME", "org": {"level": 3, "verified": true}}),
            json!({"tenant": "acme", "org": {"level": "3", "verified": true}}),
            json!({"tenant": "acme", "org": {"level": 3, "verified": "true"}}),
            json!({"tenant": "acme", "org": {"level": 3}}),
            json!({"tenant": {"acme": true}, "org": {"level": 3, "verified": true}}),
            json!({"tenant": [["acme"]], "org": {"level": 3, "verified": true}}),
            json!({"org": {"level": 3, "verified": true}}),
        ] {
            assert_eq!(p.check(&token(bad.clone(), &["r"])), Err("r"), "{bad}");
        }
        // Arrays match by element.
        assert_eq!(
            p.check(&token(
                json!({"tenant": ["x", "acme"], "org": {"level": [3], "verified": true}}),
                &["r"]
            )),
            Ok(())
        );
        // A non-scalar expectation never matches.
        let p = AccessPolicy::new(vec![], vec![], None, vec![("t".into(), json!(["a"]))]);
        assert!(p.check(&token(json!({"t": ["a"]}), &[])).is_err());
    }
}
