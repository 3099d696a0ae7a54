//! Named, scoped admin tokens, stored as hashes on the volume.
//!
//! `<root>/.tokens.json` lists `{name, sha256, scopes, createdAt, expiresAt,
//! lastUsedAt}`; the token itself is shown once, when it is created, and is
//! never written anywhere. Tokens are 160 random bits, so one SHA-256 is as
//! good as a slow hash. The file is re-read whenever it changes on disk, so
//! a token created or revoked through any server process on the volume
//! takes effect at once everywhere, with no restart. Changes are made under
//! an `flock` on `<root>/.tokens.lock` and written atomically.
//!
//! Scopes:
//! * `admin`: everything, including managing tokens;
//! * `deploy:<service>` / `deploy:*`: upload, activate, roll back, delete
//!   and pin deployments of that service (of every service), plus `read`;
//! * `read`: listings, the activation log, events, metrics.
//!
//! The bootstrap token from the environment (`PROJECT_HTTP_ADMIN_TOKEN`)
//! is the token named `admin`, with scope `admin`.

use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::deployments::rfc3339;
use crate::store::flip::{fsync_dir, unique_suffix};
use crate::store::is_valid_name;

pub const TOKENS_FILE: &str = ".tokens.json";
const LOCK_FILE: &str = ".tokens.lock";
/// `lastUsedAt` is written back at most this often per token.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);
/// The name the bootstrap token goes by.
pub const BOOTSTRAP_NAME: &str = "admin";

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Read,
    /// `deploy:<service>`; `None` is `deploy:*`.
    Deploy(Option<String>),
}

impl Scope {
    /// Parses `admin`, `read`, `deploy:*`, `deploy:<service>`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "admin" => Ok(Scope::Admin),
            "read" => Ok(Scope::Read),
            "deploy:*" => Ok(Scope::Deploy(None)),
            _ => match text.strip_prefix("deploy:") {
                Some(service) if is_valid_name(service) => {
                    Ok(Scope::Deploy(Some(service.to_string())))
                }
                _ => Err(format!(
                    "unknown scope {text:?}: use admin, read, deploy:* or deploy:<service>"
                )),
            },
        }
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(&self, needed: &Scope) -> bool {
        match (self, needed) {
            (Scope::Admin, _) => true,
            (Scope::Read | Scope::Deploy(_), Scope::Read) => true,
            (Scope::Deploy(None), Scope::Deploy(_)) => true,
            (Scope::Deploy(Some(mine)), Scope::Deploy(Some(wanted))) => mine == wanted,
            _ => false,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Read => f.write_str("read"),
            Scope::Deploy(None) => f.write_str("deploy:*"),
            Scope::Deploy(Some(service)) => write!(f, "deploy:{service}"),
        }
    }
}

/// Who a request is: a token's name and scopes.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Identity {
    pub fn admin(name: &str) -> Identity {
        Identity {
            name: name.to_string(),
            scopes: vec![Scope::Admin],
        }
    }

    /// `Ok` when a scope grants `needed`; else the refusal's message,
    /// naming the missing scope.
    pub fn require(&self, needed: &Scope) -> Result<(), String> {
        if self.scopes.iter().any(|s| s.grants(needed)) {
            return Ok(());
        }
        let has: Vec<String> = self.scopes.iter().map(Scope::to_string).collect();
        Err(format!(
            "token {:?} lacks scope {needed} (it has: {})",
            self.name,
            has.join(", ")
        ))
    }
}

/// One stored token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub name: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// When the token was revoked: kept (without the token's power) so a
    /// client still sending it hears "revoked", not "wrong token".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Why a presented token is not accepted; [`Refusal::message`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token was sent.
    Missing,
    /// Not one of this server's tokens.
    Unknown,
    /// The token `name` expired at the RFC 3339 time.
    Expired { name: String, at: String },
    /// The token `name` was revoked at the RFC 3339 time.
    Revoked { name: String, at: String },
}

impl Refusal {
    /// The 401's message: what happened and what to do.
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "no admin token: send Authorization: Bearer <token>".to_string(),
            Refusal::Unknown => "wrong admin token: the Authorization: Bearer token sent is not \
                                 one of this server's tokens"
                .to_string(),
            Refusal::Expired { name, at } => format!(
                "the token {name:?} expired at {at}: create a new one (project-http token create)"
            ),
            Refusal::Revoked { name, at } => {
                format!("the token {name:?} was revoked at {at}: ask an admin for a new one")
            }
        }
    }
}

