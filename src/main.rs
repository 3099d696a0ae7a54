//! The `project-http` command line. Parsing only: the work is in the library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use project_http::client::{string_field, AdminClient, DeployRequest};
use project_http::config::{Config, IoBackendChoice, LogFormat, Overrides};

/// mimalloc instead of glibc's malloc: a response allocates and frees a few
/// small buffers (header map, body handle, task), and glibc's free path was
/// the largest single cost per request under callgrind (docs/BENCHMARKS.md,
/// "Instructions per request").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` for the commands' output, without its panic when standard
/// output is a closed pipe (`project-http status | head -1`).
macro_rules! outln {
    ($($arg:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` with [`outln!`]'s handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

/// Set while a command's output holds a secret shown only once (a token
/// just created): what to do if it cannot be written.
static SECRET_ADVICE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Marks the output from here on as carrying a secret: a write that fails,
/// a closed pipe too, then ends the command with status 1 and `advice`.
fn output_holds_secret(advice: String) {
    if let Ok(mut slot) = SECRET_ADVICE.lock() {
        *slot = Some(advice);
    }
}

/// Writes (and flushes) to standard output. A reader that went away
/// (`EPIPE`: `| head` has what it wanted) ends the process quietly with
/// success, as ripgrep and the coreutils do, unless the output carries a
/// secret ([`output_holds_secret`]); another write error ends it with
/// status 1 and says so on standard error.
fn write_stdout(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        let advice = SECRET_ADVICE.lock().ok().and_then(|slot| slot.clone());
        match advice {
            Some(advice) => {
                eprintln!("project-http: error: writing to standard output: {error}; {advice}")
            }
            None if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            None => eprintln!("project-http: error: writing to standard output: {error}"),
        }
        std::process::exit(1);
    }
}

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
    /// Upload a directory or a .tar/.tar.gz/.tar.zst/.zip as a new deployment; prints its id.
    Deploy(DeployArgs),
    /// Flip a service back to the deployment that was live before its current one.
    Rollback(ServiceArgs),
    /// Flip a service to one of its retained deployments.
    Activate(ActivateArgs),
    /// List services, or one service's deployments.
    List(ListArgs),
    /// Pin a deployment: retention never removes it, and it does not count against keep.
    Pin(PinArgs),
    /// Unpin a deployment (retention may remove it again).
    Unpin(PinArgs),
    /// Create, list and revoke named admin tokens with scopes.
    #[command(subcommand)]
    Token(TokenCommand),
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
    /// Host name Traefik routes to the container (Host(`HOST`)): a DNS name
    /// or an IP address; sites are at <scheme>://HOST/s/<service>/.
    #[arg(long)]
    host: String,
    /// Traefik entry points the routers listen on, comma-separated or
    /// repeated (e.g. websecure, or web,websecure); each counts once.
    #[arg(long, value_delimiter = ',', default_value = project_http::docker::labels::DEFAULT_ENTRYPOINT)]
    entrypoints: Vec<String>,
    /// Terminate TLS on the routers (Traefik's `tls=true`): Traefik's
    /// default certificate, or the --cert-resolver's.
    #[arg(long)]
    tls: bool,
    /// Certificate resolver of Traefik's static configuration for the
    /// routers (`tls.certresolver`); implies --tls. With --subdomains it
    /// asks for HOST and *.HOST (a DNS-01 challenge resolver).
    #[arg(long, value_name = "NAME")]
    cert_resolver: Option<String>,
    /// Existing Traefik middlewares to attach, comma-separated name@provider
    /// (e.g. compress@file,auth@docker), after --rate-limit's.
    #[arg(long, value_delimiter = ',', value_name = "NAME@PROVIDER")]
    middlewares: Vec<String>,
    /// Per-client-IP rate limit: AVG requests per second with bursts of
    /// BURST [default BURST: AVG]; past it Traefik answers 429 (a
    /// `rateLimit` middleware defined by the labels).
    #[arg(long, value_name = "AVG[/BURST]", value_parser = project_http::docker::labels::RateLimit::parse)]
    rate_limit: Option<project_http::docker::labels::RateLimit>,
    /// Also route <service>.HOST (the service at /) and <id>--<service>.HOST
    /// (a preview): a HostRegexp router plus PROJECT_HTTP_HOST_SUFFIX=HOST
    /// in the container. DNS needs a wildcard record *.HOST.
    #[arg(long)]
    subdomains: bool,
    /// Option of the container's json-file log driver, like `docker run
    /// --log-opt` (repeatable) [default: max-size=10m, max-file=3]
    #[arg(long = "log-opt", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    log_opts: Vec<(String, String)>,
    /// The server's access log: on, off (take Traefik's access log
    /// instead), or sample=N (one 1xx-3xx answer in N; every 4xx/5xx).
    #[arg(long, value_name = "on|off|sample=N", default_value = "on", value_parser = project_http::docker::logs::AccessLog::parse)]
    access_log: project_http::docker::logs::AccessLog,
    /// Docker network shared with Traefik (created if missing).
    #[arg(long, default_value = project_http::docker::ensure::DEFAULT_NETWORK)]
    network: String,
    /// Image to run.
    #[arg(long, default_value = project_http::docker::ensure::DEFAULT_IMAGE)]
    image: String,
    /// Admin token for the container; replaces the current one [default:
    /// keep the current one, or generate one]. Only this flag sets it: an
    /// exported PROJECT_HTTP_ADMIN_TOKEN (perhaps another server's) is not used.
    #[arg(long)]
    admin_token: Option<String>,
    /// Memory limit of the container, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: i64,
    /// Run the container with a seccomp profile that allows io_uring
    /// (Docker's default profile blocks it, so the server uses epoll).
    #[arg(long)]
    io_uring: bool,
    /// Run the project as a Docker Swarm service project-http-<ID> with
    /// --replicas tasks (rolling start-first updates), not one container;
    /// needs `docker swarm init` and an overlay --network.
    #[arg(long)]
    swarm: bool,
    /// Tasks of the Swarm service (with --swarm).
    #[arg(long, default_value_t = 2, requires = "swarm")]
    replicas: u64,
    /// Option of the volume's `local` driver when ensure creates it, like
    /// `docker volume create --opt` (repeatable): e.g. type=nfs,
    /// o=addr=10.0.0.5,nfsvers=4.2, device=:/export/p42 for shared storage.
    #[arg(long = "volume-opt", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    volume_opts: Vec<(String, String)>,
    /// How the server notices flips made through another replica: poll is
    /// needed when the volume is shared by several hosts (NFS), where
    /// inotify sees only local writes [default: notify]
    #[arg(long, value_enum)]
    watch: Option<project_http::config::WatchMode>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// Project id: the container project-http-<ID> to report on.
    #[arg(long)]
    project: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MigrateArgs {
    /// Project id: the old containers labelled deployer.project=<ID> move into project-http-<ID>.
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
    /// Admin token: the one the server was started with (--admin-token, PROJECT_HTTP_ADMIN_TOKEN or admin_token_file).
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
    /// Public base URL to verify through [default: the admin host, on the
    /// port the server reports for its public listener (8080 in the container)]
    #[arg(long, env = "PROJECT_HTTP_PUBLIC_URL")]
    public: Option<String>,
    /// How long each verified path may take, retries included.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    verify_timeout: std::time::Duration,
    /// Why this deployment (stored with it, shown by `list` and the dashboard).
    #[arg(long)]
    message: Option<String>,
    /// Source commit [default: `git rev-parse HEAD` when PATH is in a git work tree]
    #[arg(long)]
    commit: Option<String>,
    /// A KEY=VALUE label stored with the deployment (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = project_http::client::provenance::parse_label)]
    labels: Vec<(String, String)>,
    /// A directory (tarred on the fly) or a .tar / .tar.gz / .tar.zst / .zip file.
    path: PathBuf,
}

#[derive(Args)]
struct ServiceArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Service name (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long)]
    service: String,
}

#[derive(Args)]
struct ActivateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Service name (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long)]
    service: String,
    /// The deployment id to make current.
    id: String,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (shown this once; the server keeps only its hash).
    Create {
        #[command(flatten)]
        admin: AdminArgs,
        /// Token name, recorded as the actor of what it does.
        #[arg(long)]
        name: String,
        /// admin, read, deploy:* or deploy:<service> (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 90d [default: no expiry]
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: name, scopes, created, expires, last used.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a token: refused from the next request on.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        name: String,
    },
}

