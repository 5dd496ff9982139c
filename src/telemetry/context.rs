//! W3C Trace Context (`traceparent`), always on: every request belongs to a trace, continued
//! from a valid incoming `traceparent` or started here, whether or not spans are exported.
//!
//! Everything on the request path here works on fixed-size arrays: ids come from a per-thread
//! generator (no lock, no system call), and ids are formatted as hex into stack buffers, so a
//! request that is not recorded costs a couple of random numbers and one header value.

use std::cell::Cell;

use http::header::HeaderValue;

/// A 16-byte trace id; never all zero once issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zero once issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn random() -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&next_u64().to_be_bytes());
        id[8..].copy_from_slice(&next_u64().to_be_bytes());
        if id == [0; 16] {
            id[15] = 1;
        }
        TraceId(id)
    }

    /// Lowercase hex, as `traceparent` and the access log spell it.
    pub fn hex(&self) -> Hex<32> {
        Hex::of(&self.0)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        let mut id = next_u64().to_be_bytes();
        if id == [0; 8] {
            id[7] = 1;
        }
        SpanId(id)
    }
}

/// `N` lowercase hex digits on the stack.
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    fn of(bytes: &[u8]) -> Hex<N> {
        let mut out = [b'0'; N];
        write_hex(&mut out, bytes);
        Hex(out)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0xf)];
    }
}

/// What a valid incoming `traceparent` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub trace_id: TraceId,
    pub parent: SpanId,
    pub sampled: bool,
}

/// Parses a `traceparent` value (W3C Trace Context level 1 §3.2). Version `00` must be exactly
/// 55 bytes; a later version may append `-`-separated fields, which are ignored. Refused:
/// version `ff`, uppercase or non-hex digits, wrong lengths, an all-zero trace or parent id.
pub fn parse_traceparent(v: &[u8]) -> Option<Incoming> {
    let version = hex_field::<1>(v.get(0..2)?)?;
    if version[0] == 0xff || v.len() < 55 || (version[0] == 0 && v.len() != 55) {
        return None;
    }
    if v.get(2) != Some(&b'-') || v.get(35) != Some(&b'-') || v.get(52) != Some(&b'-') {
        return None;
    }
    if v.len() > 55 && v.get(55) != Some(&b'-') {
        return None;
    }
    let trace_id = hex_field::<16>(v.get(3..35)?)?;
    let parent = hex_field::<8>(v.get(36..52)?)?;
    let flags = hex_field::<1>(v.get(53..55)?)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some(Incoming {
        trace_id: TraceId(trace_id),
        parent: SpanId(parent),
        sampled: flags[0] & 1 == 1,
    })
}

/// `N` bytes from `2N` lowercase hex digits; uppercase is invalid in `traceparent`.
fn hex_field<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The single `traceparent` of a request; two or more are as invalid as a malformed one.
pub fn incoming(headers: &http::HeaderMap) -> Option<Incoming> {
    let mut values = headers.get_all("traceparent").iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_traceparent(first.as_bytes())
}

/// `00-{trace}-{parent}-{flags}`: the value sent upstream, built in a stack buffer.
pub fn format_traceparent(trace: &TraceId, parent: &SpanId, sampled: bool) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&mut buf[3..35], &trace.0);
    write_hex(&mut buf[36..52], &parent.0);
    buf[54] = if sampled { b'1' } else { b'0' };
    // Always visible ASCII, so this cannot fail; the fallback keeps it panic-free regardless.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(rand::random::<u64>());
}

/// wyrand over a per-thread state seeded from the OS: ids must be unpredictable enough not to
/// collide across gateways (W3C §3.2.2.3 asks for random trace ids), not secret, and are drawn
/// on every request, so a lock-free few-cycle generator beats a cryptographic one here.
pub fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x).wrapping_mul(u128::from(x ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A uniform draw in `[0, 1)`.
pub fn unit_draw() -> f64 {
    (next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparent_is_read() {
        let got = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(
            got.trace_id.hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            got.parent.0,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(got.sampled);
        let unsampled = VALID.replace("-01", "-00");
        assert!(!parse_traceparent(unsampled.as_bytes()).unwrap().sampled);
        // Other flag bits do not hide the sampled bit.
        let other = VALID.replace("-01", "-03");
        assert!(parse_traceparent(other.as_bytes()).unwrap().sampled);
    }

    #[test]
    fn future_versions_may_append_fields() {
        let v = VALID.replacen("00", "01", 1);
        assert!(parse_traceparent(v.as_bytes()).is_some());
        assert!(parse_traceparent(format!("{v}-extra").as_bytes()).is_some());
        assert!(parse_traceparent(format!("{v}extra").as_bytes()).is_none());
        assert!(parse_traceparent(format!("{VALID}-extra").as_bytes()).is_none());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                parse_traceparent(bad.as_bytes()).is_none(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn two_traceparents_are_invalid() {
        let mut h = http::HeaderMap::new();
        h.append("traceparent", HeaderValue::from_static(VALID));
        assert!(incoming(&h).is_some());
        h.append("traceparent", HeaderValue::from_static(VALID));
        assert!(incoming(&h).is_none());
    }

    #[test]
    fn formats_what_it_parses() {
        let trace = TraceId::random();
        let span = SpanId::random();
        let v = format_traceparent(&trace, &span, true);
        let back = parse_traceparent(v.as_bytes()).unwrap();
        assert_eq!(
            (back.trace_id, back.parent, back.sampled),
            (trace, span, true)
        );
        let v = format_traceparent(&trace, &span, false);
        assert!(v.to_str().unwrap().ends_with("-00"));
    }

    #[test]
    fn ids_differ_and_draws_stay_in_range() {
        let a = TraceId::random();
        let b = TraceId::random();
        assert_ne!(a, b);
        assert_ne!(SpanId::random(), SpanId::random());
        for _ in 0..1000 {
            let d = unit_draw();
            assert!((0.0..1.0).contains(&d));
        }
    }
}
