//! The `serve` command: wires config → store → site → public server together
//! and reacts to signals (SIGTERM/SIGINT drain and exit, SIGHUP re-reads the
//! config and rescans the root).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::auth::Auth;
use crate::admin::events::Events;
use crate::admin::metrics::Metrics;
use crate::admin::AdminState;
use crate::config::{Config, Overrides};
use crate::serve::io::FileIo;
use crate::serve::listener::{self, ListenOptions};
use crate::serve::workers::{self, ExtraWorkers};
use crate::serve::{PublicState, Settings};
use crate::serve::{ServedFrom, SkewServed};
use crate::site::{self, Registry, Retained};
use crate::store::lock::ServiceLocks;
use crate::store::Layout;
use crate::watch::Watch;

/// A started server: its addresses and handles to stop it.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub public: Arc<PublicState>,
    pub admin: Arc<AdminState>,
    pub layout: Layout,
    watch: Watch,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    extra_workers: ExtraWorkers,
}

impl Running {
    /// Stops accepting, drains in-flight requests (bounded), and returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.extra_workers.join().await;
        // Every worker has stopped: no line is recorded after this one.
        crate::access_log::flush();
    }

    /// Re-reads the configuration and rescans the root (what SIGHUP does).
    pub async fn reload(&self, overrides: &Overrides, current: &Config) -> Result<Config> {
        let config = Config::load(overrides)?;
        if config.listen != current.listen || config.admin_listen != current.admin_listen {
            tracing::warn!(
                "listen addresses changed in the config: they apply at the next restart"
            );
        }
        if config.root != current.root {
            tracing::warn!("root changed in the config: it applies at the next restart");
        }
        self.public
            .settings
            .store(Arc::new(Settings::from_config(&config)?));
        // The admin API and the watcher read this one (retention, limits,
        // index options).
        self.admin.config.store(Arc::new(config.clone()));
        // Through the watcher's path: each service under its lock, so an
        // upload publishing meanwhile is never undone by a stale listing.
        self.watch.resync().await;
        Ok(config)
    }
}

/// Scans the root on a blocking thread (index builds read files), removing
/// unfinished uploads (none can be running yet), and logs the result.
async fn scan_at_startup(
    layout: &Layout,
    registry: &Arc<Registry>,
    config: &Config,
) -> Result<site::ScanReport> {
    let (layout, registry, config) = (layout.clone(), registry.clone(), config.clone());
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || site::scan(&layout, &registry, &config))
        .await
        .context("root scan panicked")??;
    for (service, id) in &report.served {
        tracing::info!(service, deployment = id, "serving");
    }
    for (service, error) in &report.broken {
        tracing::error!(
            service,
            error,
            "service skipped: its current deployment cannot be loaded"
        );
    }
    tracing::info!(
        services = report.served.len(),
        broken = report.broken.len(),
        without_current = report.empty.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "root scanned"
    );
    Ok(report)
}