#[derive(Args)]
struct PinArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[arg(long)]
    service: String,
    /// The deployment id.
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
    /// Seconds to keep serving after SIGTERM, with /health answering 503,
    /// so a proxy that follows Docker health drops this server before it
    /// stops accepting (`ensure` sets it) [default: 0]
    #[arg(long, env = "PROJECT_HTTP_STOP_GRACE_SECS", default_value_t = 0)]
    stop_grace_secs: u64,
    /// How flips made by other processes are noticed: notify (inotify),
    /// poll (twice a second; needed on NFS shared by several hosts), off
    /// [default: the config's `watch`, else notify]
    #[arg(long, env = "PROJECT_HTTP_WATCH", value_enum)]
    watch: Option<project_http::config::WatchMode>,
    /// Host routing: `Host: <service>.SUFFIX` serves <service> at `/`, and
    /// `<id>--<service>.SUFFIX` its retained deployment <id> (a preview).
    /// Overrides the config's `host_suffix`; an empty value turns it off
    /// [default: the config's `host_suffix`, else off]
    #[arg(long, env = "PROJECT_HTTP_HOST_SUFFIX", value_name = "SUFFIX")]
    host_suffix: Option<String>,
    /// Write the access log (one stdout line per request); off when a
    /// proxy's access log (Traefik's) is the one kept [default: the
    /// config's `access_log`, else on]
    #[arg(
        long,
        env = "PROJECT_HTTP_ACCESS_LOG",
        value_name = "on|off",
        value_parser = switch_parser(),
        ignore_case = true
    )]
    access_log: Option<bool>,
    /// Log 1 of every N requests answered 1xx-3xx (counted per worker
    /// thread); every 4xx and 5xx is always logged. 1 logs everything
    /// [default: the config's `access_log_sample`, else 1]
    #[arg(
        long,
        env = "PROJECT_HTTP_ACCESS_LOG_SAMPLE",
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    access_log_sample: Option<u64>,
    /// Answer plain keep-alive GET/HEAD requests for files held in memory
    /// without going through hyper (the same answers, fewer instructions;
    /// docs/BENCHMARKS.md). `off` is an escape hatch that sends every
    /// request through hyper [default: the config's `http1_fast_path`,
    /// else on]
    #[arg(
        long,
        env = "PROJECT_HTTP_HTTP1_FAST_PATH",
        value_name = "on|off",
        value_parser = switch_parser(),
        ignore_case = true
    )]
    http1_fast_path: Option<bool>,
}

