//! Server configuration: one struct, filled in layers.
//!
//! Precedence is flag > environment > TOML file > built-in default, as the SPEC
//! says. Flags and environment variables are parsed by clap in `main.rs` into
//! [`Overrides`]; the file is read here. SIGHUP calls [`Config::load`] again with
//! the same overrides, so a re-read never loses what the command line said.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// How access-log and diagnostic lines are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How external changes to `<service>/current` are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// inotify through the `notify` crate (falls back to polling when unavailable).
    Notify,
    /// Poll every service's `current` link twice a second.
    Poll,
    /// Never watch; only flips made by this process and SIGHUP rescans apply.
    Off,
}

/// Which I/O path reads large files for the public server (`io_backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackendChoice {
    /// io_uring when the kernel and seccomp allow it, else epoll.
    Auto,
    /// io_uring or refuse to start.
    Uring,
    /// Memory maps and the blocking pool under tokio's epoll runtime.
    Epoll,
}

/// Per-service settings from the `[services.<name>]` tables of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Answer unknown extension-less paths with the deployment's `index.html`
    /// (single-page applications with client-side routing).
    #[serde(default)]
    pub spa_fallback: bool,
}

/// Default of `skew_window`: 12 hours. Long enough for a tab left open
/// through a working day to still load its lazy chunks after a deploy
/// (Vercel lets a project choose 4 hours to 30 days; OpenNext's Cloudflare
/// adapter keeps 7 days), short enough that a file removed from a site
/// stops answering the same day even under a fingerprinted name.
pub const DEFAULT_SKEW_WINDOW: Duration = Duration::from_secs(12 * 3600);

/// `skew_window`: a duration string (`"12h"`, `"90m"`, `"0s"`, humantime's
/// syntax) or a whole number of seconds.
fn parse_skew_window(value: &toml::Value) -> Result<Duration> {
    match value {
        toml::Value::String(text) => humantime::parse_duration(text).with_context(|| {
            format!("skew_window = {text:?}: expected a duration like \"12h\" or \"30m\"")
        }),
        toml::Value::Integer(secs) => u64::try_from(*secs)
            .map(Duration::from_secs)
            .map_err(|_| anyhow::anyhow!("skew_window = {secs}: must not be negative")),
        other => bail!("skew_window = {other}: expected a duration like \"12h\" or seconds"),
    }
}

