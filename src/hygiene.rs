//! Request-target hygiene (conf/README.md §3.1): refuse ambiguous targets, canonicalise the rest.
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

    // conf/HARDENING.md §3.2, the route under test being /admin.

    /// One case a line: the raw request target, then what it must become (the canonical path,
    /// followed by `?query` when there is one) or `!` and the refusal. `\xNN` writes a byte that
    /// cannot stand here as it is, `\x20` a space; a line starting with `#` is a comment.
    const CASES: &str = r#"
# P1: dot segments and double slashes
//admin                       /admin
/./admin                      /admin
/public/../admin              /admin
/public/%2e%2e/admin          /admin
/public/%2E%2e/admin          /admin
/%2e/admin                    /admin
/public/.%2e/admin            /admin
/public/%2E./admin            /admin
# P2: trailing slash and merge
/admin/                       /admin/
/admin/.                      /admin/
/admin//x                     /admin/x
/admin/..                     /
# P3: encoding tricks
/%61dmin                      /admin
/%2561dmin                    /%2561dmin
/%C0%AEadmin                  !NonAscii
/%c0%aeadmin                  !NonAscii
# P4: case is preserved
/ADMIN                        /ADMIN
/Admin                        /Admin
# P5: path parameters
/admin;jsessionid=x           !PathParameter
/admin;/x                     !PathParameter
/public;/../admin             !PathParameter
/admin%3Bjsessionid=x         /admin%3Bjsessionid=x
# P6: encoded separators
/public%2fadmin               !EncodedSlash
/public%2Fadmin               !EncodedSlash
/admin%2f                     !EncodedSlash
/public%5c..%5cadmin          !EncodedBackslash
/public%5C..%5Cadmin          !EncodedBackslash
# P7: raw backslash
/public\..\admin              !Backslash
/admin\                       !Backslash
# P8: raw and escaped controls and spaces
/admin\x00                    !ControlCharacter
/admin\x09                    !ControlCharacter
/admin\x7f                    !ControlCharacter
/public\x20/../admin          !Space
# what Pingora hands over for the line `GET /public /../admin HTTP/1.1`
/public%20/../admin           !Space
/admin%00                     !ControlCharacter
/admin%09                     !ControlCharacter
# P9: encoded controls
/admin%00                     !ControlCharacter
/admin%0a                     !ControlCharacter
/admin%0A                     !ControlCharacter
/admin%0d                     !ControlCharacter
/admin%0D                     !ControlCharacter
/admin%1F                     !ControlCharacter
/admin%7f                     !ControlCharacter
# P11: fragment and query
/admin#x                      !Fragment
/admin?a#x                    !Fragment
/admin?                       /admin?
/admin%3F                     /admin%3F
/admin%3f                     /admin%3F
/admin?x=/../public           /admin?x=/../public
# P12: target forms (the empty target is tested on its own)
http://internal.local/admin   !NotOriginForm
HTTPS://internal.local/admin  !NotOriginForm
//internal/admin              /internal/admin
internal:443                  !NotOriginForm
*x                            !NotOriginForm
**                            !NotOriginForm
?x                            !NotOriginForm
/*                            /*
*                             *
# P13: non-ASCII
/adm\xc3\xa9                  !NonAscii
/\xff                         !NonAscii
/adm%C3%A9                    !NonAscii
/%80                          !NonAscii
/%fF                          !NonAscii
# invalid percent-encoding
/%                            !InvalidPercentEncoding
/a%                           !InvalidPercentEncoding
/%4                           !InvalidPercentEncoding
/%4?x                         !InvalidPercentEncoding
/%zz                          !InvalidPercentEncoding
/%4g                          !InvalidPercentEncoding
/%g4                          !InvalidPercentEncoding
/%%                           !InvalidPercentEncoding
/%%41                         !InvalidPercentEncoding
/%\x2041                      !InvalidPercentEncoding
# only unreserved characters are decoded
/%41%5A%61%7A%30%39           /AZaz09
/%2D%2e%5f%7E                 /-._~
/a%2eb                        /a.b
/%3a                          /%3A
/%3A                          /%3A
/%3B                          /%3B
/%3b                          /%3B
/%25                          /%25
/%2525                        /%2525
/%23                          /%23
/%22%3c%3E                    /%22%3C%3E
/%7b%7D                       /%7B%7D
/%40%21                       /%40%21
# a decoded character next to a kept triplet
/%61%3a%62                    /a%3Ab
# dot segment removal
/..                           /
/.                            /
/../../x                      /x
/a/b/../c                     /a/c
/a/b/./../c/                  /a/c/
/a/b/..                       /a/
/a/./b/.                      /a/b/
/%2e%2e/%2E%2E/x              /x
/...                          /...
/a/.b/..c/c..                 /a/.b/..c/c..
/a/%2e%2e%2e                  /a/...
# slashes are merged before dot segments are resolved
/a//..                        /
/a/..//b                      /b
# slash merging
/                             /
//                            /
///                           /
/a//b                         /a/b
/a///b//                      /a/b/
//a?x=//y                     /a?x=//y
# raw path characters
/AZaz09-._~!$&'()*+,=:@       /AZaz09-._~!$&'()*+,=:@
/a"b                          !DisallowedCharacter
/a<b                          !DisallowedCharacter
/a>b                          !DisallowedCharacter
/a^b                          !DisallowedCharacter
/a`b                          !DisallowedCharacter
/a{b                          !DisallowedCharacter
/a|b                          !DisallowedCharacter
/a}b                          !DisallowedCharacter
/a[b                          !DisallowedCharacter
/a]b                          !DisallowedCharacter
/a\x0db                       !ControlCharacter
/a\x0ab                       !ControlCharacter
# query rules
/a?b=c&d=e                    /a?b=c&d=e
# the query is neither decoded nor validated as percent-encoding
/a?%zz%2F%00%                 /a?%zz%2F%00%
/a?x={}|\^`"<>[];             /a?x={}|\^`"<>[];
/a??                          /a??
/a?x\x20y                     !Space
/a?x\x09y                     !ControlCharacter
/a?x\x00                      !ControlCharacter
/a?x\x7f                      !ControlCharacter
/a?x\xc3\xa9                  !NonAscii
/a?x#y                        !Fragment
# a path that needs rewriting keeps its raw query
/x/../a?p=%2e%2e              /a?p=%2e%2e
# canonical input is borrowed, changed input is owned (checked on every accepted row)
/users/1                      /users/1
/a%3Ab                        /a%3Ab
/a?b=c                        /a?b=c
/a%3ab                        /a%3Ab
//a                           /a
/a/.                          /a/
/%61                          /a
"#;

    fn case_lines() -> impl Iterator<Item = &'static str> {
        CASES
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    /// Turns the `\xNN` escapes of a [`CASES`] column into bytes; everything else stays as written.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            let escape = match (b, tail) {
                (b'\\', [b'x', hi, lo, after @ ..]) => percent_byte(*hi, *lo).map(|v| (v, after)),
                _ => None,
            };
            let (byte, after) = escape.unwrap_or((b, tail));
            out.push(byte);
            rest = after;
        }
        out
    }

    /// The outcome spelled the way [`CASES`] writes it.
    fn outcome(raw: &[u8]) -> String {
        match canonicalize_target(raw) {
            Ok(RequestTarget::Origin { path, query: None }) => path.into_owned(),
            Ok(RequestTarget::Origin {
                path,
                query: Some(query),
            }) => format!("{path}?{query}"),
            Ok(RequestTarget::Asterisk) => "*".into(),
            Err(e) => format!("!{e:?}"),
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

    #[test]
    fn every_case_in_the_table() {
        let mut failures = Vec::new();
        for line in case_lines() {
            let mut columns = line.split_whitespace();
            let (Some(raw), Some(want), None) = (columns.next(), columns.next(), columns.next())
            else {
                panic!("malformed case {line:?}");
            };
            let raw = unescape(raw);
            let got = outcome(&raw);
            if got != want {
                failures.push(format!("{line}  -> got {got}"));
            }
            if let Ok(RequestTarget::Origin { path, .. }) = canonicalize_target(&raw) {
                assert_canonical_fixpoint(&path);
                // The common, already canonical case allocates nothing; anything changed must.
                let raw_path = raw.split(|&b| b == b'?').next().unwrap_or_default();
                let borrowed = matches!(path, Cow::Borrowed(_));
                assert_eq!(borrowed, raw_path == path.as_bytes(), "{line}: {path:?}");
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn an_empty_target_is_not_origin_form() {
        assert_eq!(canonicalize_target(b""), Err(NotOriginForm));
    }

    /// The raw targets of the table's rows, unescaped.
    fn table_targets() -> impl Iterator<Item = Vec<u8>> {
        case_lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(unescape)
    }

    #[test]
    fn descriptions_are_distinct_and_displayed() {
        let mut refusals: Vec<HygieneError> = Vec::new();
        for e in table_targets().filter_map(|raw| canonicalize_target(&raw).err()) {
            if !refusals.contains(&e) {
                refusals.push(e);
            }
        }
        // Every variant has a row in the table; a new variant needs one.
        assert_eq!(refusals.len(), 11, "{refusals:?}");
        let mut seen = std::collections::HashSet::new();
        for e in refusals {
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
