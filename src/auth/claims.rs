//! Registered-claim validation (RFC 7519 §4.1) on a signature-verified payload.
//!
//! Every claim the gateway relies on is type-checked here rather than "skipped when it does not
//! parse", which is how jsonwebtoken lets `"iss":123`, a missing `aud` or `"sub":42` through
//! (conf/HARDENING.md §0.2, C11-C23). The rule is uniform: a claim that is present must have the
//! right type, and a claim that is required must be present.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::alg::Alg;
use super::jws::media_type_eq;
use super::rejection::{Rejection, TokenError};

/// The largest NumericDate accepted: 9999-12-31T23:59:59Z. Anything later is not a real
/// expiry (C5, C7) and would only invite overflow in the arithmetic below.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// Largest leeway honoured, whatever the policy says (conf/README.md §2: at most 5m).
pub const MAX_LEEWAY_SECS: i64 = 300;

/// Clock skew tolerated when a provider does not configure its own: one value for the config
/// default, the built-in issuer's provider and the admin API's revocation expiry, so they agree.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// How one provider's tokens are validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// Provider name, copied into every token it verifies.
    pub provider: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Clamped to 0..=300 when used.
    pub leeway_secs: i64,
    pub max_lifetime_secs: Option<i64>,
    pub require_jti: bool,
    /// Accepted `typ` header values; empty accepts any (or none). Compared case-insensitively,
    /// with an optional `application/` prefix.
    pub accepted_types: Vec<String>,
}

/// RFC 7519 NumericDate: a non-negative integer, or a finite non-negative float rounded to the
/// nearest second (C3). Strings, booleans, null, negatives and dates past year 9999 are `None`.
pub fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    let secs = if let Some(u) = n.as_u64() {
        i64::try_from(u).ok()?
    } else if n.is_i64() {
        return None; // negative integer
    } else {
        let f = n.as_f64()?.round();
        if !f.is_finite() || f < 0.0 || f > MAX_NUMERIC_DATE as f64 {
            return None;
        }
        f as i64
    };
    (secs <= MAX_NUMERIC_DATE).then_some(secs)
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3) and must contain one of the
/// accepted audiences, compared exactly (C18, C19). Missing or wrong-typed is a mismatch (C20,
/// C21); an element of the wrong type makes the whole claim wrong rather than being skipped.
pub fn audience_ok(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(a)) => accepted.iter().any(|x| x == a),
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                match item {
                    Value::String(a) => found |= accepted.iter().any(|x| x == a),
                    _ => return false,
                }
            }
            found
        }
        _ => false,
    }
}

/// Granted scopes: the words of `scope` (RFC 8693 §4.2: space-separated; split on single
/// spaces, empty pieces ignored, so tabs and newlines are part of a word and match nothing),
/// followed by the entries of `scp` (an array of strings, or a space-separated string as some
/// IdPs emit). Any other type is an error rather than "no scopes", so a malformed claim never
/// silently changes meaning.
pub fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    match claims.get("scope") {
        None => {}
        Some(Value::String(s)) => push_words(&mut out, s),
        Some(_) => return Err("invalid claim: scope"),
    }
    match claims.get("scp") {
        None => {}
        Some(Value::String(s)) => push_words(&mut out, s),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    Value::String(_) => {}
                    _ => return Err("invalid claim: scp"),
                }
            }
        }
        Some(_) => return Err("invalid claim: scp"),
    }
    Ok(out)
}

fn push_words(out: &mut Vec<String>, s: &str) {
    out.extend(s.split(' ').filter(|w| !w.is_empty()).map(str::to_owned));
}

/// What validation extracted, so the caller does not look the claims up again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidClaims {
    pub sub: String,
    pub jti: Option<String>,
    pub iat: Option<i64>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub scopes: Vec<String>,
}

fn optional_date(
    claims: &Map<String, Value>,
    name: &str,
    invalid: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => numeric_date(v)
            .map(Some)
            .ok_or(TokenError::malformed(invalid)),
    }
}

