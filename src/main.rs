//! The `project-http` command line. Parsing only: the work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use project_http::client::{string_field, AdminClient, DeployRequest};
use project_http::config::{Config, IoBackendChoice, LogFormat, Overrides};

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
    /// Upload a directory or a .tar/.tar.gz/.tar.zst as a new deployment; prints its id.
    Deploy(DeployArgs),
    /// Flip a service back to the deployment created before its current one.
    Rollback(ServiceArgs),
    /// Flip a service to one of its retained deployments.
    Activate(ActivateArgs),
    /// List services, or one service's deployments.
    List(ListArgs),
    /// Exit 0 when the server answers GET /health with 200, 1 otherwise (for Docker's HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Create (or repair) the project's container, volume and network on the Docker engine.
    Ensure(EnsureArgs),
    /// Print the seccomp profile `ensure --io-uring` uses (Docker's usual
    /// allowances plus io_uring), for `docker run --security-opt seccomp=FILE`.
    SeccompProfile,
    /// Show the project's container and the services it serves.
    Status(StatusArgs),
    /// Move sites from old per-deployment nginx containers into the project's container.
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct EnsureArgs {
    /// Project id: names the container project-http-<ID> and volume project-<ID>-static.
    #[arg(long)]
    project: String,
    /// Host name Traefik routes to the container (Host(`HOST`)).
    #[arg(long)]
    host: String,
    /// Docker network shared with Traefik (created if missing).
    #[arg(long, default_value = project_http::docker::ensure::DEFAULT_NETWORK)]
    network: String,
    /// Image to run.
    #[arg(long, default_value = project_http::docker::ensure::DEFAULT_IMAGE)]
    image: String,
    /// Admin token for the container [default: keep the current one, or generate one]
    #[arg(long, env = "PROJECT_HTTP_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Memory limit of the container, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: i64,
    /// Run the container with a seccomp profile that allows io_uring
    /// (Docker's default profile blocks it, so the server uses epoll).
    #[arg(long)]
    io_uring: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    #[arg(long)]
    project: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MigrateArgs {
    #[arg(long)]
    project: String,
    /// Do it (without this flag, only print the plan).
    #[arg(long)]
    apply: bool,
    /// After a verified migration, remove the old containers (and their Traefik files).
    #[arg(long)]
    remove_old: bool,
    /// Directory of Traefik dynamic configuration files; files naming old containers are removed with --remove-old.
    #[arg(long)]
    traefik_dynamic_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HealthcheckArgs {
    /// URL to check [default: /health on the port of PROJECT_HTTP_LISTEN, via 127.0.0.1]
    #[arg(long)]
    url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

#[derive(Args)]
struct AdminArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "PROJECT_HTTP_ADMIN_URL",
        default_value = "http://127.0.0.1:9080"
    )]
    admin: String,
    /// Admin Bearer token.
    #[arg(long, env = "PROJECT_HTTP_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct DeployArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Service name (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long)]
    service: String,
    /// Deployment id [default: first 12 hex of the content digest]
    #[arg(long)]
    id: Option<String>,
    /// Upload without making it current.
    #[arg(long)]
    no_activate: bool,
    /// Accept an upload without a top-level index.html.
    #[arg(long)]
    no_require_index: bool,
    /// Never show a progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Send the whole directory even when the server could take only the
    /// files it lacks (differential deploy).
    #[arg(long)]
    full: bool,
    /// Skip the check after the flip (by default index.html and every
    /// --verify-path are fetched through the public port and compared with
    /// what was uploaded; a mismatch rolls back to the previous deployment).
    #[arg(long)]
    no_verify: bool,
    /// Another path to check after the flip (repeatable), e.g. assets/app.js.
    #[arg(long = "verify-path", value_name = "PATH")]
    verify_paths: Vec<String>,
    /// Public base URL to verify through [default: the admin host, port 8080]
    #[arg(long, env = "PROJECT_HTTP_PUBLIC_URL")]
    public: Option<String>,
    /// How long each verified path may take, retries included.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    verify_timeout: std::time::Duration,
    /// A directory (tarred on the fly) or a .tar / .tar.gz / .tar.zst file.
    path: PathBuf,
}

#[derive(Args)]
struct ServiceArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    service: String,
}

#[derive(Args)]
struct ActivateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    service: String,
    /// The deployment id to make current.
    id: String,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Show this service's deployments instead of all services.
    #[arg(long)]
    service: Option<String>,
    /// Print the admin API's JSON as is.
    #[arg(long)]
    json: bool,
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
    /// Async worker threads; 0 = one per CPU of the container's quota [default: 0]
    #[arg(long, env = "PROJECT_HTTP_WORKERS")]
    workers: Option<usize>,
    /// How large files are read: io_uring when allowed (auto), io_uring or
    /// refuse to start (uring), or memory maps under epoll [default: auto]
    #[arg(long, env = "PROJECT_HTTP_IO_BACKEND", value_enum)]
    io_backend: Option<IoBackendChoice>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Deploy(args) => report(deploy(args)),
        Command::Rollback(args) => report(flip_result(client(&args.admin).rollback(&args.service))),
        Command::Activate(args) => report(flip_result(
            client(&args.admin).activate(&args.service, &args.id),
        )),
        Command::List(args) => report(list(args)),
        Command::Healthcheck(args) => healthcheck(args),
        Command::Ensure(args) => report(docker_command(ensure(args))),
        Command::SeccompProfile => {
            println!("{}", project_http::docker::seccomp::io_uring_profile());
            ExitCode::SUCCESS
        }
        Command::Status(args) => report(docker_command(status(args))),
        Command::Migrate(args) => report(docker_command(migrate(args))),
    }
}

