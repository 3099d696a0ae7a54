//! Provenance a deploy sends with its upload: `--message`, `--commit`,
//! `--label k=v`, and — when the source directory is inside a git work
//! tree — the commit, branch and a dirty flag read from `git` itself.
//!
//! Sent as query parameters of the upload (`message=…&commit=…&label=k%3Dv`),
//! form-urlencoded; the server stores them in `.deployer-meta.json`.

use std::path::Path;
use std::process::Command;

/// What the deployer said, plus what git knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub message: Option<String>,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub dirty: Option<bool>,
    pub labels: Vec<(String, String)>,
}

impl Provenance {
    /// The upload's query parameters, already form-urlencoded.
    pub fn query(&self) -> Vec<String> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(message) = &self.message {
            query.append_pair("message", message);
        }
        if let Some(commit) = &self.commit {
            query.append_pair("commit", commit);
        }
        if let Some(branch) = &self.branch {
            query.append_pair("branch", branch);
        }
        if let Some(dirty) = self.dirty {
            query.append_pair("dirty", if dirty { "true" } else { "false" });
        }
        for (key, value) in &self.labels {
            query.append_pair("label", &format!("{key}={value}"));
        }
        let query = query.finish();
        if query.is_empty() {
            Vec::new()
        } else {
            vec![query]
        }
    }

    /// Fills commit, branch and dirty from git when `source` is a
    /// directory inside a work tree (what was given explicitly wins).
    /// No git, or not a work tree: nothing is filled.
    pub fn fill_from_git(&mut self, source: &Path) {
        if !source.is_dir() {
            return;
        }
        let git = |args: &[&str]| -> Option<String> {
            let output = Command::new("git")
                .arg("-C")
                .arg(source)
                .args(args)
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        };
        if git(&["rev-parse", "--is-inside-work-tree"]).as_deref() != Some("true") {
            return;
        }
        let Some(head) = git(&["rev-parse", "HEAD"]) else {
            return; // a repository without commits
        };
        if self.commit.is_none() {
            self.commit = Some(head);
            if self.dirty.is_none() {
                // Only what is under the deployed directory counts.
                self.dirty = git(&["status", "--porcelain", "--", "."]).map(|s| !s.is_empty());
            }
        }
        if self.branch.is_none() {
            self.branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
        }
    }
}

/// Parses `k=v` (for `--label`).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded() {
        let p = Provenance {
            message: Some("fix & ship: 100%".into()),
            labels: vec![("ticket".into(), "A=1".into())],
            ..Default::default()
        };
        assert_eq!(
            p.query(),
            vec!["message=fix+%26+ship%3A+100%25&label=ticket%3DA%3D1".to_string()]
        );
        assert!(Provenance::default().query().is_empty());
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("=x").is_err());
    }
}