/// Validate the claims of a token whose signature has been checked, in this order: `iss`, `typ`,
/// claim types (`sub`, `exp`, `nbf`, `iat`, `jti`, scopes), `aud`, then time (`exp`, `nbf`, `iat`),
/// lifetime, and `jti` presence. Types come before time so that a token with a garbage claim is
/// reported as malformed, not as merely expired.
pub fn validate(
    claims: &Map<String, Value>,
    typ: Option<&str>,
    policy: &ValidationPolicy,
    now: i64,
) -> Result<ValidClaims, TokenError> {
    // C14-C17: exact match, string only (an array iss is refused even if it contains ours).
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == policy.issuer => {}
        _ => {
            return Err(TokenError::new(
                Rejection::WrongIssuer,
                "invalid claim: iss",
            ))
        }
    }
    // H2: explicit typing, when the provider uses it.
    if !policy.accepted_types.is_empty() {
        let ok = typ.is_some_and(|t| policy.accepted_types.iter().any(|a| media_type_eq(t, a)));
        if !ok {
            return Err(TokenError::malformed("token type not accepted"));
        }
    }
    // C23: the subject is an identity for revocation, rate limits and upstream headers.
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TokenError::malformed("invalid claim: sub")),
    };
    let exp = match claims.get("exp") {
        Some(v) => numeric_date(v).ok_or(TokenError::malformed("invalid claim: exp"))?,
        None => return Err(TokenError::malformed("missing claim: exp")),
    };
    let nbf = optional_date(claims, "nbf", "invalid claim: nbf")?;
    let iat = optional_date(claims, "iat", "invalid claim: iat")?;
    let jti = match claims.get("jti") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(TokenError::malformed("invalid claim: jti")),
    };
    let scopes = scopes(claims).map_err(TokenError::malformed)?;

    if !audience_ok(claims.get("aud"), &policy.audiences) {
        return Err(TokenError::new(
            Rejection::WrongAudience,
            "invalid claim: aud",
        ));
    }

    let leeway = policy.leeway_secs.clamp(0, MAX_LEEWAY_SECS);
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::new(Rejection::Expired, "token expired"));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::new(
            Rejection::NotYetValid,
            "token not yet valid",
        ));
    }
    // C13/R5: a future iat would also slip past a subject cut-off (`iat < before`).
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::new(Rejection::NotYetValid, "iat in the future"));
    }
    // C7: a token valid for a century is a stolen credential that never dies.
    if let Some(max) = policy.max_lifetime_secs {
        if exp.saturating_sub(iat.unwrap_or(now)) > max {
            return Err(TokenError::malformed("token lifetime too long"));
        }
    }
    // R3: revocation by jti needs one.
    if policy.require_jti && jti.is_none() {
        return Err(TokenError::malformed("missing claim: jti"));
    }
    Ok(ValidClaims {
        sub,
        jti,
        iat,
        exp,
        nbf,
        scopes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date(&json!(0)), Some(0));
        assert_eq!(numeric_date(&json!(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(1_700_000_000.4)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(1_700_000_000.5)), Some(1_700_000_001));
        assert_eq!(numeric_date(&json!(1e10)), Some(10_000_000_000));
        assert_eq!(
            numeric_date(&json!(MAX_NUMERIC_DATE)),
            Some(MAX_NUMERIC_DATE)
        );
        assert_eq!(numeric_date(&json!(-0.0)), Some(0));
        for bad in [
            json!(MAX_NUMERIC_DATE + 1),
            json!(-1),
            json!(-0.6),
            json!(u64::MAX),
            json!(1e300),
            json!(18446744073709551616.0),
            json!("9999999999"),
            json!(true),
            json!(null),
            json!([1]),
            json!({}),
        ] {
            assert_eq!(numeric_date(&bad), None, "{bad}");
        }
    }

    #[test]
    fn audiences() {
        let acc = vec!["gateway".to_owned(), "api".to_owned()];
        assert!(audience_ok(Some(&json!("api")), &acc));
        assert!(audience_ok(Some(&json!(["other", "gateway"])), &acc));
        assert!(!audience_ok(Some(&json!(["other"])), &acc));
        assert!(!audience_ok(Some(&json!([])), &acc));
        assert!(!audience_ok(Some(&json!("GATEWAY")), &acc));
        assert!(!audience_ok(None, &acc));
        assert!(!audience_ok(Some(&json!(123)), &acc));
        assert!(!audience_ok(Some(&json!([123])), &acc));
        assert!(!audience_ok(Some(&json!(["api", 123])), &acc));
        assert!(!audience_ok(Some(&json!(null)), &acc));
        // C22: no configured audience accepts nothing.
        assert!(!audience_ok(Some(&json!("api")), &[]));
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scope_rules() {
        assert_eq!(
            scopes(&obj(json!({"scope":"a b  c "}))).unwrap(),
            ["a", "b", "c"]
        );
        assert_eq!(scopes(&obj(json!({"scope":"a\tb"}))).unwrap(), ["a\tb"]);
        assert_eq!(
            scopes(&obj(json!({"scope":""}))).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(scopes(&obj(json!({}))).unwrap(), Vec::<String>::new());
        assert_eq!(
            scopes(&obj(json!({"scp":["x","y",""]}))).unwrap(),
            ["x", "y"]
        );
        assert_eq!(scopes(&obj(json!({"scp":"x y"}))).unwrap(), ["x", "y"]);
        assert_eq!(
            scopes(&obj(json!({"scope":"a","scp":["b"]}))).unwrap(),
            ["a", "b"]
        );
        assert!(scopes(&obj(json!({"scope":["a"]}))).is_err());
        assert!(scopes(&obj(json!({"scope":1}))).is_err());
        assert!(scopes(&obj(json!({"scope":null}))).is_err());
        assert!(scopes(&obj(json!({"scp":[["a"]]}))).is_err());
        assert!(scopes(&obj(json!({"scp":{"a":true}}))).is_err());
    }
}
