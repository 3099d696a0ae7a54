//! The `project-http` command line. Parsing only: the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use project_http::config::{Config, LogFormat, Overrides};

#[derive(Parser)]
#[command(
    name = "project-http",
    version,
    about = "Static file server for versioned, atomically flipped deployments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the current deployment of every service under the root.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see config/project-http.toml for every setting).
    #[arg(long, env = "PROJECT_HTTP_CONFIG")]
    config: Option<PathBuf>,
    /// Root directory holding <service>/<deploymentId>/ trees [default: ./data]
    #[arg(long, env = "PROJECT_HTTP_ROOT")]
    root: Option<PathBuf>,
    /// Public listen address [default: 0.0.0.0:8080]
    #[arg(long, env = "PROJECT_HTTP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin listen address [default: 127.0.0.1:9080]
    #[arg(long, env = "PROJECT_HTTP_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Bearer token required by the admin API.
    #[arg(long, env = "PROJECT_HTTP_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Deployments kept per service [default: 5]
    #[arg(long, env = "PROJECT_HTTP_KEEP")]
    keep: Option<usize>,
    /// Log format [default: text]
    #[arg(long, env = "PROJECT_HTTP_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_serve(args),
    }
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config,
        root: args.root,
        listen: args.listen,
        admin_listen: args.admin_listen,
        admin_token: args.admin_token,
        keep: args.keep,
        log_format: args.log_format,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Err(e) =
        project_http::logging::init(config.log_format, &config.log_level, config.access_log)
    {
        return fail(e);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(project_http::app::serve(overrides, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server failed");
            fail(e)
        }
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("project-http: error: {error:#}");
    ExitCode::FAILURE
}
