//! Why a token was refused: the one error type every stage of token checking returns, kept in a
//! leaf module so that the structural checks, the claims check and the verifier can all produce
//! it without importing each other.

/// Why a token was refused; each maps to one `portcullis_auth_decisions_total` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    Malformed,
    BadSignature,
    UnknownKid,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    Revoked,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::Revoked => "revoked",
        }
    }
}

/// A refused token: 401 `invalid_token` with `description` as `error_description`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct TokenError {
    pub kind: Rejection,
    /// Names the failed check. Static text only: it can never carry key material, claim values
    /// or the token.
    pub description: &'static str,
}

impl TokenError {
    /// The refusal for a revoked token (the revocation check runs outside the verifier).
    pub const REVOKED: TokenError = TokenError::new(Rejection::Revoked, "token revoked");

    pub const fn new(kind: Rejection, description: &'static str) -> TokenError {
        TokenError { kind, description }
    }

    /// Most checks can only say "this is not a well-formed token"; this keeps them one-liners.
    pub const fn malformed(description: &'static str) -> TokenError {
        TokenError::new(Rejection::Malformed, description)
    }

    pub fn label(self) -> &'static str {
        self.kind.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let all = [
            (Rejection::Malformed, "malformed"),
            (Rejection::BadSignature, "bad_signature"),
            (Rejection::UnknownKid, "unknown_kid"),
            (Rejection::Expired, "expired"),
            (Rejection::NotYetValid, "not_yet_valid"),
            (Rejection::WrongIssuer, "wrong_issuer"),
            (Rejection::WrongAudience, "wrong_audience"),
            (Rejection::Revoked, "revoked"),
        ];
        for (r, l) in all {
            assert_eq!(r.label(), l);
            assert_eq!(TokenError::new(r, "x").label(), l);
        }
        assert_eq!(TokenError::REVOKED.description, "token revoked");
        assert_eq!(TokenError::REVOKED.to_string(), "token revoked");
    }
}
