//! The activation log: every change of a service's `current`, on the volume.
//!
//! ```text
//! <root>/<service>/.activations.jsonl     one JSON object per line, oldest first
//! <root>/<service>/.activations.1.jsonl   the previous generation (after rotation)
//! ```
//!
//! Each line is an [`Activation`] (`when`, `from`, `to`, `why`, `actor`,
//! and `toCreatedAt`: the `createdAt` of the deployment `to` names, so an
//! entry speaks of that deployment, not of whatever later reuses its id).
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
    /// The `createdAt` of the deployment `to` named when it became live
    /// ([`crate::store::deployments::created_at`]): a deployment deleted
    /// and made again under the same id is another deployment. Absent in
    /// entries written before it was recorded (then the time of the entry
    /// is compared with the deployment's `createdAt` instead).
    #[serde(
        rename = "toCreatedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub to_created_at: Option<String>,
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

/// One stretch of time a deployment was live, from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    id: String,
    /// The deployment's `createdAt` as recorded with the activation.
    created_at: Option<String>,
    /// When it became live; `None` when the log does not say (it names the
    /// deployment only as the `from` of a later entry).
    start: Option<SystemTime>,
    /// When it stopped being live; `None` while the log still has it live.
    end: Option<SystemTime>,
}

/// Until when a deployment was live, as far as the log knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveUntil {
    /// The log's last entry still has it live (a flip not logged yet: the
    /// watcher is about to record it, or the append failed).
    Still,
    /// It stopped being live at this instant (the next flip).
    Ended(SystemTime),
}

impl LiveUntil {
    /// Whether it was live less than `window` before `now` (a clock that
    /// went back counts as within).
    pub fn within(self, window: std::time::Duration, now: SystemTime) -> bool {
        match self {
            LiveUntil::Still => true,
            LiveUntil::Ended(end) => now.duration_since(end).map_or(true, |ago| ago < window),
        }
    }
}

/// Which deployments have been live and until when: the activation log
/// read as spans of time, one per activation, so that skew protection and
/// rollback only ever reach deployments that were served as current.
///
/// A span belongs to a deployment when the ids match and either the entry
/// recorded the deployment's `createdAt` (`toCreatedAt`, compared exactly)
/// or, for older entries, the span started no earlier than the deployment
/// was created. So an id deleted and reused for other content does not
/// inherit its predecessor's history.
#[derive(Debug, Clone, Default)]
pub struct History {
    spans: Vec<Span>,
}

impl History {
    /// Reads the spans out of `log` (oldest first). Entries whose `when`
    /// cannot be parsed are skipped.
    pub fn from_log(log: &[Activation]) -> History {
        let mut spans: Vec<Span> = Vec::new();
        let mut open: Option<usize> = None;
        for entry in log {
            let Ok(when) = humantime::parse_rfc3339_weak(&entry.when) else {
                continue;
            };
            let closed = open.take().map(|i| {
                spans[i].end = Some(when);
                spans[i].id.clone()
            });
            if let Some(from) = &entry.from {
                if closed.as_deref() != Some(from.as_str()) {
                    // The log names it as live just before, without its start
                    // (it began before the log, or a flip went unlogged).
                    spans.push(Span {
                        id: from.clone(),
                        created_at: None,
                        start: None,
                        end: Some(when),
                    });
                }
            }
            spans.push(Span {
                id: entry.to.clone(),
                created_at: entry.to_created_at.clone(),
                start: Some(when),
                end: None,
            });
            open = Some(spans.len() - 1);
        }
        History { spans }
    }

