//! Log setup: access lines to stdout, everything else to stderr.
//!
//! Access lines are `tracing` events with target `access` (see
//! [`crate::serve::log_access`]); keeping them on stdout lets an operator ship
//! them separately from diagnostics, as with nginx's access and error logs.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer, Registry};

use crate::config::LogFormat;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `level` is an `EnvFilter` directive for
/// diagnostics ("info", "project_http=debug", ...); `PROJECT_HTTP_LOG`
/// overrides it. `access_log = false` drops access lines entirely.
pub fn init(format: LogFormat, level: &str, access_log: bool) -> Result<()> {
    let directive = std::env::var("PROJECT_HTTP_LOG").unwrap_or_else(|_| level.to_string());
    let diag_filter = EnvFilter::try_new(&directive)
        .map_err(|e| anyhow!("invalid log level {directive:?}: {e}"))?;
    let is_access = |m: &tracing::Metadata<'_>| m.target() == "access";
    let access_filter = filter_fn(move |m| access_log && is_access(m));
    let diag_only = filter_fn(move |m| !is_access(m));
    let (access, diag): (BoxedLayer, BoxedLayer) = match format {
        LogFormat::Text => (
            fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(std::io::stdout().is_terminal())
                .with_target(false)
                .with_level(false)
                .with_filter(access_filter)
                .boxed(),
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(diag_only)
                .with_filter(diag_filter)
                .boxed(),
        ),
        LogFormat::Json => (
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stdout)
                .with_filter(access_filter)
                .boxed(),
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
                .with_filter(diag_only)
                .with_filter(diag_filter)
                .boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(vec![access, diag])
        .try_init()
        .map_err(|e| anyhow!("cannot install the logger: {e}"))
}