/// The effective configuration of a running server.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub keep: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Write the access log at all (`access_log`, `--access-log on|off`).
    pub access_log: bool,
    /// Log 1 of every N requests answered 1xx–3xx (each worker thread
    /// counts its own); 4xx and 5xx are always logged. 1 = every request.
    pub access_log_sample: u64,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub upload_idle_timeout: Duration,
    /// Host routing: `Host: <service>.<host_suffix>` serves `<service>` at
    /// `/`, `<id>--<service>.<host_suffix>` its deployment `<id>`
    /// ([`crate::serve::host_routing`]); `None` = off.
    pub host_suffix: Option<String>,
    pub cache_control_html: String,
    pub cache_control_assets: String,
    pub memory_file_max_bytes: u64,
    pub memory_budget_bytes: u64,
    pub max_upload_bytes: u64,
    pub max_files: u64,
    pub watch: WatchMode,
    /// Async worker threads; 0 = one per CPU the process may use (cgroup quota included).
    pub workers: usize,
    /// How large files are read: see [`IoBackendChoice`].
    pub io_backend: IoBackendChoice,
    /// Refuse (507) an upload that would leave less than this many bytes
    /// free on the volume; 0 turns the check off.
    pub min_free_bytes: u64,
    /// URLs that receive every event as a signed JSON POST ([`crate::admin::webhooks`]).
    pub webhooks: Vec<String>,
    /// The HMAC-SHA256 key of webhook signatures.
    pub webhook_secret: Option<String>,
    /// Who may read retained deployments at `/s/<service>@<id>/`
    /// (`None`: signed when an admin token is set, else public); see
    /// [`crate::previews`].
    pub previews: Option<crate::previews::Mode>,
    /// Public base URL the dashboard's preview links use (e.g.
    /// `https://site.example.com`); default: the admin host, public port.
    pub public_url: Option<String>,
    /// Answer a current-deployment miss for a fingerprinted non-HTML file
    /// from a retained deployment that was live within `skew_window`.
    pub skew_protection: bool,
    /// How long after a deployment stopped being live its fingerprinted
    /// assets still answer misses (skew protection); `skew_window`, a
    /// duration like `"12h"` or a number of seconds. Zero: never.
    pub skew_window: Duration,
    /// Generate `.br`/`.gz` siblings of text files at deploy time.
    pub precompress: bool,
    /// Input bytes compressed per upload at most.
    pub precompress_budget_bytes: u64,
    pub services: BTreeMap<String, ServiceConfig>,
    /// Globs (`globset` syntax, relative to a site's root, e.g.
    /// `"fonts/**"`) of files served as immutable in addition to the
    /// fingerprint rule of `site::rules::immutable` (its safety rule still applies).
    pub immutable_paths: Vec<String>,
    /// `/about.html` answers 301 to `/about` (clean URLs' canonical form).
    pub clean_urls_redirect: bool,
    /// Limits on a deployment's `_redirects` / `_headers` (checked at upload).
    pub max_static_redirects: usize,
    pub max_dynamic_redirects: usize,
    pub max_rule_chars: usize,
    /// Answer plain keep-alive `GET`/`HEAD`s of files held in memory on
    /// the public port without hyper ([`crate::serve::fast`]); off sends
    /// every request through hyper (`http1_fast_path`, `--http1-fast-path`).
    pub http1_fast_path: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("./data"),
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            admin_token: None,
            keep: 5,
            log_format: LogFormat::Text,
            log_level: "info,notify=warn".to_string(),
            access_log: true,
            access_log_sample: 1,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
            upload_idle_timeout: Duration::from_secs(30),
            host_suffix: None,
            cache_control_html: "no-cache".to_string(),
            cache_control_assets: "public, max-age=300".to_string(),
            memory_file_max_bytes: 64 * 1024,
            memory_budget_bytes: 64 * 1024 * 1024,
            max_upload_bytes: 1024 * 1024 * 1024,
            max_files: 100_000,
            watch: WatchMode::Notify,
            workers: 0,
            io_backend: IoBackendChoice::Auto,
            previews: None,
            min_free_bytes: 0,
            webhooks: Vec::new(),
            webhook_secret: None,
            public_url: None,
            skew_protection: true,
            skew_window: DEFAULT_SKEW_WINDOW,
            precompress: true,
            precompress_budget_bytes: 256 * 1024 * 1024,
            services: BTreeMap::new(),
            immutable_paths: Vec::new(),
            clean_urls_redirect: false,
            max_static_redirects: 2_000,
            max_dynamic_redirects: 100,
            max_rule_chars: 1_000,
            http1_fast_path: true,
        }
    }
}

/// What the command line and environment said; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub keep: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub workers: Option<usize>,
    pub io_backend: Option<IoBackendChoice>,
    /// `serve --watch` / `PROJECT_HTTP_WATCH` (`ensure --watch poll` sets it).
    pub watch: Option<WatchMode>,
    /// `serve --host-suffix` / `PROJECT_HTTP_HOST_SUFFIX`: the file's
    /// `host_suffix`; `Some("")` turns host routing off whatever the file says.
    pub host_suffix: Option<String>,
    /// `serve --access-log on|off` / `PROJECT_HTTP_ACCESS_LOG`.
    pub access_log: Option<bool>,
    /// `serve --access-log-sample N` / `PROJECT_HTTP_ACCESS_LOG_SAMPLE`.
    pub access_log_sample: Option<u64>,
    /// `serve --http1-fast-path on|off` / `PROJECT_HTTP_HTTP1_FAST_PATH`.
    pub http1_fast_path: Option<bool>,
}

