//! The `Authorization` header and the compact-JWS structure (RFC 7515 §7.1), parsed strictly.
//!
//! Everything here runs on attacker-controlled bytes before any signature is checked, so it is
//! written to be cheap, allocation-light, and to refuse every ambiguity rather than guess:
//! one header, one scheme, one token; three base64url segments with no padding or alphabet
//! variants; JSON with no duplicate members (conf/HARDENING.md H6), because two parsers that resolve
//! a duplicate differently (first-wins vs last-wins) are a classic confusion.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::alg::Alg;

/// Why no bearer token could be taken from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// No bearer credentials at all: 401 with a plain `Bearer realm=...` challenge
    /// (metric result `missing`). A non-Bearer scheme lands here too (RFC 6750 §3.1: the client
    /// did not use this method, so it gets the challenge, not an error code).
    Missing,
    /// The request is malformed: 400 `invalid_request` (metric result `malformed`). The text
    /// names the problem and never contains the header value.
    BadRequest(&'static str),
}

impl BearerError {
    /// The `portcullis_auth_decisions_total` result label.
    pub fn label(self) -> &'static str {
        match self {
            BearerError::Missing => "missing",
            BearerError::BadRequest(_) => "malformed",
        }
    }
}

impl fmt::Display for BearerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BearerError::Missing => f.write_str("no bearer token"),
            BearerError::BadRequest(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BearerError {}

/// Take the bearer token out of the request's `Authorization` header values (all of them, in
/// order).
///
/// The token returned is only known to be visible ASCII without spaces or commas; its length and
/// charset are the verifier's business (401 `invalid_token`), because they describe a bad token,
/// not a bad request. Only the framing around it is judged here:
/// several headers, a non-SP separator, a second credential or a comma are 400 (T2/T3), since an
/// upstream or another proxy could pick a different credential than we did.
pub fn extract_bearer<'a>(values: &[&'a [u8]]) -> Result<&'a str, BearerError> {
    let value = match values {
        [] => return Err(BearerError::Missing),
        [one] => *one,
        _ => return Err(BearerError::BadRequest("multiple Authorization headers")),
    };
    let scheme_len = value.iter().take_while(|b| is_tchar(**b)).count();
    if scheme_len == 0 {
        return if value.is_empty() {
            Err(BearerError::Missing)
        } else {
            Err(BearerError::BadRequest("malformed Authorization header"))
        };
    }
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Basic, Digest, ...: this route only speaks Bearer, so answer with its challenge.
        return Err(BearerError::Missing);
    }
    if rest.is_empty() {
        return Err(BearerError::Missing);
    }
    let spaces = rest.iter().take_while(|b| **b == b' ').count();
    if spaces == 0 {
        // `Bearer\ttoken`, `Bearer,x`, `Bearer=x`, ...
        return Err(BearerError::BadRequest("malformed Authorization header"));
    }
    let token = &rest[spaces..];
    if token.is_empty() {
        return Err(BearerError::Missing);
    }
    // One vectorized pass clears the common case; telling the two errors apart takes another.
    if any_byte(token, |b| !is_vchar(b) | (b == b',')) {
        return Err(if any_byte(token, |b| (b == b' ') | (b == b',')) {
            BearerError::BadRequest("more than one credential in Authorization header")
        } else {
            BearerError::BadRequest("malformed Authorization header")
        });
    }
    // Visible ASCII is valid UTF-8, so this cannot fail; it is the safe way to get a `&str`.
    std::str::from_utf8(token)
        .map_err(|_| BearerError::BadRequest("malformed Authorization header"))
}

/// Whether `pred` holds for any byte, checked 32 bytes at a time with a branch-free fold that
/// the compiler turns into a few SIMD compares per chunk: a token is several hundred bytes and
/// is checked on every request, where a byte-at-a-time scan costs more than the whole
/// token-cache hit that follows. (The early exit per chunk is what keeps the compiler
/// vectorizing within a chunk rather than across chunks with strided loads.)
#[inline(always)]
fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |acc, &b| acc | pred(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| pred(b))
}

/// Visible ASCII (RFC 5234 `VCHAR`, 0x21..=0x7e), without a branch.
#[inline(always)]
fn is_vchar(b: u8) -> bool {
    b.wrapping_sub(0x21) <= 0x7e - 0x21
}

