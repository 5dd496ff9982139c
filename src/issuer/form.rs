//! The request encodings RFC 6749 uses: `application/x-www-form-urlencoded` bodies (§3.2,
//! Appendix B) and HTTP Basic client credentials whose parts are themselves form-encoded (§2.3.1).
//!
//! Hand-written because the rules that matter for security are narrow and must be exact: a
//! repeated parameter is an error (§3.1), an empty value counts as absent (§3.1), and malformed
//! percent-encoding is refused rather than passed through.

use std::collections::HashMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Why a form body was refused; each maps to `invalid_request`.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// Bad percent-encoding, or bytes that do not decode to UTF-8.
    Malformed,
    /// A parameter sent twice (RFC 6749 §3.1).
    Repeated,
}

/// A decoded form body: parameter name to its one value.
pub type Form = HashMap<String, String>;

/// Whether a `Content-Type` value is the form media type (parameters such as `charset` allowed).
pub fn is_form_content_type(value: Option<&[u8]>) -> bool {
    let Some(v) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
        return false;
    };
    let media = v.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// Parses a form body. Parameters with an empty value are dropped, as RFC 6749 §3.1 says they
/// must be treated as omitted; a name present twice (with values) is an error.
pub fn parse_form(body: &[u8]) -> Result<Form, FormError> {
    let mut out = Form::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if value.is_empty() {
            continue;
        }
        if out.insert(name, value).is_some() {
            return Err(FormError::Repeated);
        }
    }
    Ok(out)
}

/// Decodes one form-encoded component: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn decode_component(input: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).and_then(|&b| crate::hygiene::hex_value(b));
                let lo = input.get(i + 2).and_then(|&b| crate::hygiene::hex_value(b));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::Malformed),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Malformed)
}

/// Client credentials from an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct BasicCredentials {
    pub client_id: String,
    pub secret: String,
}

/// Padding is optional in what clients send; some libraries omit it.
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (scheme case-insensitive). `None`
/// for any other scheme or a malformed value.
pub fn parse_basic(value: &[u8]) -> Option<BasicCredentials> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASIC_B64.decode(rest.trim_start()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let client_id = decode_component(&decoded[..colon]).ok()?;
    let secret = decode_component(&decoded[colon + 1..]).ok()?;
    if client_id.is_empty() {
        return None;
    }
    Some(BasicCredentials { client_id, secret })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn decodes_plus_and_percent() {
        let f =
            parse_form(b"grant_type=password&username=al+ice&password=p%26ss%3D%C3%A9").unwrap();
        assert_eq!(f["grant_type"], "password");
        assert_eq!(f["username"], "al ice");
        assert_eq!(f["password"], "p&ss=\u{e9}");
        assert_eq!(parse_form(b"a%2Bb=1").unwrap()["a+b"], "1");
    }

    #[test]
    fn refuses_bad_encoding_and_repeats() {
        assert_eq!(parse_form(b"a=%zz"), Err(FormError::Malformed));
        assert_eq!(parse_form(b"a=%4"), Err(FormError::Malformed));
        assert_eq!(parse_form(b"a=%ff"), Err(FormError::Malformed));
        assert_eq!(parse_form(b"a=1&a=2"), Err(FormError::Repeated));
        assert_eq!(parse_form(b"a=1&a=1"), Err(FormError::Repeated));
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let f = parse_form(b"&a=&b&c=1&&a=2").unwrap();
        assert_eq!(f.get("a").map(String::as_str), Some("2"));
        assert!(!f.contains_key("b"));
        assert_eq!(f["c"], "1");
    }

    #[test]
    fn content_type_matches_the_media_type_only() {
        assert!(is_form_content_type(Some(
            b"application/x-www-form-urlencoded"
        )));
        assert!(is_form_content_type(Some(
            b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        )));
        assert!(!is_form_content_type(Some(b"application/json")));
        assert!(!is_form_content_type(Some(b"multipart/form-data")));
        assert!(!is_form_content_type(None));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let v = format!("basic {}", STANDARD.encode("my%20app:s%3Acret+x"));
        let c = parse_basic(v.as_bytes()).unwrap();
        assert_eq!(c.client_id, "my app");
        assert_eq!(c.secret, "s:cret x");
        let nopad = format!("Basic {}", STANDARD.encode("ab:c").trim_end_matches('='));
        assert_eq!(parse_basic(nopad.as_bytes()).unwrap().secret, "c");
        assert!(parse_basic(b"Bearer abc").is_none());
        assert!(parse_basic(format!("Basic {}", STANDARD.encode("nocolon")).as_bytes()).is_none());
        assert!(parse_basic(format!("Basic {}", STANDARD.encode(":x")).as_bytes()).is_none());
        assert!(parse_basic(b"Basic !!!").is_none());
    }
}
