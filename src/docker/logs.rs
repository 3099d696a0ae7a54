//! Logs that cannot fill a disk: the Docker log driver options `ensure`
//! gives the container (or the Swarm service's tasks), and the server's
//! access-log switch.
//!
//! Docker's default `json-file` driver keeps every line forever unless
//! `max-size` is set (Docker docs, "JSON File logging driver"). `ensure`
//! sets `json-file` with `max-size=10m`, `max-file=3` (at most 30 MiB per
//! container), and `--log-opt KEY=VALUE` overrides or adds options in
//! Docker's own words (`max-size`, `max-file`, `compress`, ...). For
//! operators who take Traefik's access log instead, `--access-log off`
//! switches the server's access log off and `--access-log sample=N` keeps
//! one line in N of the 1xx-3xx answers, every 4xx/5xx still logged
//! (`serve`'s `PROJECT_HTTP_ACCESS_LOG`, `PROJECT_HTTP_ACCESS_LOG_SAMPLE`).

use std::collections::BTreeMap;

use bollard::models::{HostConfigLogConfig, TaskSpecLogDriver};

/// The log driver `ensure` sets.
pub const LOG_DRIVER: &str = "json-file";
/// Default `max-size` of one log file (Docker's size syntax: k, m, g).
pub const DEFAULT_MAX_SIZE: &str = "10m";
/// Default `max-file`: log files kept, the current one included.
pub const DEFAULT_MAX_FILE: &str = "3";

/// The server's environment variable switching the access log off.
pub const ACCESS_LOG_ENV: &str = "PROJECT_HTTP_ACCESS_LOG";
/// The server's environment variable keeping one access-log line in N.
pub const ACCESS_LOG_SAMPLE_ENV: &str = "PROJECT_HTTP_ACCESS_LOG_SAMPLE";

/// The driver options: the defaults with `overrides` (`--log-opt`) applied
/// in order (a later one wins).
pub fn log_options(overrides: &[(String, String)]) -> BTreeMap<String, String> {
    let mut options = BTreeMap::from([
        ("max-size".to_string(), DEFAULT_MAX_SIZE.to_string()),
        ("max-file".to_string(), DEFAULT_MAX_FILE.to_string()),
    ]);
    for (key, value) in overrides {
        options.insert(key.clone(), value.clone());
    }
    options
}

/// The container's `HostConfig.LogConfig`.
pub fn host_log_config(overrides: &[(String, String)]) -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some(LOG_DRIVER.to_string()),
        config: Some(log_options(overrides).into_iter().collect()),
    }
}

/// A Swarm task's `LogDriver`.
pub fn task_log_driver(overrides: &[(String, String)]) -> TaskSpecLogDriver {
    TaskSpecLogDriver {
        name: Some(LOG_DRIVER.to_string()),
        options: Some(log_options(overrides).into_iter().collect()),
    }
}

/// The most bytes the log files of one container can hold, when
/// `max-size` and `max-file` are plain Docker sizes (`None` otherwise).
pub fn log_bound_bytes(options: &BTreeMap<String, String>) -> Option<u64> {
    let size = parse_size(options.get("max-size")?)?;
    let files: u64 = options
        .get("max-file")
        .map_or(Some(1), |f| f.parse().ok())?;
    Some(size * files)
}

/// Docker's size syntax for `max-size`: a number with an optional unit
/// `k`, `m` or `g` (powers of 1024), case-insensitive.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k') => (&text[..i], 1u64 << 10),
        (i, 'm') => (&text[..i], 1 << 20),
        (i, 'g') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// `--access-log`: whether and how much the server logs requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLog {
    /// One line per request (the server's default; no variable is set).
    #[default]
    On,
    /// No access log (`PROJECT_HTTP_ACCESS_LOG=off`).
    Off,
    /// One 1xx-3xx answer in N logged, every 4xx/5xx
    /// (`PROJECT_HTTP_ACCESS_LOG_SAMPLE=N`).
    Sample(u64),
}

impl AccessLog {
    /// Parses `on`, `off` or `sample=N` (N ≥ 1).
    pub fn parse(text: &str) -> Result<AccessLog, String> {
        match text {
            "on" => Ok(AccessLog::On),
            "off" => Ok(AccessLog::Off),
            _ => match text.strip_prefix("sample=").map(str::parse::<u64>) {
                Some(Ok(1)) => Ok(AccessLog::On),
                Some(Ok(n)) if n > 1 => Ok(AccessLog::Sample(n)),
                _ => Err(format!(
                    "{text:?} is not an access-log mode: use on, off, or sample=N to log one request in N (e.g. sample=100)"
                )),
            },
        }
    }

    /// The environment entries that give the server this mode.
    pub fn env(self) -> Vec<String> {
        match self {
            AccessLog::On => Vec::new(),
            AccessLog::Off => vec![format!("{ACCESS_LOG_ENV}=off")],
            AccessLog::Sample(n) => vec![format!("{ACCESS_LOG_SAMPLE_ENV}={n}")],
        }
    }

    /// Reads the mode back from a container's environment entries.
    pub fn from_env<'a>(env: impl IntoIterator<Item = &'a str>) -> AccessLog {
        let mut mode = AccessLog::On;
        for entry in env {
            if entry == format!("{ACCESS_LOG_ENV}=off") {
                return AccessLog::Off;
            }
            if let Some(n) = entry
                .strip_prefix(ACCESS_LOG_SAMPLE_ENV)
                .and_then(|r| r.strip_prefix('='))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 1)
            {
                mode = AccessLog::Sample(n);
            }
        }
        mode
    }
}

impl std::fmt::Display for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLog::On => f.write_str("on"),
            AccessLog::Off => f.write_str("off"),
            AccessLog::Sample(n) => {
                write!(f, "sample={n} (one 1xx-3xx answer in {n}, every 4xx/5xx)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bound_the_files_and_log_opts_override_them() {
        let options = log_options(&[]);
        assert_eq!(options["max-size"], "10m");
        assert_eq!(options["max-file"], "3");
        assert_eq!(log_bound_bytes(&options), Some(30 << 20));
        let options = log_options(&[
            ("max-size".into(), "100k".into()),
            ("compress".into(), "true".into()),
            ("max-size".into(), "200k".into()),
        ]);
        assert_eq!(options["max-size"], "200k", "the later --log-opt wins");
        assert_eq!(options["compress"], "true");
        assert_eq!(log_bound_bytes(&options), Some(3 * 200 * 1024));
        let config = host_log_config(&[]);
        assert_eq!(config.typ.as_deref(), Some("json-file"));
    }

    #[test]
    fn docker_sizes_parse() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("100K"), Some(100 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("10mb"), Some(10 << 20));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn access_log_modes_round_trip_through_the_environment() {
        for (text, mode) in [
            ("on", AccessLog::On),
            ("off", AccessLog::Off),
            ("sample=100", AccessLog::Sample(100)),
            ("sample=1", AccessLog::On),
        ] {
            let parsed = AccessLog::parse(text).unwrap();
            assert_eq!(parsed, mode);
            let env = parsed.env();
            assert_eq!(AccessLog::from_env(env.iter().map(String::as_str)), mode);
        }
        for bad in ["", "yes", "sample=0", "sample=x", "sample"] {
            let error = AccessLog::parse(bad).expect_err(bad);
            assert!(error.contains("sample=N"), "{error}");
        }
    }
}