/// RFC 9110 §5.6.2 `tchar`: what an auth-scheme is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The three segments of a compact JWS, borrowed from the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactParts<'t> {
    pub header: &'t str,
    pub payload: &'t str,
    pub signature: &'t str,
    /// `header.payload`: the bytes the signature covers (RFC 7515 §5.2 step 8).
    pub signing_input: &'t str,
}

/// Split a compact JWS: charset `[A-Za-z0-9_-]` plus exactly two dots, three non-empty segments.
///
/// The charset check up front means base64 padding, the standard alphabet, whitespace and the
/// JSON serialization (H4/H5) never reach a decoder, and a JWE (four dots) is refused here.
pub fn split_compact(token: &str) -> Option<CompactParts<'_>> {
    let bytes = token.as_bytes();
    let mut dots = [0usize; 2];
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'.' {
            if n == 2 {
                return None;
            }
            dots[n] = i;
            n += 1;
        } else if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
    }
    if n != 2 {
        return None;
    }
    let [d1, d2] = dots;
    if d1 == 0 || d2 == d1 + 1 || d2 + 1 == bytes.len() {
        return None;
    }
    Some(CompactParts {
        header: token.get(..d1)?,
        payload: token.get(d1 + 1..d2)?,
        signature: token.get(d2 + 1..)?,
        signing_input: token.get(..d2)?,
    })
}

/// Strict base64url without padding (RFC 7515 §2): non-canonical trailing bits are refused too,
/// so one byte string has exactly one encoding and the only malleability left is ECDSA's (A6).
pub fn b64url_decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// The members of a JOSE header this gateway acts on. Everything else (`jku`, `x5u`, `jwk`,
/// `x5c`, ...) is skipped unparsed and never used: keys come only from the provider's JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Alg,
    pub kid: String,
    pub typ: Option<String>,
}

/// Longest `kid` accepted, in a token header or a JWKS (K4/K5): kids are map keys and may be
/// logged, so they are bounded and printable.
pub const MAX_KID_LEN: usize = 256;

const MAX_HEADER_DEPTH: usize = 16;

/// Deepest `{`/`[` nesting in a JSON text, ignoring brackets inside strings.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A `kid` fit for lookup and logging: 1..=256 printable ASCII characters.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Parse a decoded JOSE header. The error names the failed check (it becomes the
/// `error_description`).
///
/// Refused: not a JSON object, duplicate members, `alg` missing / not a string / not one of the
/// asymmetric algorithms (so `none` in any casing and `HS*` never get further: A1-A3, A9), any
/// `crit` (nothing is understood, so nothing may be critical: H1), `enc`/`zip` (a JWE or a
/// compressed payload is not what we verify: H9), `b64` (RFC 7797 unencoded payloads change the
/// signing input), `cty: JWT` (nested tokens: H9), and a missing or unfit `kid` (K4, K5, K13:
/// without a kid we would have to try keys, which gives attackers an oracle and costs CPU).
pub fn parse_header(json: &[u8]) -> Result<JoseHeader, &'static str> {
    // Ignored members are skipped without serde_json's recursion limit, so bound nesting here:
    // no JOSE header member legitimately nests deeper than a few levels (H8).
    if nesting_depth(json) > MAX_HEADER_DEPTH {
        return Err("invalid header: nested too deeply");
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw = de
        .deserialize_any(HeaderVisitor)
        .map_err(|_| "invalid header")?;
    de.end().map_err(|_| "invalid header")?;
    let alg = match raw.alg {
        Field::Str(s) => Alg::parse(&s).ok_or("algorithm not supported")?,
        Field::Absent => return Err("missing header: alg"),
        Field::Other => return Err("invalid header: alg"),
    };
    if let Some(forbidden) = raw.forbidden {
        return Err(forbidden);
    }
    let kid = match raw.kid {
        Field::Str(s) if valid_kid(&s) => s.into_owned(),
        Field::Absent => return Err("missing header: kid"),
        _ => return Err("invalid header: kid"),
    };
    let typ = match raw.typ {
        Field::Str(s) => Some(s.into_owned()),
        Field::Absent => None,
        Field::Other => return Err("invalid header: typ"),
    };
    match raw.cty {
        Field::Str(s) if media_type_eq(&s, "JWT") => return Err("nested JWT not supported"),
        Field::Other => return Err("invalid header: cty"),
        _ => {}
    }
    Ok(JoseHeader { alg, kid, typ })
}

