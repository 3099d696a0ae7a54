//! A site's own rules, shipped in its deployment: `_redirects`,
//! `_headers`, and the immutable-caching rule for fingerprinted files.
//!
//! The two files use the plain-text formats Netlify, Cloudflare Pages and
//! GitLab Pages share ([`redirects`], [`headers`]). They are validated at
//! upload (an error names the file, the line and the problem), compiled
//! into the deployment's index when it is built, and so apply atomically
//! with the flip and go back with a rollback. The request path only looks
//! compiled rules up: no parsing, no pattern building per request.
//! Paths in both files are relative to the site's root, whether it is
//! served at `/s/<service>/`, under host routing, or as a preview.

pub mod headers;
pub mod immutable;
pub mod pattern;
pub mod redirects;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use headers::HeaderRules;
pub use redirects::Redirects;

/// Upper bounds on one deployment's rules; the defaults are Cloudflare
/// Pages' (2 000 static and 100 dynamic redirects, 1 000 characters a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `_redirects` rules without `*` or `:placeholders`.
    pub max_static_redirects: usize,
    /// `_redirects` rules with `*` or `:placeholders`.
    pub max_dynamic_redirects: usize,
    /// Characters in one line of either file.
    pub max_rule_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_static_redirects: 2_000,
            max_dynamic_redirects: 100,
            max_rule_chars: 1_000,
        }
    }
}

impl Limits {
    /// No limit: for indexing deployments already checked at upload (the
    /// configured limits may have been lowered since).
    pub fn unlimited() -> Limits {
        Limits {
            max_static_redirects: usize::MAX / 8,
            max_dynamic_redirects: usize::MAX / 8,
            max_rule_chars: usize::MAX / 8,
        }
    }
}

impl Limits {
    /// True for [`Limits::unlimited`]: the rules of a deployment already
    /// accepted at upload are being indexed, and checks added since (a
    /// `_redirects` destination that leaves the site or loops, issue #21)
    /// do not take its rules away.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::unlimited()
    }
}

/// A line of a rule file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// `_redirects` or `_headers`.
    pub file: &'static str,
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}, line {}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for RuleError {}

/// The meaningful lines of a rule file, numbered from 1: blank and `#`
/// comment lines are skipped; a line over `max_rule_chars` is an error. A
/// leading UTF-8 byte order mark (what Windows editors save) is not part of
/// the first line.
pub(crate) fn numbered_lines<'t>(
    text: &'t str,
    file: &'static str,
    limits: &Limits,
) -> impl Iterator<Item = Result<(usize, &'t str), RuleError>> {
    let max = limits.max_rule_chars;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(move |(i, line)| {
            if line.chars().count() > max {
                return Err(RuleError {
                    file,
                    line: i + 1,
                    message: format!("line is longer than {max} characters"),
                });
            }
            Ok((i + 1, line))
        })
        .filter(|item| {
            item.as_ref().map_or(true, |(_, line)| {
                let trimmed = line.trim();
                !trimmed.is_empty() && !trimmed.starts_with('#')
            })
        })
}

/// The compiled rules of one deployment (empty when it has no rule files).
#[derive(Debug, Clone, Default)]
pub struct SiteRules {
    pub redirects: Redirects,
    pub headers: HeaderRules,
}

/// True for the top-level paths that configure the site and are never
/// served as files.
pub fn is_rule_file(rel: &str) -> bool {
    rel == redirects::FILE || rel == headers::FILE
}

impl SiteRules {
    /// Reads and compiles `_redirects` and `_headers` at the top of `dir`;
    /// a missing file is no rules.
    pub fn load(dir: &Path, limits: &Limits) -> Result<SiteRules, RuleError> {
        let max_bytes = (limits
            .max_static_redirects
            .saturating_add(limits.max_dynamic_redirects)
            .saturating_add(1))
        .saturating_mul(limits.max_rule_chars.saturating_mul(4).saturating_add(1))
        .min(64 << 20) as u64;
        let read = |file: &'static str| -> Result<Option<String>, RuleError> {
            let error = |message: String| RuleError {
                file,
                line: 0,
                message,
            };
            let path = dir.join(file);
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(error(format!("cannot read: {e}"))),
                Ok(m) if !m.is_file() => return Err(error("must be a regular file".to_string())),
                Ok(_) => {}
            }
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
                .map_err(|e| error(format!("cannot read: {e}")))?;
            if bytes.len() as u64 > max_bytes {
                return Err(error(format!("is larger than {max_bytes} bytes")));
            }
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| error("is not UTF-8 text".to_string()))
        };
        let redirects = match read(redirects::FILE)? {
            Some(text) => Redirects::parse(&text, limits)?,
            None => Redirects::default(),
        };
        let headers = match read(headers::FILE)? {
            Some(text) => HeaderRules::parse(&text, limits)?,
            None => HeaderRules::default(),
        };
        Ok(SiteRules { redirects, headers })
    }

    pub fn is_empty(&self) -> bool {
        self.redirects.is_empty() && self.headers.is_empty()
    }

    /// The rules as JSON for the admin API and the dashboard.
    pub fn describe(&self) -> serde_json::Value {
        let redirects: Vec<_> = self
            .redirects
            .rules()
            .iter()
            .map(|r| {
                serde_json::json!({"line": r.line, "from": r.from.text(), "to": r.to,
                                   "status": r.status(), "force": r.force})
            })
            .collect();
        let headers: Vec<_> = self
            .headers
            .blocks()
            .iter()
            .map(|b| {
                let set: Vec<String> = b
                    .set
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
                    .collect();
                let remove: Vec<&str> = b.remove.iter().map(|n| n.as_str()).collect();
                serde_json::json!({"line": b.line, "path": b.pattern.text(), "set": set, "remove": remove})
            })
            .collect();
        serde_json::json!({"redirects": redirects, "headers": headers})
    }
}
