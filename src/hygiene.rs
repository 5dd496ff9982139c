//! Request-target hygiene (SPEC §3 step 1): refuse ambiguous targets, canonicalise the rest.
//!
//! The gateway routes, authorizes and forwards one and the same path. If the gateway and the
//! upstream could disagree about what a target means (`/public/%2e%2e/admin`, `/admin;x`,
//! `/public%2fadmin`, `\`), an attacker could pass a check written for one path and reach
//! another. So every target is either brought to a single canonical form that the upstream cannot
//! read differently, or refused with 400. Where the two readings cannot be reconciled (encoded
//! slashes, path parameters, backslashes, controls, non-ASCII) we refuse rather than guess.
//!
//! Pingora percent-encodes raw spaces, controls, `"<>` and non-ASCII bytes of a malformed request
//! line before we see it, so those are refused in their encoded form too (`%20`, `%00`, `%C3`).
//!
//! Canonical input (the overwhelming majority) is checked in one scan and returned borrowed.

use std::borrow::Cow;
use std::fmt;

/// A request target that passed hygiene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget<'a> {
    /// origin-form. `path` is the canonical path (`Cow::Borrowed` when the raw path was already
    /// canonical, so the common case allocates nothing); `query` is the raw query without the
    /// `?`, if any (`?` present but empty => `Some("")`).
    Origin {
        path: Cow<'a, str>,
        query: Option<&'a str>,
    },
    /// the asterisk-form `*` (the caller answers `OPTIONS *` locally and refuses it for other
    /// methods)
    Asterisk,
}

/// Why a request target was refused. Every variant maps to a 400; the distinction exists so the
/// error body and logs name the failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HygieneError {
    /// Empty, absolute-form (`http://host/x`), authority-form (`host:443`) or anything else that
    /// neither starts with `/` nor is exactly `*`.
    NotOriginForm,
    /// A `#` anywhere: fragments are never sent by conforming clients.
    Fragment,
    /// A raw `;` in the path: servlet containers strip path parameters, we would route on them.
    PathParameter,
    /// A raw `\` in the path: some upstreams treat it as a separator.
    Backslash,
    /// `%2F`: an upstream that decodes it would see a different path structure than we routed.
    EncodedSlash,
    /// `%5C`: same reason as [`HygieneError::EncodedSlash`], for backslash-separator upstreams.
    EncodedBackslash,
    /// A control byte (0x00–0x1F, 0x7F), raw or percent-encoded.
    ControlCharacter,
    /// A space, raw or as `%20` (how Pingora hands over a raw space in the request line).
    Space,
    /// A byte above 0x7F, raw or percent-encoded: upstreams disagree on how to decode it.
    NonAscii,
    /// A `%` in the path not followed by two hex digits.
    InvalidPercentEncoding,
    /// Any other byte that RFC 3986 does not allow raw in a path: `"`, `<`, `>`, `^`, a backtick,
    /// `{`, `|`, `}`, `[`, `]`.
    DisallowedCharacter,
}

impl HygieneError {
    /// Short human-readable reason, suitable for an `error_description`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            HygieneError::NotOriginForm => "request target is not origin-form",
            HygieneError::Fragment => "fragment in request target",
            HygieneError::PathParameter => "path parameter (';') in path",
            HygieneError::Backslash => "backslash in path",
            HygieneError::EncodedSlash => "encoded slash in path",
            HygieneError::EncodedBackslash => "encoded backslash in path",
            HygieneError::ControlCharacter => "control character in request target",
            HygieneError::Space => "space in request target",
            HygieneError::NonAscii => "non-ASCII byte in request target",
            HygieneError::InvalidPercentEncoding => "invalid percent-encoding in path",
            HygieneError::DisallowedCharacter => "character not allowed in path",
        }
    }
}

impl fmt::Display for HygieneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for HygieneError {}

