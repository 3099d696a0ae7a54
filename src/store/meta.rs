//! The two files that describe a deployment, written once at ingest.
//!
//! * `.deployer-meta.json`: id, creation time, file count, bytes, digest, source.
//! * `.deployer-manifest`: one `"<sha256 hex>  <path>"` line per file, the
//!   format of `sha256sum`, so an operator can check a deployment with
//!   `cd <dir> && sha256sum -c .deployer-manifest`. The index reads ETags from
//!   it instead of hashing every file again on each flip.
//!
//! Both start with a dot, so the public server never serves them.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const META_FILE: &str = ".deployer-meta.json";
pub const MANIFEST_FILE: &str = ".deployer-manifest";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentMeta {
    pub id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub files: u64,
    pub bytes: u64,
    /// SHA-256 over the sorted manifest; its first 12 hex digits are the default id.
    pub digest: String,
    /// Where the upload came from ("upload", "migrate:<container>", ...).
    #[serde(default)]
    pub source: String,
    /// Precompressed siblings generated at deploy time (relative paths):
    /// served only as an encoding of their base file, never as a URL of
    /// their own, since the user never uploaded them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<String>,
    /// Who deployed it, why, from which commit.
    #[serde(flatten)]
    pub provenance: Provenance,
}

/// Who deployed a deployment and from what: the audit trail's fields
/// (the deployer's "timestamp, user, deployment id, commit/manifest").
/// Every field is optional: a deployment made by hand has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// Free text (`deploy --message`), at most [`MAX_MESSAGE`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The source commit (`deploy --commit`, or `git rev-parse HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The git branch the commit was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// True when the work tree had uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// `deploy --label k=v` pairs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The name of the token that deployed it (`admin` for the bootstrap token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// Longest `message`, in characters (Unicode scalar values, as JSON Schema's `maxLength` counts).
pub const MAX_MESSAGE: usize = 4096;
/// Longest commit, branch, label key or label value, in characters.
pub const MAX_FIELD: usize = 256;
/// Most labels on one deployment.
pub const MAX_LABELS: usize = 32;

impl Provenance {
    /// Checks the sizes and characters a client sent; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        // Tab is text; any other control character (C0, DEL, C1) would be
        // acted on by a terminal (`list`) or carried raw into HTML.
        let control = |value: &str| value.chars().find(|c| c.is_control() && *c != '\t');
        let short = |name: &str, value: &str| -> Result<(), String> {
            if value.chars().count() > MAX_FIELD {
                return Err(format!("{name} must be at most {MAX_FIELD} characters"));
            }
            if let Some(c) = control(value) {
                return Err(format!(
                    "{name} holds the control character U+{:04X}: only printable text (and tab) \
                     is stored",
                    c as u32
                ));
            }
            Ok(())
        };
        if let Some(message) = &self.message {
            if message.chars().count() > MAX_MESSAGE {
                return Err(format!("message is over {MAX_MESSAGE} characters"));
            }
            // A message may span lines (a commit message); `list` and the
            // dashboard show its first.
            if let Some(c) = message
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\t' | '\n'))
            {
                return Err(format!(
                    "message holds the control character U+{:04X}: only printable text, tab \
                     and line feed are stored",
                    c as u32
                ));
            }
        }
        for (name, value) in [("commit", &self.commit), ("branch", &self.branch)] {
            if let Some(value) = value {
                short(name, value)?;
            }
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} labels"));
        }
        for (key, value) in &self.labels {
            if key.is_empty() {
                return Err("a label needs a key: label=<key>=<value>".to_string());
            }
            short("a label key", key)?;
            short("a label value", value)?;
        }
        Ok(())
    }
}

impl DeploymentMeta {
    /// Reads a deployment's metadata; `Ok(None)` when the file is absent
    /// (a deployment made by hand with the seed runbook has none).
    pub fn read(dir: &Path) -> io::Result<Option<DeploymentMeta>> {
        match std::fs::read(dir.join(META_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Path (relative, `/`-separated) → SHA-256 hex of the file's content.
pub type Manifest = HashMap<String, String>;

/// Reads `.deployer-manifest`; an absent file gives an empty manifest and a
/// malformed line is skipped (the index then hashes that file itself).
pub fn read_manifest(dir: &Path) -> io::Result<Manifest> {
    let file = match std::fs::File::open(dir.join(MANIFEST_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::new()),
        Err(e) => return Err(e),
    };
    parse_manifest(io::BufReader::new(file))
}

/// Parses `sha256sum`-format lines (`<hex>  <path>`).
pub fn parse_manifest(reader: impl BufRead) -> io::Result<Manifest> {
    let mut manifest = Manifest::new();
    for line in reader.lines() {
        let line = line?;
        let Some((digest, path)) = line.split_once("  ") else {
            continue;
        };
        if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            manifest.insert(path.to_string(), digest.to_ascii_lowercase());
        }
    }
    Ok(manifest)
}

/// Writes the manifest, sorted by path, in `sha256sum` format.
pub fn write_manifest(mut out: impl Write, entries: &[(String, String)]) -> io::Result<()> {
    for (path, digest) in entries {
        writeln!(out, "{digest}  {path}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            ("a b/c.txt".to_string(), "ab".repeat(32)),
            ("index.html".to_string(), "CD".repeat(32)),
        ];
        let file = std::fs::File::create(dir.path().join(MANIFEST_FILE)).unwrap();
        write_manifest(file, &entries).unwrap();
        let manifest = read_manifest(dir.path()).unwrap();
        assert_eq!(manifest.len(), 2);
        assert_eq!(manifest["a b/c.txt"], "ab".repeat(32));
        assert_eq!(manifest["index.html"], "cd".repeat(32));
        assert!(read_manifest(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
