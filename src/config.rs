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
    pub access_log: bool,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub upload_idle_timeout: Duration,
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
    /// Serve retained deployments read-only at `/s/<service>@<id>/`.
    pub previews: bool,
    /// Public base URL the dashboard's preview links use (e.g.
    /// `https://site.example.com`); default: the admin host, public port.
    pub public_url: Option<String>,
    /// Answer a current-deployment miss for a non-HTML file from the newest
    /// retained deployment that has it.
    pub skew_protection: bool,
    /// Generate `.br`/`.gz` siblings of text files at deploy time.
    pub precompress: bool,
    /// Input bytes compressed per upload at most.
    pub precompress_budget_bytes: u64,
    pub services: BTreeMap<String, ServiceConfig>,
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
            previews: true,
            public_url: None,
            skew_protection: true,
            precompress: true,
            precompress_budget_bytes: 256 * 1024 * 1024,
            services: BTreeMap::new(),
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
    previews: Option<bool>,
    public_url: Option<String>,
    skew_protection: Option<bool>,
    precompress: Option<bool>,
    precompress_budget_bytes: Option<u64>,
    #[serde(default)]
    services: BTreeMap<String, ServiceConfig>,
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
        take!(previews);
        take!(skew_protection);
        take!(precompress);
        take!(precompress_budget_bytes);
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
        config.admin_token = config.admin_token.filter(|t| !t.is_empty());
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
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
        if let Some(suffix) = &self.host_suffix {
            if suffix.starts_with('.') || suffix.contains(':') {
                bail!("host_suffix {suffix:?} must be a bare domain like \"project.example.com\"");
            }
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

    /// The per-service settings, or the defaults for a service not in the file.
    pub fn service(&self, name: &str) -> ServiceConfig {
        self.services.get(name).cloned().unwrap_or_default()
    }
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