/// Check and canonicalise a request target as Pingora hands it over (`RequestHeader::raw_path()`:
/// path plus optional `?query`).
///
/// The path is percent-decoded for unreserved characters only (other triplets are kept, with
/// upper-case hex), then repeated slashes are merged, then dot segments are removed (RFC 3986
/// §5.2.4, clamped at the root). Merging before resolving means `/a//..` is `/`, the reading of
/// an upstream that collapses slashes. The query is returned raw: it is forwarded as received and
/// never routed on, so only bytes that could break the request line or hide a fragment are refused.
///
/// # Errors
/// The first violation found, as a [`HygieneError`]; the caller answers 400.
pub fn canonicalize_target(raw: &[u8]) -> Result<RequestTarget<'_>, HygieneError> {
    if raw == b"*" {
        return Ok(RequestTarget::Asterisk);
    }
    if raw.first() != Some(&b'/') {
        return Err(HygieneError::NotOriginForm);
    }
    let (path_len, needs_rewrite) = scan_path(raw)?;
    let (path, rest) = raw.split_at(path_len);
    // `rest` is empty or starts with the `?` that ended the path.
    let query = match rest.get(1..) {
        Some(q) => Some(check_query(q)?),
        None => None,
    };
    let path = if needs_rewrite {
        Cow::Owned(rewrite_path(path))
    } else {
        // `scan_path` admitted ASCII only, so this cannot fail; mapping keeps it panic-free.
        Cow::Borrowed(std::str::from_utf8(path).map_err(|_| HygieneError::NonAscii)?)
    };
    Ok(RequestTarget::Origin { path, query })
}

/// Validates the path of `target` (which starts with `/`; the path ends at the first `?`) and
/// returns its length and whether anything would change under canonicalisation, so canonical
/// paths are returned without allocating and the target is scanned once.
fn scan_path(target: &[u8]) -> Result<(usize, bool), HygieneError> {
    let mut dirty = false;
    let mut seg_start = 1;
    let mut i = 1;
    while let Some(&b) = target.get(i) {
        match b {
            b'?' => break,
            b'/' => {
                dirty |= segment_changes(target.get(seg_start..i).unwrap_or_default(), false);
                seg_start = i + 1;
                i += 1;
            }
            b'%' => {
                let (Some(&hi), Some(&lo)) = (target.get(i + 1), target.get(i + 2)) else {
                    return Err(HygieneError::InvalidPercentEncoding);
                };
                let decoded = percent_byte(hi, lo).ok_or(HygieneError::InvalidPercentEncoding)?;
                match decoded {
                    b'/' => return Err(HygieneError::EncodedSlash),
                    b'\\' => return Err(HygieneError::EncodedBackslash),
                    b' ' => return Err(HygieneError::Space),
                    0x00..=0x1F | 0x7F => return Err(HygieneError::ControlCharacter),
                    0x80..=0xFF => return Err(HygieneError::NonAscii),
                    _ if is_unreserved(decoded) => dirty = true,
                    _ => dirty |= hi.is_ascii_lowercase() || lo.is_ascii_lowercase(),
                }
                i += 3;
            }
            _ => {
                check_raw_path_byte(b)?;
                i += 1;
            }
        }
    }
    dirty |= segment_changes(target.get(seg_start..i).unwrap_or_default(), true);
    Ok((i, dirty))
}

/// A raw segment changes under canonicalisation if it is a dot segment or an empty segment that
/// is not the trailing one (i.e. part of `//`). Encoded dots are caught by the decoder instead.
fn segment_changes(segment: &[u8], is_last: bool) -> bool {
    (segment.is_empty() && !is_last) || segment == b"." || segment == b".."
}

fn check_raw_path_byte(b: u8) -> Result<(), HygieneError> {
    match b {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Ok(()),
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@' => {
            Ok(())
        }
        b';' => Err(HygieneError::PathParameter),
        b'\\' => Err(HygieneError::Backslash),
        b'#' => Err(HygieneError::Fragment),
        b' ' => Err(HygieneError::Space),
        0x00..=0x1F | 0x7F => Err(HygieneError::ControlCharacter),
        0x80..=0xFF => Err(HygieneError::NonAscii),
        _ => Err(HygieneError::DisallowedCharacter),
    }
}