/// The TOML file's shape. Every key is optional; unknown keys are errors so a
/// typo does not silently fall back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    root: Option<PathBuf>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    admin_token_file: Option<PathBuf>,
    keep: Option<usize>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    access_log: Option<bool>,
    access_log_sample: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    drain_timeout_secs: Option<u64>,
    upload_idle_timeout_secs: Option<u64>,
    host_suffix: Option<String>,
    cache_control_html: Option<String>,
    cache_control_assets: Option<String>,
    memory_file_max_bytes: Option<u64>,
    memory_budget_bytes: Option<u64>,
    max_upload_bytes: Option<u64>,
    max_files: Option<u64>,
    watch: Option<WatchMode>,
    workers: Option<usize>,
    io_backend: Option<IoBackendChoice>,
    previews: Option<toml::Value>,
    min_free_bytes: Option<u64>,
    webhooks: Option<Vec<String>>,
    webhook_secret: Option<String>,
    public_url: Option<String>,
    skew_protection: Option<bool>,
    skew_window: Option<toml::Value>,
    precompress: Option<bool>,
    precompress_budget_bytes: Option<u64>,
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
    immutable_paths: Option<Vec<String>>,
    clean_urls_redirect: Option<bool>,
    max_static_redirects: Option<usize>,
    max_dynamic_redirects: Option<usize>,
    max_rule_chars: Option<usize>,
    http1_fast_path: Option<bool>,
}

