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

/// Failures from one address before answers start to slow down.
const FREE_FAILURES: u32 = 3;
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A quiet address is forgiven after this long.
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct Auth {
    token_digest: Option<[u8; 32]>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Auth {
        Auth {
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.token_digest.is_some()
    }

    /// True when the request may proceed. A refused request from an address
    /// with repeated failures is delayed before the caller answers 401.
    pub async fn check(&self, headers: &HeaderMap, peer: IpAddr) -> bool {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        self.check_token(presented, peer).await
    }

    /// Like [`Auth::check`] for a token that came another way (the
    /// dashboard's login form).
    pub async fn check_token(&self, presented: Option<&str>, peer: IpAddr) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let presented = presented.map(|t| Sha256::digest(t.trim().as_bytes()));
        let ok = presented.is_some_and(|p| bool::from(p.as_slice().ct_eq(expected)));
        let delay = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if ok {
                failures.remove(&peer);
                return true;
            }
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
        false
    }
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
