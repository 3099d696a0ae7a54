//! Protected previews: who may read a retained deployment at
//! `/s/<service>@<id>/`.
//!
//! `previews = "public" | "signed" | "off"` (the old booleans still work:
//! `true` is `"public"`, `false` is `"off"`; unset is `"signed"` when an
//! admin token is configured, else `"public"`). A signed preview URL is
//! `/s/<service>@<id>/?exp=<unix seconds>&sig=<hex>` with
//! `sig = HMAC-SHA256(key, "preview\n<service>\n<id>\n<createdAt>\n<exp>")`
//! (RFC 2104), `createdAt` being the deployment's own
//! ([`crate::store::deployments::created_at`]): the link opens that
//! deployment only, not another one made later under the same id after it
//! was deleted. The first signed request sets a cookie scoped to that
//! preview's path, so the page's own links and assets load without the
//! query. Unsigned, expired or tampered requests, and links to a
//! deployment that is gone, get the same 404 as a missing deployment.
//!
//! The key is 32 random bytes in `<root>/.preview-key` (mode 0600), made at
//! first start, so every replica on the volume signs and checks alike.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key file's name in the root.
pub const KEY_FILE: &str = ".preview-key";
/// Lifetime of a signed link when none is asked for.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 86400);
/// Longest lifetime a signed link may be given.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86400);

/// Who may read previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Public,
    Signed,
    Off,
}

impl Mode {
    /// `"public"`, `"signed"`, `"off"`, or the old booleans.
    pub fn parse(value: &toml::Value) -> Result<Mode, String> {
        match value {
            toml::Value::Boolean(true) => Ok(Mode::Public),
            toml::Value::Boolean(false) => Ok(Mode::Off),
            toml::Value::String(s) if s == "public" => Ok(Mode::Public),
            toml::Value::String(s) if s == "signed" => Ok(Mode::Signed),
            toml::Value::String(s) if s == "off" => Ok(Mode::Off),
            other => Err(format!(
                "previews = {other}: expected \"public\", \"signed\" or \"off\" (or true/false)"
            )),
        }
    }
}

/// The signing key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Reads `<root>/.preview-key`, creating it (race-free, 0600) when absent.
    pub fn load_or_create(root: &Path) -> Result<Key> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = root.join(KEY_FILE);
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .context("no randomness for the preview key")?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(&random)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(Key(random));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        // Another process may be writing it this instant: retry briefly.
        for _ in 0..50 {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(Key(key));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        anyhow::bail!(
            "{} is not 32 bytes: remove it to make a new one (signed links made before stop working)",
            path.display()
        )
    }

    fn mac(&self, service: &str, id: &str, created_at: &str, expires: u64) -> Hmac<Sha256> {
        // Any key length is valid for HMAC: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        // No field can hold a newline (names are [A-Za-z0-9_-], createdAt
        // is RFC 3339), so the message is unambiguous.
        mac.update(format!("preview\n{service}\n{id}\n{created_at}\n{expires}").as_bytes());
        mac
    }

    /// The signature of a preview link of deployment `id` of `service`
    /// created at `created_at`, valid until `expires` (Unix seconds), hex.
    pub fn sign(&self, service: &str, id: &str, created_at: &str, expires: u64) -> String {
        hex::encode(
            self.mac(service, id, created_at, expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// True when `sig` signs (service, id, created_at, expires) and
    /// `expires` is in the future.
    pub fn verify(
        &self,
        service: &str,
        id: &str,
        created_at: &str,
        expires: u64,
        sig: &str,
    ) -> bool {
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        expires > unix_now()
            && self
                .mac(service, id, created_at, expires)
                .verify_slice(&sig)
                .is_ok()
    }

    /// The path and query of a signed link to deployment `id` of `service`
    /// (created at `created_at`) valid for `ttl`, and its expiry (Unix seconds).
    pub fn signed_path(
        &self,
        service: &str,
        id: &str,
        created_at: &str,
        ttl: Duration,
    ) -> (String, u64) {
        let expires = unix_now() + ttl.min(MAX_TTL).as_secs().max(1);
        let sig = self.sign(service, id, created_at, expires);
        (
            format!("/s/{service}@{id}/?exp={expires}&sig={sig}"),
            expires,
        )
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cookie that carries a preview's signature to its other paths.
pub fn cookie_name(service: &str, id: &str) -> String {
    format!("ph_preview_{service}_{id}")
}

/// `(exp, sig)` from a query string, if both are there.
pub fn from_query(query: Option<&str>) -> Option<(u64, String)> {
    let (mut exp, mut sig) = (None, None);
    for (k, v) in form_urlencoded::parse(query?.as_bytes()) {
        match k.as_ref() {
            "exp" => exp = v.parse().ok(),
            "sig" => sig = Some(v.into_owned()),
            _ => {}
        }
    }
    Some((exp?, sig?))
}

/// `(exp, sig)` from the preview's cookie (`<exp>.<sig>`).
pub fn from_cookie(headers: &http::HeaderMap, service: &str, id: &str) -> Option<(u64, String)> {
    let name = cookie_name(service, id);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.split_once('.'))
        .and_then(|(exp, sig)| Some((exp.parse().ok()?, sig.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_tamper_expire() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::load_or_create(dir.path()).unwrap();
        let again = Key::load_or_create(dir.path()).unwrap();
        let exp = unix_now() + 60;
        let born = "2026-01-31T14:05:00.000000000Z";
        let sig = key.sign("web", "v1", born, exp);
        assert!(
            again.verify("web", "v1", born, exp, &sig),
            "same key from the file"
        );
        assert!(!key.verify("web", "v2", born, exp, &sig));
        assert!(!key.verify("api", "v1", born, exp, &sig));
        assert!(!key.verify("web", "v1", born, exp + 1, &sig));
        assert!(!key.verify("web", "v1", born, exp, "zz"));
        // The same id made again later is another deployment.
        assert!(!key.verify("web", "v1", "2026-01-31T14:05:00.000000001Z", exp, &sig));
        let past = unix_now() - 1;
        assert!(!key.verify("web", "v1", born, past, &key.sign("web", "v1", born, past)));
        assert_eq!(Mode::parse(&toml::Value::Boolean(true)), Ok(Mode::Public));
        assert!(Mode::parse(&toml::Value::String("maybe".into())).is_err());
    }
}
