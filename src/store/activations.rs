//! The activation log: every change of a service's `current`, on the volume.
//!
//! ```text
//! <root>/<service>/.activations.jsonl     one JSON object per line, oldest first
//! <root>/<service>/.activations.1.jsonl   the previous generation (after rotation)
//! ```
//!
//! Each line is an [`Activation`] (`when`, `from`, `to`, `why`, `actor`).
//! Appends are made under the service lock (the `flock` shared by every
//! server process on the volume), written with `O_APPEND` and `fdatasync`ed
//! before the caller answers, so a flip that was acknowledged is in the log
//! after a crash, and two replicas on one volume write one timeline. When the
//! file reaches the size limit it is renamed to `.activations.1.jsonl`
//! (replacing the older generation), so the log stays bounded at about twice
//! the limit. A torn or foreign line is skipped when reading.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::flip::fsync_dir;
use super::Layout;

/// The log's file name inside the service directory.
pub const LOG_FILE: &str = ".activations.jsonl";
/// The rotated generation.
pub const ROTATED_FILE: &str = ".activations.1.jsonl";
/// Default size at which the log rotates (1 MiB ≈ 6 000 activations).
pub const DEFAULT_LIMIT: u64 = 1 << 20;

/// One change of `current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// RFC 3339 UTC with nanoseconds (fixed width: sorts as text).
    pub when: String,
    /// What was live before (`null` for a service's first activation).
    pub from: Option<String>,
    /// What is live from `when` on.
    pub to: String,
    /// `deploy`, `activate`, `rollback`, `verify-rollback` (a verified
    /// deploy that failed its check and went back) or `external` (a flip
    /// made outside the API: an operator's `mv -T`, seen by the watcher).
    pub why: String,
    /// The token name that made the change; `external` for external flips.
    pub actor: String,
}

fn log_path(layout: &Layout, service: &str) -> PathBuf {
    layout.service_dir(service).join(LOG_FILE)
}

/// Appends `entry`, rotating first when the log is at `limit` bytes.
/// The caller holds the service lock. Durable when it returns.
pub fn append(layout: &Layout, service: &str, entry: &Activation, limit: u64) -> Result<()> {
    let dir = layout.service_dir(service);
    let path = log_path(layout, service);
    let mut size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if size >= limit {
        std::fs::rename(&path, dir.join(ROTATED_FILE))
            .with_context(|| format!("cannot rotate {}", path.display()))?;
        size = 0;
    }
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut line = Vec::new();
    if size > 0 && !ends_with_newline(&path, size) {
        line.push(b'\n'); // after a torn line (a crash mid-write): start a fresh one
    }
    serde_json::to_writer(&mut line, entry).context("cannot encode an activation")?;
    line.push(b'\n');
    // One write(2) of one line with O_APPEND: never interleaved.
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    if created {
        fsync_dir(&dir)?;
    }
    Ok(())
}

fn ends_with_newline(path: &std::path::Path, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut last, size - 1))
        .map_or(true, |()| last[0] == b'\n')
}

/// The whole log, oldest first (the rotated generation, then the current one).
pub fn read(layout: &Layout, service: &str) -> Result<Vec<Activation>> {
    let dir = layout.service_dir(service);
    let mut all = Vec::new();
    for name in [ROTATED_FILE, LOG_FILE] {
        let path = dir.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        for line in io::BufReader::new(file).lines() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            if let Ok(entry) = serde_json::from_str::<Activation>(&line) {
                all.push(entry);
            }
        }
    }
    Ok(all)
}

/// The deployment live at `at` (RFC 3339): the `to` of the last change at
/// or before it, with that change; `None` when nothing was live yet.
pub fn live_at(log: &[Activation], at: SystemTime) -> Option<&Activation> {
    let at = crate::store::deployments::rfc3339(at);
    log.iter().rev().find(|entry| entry.when <= at)
}

/// Now, in the log's format.
pub fn now() -> String {
    crate::store::deployments::rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(when: u64, to: &str) -> Activation {
        Activation {
            when: crate::store::deployments::rfc3339(UNIX_EPOCH + Duration::from_secs(when)),
            from: None,
            to: to.to_string(),
            why: "deploy".into(),
            actor: "admin".into(),
        }
    }

    #[test]
    fn appends_rotates_and_answers_what_was_live() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir(dir.path().join("web")).unwrap();
        assert!(read(&layout, "web").unwrap().is_empty());
        let (a, b, c) = (entry(100, "a"), entry(200, "b"), entry(300, "c"));
        let limit = serde_json::to_vec(&a).unwrap().len() as u64 * 2 + 2;
        append(&layout, "web", &a, limit).unwrap();
        append(&layout, "web", &b, limit).unwrap();
        // At the limit: rotated before the third append.
        append(&layout, "web", &c, limit).unwrap();
        assert!(dir.path().join("web").join(ROTATED_FILE).exists());
        let log = read(&layout, "web").unwrap();
        assert_eq!(log, vec![a.clone(), b.clone(), c.clone()]);
        // A fourth rotation drops the oldest generation: bounded.
        append(&layout, "web", &entry(400, "d"), limit).unwrap();
        append(&layout, "web", &entry(500, "e"), limit).unwrap();
        let ids: Vec<_> = read(&layout, "web")
            .unwrap()
            .into_iter()
            .map(|e| e.to)
            .collect();
        assert_eq!(ids, ["c", "d", "e"]);
        // A torn last line is skipped.
        let path = dir.path().join("web").join(LOG_FILE);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"when\":\"2").unwrap();
        assert_eq!(read(&layout, "web").unwrap().len(), 3);
        // … and the next append starts on a line of its own.
        append(&layout, "web", &entry(600, "f"), 1 << 20).unwrap();
        assert_eq!(read(&layout, "web").unwrap().len(), 4);

        let log = vec![a, b, c];
        let at = |s| live_at(&log, UNIX_EPOCH + Duration::from_secs(s)).map(|e| e.to.as_str());
        assert_eq!(at(50), None);
        assert_eq!(at(100), Some("a"));
        assert_eq!(at(250), Some("b"));
        assert_eq!(at(1000), Some("c"));
    }
}