    /// Until when the deployment `id` created at `created_at` (RFC 3339, as
    /// [`crate::store::deployments::created_at`] gives it) was live; `None`
    /// when it never was (or its `createdAt` cannot be read).
    pub fn live_until(&self, id: &str, created_at: &str) -> Option<LiveUntil> {
        let created = humantime::parse_rfc3339_weak(created_at).ok()?;
        let mut latest: Option<LiveUntil> = None;
        for span in self.spans.iter().filter(|s| s.id == id) {
            let belongs = match (&span.created_at, span.start, span.end) {
                (Some(recorded), _, _) => recorded == created_at,
                (None, Some(start), _) => start >= created,
                (None, None, Some(end)) => end > created,
                (None, None, None) => false,
            };
            if !belongs {
                continue;
            }
            let until = span.end.map_or(LiveUntil::Still, LiveUntil::Ended);
            latest = Some(match (latest, until) {
                (Some(LiveUntil::Still), _) | (_, LiveUntil::Still) => LiveUntil::Still,
                (Some(LiveUntil::Ended(a)), LiveUntil::Ended(b)) => LiveUntil::Ended(a.max(b)),
                (None, until) => until,
            });
        }
        latest
    }

    /// Whether the deployment `id` created at `created_at` was ever live.
    pub fn was_live(&self, id: &str, created_at: &str) -> bool {
        self.live_until(id, created_at).is_some()
    }
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
            to_created_at: None,
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

    fn at(secs: u64) -> String {
        crate::store::deployments::rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn flip(when: u64, from: Option<&str>, to: &str, created: Option<u64>) -> Activation {
        Activation {
            from: from.map(str::to_string),
            to_created_at: created.map(at),
            ..entry(when, to)
        }
    }

    #[test]
    fn history_knows_what_was_live_and_until_when() {
        // v1 (created 90) live at 100; v2 (created 150) staged, never live;
        // v3 (created 190) live at 200; v1 again at 300 (a rollback).
        let log = vec![
            flip(100, None, "v1", Some(90)),
            flip(200, Some("v1"), "v3", Some(190)),
            flip(300, Some("v3"), "v1", Some(90)),
        ];
        let history = History::from_log(&log);
        assert_eq!(history.live_until("v1", &at(90)), Some(LiveUntil::Still));
        assert_eq!(
            history.live_until("v3", &at(190)),
            Some(LiveUntil::Ended(UNIX_EPOCH + Duration::from_secs(300)))
        );
        assert_eq!(history.live_until("v2", &at(150)), None, "never live");
        // v3 deleted, and another deployment made under its id at 400:
        // the log's v3 is not that one.
        assert_eq!(history.live_until("v3", &at(400)), None);
        assert!(!history.was_live("v3", "not a time"));

        let window = Duration::from_secs(60);
        let ended = LiveUntil::Ended(UNIX_EPOCH + Duration::from_secs(300));
        assert!(ended.within(window, UNIX_EPOCH + Duration::from_secs(359)));
        assert!(!ended.within(window, UNIX_EPOCH + Duration::from_secs(360)));
        assert!(ended.within(window, UNIX_EPOCH + Duration::from_secs(10)));
        assert!(LiveUntil::Still.within(Duration::ZERO, UNIX_EPOCH));
    }

    #[test]
    fn history_of_entries_without_created_at_compares_times() {
        // Written before `toCreatedAt` was: the log begins with `a` live
        // (only known as a `from`), then b and c.
        let log = vec![
            flip(200, Some("a"), "b", None),
            flip(300, Some("b"), "c", None),
        ];
        let history = History::from_log(&log);
        let until = |secs| Some(LiveUntil::Ended(UNIX_EPOCH + Duration::from_secs(secs)));
        assert_eq!(history.live_until("a", &at(50)), until(200));
        assert_eq!(history.live_until("b", &at(150)), until(300));
        assert_eq!(history.live_until("c", &at(250)), Some(LiveUntil::Still));
        // Made after the span it would claim: another deployment.
        assert_eq!(history.live_until("a", &at(250)), None);
        assert_eq!(history.live_until("b", &at(250)), None);
        // An unlogged flip: the log's `from` disagrees with what it had live.
        let log = vec![flip(100, None, "a", None), flip(200, Some("x"), "b", None)];
        let history = History::from_log(&log);
        assert_eq!(history.live_until("a", &at(50)), until(200));
        assert_eq!(history.live_until("x", &at(50)), until(200));
    }
}
