//! Bearer-token authentication: everything between the `Authorization` header and a verified,
//! authorized identity, with no I/O so it can be tested exhaustively and benchmarked.
//!
//! The pipeline, in request order: [`jws::extract_bearer`] (header rules, 400 vs 401) ->
//! [`verifier::decode`] (structure only, before the provider is known) -> provider chosen by `iss`
//! -> [`cache::TokenCache`] or [`verifier::verify_owned`] (key by `kid` inside that provider's
//! [`jwk::KeySet`], alg pinned by the key, signature, then [`claims`]) -> revocation
//! (`crate::revocation`) -> [`policy::AccessPolicy`].

pub mod alg;
pub mod authenticator;
pub mod cache;
pub mod claims;
pub mod gate;
pub mod jwk;
pub mod jws;
pub mod policy;
pub mod provider;
pub mod rejection;
#[cfg(test)]
pub(crate) mod test_support;
pub mod verifier;