/// Runs a Docker command on a small runtime.
fn docker_command(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

async fn ensure(args: EnsureArgs) -> anyhow::Result<()> {
    use project_http::docker::{self, ensure};
    let options = ensure::EnsureOptions {
        project: docker::Project::new(&args.project)?,
        host: args.host,
        network: args.network,
        image: args.image,
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        memory_bytes: args.memory_mib * 1024 * 1024,
        io_uring: args.io_uring,
    };
    let engine = docker::connect().await?;
    let result = ensure::ensure(&engine, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    match result.action.as_str() {
        "unchanged" => println!("{}: up to date, nothing changed", result.container),
        "recreated" => println!(
            "{}: recreated ({}); volume kept",
            result.container,
            result.drift.join("; ")
        ),
        action => println!("{}: {action}", result.container),
    }
    if result.volume_created {
        println!("volume {}: created", options.project.volume());
    }
    if result.network_created {
        println!("network {}: created", options.network);
    }
    if let Some(token) = &result.generated_token {
        println!("admin token (generated; keep it for deploys): {token}");
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    use project_http::docker;
    let project = docker::Project::new(&args.project)?;
    let engine = docker::connect().await?;
    let status = docker::status::status(&engine, &project).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", docker::status::render(&status));
    }
    Ok(())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    use project_http::docker::{self, migrate};
    let options = migrate::MigrateOptions {
        project: docker::Project::new(&args.project)?,
        apply: args.apply,
        remove_old: args.remove_old,
        traefik_dynamic_dir: args.traefik_dynamic_dir,
    };
    let engine = docker::connect().await?;
    let report = migrate::migrate(&engine, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", migrate::render(&report));
    }
    Ok(())
}

fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let url = args.url.unwrap_or_else(|| {
        let listen: SocketAddr = std::env::var("PROJECT_HTTP_LISTEN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        format!("http://127.0.0.1:{}/health", listen.port())
    });
    match project_http::client::healthcheck(&url, std::time::Duration::from_secs(args.timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("project-http healthcheck: {url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn client(args: &AdminArgs) -> AdminClient {
    AdminClient::new(&args.admin, args.token.clone())
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    use project_http::client::verify;
    let admin = client(&args.admin);
    let verifying = !args.no_verify && !args.no_activate;
    // What to roll back to if verification fails (none on a first deploy).
    let previous = if verifying {
        admin
            .deployments(&args.service)
            .ok()
            .and_then(|v| v["current"].as_str().map(str::to_string))
    } else {
        None
    };
    let answer = admin.deploy(&DeployRequest {
        service: &args.service,
        source: &args.path,
        id: args.id.as_deref(),
        activate: !args.no_activate,
        require_index: !args.no_require_index,
        progress: !args.quiet,
        differential: !args.full,
    })?;
    let id = string_field(&answer, "id")?;
    eprintln!(
        "deployed {} as {id}: {} files ({} sent, {} shared with earlier deployments), {} bytes{}",
        args.service,
        answer["files"],
        answer["received"],
        answer["linked"],
        answer["bytes"],
        if answer["active"] == true {
            ", active"
        } else {
            ", not active"
        }
    );
    if verifying {
        let mut paths = Vec::new();
        if !args.no_require_index {
            paths.push("index.html".to_string());
        }
        for path in &args.verify_paths {
            let path = path.trim_start_matches('/').to_string();
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        let plan = verify::VerifyPlan {
            public: args
                .public
                .clone()
                .unwrap_or_else(|| verify::default_public_url(&args.admin.admin)),
            service: args.service.clone(),
            paths,
            timeout: args.verify_timeout,
        };
        verify::verify_or_roll_back(&admin, &plan, &args.path, id, previous.as_deref())?;
        eprintln!(
            "verified {} path(s) through {}",
            plan.paths.len(),
            plan.public
        );
    }
    println!("{id}");
    Ok(())
}

fn flip_result(result: anyhow::Result<serde_json::Value>) -> anyhow::Result<()> {
    let answer = result?;
    let current = string_field(&answer, "current")?;
    let previous = answer["previous"].as_str().unwrap_or("-");
    println!(
        "{}: {previous} -> {current}",
        answer["service"].as_str().unwrap_or("?")
    );
    Ok(())
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = client(&args.admin);
    let answer = match &args.service {
        Some(service) => client.deployments(service)?,
        None => client.services()?,
    };
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    match &args.service {
        None => {
            println!("{:<24} CURRENT", "SERVICE");
            for service in answer["services"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {}",
                    service["name"].as_str().unwrap_or("?"),
                    service["current"].as_str().unwrap_or("-")
                );
            }
        }
        Some(_) => {
            println!(
                "{:<2} {:<20} {:<32} {:>8} {:>14}",
                "", "ID", "CREATED", "FILES", "BYTES"
            );
            for d in answer["deployments"].as_array().into_iter().flatten() {
                println!(
                    "{:<2} {:<20} {:<32} {:>8} {:>14}",
                    if d["active"] == true { "*" } else { "" },
                    d["id"].as_str().unwrap_or("?"),
                    d["createdAt"].as_str().unwrap_or("?"),
                    d["files"].as_u64().unwrap_or(0),
                    d["bytes"].as_u64().unwrap_or(0)
                );
            }
        }
    }
    Ok(())
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
        workers: args.workers,
        io_backend: args.io_backend,
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
    // Public worker 0, which also runs the admin API and the watcher; the
    // other workers get their own threads (src/serve/workers.rs says why).
    let runtime = match project_http::serve::workers::runtime() {
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