/// Media-type comparison for `typ`/`cty` (RFC 7515 §4.1.9): case-insensitive, and
/// `application/` may be left out on either side.
pub fn media_type_eq(a: &str, b: &str) -> bool {
    fn short(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => s.get(12..).unwrap_or(""),
            _ => s,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

enum Field<'de> {
    Absent,
    Str(Cow<'de, str>),
    /// Present but not a string.
    Other,
}

struct RawHeader<'de> {
    alg: Field<'de>,
    kid: Field<'de>,
    typ: Field<'de>,
    cty: Field<'de>,
    forbidden: Option<&'static str>,
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawHeader {
            alg: Field::Absent,
            kid: Field::Absent,
            typ: Field::Absent,
            cty: Field::Absent,
            forbidden: None,
        };
        // Headers have a handful of members: a linear scan beats hashing.
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(8);
        while let Some(key) = map.next_key_seed(CowStr)? {
            if seen.contains(&key) {
                return Err(de::Error::custom("duplicate member"));
            }
            let slot = match &*key {
                "alg" => Some(&mut raw.alg),
                "kid" => Some(&mut raw.kid),
                "typ" => Some(&mut raw.typ),
                "cty" => Some(&mut raw.cty),
                other => {
                    let refused = match other {
                        "crit" => Some("crit header not supported"),
                        "enc" => Some("enc header not supported"),
                        "zip" => Some("zip header not supported"),
                        "b64" => Some("b64 header not supported"),
                        _ => None,
                    };
                    if raw.forbidden.is_none() {
                        raw.forbidden = refused;
                    }
                    None
                }
            };
            match slot {
                Some(slot) => *slot = map.next_value_seed(StrOrOther)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.push(key);
        }
        Ok(raw)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Any JSON value; only a string is kept. Wrong types are reported by the caller, which knows
/// which member it was, rather than failing the parse with a generic error.
struct StrOrOther;

impl<'de> DeserializeSeed<'de> for StrOrOther {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrOrOther {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}

/// Parse a JSON object, refusing duplicate member names at every depth (H6: `"role"` twice must
/// not quietly become the last one) and anything after the closing brace. `None` for invalid
/// JSON or a non-object (H7: an array payload must not pass as positional claims).
///
/// serde_json's recursion limit (128) still applies, so deep nesting (H8) fails fast.
pub fn parse_object_strict(json: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<StrictValue>(json) {
        Ok(StrictValue(Value::Object(map))) => Some(map),
        _ => None,
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match out.entry(key) {
                serde_json::map::Entry::Occupied(_) => {
                    return Err(de::Error::custom("duplicate member"));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    let StrictValue(value) = map.next_value()?;
                    slot.insert(value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod depth_tests {
    #[test]
    fn counts_nesting_outside_strings() {
        assert_eq!(super::nesting_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(super::nesting_depth(br#"{"a":"[[[[\"[["}"#), 1);
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert!(super::parse_header(deep.as_bytes()).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn bearer(values: &[&str]) -> Result<String, BearerError> {
        let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
        extract_bearer(&v).map(str::to_owned)
    }

    #[test]
    fn bearer_happy_paths_and_scheme_case() {
        assert_eq!(bearer(&["Bearer a.b.c"]).unwrap(), "a.b.c");
        assert_eq!(bearer(&["bearer a.b.c"]).unwrap(), "a.b.c");
        assert_eq!(bearer(&["BEARER a.b.c"]).unwrap(), "a.b.c");
        assert_eq!(bearer(&["BeArEr a.b.c"]).unwrap(), "a.b.c");
        // One or more SP (T2).
        assert_eq!(bearer(&["Bearer   a.b.c"]).unwrap(), "a.b.c");
    }

    #[test]
    fn bearer_missing_cases() {
        assert_eq!(bearer(&[]), Err(BearerError::Missing));
        assert_eq!(bearer(&[""]), Err(BearerError::Missing));
        assert_eq!(bearer(&["Bearer"]), Err(BearerError::Missing));
        assert_eq!(bearer(&["Bearer "]), Err(BearerError::Missing));
        assert_eq!(bearer(&["Basic dXNlcjpwYXNz"]), Err(BearerError::Missing));
        assert_eq!(bearer(&["Digest a=b"]), Err(BearerError::Missing));
        assert_eq!(bearer(&["Bearertoken"]), Err(BearerError::Missing));
        assert_eq!(BearerError::Missing.label(), "missing");
    }

    #[test]
    fn bearer_bad_request_cases() {
        let bad = |v: &[&str]| matches!(bearer(v), Err(BearerError::BadRequest(_)));
        // T3: several headers, even identical ones.
        assert!(bad(&["Bearer a.b.c", "Bearer a.b.c"]));
        assert!(bad(&["Bearer a.b.c", "Basic x"]));
        // T2: tab separator, second credential, comma lists.
        assert!(bad(&["Bearer\ta.b.c"]));
        assert!(bad(&["Bearer a.b.c, Bearer d.e.f"]));
        assert!(bad(&["Bearer a.b.c,Bearer d.e.f"]));
        assert!(bad(&["Bearer a b"]));
        assert!(bad(&["Bearer a.b.c "]));
        assert!(bad(&["Bearer a.b.c\t"]));
        assert!(bad(&["Bearer,a.b.c"]));
        assert!(bad(&[" Bearer a.b.c"]));
        assert!(bad(&["Bearer a.b\u{7f}c"]));
        assert!(bad(&["Bearer a.b.c\u{e9}"]));
        assert_eq!(BearerError::BadRequest("x").label(), "malformed");
        // The token's own charset is the verifier's business (401, not 400).
        assert_eq!(bearer(&["Bearer a+b/c="]).unwrap(), "a+b/c=");
    }

    #[test]
    fn bearer_every_byte_at_every_chunk_position() {
        // The chunked scan must judge each byte the same wherever it sits: inside a chunk, on a
        // chunk edge or in the remainder.
        for len in [1usize, 31, 32, 33, 64, 65, 100] {
            for pos in [0, len / 2, len - 1] {
                for b in 0..=255u8 {
                    let mut v = b"Bearer ".to_vec();
                    v.extend(std::iter::repeat_n(b'a', len));
                    v[7 + pos] = b;
                    let expected = if b == b' ' && pos == 0 {
                        // Just another separator space: the token is the rest.
                        if len == 1 {
                            Err(BearerError::Missing)
                        } else {
                            Ok(())
                        }
                    } else if matches!(b, b' ' | b',') {
                        Err(BearerError::BadRequest(
                            "more than one credential in Authorization header",
                        ))
                    } else if (0x21..=0x7e).contains(&b) {
                        Ok(())
                    } else {
                        Err(BearerError::BadRequest("malformed Authorization header"))
                    };
                    assert_eq!(
                        extract_bearer(&[&v]).map(|_| ()),
                        expected,
                        "{len} {pos} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn bearer_non_utf8_is_bad_request() {
        let v: &[u8] = b"Bearer \xff\xfe.a.b";
        assert!(matches!(
            extract_bearer(&[v]),
            Err(BearerError::BadRequest(_))
        ));
    }

    #[test]
    fn split_compact_structure() {
        let p = split_compact("aa.bb.cc").unwrap();
        assert_eq!((p.header, p.payload, p.signature), ("aa", "bb", "cc"));
        assert_eq!(p.signing_input, "aa.bb");
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.",
            ".b.c",
            "a..c",
            "a.b.c.",
            "a.b.c.d",
            "a.b.c.d.e",
            "a=.b.c",
            "a.b.c=",
            "a+.b.c",
            "a/.b.c",
            "a .b.c",
            "a.b.c\n",
            "{\"payload\":\"x\"}",
            "a.b.c ",
            "\u{e9}.b.c",
        ] {
            assert!(split_compact(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(b64url_decode("Zm9v").unwrap(), b"foo");
        assert!(b64url_decode("Zm9vYg").is_some());
        // Padding, a lone char, the standard alphabet, and non-canonical trailing bits ("Zm9vYh"
        // decodes to the same byte as "Zm9vYg" in lax decoders).
        for bad in ["Zm9vYg==", "Zm9vYh", "Z", "+/+/"] {
            assert!(b64url_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn header_parsing_rules() {
        let h = parse_header(br#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#).unwrap();
        assert_eq!(h.alg, Alg::ES256);
        assert_eq!(h.kid, "k1");
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        // Escaped strings are fine.
        let h = parse_header(br#"{"alg":"ES256","kid":"k\u0031"}"#).unwrap();
        assert_eq!(h.kid, "k1");
        // Ignored members may be anything, including a key we will never use (K1, K2, K3).
        assert!(parse_header(
            br#"{"alg":"ES256","kid":"k","jwk":{"kty":"EC"},"jku":"http://127.0.0.1/","x5u":"x","x5c":["a"]}"#
        )
        .is_ok());

        let err = |j: &str| parse_header(j.as_bytes()).unwrap_err();
        for alg in [
            "none", "None", "NONE", "nOnE", "none ", "HS256", "HS384", "HS512", "es256", "ES512",
            "",
        ] {
            assert_eq!(
                err(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#)),
                "algorithm not supported",
                "{alg}"
            );
        }
        let long_kid = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(257));
        for (json, why) in [
            (r#"{"kid":"k"}"#, "missing header: alg"),
            (r#"{"alg":123,"kid":"k"}"#, "invalid header: alg"),
            (r#"{"alg":"ES256"}"#, "missing header: kid"),
            (r#"{"alg":"ES256","kid":""}"#, "invalid header: kid"),
            (r#"{"alg":"ES256","kid":7}"#, "invalid header: kid"),
            (r#"{"alg":"ES256","kid":"a\nb"}"#, "invalid header: kid"),
            (long_kid.as_str(), "invalid header: kid"),
            // H6: duplicate members, both orders, and duplicates of ignored members.
            (
                r#"{"alg":"none","alg":"ES256","kid":"k"}"#,
                "invalid header",
            ),
            (
                r#"{"alg":"ES256","alg":"none","kid":"k"}"#,
                "invalid header",
            ),
        ] {
            assert_eq!(err(json), why, "{json}");
        }
        // Members after a valid `alg` and `kid`.
        for (extra, why) in [
            (
                r#""crit":["x-unknown"],"x-unknown":"v""#,
                "crit header not supported",
            ),
            (r#""crit":[]"#, "crit header not supported"),
            (r#""enc":"A256GCM""#, "enc header not supported"),
            (r#""zip":"DEF""#, "zip header not supported"),
            (r#""b64":false"#, "b64 header not supported"),
            (r#""cty":"JWT""#, "nested JWT not supported"),
            (r#""cty":"application/jwt""#, "nested JWT not supported"),
            (r#""cty":1"#, "invalid header: cty"),
            (r#""typ":null"#, "invalid header: typ"),
            // The duplicate-member rule again, for ignored members and an escaped `kid`.
            (r#""x":1,"x":2"#, "invalid header"),
            (r#""k\u0069d":"j""#, "invalid header"),
        ] {
            let json = format!(r#"{{"alg":"ES256","kid":"k",{extra}}}"#);
            assert_eq!(err(&json), why, "{json}");
        }
        assert!(parse_header(
            format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(256)).as_bytes()
        )
        .is_ok());
        // Not an object, trailing garbage, BOM.
        for bad in [
            r#"["ES256"]"#,
            "null",
            "\"x\"",
            r#"{"alg":"ES256","kid":"k"} x"#,
            "\u{feff}{}",
            "",
        ] {
            assert_eq!(err(bad), "invalid header", "{bad:?}");
        }
    }

    #[test]
    fn media_types() {
        assert!(media_type_eq("at+jwt", "AT+JWT"));
        assert!(media_type_eq("application/at+jwt", "at+jwt"));
        assert!(media_type_eq("at+jwt", "Application/at+JWT"));
        assert!(!media_type_eq("logout+jwt", "at+jwt"));
        assert!(!media_type_eq("application/", "at+jwt"));
        assert!(media_type_eq("jwt", "JWT"));
    }

    #[test]
    fn strict_objects() {
        let m = parse_object_strict(br#"{"a":{"b":[1,2.5,"x",null,true]}}"#).unwrap();
        assert_eq!(m["a"]["b"][1], serde_json::json!(2.5));
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"b":1,"b":1}]}"#,
            r#"{"role":"user","role":"admin"}"#,
            r#"[1,2]"#,
            r#""x""#,
            "123",
            "null",
            "hello",
            r#"{"a":1} trailing"#,
            "\u{feff}{\"a\":1}",
            "",
        ] {
            assert!(parse_object_strict(bad.as_bytes()).is_none(), "{bad}");
        }
        // H8: deep nesting fails (recursion limit), it does not overflow the stack.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_object_strict(deep.as_bytes()).is_none());
        // Ignored header members are skipped iteratively by serde_json (no recursion, linear
        // time, and bounded by max_token_bytes upstream): deep nesting there is harmless.
        let deep_header = format!(
            "{{\"alg\":\"ES256\",\"kid\":\"k\",\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let _ = parse_header(deep_header.as_bytes());
        let unbalanced = format!(
            "{{\"alg\":\"ES256\",\"kid\":\"k\",\"x\":{}}}",
            "[".repeat(100_000)
        );
        assert!(parse_header(unbalanced.as_bytes()).is_err());
    }
}
