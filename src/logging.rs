//! Log setup: access lines to stdout, everything else to stderr.
//!
//! Access lines are written by [`crate::access_log`] (batched, not through
//! `tracing`); keeping them on stdout lets an operator ship them separately
//! from diagnostics, as with nginx's access and error logs.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer, Registry};

use crate::config::LogFormat;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber for diagnostics (stderr) and turns the
/// access log ([`crate::access_log`], stdout) on or off. `level` is an
/// `EnvFilter` directive for diagnostics ("info", "project_http=debug", ...);
/// `PROJECT_HTTP_LOG` overrides it. `access_log = false` drops access lines
/// entirely; `access_log_sample` N keeps 1 in N of the 1xx-3xx ones
/// ([`crate::access_log::configure_sample`]).
pub fn init(
    format: LogFormat,
    level: &str,
    access_log: bool,
    access_log_sample: u64,
) -> Result<()> {
    let directive = std::env::var("PROJECT_HTTP_LOG").unwrap_or_else(|_| level.to_string());
    let diag_filter = EnvFilter::try_new(&directive)
        .map_err(|e| anyhow!("invalid log level {directive:?}: {e}"))?;
    crate::access_log::configure(access_log.then_some(format));
    crate::access_log::configure_sample(access_log_sample);
    let diag: BoxedLayer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(diag_filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(diag_filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(diag)
        .try_init()
        .map_err(|e| anyhow!("cannot install the logger: {e}"))
}