/// Scans the root, binds the listeners and starts serving.
pub async fn start(config: &Config) -> Result<Running> {
    if !config.admin_listen.ip().is_loopback() && config.admin_token.is_none() {
        bail!(
            "refusing to start: the admin API would listen on {} without a token. \
             Pass --admin-token (or set PROJECT_HTTP_ADMIN_TOKEN, or admin_token_file), or use a loopback admin address",
            config.admin_listen
        );
    }
    prepare_root(&config.root)?;
    let root = config
        .root
        .canonicalize()
        .with_context(|| format!("cannot resolve root {}", config.root.display()))?;
    let layout = Layout::new(root);
    let registry = Arc::new(Registry::new());
    let report = scan_at_startup(&layout, &registry, config).await?;

    let (file_io, fallback) = FileIo::start(config.io_backend, config.worker_threads())?;
    match fallback {
        Some(reason) => tracing::info!(
            io_backend = file_io.backend().name(),
            reason,
            "file I/O backend (io_uring not available, using epoll)"
        ),
        None => tracing::info!(io_backend = file_io.backend().name(), "file I/O backend"),
    }
    let preview_key = crate::previews::Key::load_or_create(layout.root())?;
    let public_state = Arc::new(PublicState {
        preview_key: Some(preview_key.clone()),
        registry: registry.clone(),
        settings: ArcSwap::from_pointee(Settings::from_config(config)?),
        io: file_io,
        retained: Arc::new(Retained::new(layout.clone())),
    });
    let shared_config = Arc::new(ArcSwap::from_pointee(config.clone()));
    let chart_interval =
        crate::admin::traffic::Traffic::interval_from_env().map_err(anyhow::Error::msg)?;
    let public_listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (public port; set --listen or PROJECT_HTTP_LISTEN)",
            config.listen
        )
    })?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (admin port; set --admin-listen or PROJECT_HTTP_ADMIN_LISTEN)",
                config.admin_listen
            )
        })?;
    let public_addr = public_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_state = Arc::new(AdminState {
        layout: layout.clone(),
        registry: registry.clone(),
        locks: Arc::new(ServiceLocks::default()),
        events: Events::default(),
        metrics: Arc::new(Metrics::default()),
        config: shared_config.clone(),
        auth: Auth::with_store(config.admin_token.as_deref(), layout.root()),
        sessions: Default::default(),
        preview_key,
        webhook_stats: Default::default(),
        traffic: Arc::new(crate::admin::traffic::Traffic::new(chart_interval)),
        public_addr,
    });
    let options = ListenOptions {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        drain_timeout: config.drain_timeout,
    };
    let shutdown = CancellationToken::new();

    let (state, metrics) = (public_state.clone(), admin_state.metrics.clone());
    let public_handler = move |request: http::Request<hyper::body::Incoming>, _peer: SocketAddr| {
        let (state, metrics) = (state.clone(), metrics.clone());
        async move {
            let started = Instant::now();
            let response = crate::serve::handle(&state, &request).await;
            let (status, bytes) = crate::serve::log_access(
                request.method(),
                request.uri().path(),
                &response,
                started,
            );
            let service = response
                .extensions()
                .get::<ServedFrom>()
                .map_or("-", |s| s.0.service.as_str());
            metrics.record_request(service, status, bytes);
            if response.extensions().get::<SkewServed>().is_some() {
                metrics.record_skew(service);
            }
            response
        }
    };
    let admin = admin_state.clone();
    let admin_handler = move |request: http::Request<hyper::body::Incoming>, peer: SocketAddr| {
        crate::admin::handle(admin.clone(), request, peer)
    };
    let admin_options = ListenOptions {
        // Uploads are few; keep the admin port from being starved by, or
        // starving, the public one.
        max_connections: 64,
        ..options
    };
    let watch = Watch {
        layout: layout.clone(),
        registry: registry.clone(),
        config: shared_config,
        events: admin_state.events.clone(),
        locks: admin_state.locks.clone(),
        workflow: admin_state.workflow(),
    };
    // Worker 0 is this runtime; the others run on their own threads
    // (serve/workers.rs), sharing the socket and the connection limit.
    let public_socket = public_listener
        .into_std()
        .context("cannot prepare the public socket for the worker threads")?;
    // Registered before any worker thread starts, so nothing is left running
    // if this fails.
    let public_listener = TcpListener::from_std(
        public_socket
            .try_clone()
            .context("cannot share the public socket")?,
    )
    .context("cannot register the public socket with the runtime")?;
    let public_permits = Arc::new(Semaphore::new(config.max_connections));
    let fast = config.http1_fast_path.then(|| {
        Arc::new(crate::serve::fast::FastPath {
            state: public_state.clone(),
            metrics: admin_state.metrics.clone(),
        })
    });
    let extra_workers = workers::spawn_extra(
        &public_socket,
        config.worker_threads(),
        public_handler.clone(),
        fast.clone(),
        options,
        public_permits.clone(),
        shutdown.clone(),
    )
    .inspect_err(|_| shutdown.cancel())?; // stops the threads already started
    drop(public_socket);
    let tasks = vec![
        tokio::spawn(listener::run_shared(
            public_listener,
            public_handler,
            fast,
            options,
            public_permits,
            shutdown.clone(),
        )),
        tokio::spawn(listener::run(
            admin_listener,
            admin_handler,
            admin_options,
            shutdown.clone(),
        )),
        tokio::spawn(watch.clone().run(config.watch, shutdown.clone())),
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = crate::access_log::run_flusher() => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }),
    ];
    let mut tasks = tasks;
    // The dashboard's traffic charts: one sample of the counters per interval.
    tasks.push(tokio::spawn(
        admin_state
            .traffic
            .clone()
            .run(admin_state.metrics.clone(), shutdown.clone()),
    ));
    if !config.webhooks.is_empty() {
        tasks.push(tokio::spawn(crate::admin::webhooks::run(
            config.webhooks.clone(),
            config.webhook_secret.clone().unwrap_or_default(),
            admin_state.events.receiver(),
            admin_state.webhook_stats.clone(),
            shutdown.clone(),
        )));
    }

    tracing::info!(
        public = %format!("http://{public_addr}"),
        admin = %format!("http://{admin_addr}"),
        root = %layout.root().display(),
        admin_auth = admin_state.auth.enabled(),
        workers = config.worker_threads(),
        host_suffix = config.host_suffix.as_deref().unwrap_or("off"),
        access_log = config.access_log,
        access_log_sample = config.access_log_sample,
        "listening"
    );
    admin_state.events.emit(
        "project.server.started",
        serde_json::json!({"public": public_addr.to_string(), "admin": admin_addr.to_string(), "services": report.served.len()}),
    );
    if report.served.is_empty() {
        let hint = crate::first_start::hint(
            &crate::first_start::Launcher::detect(),
            layout.root(),
            public_addr,
            admin_addr,
            admin_state.auth.enabled(),
        );
        match config.log_format {
            // Plain lines, so the command can be copied as printed.
            crate::config::LogFormat::Text => eprintln!("{hint}"),
            crate::config::LogFormat::Json => tracing::info!("{hint}"),
        }
    }
    Ok(Running {
        public_addr,
        admin_addr,
        registry,
        public: public_state,
        admin: admin_state,
        layout,
        watch,
        shutdown,
        tasks,
        extra_workers,
    })
}

