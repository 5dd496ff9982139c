//! Ties the JWT pieces together for one request: verified-token cache, provider selection by
//! issuer and verification (with one bounded JWKS refetch for an unknown kid). The revocation
//! check is the pipeline's next step (`auth::gate::check_revocation`) and runs on every
//! request, cache hits included.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::cache::TokenCache;
use crate::auth::claims::ValidationPolicy;
use crate::auth::jwk::KeySet;
use crate::auth::provider::{ProviderRuntime, ProviderStatus};
use crate::auth::rejection::{Rejection, TokenError};
use crate::auth::verifier::{self, VerifiedToken};
use crate::metrics;

/// Where a provider's keys come from: a JWKS kept fresh in the background, or a fixed set (the
/// built-in issuer's own key).
pub enum KeySource {
    Fetched(Arc<ProviderRuntime>),
    Fixed(Arc<KeySet>),
}

impl KeySource {
    pub fn keys(&self) -> Arc<KeySet> {
        match self {
            KeySource::Fetched(rt) => rt.keys(),
            KeySource::Fixed(k) => Arc::clone(k),
        }
    }

    async fn refresh_for_kid(&self, kid: &str) -> bool {
        match self {
            KeySource::Fetched(rt) => rt.refresh_for_kid(kid).await,
            KeySource::Fixed(_) => false,
        }
    }

    pub fn is_ready(&self) -> bool {
        match self {
            KeySource::Fetched(rt) => rt.is_ready(),
            KeySource::Fixed(_) => true,
        }
    }
}

pub struct Provider {
    pub policy: ValidationPolicy,
    pub keys: KeySource,
}

impl Provider {
    pub fn name(&self) -> &str {
        &self.policy.provider
    }

    pub fn status(&self) -> ProviderStatus {
        match &self.keys {
            KeySource::Fetched(rt) => rt.status(),
            KeySource::Fixed(k) => ProviderStatus {
                name: self.name().to_string(),
                keys: k.kids(),
                last_refresh: None,
                last_error: None,
                ready: true,
            },
        }
    }
}

const ISSUER_NOT_ACCEPTED: TokenError = TokenError {
    kind: Rejection::WrongIssuer,
    description: "issuer not accepted on this route",
};

const UNKNOWN_KID: TokenError = TokenError {
    kind: Rejection::UnknownKid,
    description: "unknown key id",
};

const UNKNOWN_ISSUER: TokenError = TokenError {
    kind: Rejection::WrongIssuer,
    description: "unknown issuer",
};

pub struct Authenticator {
    providers: Vec<Arc<Provider>>,
    by_issuer: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    cache: Arc<TokenCache>,
    max_token_bytes: usize,
}

impl Authenticator {
    pub fn new(
        providers: Vec<Arc<Provider>>,
        cache: Arc<TokenCache>,
        max_token_bytes: usize,
    ) -> Authenticator {
        let by_issuer = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.policy.issuer.clone(), i))
            .collect();
        let by_name = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name().to_string(), i))
            .collect();
        Authenticator {
            providers,
            by_issuer,
            by_name,
            cache,
            max_token_bytes,
        }
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn provider_by_issuer(&self, iss: &str) -> Option<&Arc<Provider>> {
        self.by_issuer.get(iss).and_then(|&i| self.providers.get(i))
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name).and_then(|&i| self.providers.get(i))
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Verifies `token` for a route that accepts `allowed` providers (`None`: any). Revocation
    /// is not checked here: it is the pipeline's next step, so that every caller sees it.
    pub async fn authenticate(
        &self,
        token: &str,
        allowed: Option<&[String]>,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        self.authenticate_observed(token, allowed, now, &mut None)
            .await
    }

    /// [`Self::authenticate`], also telling when a verification ran: `verification` is set to
    /// its start and end on a cache miss (the request's trace shows it as a span). Two clock
    /// reads, and only on a miss, which costs a signature check anyway.
    pub async fn authenticate_observed(
        &self,
        token: &str,
        allowed: Option<&[String]>,
        now: i64,
        verification: &mut Option<Range<Instant>>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        if self.cache.enabled() {
            if let Some(hit) = self.cache.get(token, now) {
                if self.key_still_trusted(&hit) {
                    metrics::TOKEN_CACHE_HIT.inc();
                    return self.admit(hit, allowed);
                }
            }
            metrics::TOKEN_CACHE_MISS.inc();
        }
        let start = Instant::now();
        let verified = self.verify_uncached(token, allowed, now).await;
        *verification = Some(start..Instant::now());
        verified
    }

    async fn verify_uncached(
        &self,
        token: &str,
        allowed: Option<&[String]>,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let decoded = verifier::decode(token, self.max_token_bytes)?;
        let provider = self
            .by_issuer
            .get(&decoded.iss)
            .and_then(|&i| self.providers.get(i))
            .ok_or(UNKNOWN_ISSUER)?;
        if !accepts(allowed, provider.name()) {
            return Err(ISSUER_NOT_ACCEPTED);
        }
        let mut keys = provider.keys.keys();
        if keys.get(&decoded.kid).is_none() {
            // Single-flight and rate-limited inside the runtime, bounded by fetch_timeout.
            if !provider.keys.refresh_for_kid(&decoded.kid).await {
                return Err(UNKNOWN_KID);
            }
            keys = provider.keys.keys();
        }
        let verified = verifier::verify_owned(decoded, &provider.policy, &keys, now)?;
        let verified = Arc::new(verified);
        if self.cache.enabled() {
            self.cache.insert(token, Arc::clone(&verified), now);
        }
        self.admit(verified, allowed)
    }

    /// The route's provider list applies to cached tokens too.
    fn admit(
        &self,
        token: Arc<VerifiedToken>,
        allowed: Option<&[String]>,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        if !accepts(allowed, &token.provider) {
            return Err(ISSUER_NOT_ACCEPTED);
        }
        Ok(token)
    }

    /// A cached token is only as good as the key that verified it: once that key leaves its
    /// provider's key set (rotation, removal, max_stale) the entry is treated as absent.
    fn key_still_trusted(&self, token: &VerifiedToken) -> bool {
        self.provider(&token.provider).is_some_and(|p| {
            p.keys
                .keys()
                .get(&token.kid)
                .is_some_and(|k| k.uid == token.key_uid)
        })
    }
}

fn accepts(allowed: Option<&[String]>, provider: &str) -> bool {
    allowed.is_none_or(|names| names.iter().any(|n| n == provider))
}