/// The query is forwarded untouched, so only what could corrupt the forwarded request line or
/// smuggle a fragment is refused; percent-triplets are the upstream's business.
fn check_query(query: &[u8]) -> Result<&str, HygieneError> {
    for &b in query {
        match b {
            b'#' => return Err(HygieneError::Fragment),
            b' ' => return Err(HygieneError::Space),
            0x00..=0x1F | 0x7F => return Err(HygieneError::ControlCharacter),
            0x80..=0xFF => return Err(HygieneError::NonAscii),
            _ => {}
        }
    }
    std::str::from_utf8(query).map_err(|_| HygieneError::NonAscii)
}

/// Builds the canonical path of a path that `scan_path` accepted: decode unreserved triplets,
/// upper-case the hex of the others, drop empty segments except a trailing one, resolve `.` and
/// `..` on the decoded segments (so `%2e%2e` counts as `..`).
fn rewrite_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    let mut trailing_slash = false;
    for segment in path.get(1..).unwrap_or_default().split(|&b| b == b'/') {
        let mark = out.len();
        out.push('/');
        push_decoded_segment(segment, &mut out);
        // Only the last segment's answer survives the loop: `/a/`, `/a/.` and `/a/b/..` all
        // name a directory, so they keep their trailing slash.
        trailing_slash = match out.get(mark + 1..).unwrap_or_default() {
            "" | "." => {
                out.truncate(mark);
                true
            }
            ".." => {
                out.truncate(mark);
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                true
            }
            _ => false,
        };
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

fn push_decoded_segment(segment: &[u8], out: &mut String) {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        if b == b'%' {
            if let (Some(&hi), Some(&lo)) = (segment.get(i + 1), segment.get(i + 2)) {
                if let Some(decoded) = percent_byte(hi, lo) {
                    if is_unreserved(decoded) {
                        out.push(char::from(decoded));
                    } else {
                        out.push('%');
                        out.push(char::from(hi.to_ascii_uppercase()));
                        out.push(char::from(lo.to_ascii_uppercase()));
                    }
                    i += 3;
                    continue;
                }
            }
        }
        out.push(char::from(b));
        i += 1;
    }
}