impl TokenRecord {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_some_and(|t| t <= now)
    }

    /// The listing shape: no hash.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "scopes": self.scopes, "createdAt": self.created_at,
                           "expiresAt": self.expires_at, "lastUsedAt": self.last_used_at,
                           "expired": self.expired(SystemTime::now())})
    }
}

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The file's (mtime, size) when read, and what it held.
type Cached = (Option<(SystemTime, u64)>, Vec<TokenRecord>);

/// The tokens of one root, cached until the file changes.
pub struct TokenStore {
    root: PathBuf,
    cache: Mutex<Cached>,
}

impl TokenStore {
    pub fn new(root: impl Into<PathBuf>) -> TokenStore {
        TokenStore {
            root: root.into(),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    fn path(&self) -> PathBuf {
        self.root.join(TOKENS_FILE)
    }

    fn read_file(&self) -> Result<Vec<TokenRecord>> {
        match std::fs::read(self.path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a JSON token list", self.path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.path().display())),
        }
    }

    /// The records, re-read when the file's mtime or size changed.
    fn current(&self) -> Vec<TokenRecord> {
        let stamp = std::fs::metadata(self.path())
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // A write within the same mtime tick keeps the size only by chance;
        // re-read always when the stamp is younger than a second.
        let fresh = stamp.is_some_and(|(t, _)| {
            SystemTime::now()
                .duration_since(t)
                .map_or(true, |d| d < Duration::from_secs(1))
        });
        if cache.0 != stamp || fresh {
            match self.read_file() {
                Ok(records) => *cache = (stamp, records),
                Err(e) => tracing::error!(error = format!("{e:#}"), "cannot load tokens"),
            }
        }
        cache.1.clone()
    }

    /// The identity of a presented token: its record, unless expired or
    /// revoked ([`Refusal`] says which). Updates `lastUsedAt` (at most
    /// once a minute per token).
    pub fn identify(&self, presented: &str) -> Result<Identity, Refusal> {
        let digest = hex::encode(Sha256::digest(presented.as_bytes()));
        let now = SystemTime::now();
        let record = self
            .current()
            .into_iter()
            .find(|r| bool::from(r.sha256.as_bytes().ct_eq(digest.as_bytes())))
            .ok_or(Refusal::Unknown)?;
        if let Some(at) = &record.revoked_at {
            return Err(Refusal::Revoked {
                name: record.name,
                at: at.clone(),
            });
        }
        if record.expired(now) {
            return Err(Refusal::Expired {
                at: record.expires_at.clone().unwrap_or_default(),
                name: record.name,
            });
        }
        let stale = record
            .last_used_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= LAST_USED_GRANULARITY);
        if stale {
            let name = record.name.clone();
            let _ = self.change(|records| {
                if let Some(r) = records.iter_mut().find(|r| r.name == name) {
                    r.last_used_at = Some(rfc3339(now));
                }
                Ok(())
            });
        }
        Ok(Identity {
            name: record.name,
            scopes: record
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
        })
    }

    /// The tokens not revoked.
    pub fn list(&self) -> Vec<TokenRecord> {
        self.current()
            .into_iter()
            .filter(|r| r.revoked_at.is_none())
            .collect()
    }

    /// Creates a token; returns it (the only time it exists outside the
    /// caller) with its record.
    pub fn create(
        &self,
        name: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
    ) -> Result<(String, TokenRecord), TokenError> {
        if !is_valid_name(name) || name == BOOTSTRAP_NAME {
            return Err(TokenError::Invalid(format!(
                "invalid token name {name:?}: use 1-64 of A-Z a-z 0-9 _ - (not \"admin\", the bootstrap token's)"
            )));
        }
        if scopes.is_empty() {
            return Err(TokenError::Invalid(
                "a token needs at least one scope: admin, read, deploy:* or deploy:<service>"
                    .into(),
            ));
        }
        for scope in scopes {
            Scope::parse(scope).map_err(TokenError::Invalid)?;
        }
        if expires_in.is_some_and(|d| d.is_zero()) {
            return Err(TokenError::Invalid(
                "a token's lifetime must be more than 0 (like 90d or 12h); omit it for a token \
                 that never expires"
                    .into(),
            ));
        }
        // `--scope read --scope read` is one scope.
        let mut unique: Vec<String> = Vec::with_capacity(scopes.len());
        for scope in scopes {
            if !unique.contains(scope) {
                unique.push(scope.clone());
            }
        }
        let scopes = unique;
        let mut random = [0u8; 20];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
            .context("no randomness for a token")?;
        let token = format!("ph_{}", hex::encode(random));
        let now = SystemTime::now();
        let record = TokenRecord {
            name: name.to_string(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            scopes,
            created_at: rfc3339(now),
            expires_at: expires_in.map(|d| rfc3339(now + d)),
            last_used_at: None,
            revoked_at: None,
        };
        let added = record.clone();
        self.change(move |records| {
            // A revoked token's name is free again (its tombstone goes).
            records.retain(|r| r.name != added.name || r.revoked_at.is_none());
            if records.iter().any(|r| r.name == added.name) {
                return Err(TokenError::Conflict(format!(
                    "a token named {:?} exists; revoke it first",
                    added.name
                )));
            }
            records.push(added);
            Ok(())
        })?;
        Ok((token, record))
    }

    /// Revokes a token by name: it is refused at once everywhere after
    /// (as "revoked"), and no longer listed; its name may be reused.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let now = rfc3339(SystemTime::now());
        self.change(|records| {
            match records
                .iter_mut()
                .find(|r| r.name == name && r.revoked_at.is_none())
            {
                Some(record) => {
                    record.revoked_at = Some(now);
                    Ok(())
                }
                None => Err(TokenError::NotFound(format!("no token named {name:?}"))),
            }
        })
    }

    /// Read-modify-write of the file under its flock.
    fn change(
        &self,
        edit: impl FnOnce(&mut Vec<TokenRecord>) -> Result<(), TokenError>,
    ) -> Result<(), TokenError> {
        let lock_path = self.root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own; released when `lock` closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(anyhow::Error::new(std::io::Error::last_os_error())
                .context(format!("cannot lock {}", lock_path.display()))
                .into());
        }
        let mut records = self.read_file()?;
        edit(&mut records)?;
        let path = self.path();
        let tmp = self
            .root
            .join(format!("{TOKENS_FILE}.{}.tmp", unique_suffix()));
        let json = serde_json::to_vec_pretty(&records).context("cannot encode tokens")?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e)
                .context(format!("cannot write {}", path.display()))
                .into());
        }
        fsync_dir(&self.root)?;
        // The next read sees the new file (its stamp changed).
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant() {
        let web = Scope::parse("deploy:web").unwrap();
        let any = Scope::parse("deploy:*").unwrap();
        let read = Scope::parse("read").unwrap();
        let admin = Scope::parse("admin").unwrap();
        assert!(web.grants(&web) && web.grants(&read));
        assert!(!web.grants(&Scope::Deploy(Some("api".into()))));
        assert!(any.grants(&web) && !any.grants(&admin));
        assert!(!read.grants(&web) && !read.grants(&admin));
        assert!(admin.grants(&web) && admin.grants(&admin));
        assert!(Scope::parse("deploy:").is_err() && Scope::parse("write").is_err());
        assert_eq!(web.to_string(), "deploy:web");
    }

    #[test]
    fn create_identify_revoke_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path());
        let (token, _) = store.create("ci", &["deploy:web".into()], None).unwrap();
        assert!(matches!(
            store.create("ci", &["read".into()], None),
            Err(TokenError::Conflict(_))
        ));
        let id = store.identify(&token).unwrap();
        assert_eq!(id.name, "ci");
        assert!(id.require(&Scope::Deploy(Some("web".into()))).is_ok());
        let refusal = id.require(&Scope::Admin).unwrap_err();
        assert!(refusal.contains("lacks scope admin"), "{refusal}");
        assert_eq!(store.identify("ph_wrong").unwrap_err(), Refusal::Unknown);
        let raw = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!raw.contains(&token) && raw.contains("lastUsedAt"));
        store.revoke("ci").unwrap();
        let refusal = store.identify(&token).unwrap_err();
        assert!(matches!(refusal, Refusal::Revoked { .. }), "{refusal:?}");
        assert!(refusal.message().contains("revoked"));
        assert!(store.list().iter().all(|r| r.name != "ci"));
        assert!(matches!(store.revoke("ci"), Err(TokenError::NotFound(_))));
        // The name is free again; the old token stays refused.
        let (again, _) = store.create("ci", &["read".into()], None).unwrap();
        assert!(store.identify(&again).is_ok());
        assert_eq!(store.identify(&token).unwrap_err(), Refusal::Unknown);
        assert!(matches!(
            store.create("zero", &["read".into()], Some(Duration::ZERO)),
            Err(TokenError::Invalid(_))
        ));
        let (old, _) = store
            .create("old", &["read".into()], Some(Duration::from_nanos(1)))
            .unwrap();
        let refusal = store.identify(&old).unwrap_err();
        assert!(matches!(refusal, Refusal::Expired { .. }), "{refusal:?}");
        assert!(refusal.message().contains("expired"));
        let (_, record) = store
            .create(
                "twice",
                &["read".into(), "read".into(), "deploy:web".into()],
                None,
            )
            .unwrap();
        assert_eq!(record.scopes, ["read", "deploy:web"]);
    }
}