impl Config {
    /// Builds the effective configuration: defaults, then the file, then the
    /// overrides from flags and environment.
    pub fn load(overrides: &Overrides) -> Result<Config> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        let token_from_file = match &file.admin_token_file {
            Some(path) => Some(read_token_file(path)?),
            None => None,
        };
        macro_rules! take {
            ($field:ident) => {
                if let Some(value) = file.$field {
                    config.$field = value;
                }
            };
        }
        take!(root);
        take!(listen);
        take!(admin_listen);
        take!(keep);
        take!(log_format);
        take!(log_level);
        take!(access_log);
        take!(access_log_sample);
        take!(max_connections);
        take!(cache_control_html);
        take!(cache_control_assets);
        take!(memory_file_max_bytes);
        take!(memory_budget_bytes);
        take!(max_upload_bytes);
        take!(max_files);
        take!(watch);
        take!(workers);
        take!(io_backend);
        if let Some(value) = &file.previews {
            config.previews =
                Some(crate::previews::Mode::parse(value).map_err(anyhow::Error::msg)?);
        }
        take!(skew_protection);
        if let Some(value) = &file.skew_window {
            config.skew_window = parse_skew_window(value)?;
        }
        take!(min_free_bytes);
        take!(webhooks);
        config.webhook_secret = file.webhook_secret.filter(|s| !s.is_empty());
        take!(precompress);
        take!(precompress_budget_bytes);
        take!(immutable_paths);
        take!(clean_urls_redirect);
        take!(max_static_redirects);
        take!(max_dynamic_redirects);
        take!(max_rule_chars);
        take!(http1_fast_path);
        if let Some(secs) = file.header_read_timeout_secs {
            config.header_read_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = file.drain_timeout_secs {
            config.drain_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = file.upload_idle_timeout_secs {
            config.upload_idle_timeout = Duration::from_secs(secs.max(1));
        }
        config.host_suffix = file.host_suffix.filter(|s| !s.is_empty());
        config.public_url = file.public_url.filter(|s| !s.is_empty());
        config.services = file.services;
        config.admin_token = token_from_file;

        if let Some(root) = &overrides.root {
            config.root = root.clone();
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(admin_listen) = overrides.admin_listen {
            config.admin_listen = admin_listen;
        }
        if let Some(token) = &overrides.admin_token {
            config.admin_token = Some(token.clone());
        }
        if let Some(keep) = overrides.keep {
            config.keep = keep;
        }
        if let Some(format) = overrides.log_format {
            config.log_format = format;
        }
        if let Some(workers) = overrides.workers {
            config.workers = workers;
        }
        if let Some(backend) = overrides.io_backend {
            config.io_backend = backend;
        }
        if let Some(watch) = overrides.watch {
            config.watch = watch;
        }
        if let Some(suffix) = &overrides.host_suffix {
            config.host_suffix = Some(suffix.clone()).filter(|s| !s.is_empty());
        }
        if let Some(on) = overrides.access_log {
            config.access_log = on;
        }
        if let Some(sample) = overrides.access_log_sample {
            config.access_log_sample = sample;
        }
        if let Some(on) = overrides.http1_fast_path {
            config.http1_fast_path = on;
        }
        config.admin_token = config.admin_token.filter(|t| !t.is_empty());
        config.validate()?;
        Ok(config)
    }

    /// The effective preview mode: as configured, else signed when an
    /// admin token is set and public when not.
    pub fn preview_mode(&self) -> crate::previews::Mode {
        self.previews.unwrap_or(if self.admin_token.is_some() {
            crate::previews::Mode::Signed
        } else {
            crate::previews::Mode::Public
        })
    }

    fn validate(&self) -> Result<()> {
        if !self.webhooks.is_empty() && self.webhook_secret.is_none() {
            anyhow::bail!("webhooks are configured without webhook_secret: set one, receivers check signatures with it");
        }
        if self.keep == 0 {
            bail!("keep must be at least 1 (the active deployment is always kept)");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if self.header_read_timeout.is_zero() {
            bail!("header_read_timeout_secs must be at least 1");
        }
        for name in self.services.keys() {
            if !crate::store::is_valid_name(name) {
                bail!(
                    "[services.{name}] in the config file is not a valid service name \
                     (allowed: 1-64 of A-Z a-z 0-9 _ -)"
                );
            }
        }
        for glob in &self.immutable_paths {
            globset::Glob::new(glob)
                .with_context(|| format!("immutable_paths: {glob:?} is not a valid glob"))?;
        }
        if self.access_log_sample == 0 {
            bail!(
                "access_log_sample must be at least 1 (1 logs every request; \
                 use access_log = false to log none)"
            );
        }
        if let Some(suffix) = &self.host_suffix {
            validate_host_suffix(suffix)?;
        }
        Ok(())
    }

    /// The number of async worker threads to run: `workers`, or when 0 the
    /// CPUs this process may use (`available_parallelism` follows the
    /// cgroup CPU quota of a container).
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The limits on a deployment's `_redirects` and `_headers`.
    pub fn rule_limits(&self) -> crate::site::rules::Limits {
        crate::site::rules::Limits {
            max_static_redirects: self.max_static_redirects,
            max_dynamic_redirects: self.max_dynamic_redirects,
            max_rule_chars: self.max_rule_chars,
        }
    }

    /// The per-service settings, or the defaults for a service not in the file.
    pub fn service(&self, name: &str) -> ServiceConfig {
        self.services.get(name).cloned().unwrap_or_default()
    }
}

/// `host_suffix` (file, `--host-suffix`, `PROJECT_HTTP_HOST_SUFFIX`) is
/// the bare domain under which `<service>.<suffix>` names a service: DNS
/// labels (RFC 1123: letters, digits, `-`; 1-63 characters) separated by
/// dots, with no scheme, port, wildcard or leading/trailing dot.
fn validate_host_suffix(suffix: &str) -> Result<()> {
    let refuse = |why: &str| -> Result<()> {
        bail!(
            "host_suffix {suffix:?} {why}: give a bare domain like \"project.example.com\" \
             (sites are then at <service>.project.example.com)"
        )
    };
    if suffix.contains("://") || suffix.contains('/') {
        return refuse("has a scheme or path");
    }
    if suffix.contains(':') {
        return refuse("has a port (host routing ignores the port)");
    }
    if suffix.contains('*') {
        return refuse("is a wildcard (the leading <service>. is implied)");
    }
    if suffix.len() > 253 {
        return refuse("is longer than 253 characters");
    }
    for label in suffix.split('.') {
        if label.is_empty() {
            return refuse("has an empty label (a leading, trailing or doubled dot)");
        }
        if label.len() > 63 {
            return refuse("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return refuse("has a character that is not a letter, digit, '-' or '.'");
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

fn read_token_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin_token_file {}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("admin_token_file {} is empty", path.display());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "root = \"/from/file\"\nkeep = 7\nlisten = \"127.0.0.1:1234\"\n\
             [services.app]\nspa_fallback = true\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            keep: Some(3),
            ..Default::default()
        };
        let config = Config::load(&overrides).unwrap();
        assert_eq!(config.keep, 3, "flag wins over file");
        assert_eq!(
            config.root,
            PathBuf::from("/from/file"),
            "file wins over default"
        );
        assert_eq!(config.listen, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(config.admin_listen, Config::default().admin_listen);
        assert!(config.service("app").spa_fallback);
        assert!(!config.service("other").spa_fallback);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "roots = \"/typo\"\n").unwrap();
        let overrides = Overrides {
            config_file: Some(path.clone()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&overrides).unwrap_err());
        assert!(err.contains("roots"), "{err}");
        std::fs::write(&path, "keep = 0\n").unwrap();
        assert!(Config::load(&overrides).is_err());
        std::fs::write(&path, "[services.\"bad name\"]\n").unwrap();
        assert!(Config::load(&overrides).is_err());
    }

    #[test]
    fn skew_window_takes_a_duration_or_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let overrides = Overrides {
            config_file: Some(path.clone()),
            ..Default::default()
        };
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(&overrides).map(|c| c.skew_window)
        };
        assert_eq!(load("").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(
            load("skew_window = \"90m\"\n").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(load("skew_window = 30\n").unwrap(), Duration::from_secs(30));
        assert_eq!(load("skew_window = \"0s\"\n").unwrap(), Duration::ZERO);
        for bad in [
            "skew_window = -1\n",
            "skew_window = \"soon\"\n",
            "skew_window = true\n",
        ] {
            let err = format!("{:#}", load(bad).unwrap_err());
            assert!(err.contains("skew_window"), "{bad}: {err}");
        }
    }

    #[test]
    fn host_suffix_and_access_log_overrides_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "host_suffix = \"file.example.com\"\naccess_log = false\naccess_log_sample = 4\n",
        )
        .unwrap();
        let load = |overrides: Overrides| {
            Config::load(&Overrides {
                config_file: Some(path.clone()),
                ..overrides
            })
        };
        let file = load(Overrides::default()).unwrap();
        assert_eq!(file.host_suffix.as_deref(), Some("file.example.com"));
        assert_eq!((file.access_log, file.access_log_sample), (false, 4));
        let flags = load(Overrides {
            host_suffix: Some("p1.example.com".into()),
            access_log: Some(true),
            access_log_sample: Some(10),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flags.host_suffix.as_deref(), Some("p1.example.com"));
        assert_eq!((flags.access_log, flags.access_log_sample), (true, 10));
        let off = load(Overrides {
            host_suffix: Some(String::new()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.host_suffix, None, "empty turns host routing off");
        for bad in [
            "*.p1.example.com",
            ".p1.example.com",
            "p1.example.com.",
            "p1..example.com",
            "p1.example.com:8080",
            "https://p1.example.com",
            "p1 example.com",
        ] {
            let err = load(Overrides {
                host_suffix: Some(bad.into()),
                ..Default::default()
            })
            .unwrap_err();
            assert!(format!("{err:#}").contains("bare domain"), "{bad}: {err:#}");
        }
        let zero = load(Overrides {
            access_log_sample: Some(0),
            ..Default::default()
        });
        assert!(zero.is_err());
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!("admin_token_file = \"{}\"\n", token.display()),
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Default::default()
        };
        assert_eq!(
            Config::load(&overrides).unwrap().admin_token.as_deref(),
            Some("s3cret")
        );
    }
}
