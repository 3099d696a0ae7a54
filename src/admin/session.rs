//! Browser sessions for the admin dashboard.
//!
//! A browser logs in once with the admin token; it then holds only a random
//! session id in an `HttpOnly; SameSite=Strict` cookie (the token never
//! reaches a page or script). Each session has its own CSRF token, which
//! every dashboard form carries and every dashboard POST must echo. Sessions
//! live in memory: a restart logs everyone out, which is fine for an
//! operator's tool.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::COOKIE;
use http::HeaderMap;
use subtle::ConstantTimeEq;

pub const COOKIE_NAME: &str = "ph_session";
/// How long a session lasts after login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (oldest dropped first when full).
const MAX_SESSIONS: usize = 1024;

#[derive(Clone)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session; `None` only if the system has no randomness.
    pub fn create(&self) -> Option<Session> {
        let session = Session {
            id: random_hex(32)?,
            csrf: random_hex(32)?,
            expires: Instant::now() + LIFETIME,
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .values()
                .min_by_key(|s| s.expires)
                .map(|s| s.id.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(session.id.clone(), session.clone());
        Some(session)
    }

    /// The live session named by the request's cookie.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE_NAME)?;
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // Constant-time over the candidates is overkill for 256-bit random
        // ids looked up in a hash map; expiry is what matters.
        live.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE_NAME) {
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// The `Set-Cookie` value that stores this session in the browser.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.id,
            LIFETIME.as_secs()
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()?;
    Some(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_through_the_cookie_header() {
        let sessions = Sessions::default();
        let session = sessions.create().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("other=1; {COOKIE_NAME}={}", session.id)
                .parse()
                .unwrap(),
        );
        let found = sessions.from_headers(&headers).unwrap();
        assert!(found.csrf_ok(Some(&session.csrf)));
        assert!(!found.csrf_ok(Some("nope")));
        assert!(!found.csrf_ok(None));
        sessions.end(&headers);
        assert!(sessions.from_headers(&headers).is_none());
        let mut forged = HeaderMap::new();
        forged.insert(COOKIE, format!("{COOKIE_NAME}=deadbeef").parse().unwrap());
        assert!(sessions.from_headers(&forged).is_none());
    }
}