/// `on` / `off` (also `true`/`false`, `yes`/`no`, `1`/`0`, in any case),
/// for settings that are switches.
fn switch_parser() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("on").aliases(["true", "yes", "1"]),
        PossibleValue::new("off").aliases(["false", "no", "0"]),
    ])
    .map(|value| {
        matches!(
            value.to_ascii_lowercase().as_str(),
            "on" | "true" | "yes" | "1"
        )
    })
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
        Command::Pin(args) => report(pin(args, true)),
        Command::Token(command) => report(token(command)),
        Command::Unpin(args) => report(pin(args, false)),
        Command::Healthcheck(args) => healthcheck(args),
        Command::Ensure(args) => report(docker_command(ensure(args))),
        Command::SeccompProfile => {
            outln!("{}", project_http::docker::seccomp::io_uring_profile());
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
    // Host names are case-insensitive (RFC 4343): one spelling, so a later
    // `ensure` with other capitals changes nothing. Entry points once each.
    let mut entrypoints: Vec<String> = Vec::new();
    for e in args.entrypoints {
        if !entrypoints.contains(&e) {
            entrypoints.push(e);
        }
    }
    let routing = docker::labels::Routing {
        host: args.host.to_ascii_lowercase(),
        entrypoints,
        tls: args.tls,
        cert_resolver: args.cert_resolver,
        middlewares: args.middlewares,
        rate_limit: args.rate_limit,
        subdomains: args.subdomains,
    };
    // Refuse a host or a name Traefik cannot use before talking to the engine.
    routing.validate()?;
    let options = ensure::EnsureOptions {
        project: docker::Project::new(&args.project)?,
        routing,
        network: args.network,
        image: args.image,
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        memory_bytes: args.memory_mib * 1024 * 1024,
        io_uring: args.io_uring,
        swarm: args.swarm,
        replicas: args.replicas,
        volume_opts: args.volume_opts,
        watch: args.watch,
        log_opts: args.log_opts,
        access_log: args.access_log,
    };
    let engine = docker::connect().await?;
    let result = ensure::ensure(&engine, &options).await?;
    if result.generated_token.is_some() {
        output_holds_secret(format!(
            "the admin token ensure generated was not shown; it is in the container's \
             environment: `docker inspect --format '{{{{json .Config.Env}}}}' {}`",
            result.container
        ));
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    match result.action.as_str() {
        "unchanged" => outln!("{}: up to date, nothing changed", result.container),
        "recreated" if result.gapless => outln!(
            "{}: recreated without downtime ({}); volume kept",
            result.container,
            result.drift.join("; ")
        ),
        "recreated" => outln!(
            "{}: recreated; it was not running, so the site was down until now ({}); volume kept",
            result.container,
            result.drift.join("; ")
        ),
        "updated" => outln!(
            "service {}: updated, rolled task by task ({}); volume kept",
            result.container,
            result.drift.join("; ")
        ),
        action => outln!("{}: {action}", result.container),
    }
    let routing = &options.routing;
    let scheme = if routing.uses_tls() { "https" } else { "http" };
    outln!(
        "sites at {scheme}://{}/s/<service>/ (entry points {})",
        docker::hostname::url_host(&routing.host),
        routing.entrypoints.join(",")
    );
    if routing.subdomains {
        outln!(
            "         {scheme}://<service>.{0}/ and previews at {scheme}://<id>--<service>.{0}/?exp=…&sig=… (signed links: `deploy --no-activate --public {scheme}://{0}` prints them)",
            routing.host
        );
    }
    if result.volume_created {
        outln!("volume {}: created", options.project.volume());
    }
    if result.network_created {
        outln!("network {}: created", options.network);
    }
    match (result.admin_token, &result.generated_token) {
        (ensure::TokenChange::New, Some(token)) => {
            outln!("admin token (generated; keep it for deploys): {token}")
        }
        (ensure::TokenChange::New, None) => outln!("admin token: new (given with --admin-token)"),
        (ensure::TokenChange::Changed, _) => outln!(
            "admin token: changed (given with --admin-token); deployers with the old token now get 401"
        ),
        (ensure::TokenChange::Kept, _) => outln!("admin token: kept"),
    }
    // An exported token that is not the project's (another server's, or a
    // stale one) was not used: say so, never what either token is.
    if options.admin_token.is_none()
        && std::env::var(docker::TOKEN_ENV).is_ok_and(|t| !t.is_empty() && t != result.token)
    {
        eprintln!(
            "note: {} in the environment is not this project's admin token and was not used \
             (ensure sets a token only with --admin-token)",
            docker::TOKEN_ENV
        );
    }
    Ok(())
}

/// `KEY=VALUE` of a repeatable option.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    use project_http::docker;
    let project = docker::Project::new(&args.project)?;
    let engine = docker::connect().await?;
    let status = docker::status::status(&engine, &project).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        out!("{}", docker::status::render(&status));
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
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", migrate::render(&report));
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
            // The error already names the URL (ureq's transport errors do);
            // say it once.
            let reason = format!("{e:#}");
            let reason = reason
                .strip_prefix(&format!("{url}: "))
                .unwrap_or(&reason)
                .to_string();
            eprintln!("project-http healthcheck: {url}: {reason}");
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
    let mut provenance = project_http::client::provenance::Provenance {
        message: args.message.clone(),
        commit: args.commit.clone(),
        labels: args.labels.clone(),
        ..Default::default()
    };
    provenance.fill_from_git(&args.path);
    let answer = admin.deploy(&DeployRequest {
        service: &args.service,
        source: &args.path,
        id: args.id.as_deref(),
        activate: !args.no_activate,
        require_index: !args.no_require_index,
        progress: !args.quiet,
        differential: !args.full,
        provenance,
    })?;
    let id = string_field(&answer, "id")?;
    eprintln!(
        "{}",
        project_http::client::summary(&args.service, id, &answer)
    );
    // Without --public: the admin host on the port the server says its
    // public listener has.
    let public = args.public.clone().unwrap_or_else(|| {
        let port = answer["publicPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok());
        verify::default_public_url(&args.admin.admin, port)
    });
    if answer["active"] != true {
        if let Some(path) = answer["preview"].as_str() {
            let path_form = format!("{}{path}", public.trim_end_matches('/'));
            // Under host routing the deployment has its own host too
            // (`<id>--<service>.<host_suffix>`), as a Netlify deploy preview.
            match (
                answer["previewHost"].as_str(),
                answer["previewHostPath"].as_str(),
            ) {
                (Some(host), Some(host_path)) => {
                    let url = project_http::host::with_host(&public, host);
                    eprintln!("preview: {url}{host_path}");
                    eprintln!("preview (path form): {path_form}");
                }
                _ => eprintln!("preview: {path_form}"),
            }
        }
    }
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
        for path in verify::paths_through_directory_links(&args.path) {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        let plan = verify::VerifyPlan {
            public: public.clone(),
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
    outln!("{id}");
    Ok(())
}

fn flip_result(result: anyhow::Result<serde_json::Value>) -> anyhow::Result<()> {
    let answer = result?;
    let current = string_field(&answer, "current")?;
    let previous = answer["previous"].as_str().unwrap_or("-");
    outln!(
        "{}: {previous} -> {current}",
        answer["service"].as_str().unwrap_or("?")
    );
    Ok(())
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            admin,
            name,
            scopes,
            expires,
        } => {
            let answer = client(&admin).create_token(&serde_json::json!({
                "name": name, "scopes": scopes, "expiresIn": expires
            }))?;
            eprintln!(
                "created token {name} ({}); it is shown only now:",
                scopes.join(", ")
            );
            // Shown only now: if it cannot be written (a closed pipe, a
            // full disk), say so and fail rather than lose it quietly.
            output_holds_secret(format!(
                "token {name} was created but could not be written to standard output; \
                 it cannot be shown again: revoke it (`project-http token revoke {name}`) \
                 and create another"
            ));
            outln!("{}", string_field(&answer, "token")?);
        }
        TokenCommand::List { admin } => {
            let answer = client(&admin).tokens()?;
            outln!(
                "{:<24} {:<32} {:<42} {:<32} SCOPES",
                "NAME",
                "CREATED",
                "EXPIRES",
                "LAST USED"
            );
            for t in answer["tokens"].as_array().into_iter().flatten() {
                let scopes: Vec<&str> = t["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                outln!(
                    "{:<24} {:<32} {:<42} {:<32} {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["createdAt"].as_str().unwrap_or("-"),
                    match (t["expiresAt"].as_str(), t["expired"] == true) {
                        (Some(at), true) => format!("{at} (expired)"),
                        (Some(at), false) => at.to_string(),
                        (None, _) => "never".to_string(),
                    },
                    t["lastUsedAt"].as_str().unwrap_or("never"),
                    scopes.join(",")
                );
            }
        }
        TokenCommand::Revoke { admin, name } => {
            client(&admin).revoke_token(&name)?;
            outln!("revoked token {name}");
        }
    }
    Ok(())
}

fn pin(args: PinArgs, pinned: bool) -> anyhow::Result<()> {
    client(&args.admin).pin(&args.service, &args.id, pinned)?;
    outln!(
        "{}: {} {}",
        args.service,
        args.id,
        if pinned { "pinned" } else { "unpinned" }
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
        outln!("{answer}");
        return Ok(());
    }
    match &args.service {
        None => {
            outln!("{:<24} CURRENT", "SERVICE");
            for service in answer["services"].as_array().into_iter().flatten() {
                outln!(
                    "{:<24} {}",
                    service["name"].as_str().unwrap_or("?"),
                    service["current"].as_str().unwrap_or("-")
                );
            }
        }
        Some(_) => {
            outln!(
                "{:<2} {:<20} {:<32} {:>8} {:>14}  {:<10} {:<12} MESSAGE",
                "",
                "ID",
                "CREATED",
                "FILES",
                "BYTES",
                "COMMIT",
                "ACTOR"
            );
            for d in answer["deployments"].as_array().into_iter().flatten() {
                let commit = d["commit"].as_str().map_or_else(
                    || "-".to_string(),
                    |c| {
                        let short: String = c.chars().take(8).collect();
                        if d["dirty"] == true {
                            format!("{short}+")
                        } else {
                            short
                        }
                    },
                );
                outln!(
                    "{:<2} {:<20} {:<32} {:>8} {:>14}  {:<10} {:<12} {}",
                    match (d["active"] == true, d["pinned"] == true) {
                        (true, true) => "*P",
                        (true, false) => "*",
                        (false, true) => "P",
                        (false, false) => "",
                    },
                    shown(d["id"].as_str().unwrap_or("?")),
                    shown(d["createdAt"].as_str().unwrap_or("?")),
                    d["files"].as_u64().unwrap_or(0),
                    d["bytes"].as_u64().unwrap_or(0),
                    shown(&commit),
                    shown(d["actor"].as_str().unwrap_or("-")),
                    shown(
                        d["message"]
                            .as_str()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    )
                );
            }
        }
    }
    Ok(())
}

/// `text` safe to print to a terminal: control characters (a NUL or an
/// ESC starting an ANSI sequence, stored before the server refused them)
/// are written as Rust escapes (`\0`, `\u{1b}`) instead of acted on.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn run_serve(args: ServeArgs) -> ExitCode {
    let stop_grace = std::time::Duration::from_secs(args.stop_grace_secs);
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
        watch: args.watch,
        host_suffix: args.host_suffix,
        access_log: args.access_log,
        access_log_sample: args.access_log_sample,
        http1_fast_path: args.http1_fast_path,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if let Err(e) = project_http::logging::init(
        config.log_format,
        &config.log_level,
        config.access_log,
        config.access_log_sample,
    ) {
        return fail(e);
    }
    // Public worker 0, which also runs the admin API and the watcher; the
    // other workers get their own threads (src/serve/workers.rs says why).
    let runtime = match project_http::serve::workers::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return fail(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(project_http::app::serve(overrides, config, stop_grace)) {
        Ok(()) => ExitCode::SUCCESS,
        // Printed once, by `fail` (not also logged).
        Err(e) => fail(e),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("project-http: error: {error:#}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_switch_takes_on_off_in_any_case() {
        let parse = |value: &str| {
            Cli::try_parse_from(["project-http", "serve", "--access-log", value]).map(|cli| {
                match cli.command {
                    Command::Serve(args) => args.access_log,
                    _ => unreachable!("serve parses as serve"),
                }
            })
        };
        for (value, on) in [
            ("on", true),
            ("ON", true),
            ("true", true),
            ("1", true),
            ("off", false),
            ("Off", false),
            ("false", false),
            ("no", false),
        ] {
            assert_eq!(parse(value).unwrap(), Some(on), "{value}");
        }
        assert!(parse("maybe").is_err());
    }
}
