//! Bearer-token authentication for the admin API.
//!
//! The token is compared in constant time (over SHA-256 digests, so not even
//! its length leaks), and an address that keeps failing is answered ever more
//! slowly (exponential delay, capped), which makes guessing impractical
//! without locking out the real deployer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tokens::{Identity, Refusal, Scope, TokenStore, BOOTSTRAP_NAME};

/// Failures from one address before answers start to slow down.
const FREE_FAILURES: u32 = 3;
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A quiet address is forgiven after this long.
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct Auth {
    token_digest: Option<[u8; 32]>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Named, scoped tokens on the volume ([`super::tokens`]).
    tokens: Option<std::sync::Arc<TokenStore>>,
}

impl Auth {
    /// The bootstrap token alone.
    pub fn new(token: Option<&str>) -> Auth {
        Auth {
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            failures: Mutex::new(HashMap::new()),
            tokens: None,
        }
    }

    /// The bootstrap token plus the named tokens stored under `root`.
    pub fn with_store(token: Option<&str>, root: &std::path::Path) -> Auth {
        Auth {
            tokens: Some(std::sync::Arc::new(TokenStore::new(root))),
            ..Auth::new(token)
        }
    }

    /// The token store (`None` when built with [`Auth::new`]).
    pub fn tokens(&self) -> Option<std::sync::Arc<TokenStore>> {
        self.tokens.clone()
    }

    /// Who sent the request: the bootstrap token is `admin`, a stored token
    /// its own name and scopes; with no token configured (loopback admin
    /// port) everyone is `local` with scope admin. `Err`: refused, with why
    /// (a repeatedly failing address is delayed first, as for [`Auth::check`]).
    pub async fn identify(&self, headers: &HeaderMap, peer: IpAddr) -> Result<Identity, Refusal> {
        let presented = bearer(headers);
        self.identify_token(presented, peer).await
    }

    /// Like [`Auth::identify`] for a token that came another way.
    pub async fn identify_token(
        &self,
        presented: Option<&str>,
        peer: IpAddr,
    ) -> Result<Identity, Refusal> {
        let Some(expected) = &self.token_digest else {
            return Ok(Identity::admin("local"));
        };
        let presented = presented.map(str::trim);
        let digest = presented.map(|t| Sha256::digest(t.as_bytes()));
        let identity = if digest.is_some_and(|p| bool::from(p.as_slice().ct_eq(expected))) {
            Ok(Identity::admin(BOOTSTRAP_NAME))
        } else {
            match (presented, &self.tokens) {
                (None, _) => Err(Refusal::Missing),
                (Some(""), _) => Err(Refusal::Missing),
                (Some(token), Some(store)) => {
                    // A stat, sometimes a read, once a minute a write: off the runtime.
                    let (store, token) = (store.clone(), token.to_string());
                    tokio::task::spawn_blocking(move || store.identify(&token))
                        .await
                        .unwrap_or(Err(Refusal::Unknown))
                }
                _ => Err(Refusal::Unknown),
            }
        };
        if identity.is_ok() {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&peer);
            return identity;
        }
        self.failed(peer).await;
        identity
    }

    pub fn enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// The actor name of an accepted request: `admin` (the bootstrap
    /// token), or `local` when no token is configured (loopback admin port).
    pub fn actor(&self) -> &'static str {
        if self.enabled() {
            "admin"
        } else {
            "local"
        }
    }

    /// True when the request may proceed. A refused request from an address
    /// with repeated failures is delayed before the caller answers 401.
    pub async fn check(&self, headers: &HeaderMap, peer: IpAddr) -> bool {
        self.identify(headers, peer).await.is_ok()
    }

    /// `Ok` when `presented` (the dashboard's login form) is a token with
    /// scope `admin` (the dashboard acts for admins only); `Err` says why
    /// not: no such token, expired, revoked, or lacking scope `admin`.
    pub async fn check_token(&self, presented: Option<&str>, peer: IpAddr) -> Result<(), String> {
        let identity =
            self.identify_token(presented, peer)
                .await
                .map_err(|refusal| match refusal {
                    Refusal::Missing | Refusal::Unknown => "Wrong token.".to_string(),
                    other => other.message(),
                })?;
        identity.require(&Scope::Admin).map_err(|_| {
            format!(
                "The token {:?} is valid but lacks scope admin: the dashboard needs an admin \
                 token (create one with project-http token create --scope admin).",
                identity.name
            )
        })
    }

    /// Counts a failure of `peer` and waits the delay it has earned.
    async fn failed(&self, peer: IpAddr) {
        let delay = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            let entry = failures.entry(peer).or_insert((0, now));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = now;
            delay_for(entry.0)
        };
        if !delay.is_zero() {
            tracing::warn!(peer = %peer, delay_ms = delay.as_millis() as u64, "repeated admin auth failures: slowing down");
            tokio::time::sleep(delay).await;
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

/// 0 for the first failures, then 100 ms doubling up to [`MAX_DELAY`].
fn delay_for(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE_FAILURES - 1).min(10);
    (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        assert_eq!(delay_for(1), Duration::ZERO);
        assert_eq!(delay_for(3), Duration::ZERO);
        assert_eq!(delay_for(4), Duration::from_millis(100));
        assert_eq!(delay_for(5), Duration::from_millis(200));
        assert_eq!(delay_for(1000), MAX_DELAY);
    }

    #[tokio::test]
    async fn token_check() {
        let auth = Auth::new(Some("s3cret"));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!auth.check(&headers, peer).await);
        headers.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(!auth.check(&headers, peer).await);
        headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.check(&headers, peer).await);
        headers.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!auth.check(&headers, peer).await);
        assert!(Auth::new(None).check(&HeaderMap::new(), peer).await);
    }
}
