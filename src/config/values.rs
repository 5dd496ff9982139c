//! Values the config file spells as strings but the gateway uses as types: networks, signature
//! algorithms, header names, the consistent-hashing key.
//!
//! Each is parsed while the file is deserialized, so a bad value fails with its key path
//! (`routes[2].allow_cidrs[0]: invalid CIDR "nope"`). Parsing them later, while building the
//! runtime, is what used to let a typo vanish from a list without a word.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;

use http::HeaderName;
use ipnet::IpNet;
use serde::de::{Deserialize, Deserializer, Error as _, IntoDeserializer};

use crate::auth::alg::Alg;

/// Accepts `10.0.0.0/8`, `::1/128` and a bare address (a /32 or /128). Host bits are cleared,
/// so `10.1.2.3/8` means `10.0.0.0/8`.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

/// Reads a string and parses it, failing with whatever `parse` says about it.
fn from_text<'de, D, T, M>(d: D, parse: impl FnOnce(&str) -> Result<T, M>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    M: Display,
{
    let text = <Cow<'de, str>>::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

/// Deserializes a list through its element's parsing type `W`, one element at a time, so an
/// element's error path ends in its index.
fn list_of<'de, D, W, T>(d: D, unwrap: fn(W) -> T) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    W: Deserialize<'de>,
{
    Ok(Vec::<W>::deserialize(d)?.into_iter().map(unwrap).collect())
}

/// One element of a CIDR list.
pub(super) struct Cidr(IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |text| {
            parse_cidr(text)
                .map(Cidr)
                .ok_or_else(|| format!("invalid CIDR {text:?}"))
        })
    }
}

pub(super) fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    list_of(d, |Cidr(net)| net)
}

/// One algorithm a provider allows. HS* gets its own refusal rather than "unknown": a shared
/// secret in a gateway config is readable by every operator and enables alg-confusion attacks,
/// and the operator should learn that it is refused on purpose.
pub(super) struct ProviderAlg(Alg);

impl<'de> Deserialize<'de> for ProviderAlg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <Cow<'de, str>>::deserialize(d)?;
        if name.to_ascii_uppercase().starts_with("HS") {
            return Err(D::Error::custom(format_args!(
                "{name} is refused: only asymmetric algorithms are allowed"
            )));
        }
        let name: &str = &name;
        Alg::deserialize(IntoDeserializer::<D::Error>::into_deserializer(name)).map(ProviderAlg)
    }
}

pub(super) fn algorithms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Alg>, D::Error> {
    list_of(d, |ProviderAlg(alg)| alg)
}

/// A header name, lower-cased the way `http` stores it.
pub(super) struct Header(HeaderName);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |text| {
            HeaderName::from_bytes(text.as_bytes())
                .map(Header)
                .map_err(|_| format!("invalid header name {text:?}"))
        })
    }
}

/// `claim path -> header name`, each value parsed under its claim's key path.
pub(super) fn header_names<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, HeaderName>, D::Error> {
    Ok(BTreeMap::<String, Header>::deserialize(d)?
        .into_iter()
        .map(|(claim, Header(name))| (claim, name))
        .collect())
}

/// A dotted claim path (`realm_access.roles`): non-empty segments only.
pub fn is_claim_path(path: &str) -> bool {
    !path.is_empty() && !path.split('.').any(str::is_empty)
}

/// What `upstreams.*.hash_key` feeds to consistent balancing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HashKey {
    /// `client_ip`: the resolved client address.
    #[default]
    ClientIp,
    /// `header:NAME`: that request header's value.
    Header(HeaderName),
    /// `claim:NAME`: that claim of the verified token (a dotted path).
    Claim(String),
}

impl HashKey {
    pub fn parse(text: &str) -> Option<HashKey> {
        if text == "client_ip" {
            return Some(HashKey::ClientIp);
        }
        if let Some(name) = text.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(HashKey::Header);
        }
        text.strip_prefix("claim:")
            .filter(|path| is_claim_path(path))
            .map(|path| HashKey::Claim(path.to_string()))
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d, |text| {
            HashKey::parse(text)
                .ok_or_else(|| format!("{text:?} is not client_ip, header:NAME or claim:NAME"))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_accept_bare_addresses_and_clear_host_bits() {
        for (text, want) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("127.0.0.1", "127.0.0.1/32"),
            ("::1", "::1/128"),
            ("2001:db8::1/32", "2001:db8::/32"),
        ] {
            assert_eq!(parse_cidr(text), Some(want.parse().unwrap()), "{text}");
        }
        for bad in ["10.0.0.0/33", "300.1.1.1/8", "nope", "", "10.0.0.0/"] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_keys() {
        assert_eq!(HashKey::parse("client_ip"), Some(HashKey::ClientIp));
        assert_eq!(
            HashKey::parse("header:X-Tenant"),
            Some(HashKey::Header(HeaderName::from_static("x-tenant")))
        );
        assert_eq!(
            HashKey::parse("claim:org.id"),
            Some(HashKey::Claim("org.id".into()))
        );
        for bad in [
            "",
            "ip",
            "header:",
            "header:a b",
            "claim:",
            "claim:a..b",
            "claim:.a",
        ] {
            assert_eq!(HashKey::parse(bad), None, "{bad}");
        }
    }
}