/// Makes sure `root` is a directory: creates it when missing (and says so,
/// with its absolute path: a mistyped `--root` should not go unnoticed),
/// refuses a file with a message that names the setting.
fn prepare_root(root: &std::path::Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "the root {} is a file, not a directory: point --root (or PROJECT_HTTP_ROOT, or `root` in the config file) at a directory",
            root.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Layout::new(root).ensure_root()?;
            let absolute = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
            tracing::info!(
                root = %absolute.display(),
                "created the root directory {} (it did not exist)",
                absolute.display()
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use the root {}", root.display())),
    }
}

/// Raises the open-files soft limit to the hard limit (as nginx's
/// `worker_rlimit_nofile` does): every connection is a descriptor, and the
/// common soft default of 1024 would cap `max_connections` far below its
/// setting. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP reloads.
///
/// With a `stop_grace` above zero, SIGTERM first starts the lame-duck
/// period ([`crate::serve::lameduck`]): `/health` answers 503 while
/// everything else is still served for `stop_grace`; a second SIGTERM or a
/// SIGINT ends it early.
pub async fn serve(
    overrides: Overrides,
    config: Config,
    stop_grace: std::time::Duration,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let fd_limit = raise_fd_limit();
    if fd_limit < config.max_connections as u64 + 64 {
        tracing::warn!(
            fd_limit,
            max_connections = config.max_connections,
            "the open-files limit is below max_connections: raise it (ulimit -n) or lower max_connections"
        );
    }
    let running = start(&config).await?;
    // The format stays the startup one (diagnostics cannot switch theirs).
    let log_format = config.log_format;
    let mut config = config;
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                if !stop_grace.is_zero() {
                    crate::serve::lameduck::start();
                    tracing::info!(
                        stop_grace_secs = stop_grace.as_secs(),
                        "SIGTERM: draining (/health answers 503), still serving until the grace ends"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(stop_grace) => {}
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                break;
            }
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: re-reading config and rescanning the root");
                match running.reload(&overrides, &config).await {
                    Ok(next) => {
                        crate::access_log::configure(next.access_log.then_some(log_format));
                        crate::access_log::configure_sample(next.access_log_sample);
                        config = next;
                    }
                    Err(e) => tracing::error!(error = format!("{e:#}"), "reload failed; keeping the previous config"),
                }
            }
        }
    }
    tracing::info!(
        drain_timeout_secs = config.drain_timeout.as_secs(),
        "shutting down: draining in-flight requests"
    );
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}
