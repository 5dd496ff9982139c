//! The JWS algorithm names a key may be pinned to: a leaf type that the JOSE header parser, the
//! JWKS parser, the verifier and the config all share without importing each other.

use std::fmt;

use aws_lc_rs::signature as sig;

/// The asymmetric JWS algorithms a provider may allow. There is deliberately no HMAC variant and
/// no `none`: a value of this type can never select a symmetric or absent signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::ES256,
        Alg::ES384,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::EdDSA,
    ];

    /// Exact, case-sensitive match on the RFC 7518 / RFC 8037 name. `none`, `HS*` and anything
    /// unknown give `None`: an unknown algorithm is never mapped to a default (A1).
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn is_rsa(self) -> bool {
        matches!(
            self,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
        )
    }

    pub(crate) fn rsa_params(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Alg::ES256 | Alg::ES384 | Alg::EdDSA => return None,
        })
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Config files name algorithms as strings; refusing an unknown name at parse time (with its
/// key path) is what keeps a typo from silently shrinking a provider's allowed set.
impl<'de> serde::Deserialize<'de> for Alg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Alg::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "unknown algorithm `{name}` (one of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alg_names() {
        for a in Alg::ALL {
            assert_eq!(Alg::parse(a.as_str()), Some(a));
        }
        for bad in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "RSA-OAEP", " ES256", "",
        ] {
            assert_eq!(Alg::parse(bad), None, "{bad}");
        }
    }
}