fn percent_byte(hi: u8, lo: u8) -> Option<u8> {
    Some((hex_value(hi)? << 4) | hex_value(lo)?)
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use HygieneError::*;

    /// Expected outcome of one row: canonical path and raw query, or the refusal.
    enum Want {
        Path(&'static str),
        PathQuery(&'static str, &'static str),
        Err(HygieneError),
    }
    use Want::{Path, PathQuery};

    fn check(rows: &[(&[u8], Want)]) {
        for (raw, want) in rows {
            let got = canonicalize_target(raw);
            let shown = String::from_utf8_lossy(raw);
            match want {
                Path(p) => assert_eq!(
                    got,
                    Ok(RequestTarget::Origin {
                        path: Cow::Borrowed(*p),
                        query: None
                    }),
                    "input {shown:?}"
                ),
                PathQuery(p, q) => assert_eq!(
                    got,
                    Ok(RequestTarget::Origin {
                        path: Cow::Borrowed(*p),
                        query: Some(*q)
                    }),
                    "input {shown:?}"
                ),
                Want::Err(e) => assert_eq!(got, Err(*e), "input {shown:?}"),
            }
            if let Ok(RequestTarget::Origin { path, .. }) = &got {
                assert_canonical_fixpoint(path);
            }
        }
    }

    /// A canonical path must be accepted again, unchanged and without allocating.
    fn assert_canonical_fixpoint(path: &str) {
        match canonicalize_target(path.as_bytes()) {
            Ok(RequestTarget::Origin {
                path: Cow::Borrowed(again),
                query: None,
            }) => assert_eq!(again, path),
            other => panic!("canonical path {path:?} is not a fixpoint: {other:?}"),
        }
    }

    // jwt-hardening §3.2, the route under test being /admin.

    #[test]
    fn p1_dot_segments_and_double_slashes() {
        check(&[
            (b"//admin", Path("/admin")),
            (b"/./admin", Path("/admin")),
            (b"/public/../admin", Path("/admin")),
            (b"/public/%2e%2e/admin", Path("/admin")),
            (b"/public/%2E%2e/admin", Path("/admin")),
            (b"/%2e/admin", Path("/admin")),
            (b"/public/.%2e/admin", Path("/admin")),
            (b"/public/%2E./admin", Path("/admin")),
        ]);
    }

    #[test]
    fn p2_trailing_slash_and_merge() {
        check(&[
            (b"/admin/", Path("/admin/")),
            (b"/admin/.", Path("/admin/")),
            (b"/admin//x", Path("/admin/x")),
            (b"/admin/..", Path("/")),
        ]);
    }

    #[test]
    fn p3_encoding_tricks() {
        check(&[
            (b"/%61dmin", Path("/admin")),
            (b"/%2561dmin", Path("/%2561dmin")),
            (b"/%C0%AEadmin", Want::Err(NonAscii)),
            (b"/%c0%aeadmin", Want::Err(NonAscii)),
        ]);
    }

    #[test]
    fn p4_case_is_preserved() {
        check(&[(b"/ADMIN", Path("/ADMIN")), (b"/Admin", Path("/Admin"))]);
    }

    #[test]
    fn p5_path_parameters() {
        check(&[
            (b"/admin;jsessionid=x", Want::Err(PathParameter)),
            (b"/admin;/x", Want::Err(PathParameter)),
            (b"/public;/../admin", Want::Err(PathParameter)),
            (b"/admin%3Bjsessionid=x", Path("/admin%3Bjsessionid=x")),
        ]);
    }

    #[test]
    fn p6_encoded_separators() {
        check(&[
            (b"/public%2fadmin", Want::Err(EncodedSlash)),
            (b"/public%2Fadmin", Want::Err(EncodedSlash)),
            (b"/admin%2f", Want::Err(EncodedSlash)),
            (b"/public%5c..%5cadmin", Want::Err(EncodedBackslash)),
            (b"/public%5C..%5Cadmin", Want::Err(EncodedBackslash)),
        ]);
    }

    #[test]
    fn p7_raw_backslash() {
        check(&[
            (b"/public\\..\\admin", Want::Err(Backslash)),
            (b"/admin\\", Want::Err(Backslash)),
        ]);
    }

    #[test]
    fn p8_raw_and_escaped_controls_and_spaces() {
        check(&[
            (b"/admin\x00", Want::Err(ControlCharacter)),
            (b"/admin\t", Want::Err(ControlCharacter)),
            (b"/admin\x7f", Want::Err(ControlCharacter)),
            (b"/public /../admin", Want::Err(Space)),
            // what Pingora hands over for the line `GET /public /../admin HTTP/1.1`
            (b"/public%20/../admin", Want::Err(Space)),
            (b"/admin%00", Want::Err(ControlCharacter)),
            (b"/admin%09", Want::Err(ControlCharacter)),
        ]);
    }

    #[test]
    fn p9_encoded_controls() {
        check(&[
            (b"/admin%00", Want::Err(ControlCharacter)),
            (b"/admin%0a", Want::Err(ControlCharacter)),
            (b"/admin%0A", Want::Err(ControlCharacter)),
            (b"/admin%0d", Want::Err(ControlCharacter)),
            (b"/admin%0D", Want::Err(ControlCharacter)),
            (b"/admin%1F", Want::Err(ControlCharacter)),
            (b"/admin%7f", Want::Err(ControlCharacter)),
        ]);
    }

    #[test]
    fn p11_fragment_and_query() {
        check(&[
            (b"/admin#x", Want::Err(Fragment)),
            (b"/admin?a#x", Want::Err(Fragment)),
            (b"/admin?", PathQuery("/admin", "")),
            (b"/admin%3F", Path("/admin%3F")),
            (b"/admin%3f", Path("/admin%3F")),
            (b"/admin?x=/../public", PathQuery("/admin", "x=/../public")),
        ]);
    }

    #[test]
    fn p12_target_forms() {
        check(&[
            (b"http://internal.local/admin", Want::Err(NotOriginForm)),
            (b"HTTPS://internal.local/admin", Want::Err(NotOriginForm)),
            (b"//internal/admin", Path("/internal/admin")),
            (b"internal:443", Want::Err(NotOriginForm)),
            (b"", Want::Err(NotOriginForm)),
            (b"*x", Want::Err(NotOriginForm)),
            (b"**", Want::Err(NotOriginForm)),
            (b"?x", Want::Err(NotOriginForm)),
            (b"/*", Path("/*")),
        ]);
        assert_eq!(canonicalize_target(b"*"), Ok(RequestTarget::Asterisk));
    }

    #[test]
    fn p13_non_ascii() {
        check(&[
            (b"/adm\xc3\xa9", Want::Err(NonAscii)),
            (b"/\xff", Want::Err(NonAscii)),
            (b"/adm%C3%A9", Want::Err(NonAscii)),
            (b"/%80", Want::Err(NonAscii)),
            (b"/%fF", Want::Err(NonAscii)),
        ]);
    }

    #[test]
    fn invalid_percent_encoding() {
        check(&[
            (b"/%", Want::Err(InvalidPercentEncoding)),
            (b"/a%", Want::Err(InvalidPercentEncoding)),
            (b"/%4", Want::Err(InvalidPercentEncoding)),
            (b"/%4?x", Want::Err(InvalidPercentEncoding)),
            (b"/%zz", Want::Err(InvalidPercentEncoding)),
            (b"/%4g", Want::Err(InvalidPercentEncoding)),
            (b"/%g4", Want::Err(InvalidPercentEncoding)),
            (b"/%%", Want::Err(InvalidPercentEncoding)),
            (b"/%%41", Want::Err(InvalidPercentEncoding)),
            (b"/% 41", Want::Err(InvalidPercentEncoding)),
        ]);
    }

    #[test]
    fn only_unreserved_characters_are_decoded() {
        check(&[
            (b"/%41%5A%61%7A%30%39", Path("/AZaz09")),
            (b"/%2D%2e%5f%7E", Path("/-._~")),
            (b"/a%2eb", Path("/a.b")),
            (b"/%3a", Path("/%3A")),
            (b"/%3A", Path("/%3A")),
            (b"/%3B", Path("/%3B")),
            (b"/%3b", Path("/%3B")),
            (b"/%25", Path("/%25")),
            (b"/%2525", Path("/%2525")),
            (b"/%23", Path("/%23")),
            (b"/%22%3c%3E", Path("/%22%3C%3E")),
            (b"/%7b%7D", Path("/%7B%7D")),
            (b"/%40%21", Path("/%40%21")),
            // a decoded character next to a kept triplet
            (b"/%61%3a%62", Path("/a%3Ab")),
        ]);
    }

    #[test]
    fn dot_segment_removal() {
        check(&[
            (b"/..", Path("/")),
            (b"/.", Path("/")),
            (b"/../../x", Path("/x")),
            (b"/a/b/../c", Path("/a/c")),
            (b"/a/b/./../c/", Path("/a/c/")),
            (b"/a/b/..", Path("/a/")),
            (b"/a/./b/.", Path("/a/b/")),
            (b"/%2e%2e/%2E%2E/x", Path("/x")),
            (b"/...", Path("/...")),
            (b"/a/.b/..c/c..", Path("/a/.b/..c/c..")),
            (b"/a/%2e%2e%2e", Path("/a/...")),
            // slashes are merged before dot segments are resolved
            (b"/a//..", Path("/")),
            (b"/a/..//b", Path("/b")),
        ]);
    }

    #[test]
    fn slash_merging() {
        check(&[
            (b"/", Path("/")),
            (b"//", Path("/")),
            (b"///", Path("/")),
            (b"/a//b", Path("/a/b")),
            (b"/a///b//", Path("/a/b/")),
            (b"//a?x=//y", PathQuery("/a", "x=//y")),
        ]);
    }

    #[test]
    fn raw_path_characters() {
        check(&[
            (b"/AZaz09-._~!$&'()*+,=:@", Path("/AZaz09-._~!$&'()*+,=:@")),
            (b"/a\"b", Want::Err(DisallowedCharacter)),
            (b"/a<b", Want::Err(DisallowedCharacter)),
            (b"/a>b", Want::Err(DisallowedCharacter)),
            (b"/a^b", Want::Err(DisallowedCharacter)),
            (b"/a`b", Want::Err(DisallowedCharacter)),
            (b"/a{b", Want::Err(DisallowedCharacter)),
            (b"/a|b", Want::Err(DisallowedCharacter)),
            (b"/a}b", Want::Err(DisallowedCharacter)),
            (b"/a[b", Want::Err(DisallowedCharacter)),
            (b"/a]b", Want::Err(DisallowedCharacter)),
            (b"/a\rb", Want::Err(ControlCharacter)),
            (b"/a\nb", Want::Err(ControlCharacter)),
        ]);
    }

    #[test]
    fn query_rules() {
        check(&[
            (b"/a?b=c&d=e", PathQuery("/a", "b=c&d=e")),
            // the query is neither decoded nor validated as percent-encoding
            (b"/a?%zz%2F%00%", PathQuery("/a", "%zz%2F%00%")),
            (b"/a?x={}|\\^`\"<>[];", PathQuery("/a", "x={}|\\^`\"<>[];")),
            (b"/a??", PathQuery("/a", "?")),
            (b"/a?x y", Want::Err(Space)),
            (b"/a?x\ty", Want::Err(ControlCharacter)),
            (b"/a?x\x00", Want::Err(ControlCharacter)),
            (b"/a?x\x7f", Want::Err(ControlCharacter)),
            (b"/a?x\xc3\xa9", Want::Err(NonAscii)),
            (b"/a?x#y", Want::Err(Fragment)),
            // a path that needs rewriting keeps its raw query
            (b"/x/../a?p=%2e%2e", PathQuery("/a", "p=%2e%2e")),
        ]);
    }

    #[test]
    fn canonical_input_is_borrowed_and_changed_input_is_owned() {
        for raw in [
            &b"/"[..],
            b"/users/1",
            b"/admin/",
            b"/a%3Ab",
            b"/%2561dmin",
            b"/a?b=c",
        ] {
            match canonicalize_target(raw) {
                Ok(RequestTarget::Origin {
                    path: Cow::Borrowed(_),
                    ..
                }) => {}
                other => panic!("{raw:?} should be borrowed: {other:?}"),
            }
        }
        for raw in [&b"/a%3ab"[..], b"//a", b"/a/.", b"/%61"] {
            match canonicalize_target(raw) {
                Ok(RequestTarget::Origin {
                    path: Cow::Owned(_),
                    ..
                }) => {}
                other => panic!("{raw:?} should be rewritten: {other:?}"),
            }
        }
    }

    #[test]
    fn descriptions_are_distinct_and_displayed() {
        let all = [
            NotOriginForm,
            Fragment,
            PathParameter,
            Backslash,
            EncodedSlash,
            EncodedBackslash,
            ControlCharacter,
            Space,
            NonAscii,
            InvalidPercentEncoding,
            DisallowedCharacter,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            assert!(!e.description().is_empty());
            assert!(seen.insert(e.description()), "duplicate {e:?}");
            assert_eq!(e.to_string(), e.description());
        }
        assert_eq!(EncodedSlash.description(), "encoded slash in path");
    }

    /// Every path of up to 6 bytes over an alphabet rich in separators, dots and escapes: no
    /// panic, and every accepted path comes out canonical (rooted, no `//`, no dot segment, no
    /// lower-case or decodable triplet) and is a fixpoint.
    #[test]
    fn exhaustive_small_paths() {
        const ALPHABET: &[u8] = b"/.%2eEfa;?";
        let mut buf = Vec::new();
        let mut count = 0usize;
        for len in 0..=6u32 {
            let total = ALPHABET.len().pow(len);
            for mut n in 0..total {
                buf.clear();
                buf.push(b'/');
                for _ in 0..len {
                    buf.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                count += 1;
                if let Ok(RequestTarget::Origin { path, .. }) = canonicalize_target(&buf) {
                    assert!(path.starts_with('/'), "{path:?}");
                    assert!(!path.contains("//"), "{path:?}");
                    for seg in path.split('/') {
                        assert!(seg != "." && seg != "..", "{path:?}");
                    }
                    assert!(!path.contains("%2E") && !path.contains("%2e"), "{path:?}");
                    assert!(!path.contains("%2f") && !path.contains("%2F"), "{path:?}");
                    assert_canonical_fixpoint(&path);
                }
            }
        }
        assert!(count > 1_000_000);
    }
}
