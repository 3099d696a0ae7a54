//! The `serve` command: wires config → store → site → public server together
//! and reacts to signals (SIGTERM/SIGINT drain and exit, SIGHUP re-reads the
//! config and rescans the root).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Overrides};
use crate::serve::listener::{self, ListenOptions};
use crate::serve::{PublicState, Settings};
use crate::site::{self, Registry};
use crate::store::Layout;

/// A started server: its addresses and handles to stop it.
pub struct Running {
    pub public_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub public: Arc<PublicState>,
    pub layout: Layout,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (bounded), and returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
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
        rescan(&self.layout, &self.registry, &config, false).await?;
        Ok(config)
    }
}

/// Scans the root on a blocking thread (index builds read files) and logs the result.
async fn rescan(
    layout: &Layout,
    registry: &Arc<Registry>,
    config: &Config,
    clean_tmp: bool,
) -> Result<site::ScanReport> {
    let (layout, registry, config) = (layout.clone(), registry.clone(), config.clone());
    let started = Instant::now();
    let report =
        tokio::task::spawn_blocking(move || site::scan(&layout, &registry, &config, clean_tmp))
            .await
            .context("root scan panicked")??;
    for (service, id) in &report.served {
        tracing::info!(service, deployment = id, "serving");
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
    let layout = Layout::new(&config.root);
    let registry = Arc::new(Registry::new());
    let report = rescan(&layout, &registry, config, true).await?;

    let public_state = Arc::new(PublicState {
        registry: registry.clone(),
        settings: ArcSwap::from_pointee(Settings::from_config(config)?),
    });
    let public_listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (public port; set --listen or PROJECT_HTTP_LISTEN)",
            config.listen
        )
    })?;
    let public_addr = public_listener.local_addr()?;
    let options = ListenOptions {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        drain_timeout: config.drain_timeout,
    };
    let shutdown = CancellationToken::new();
    let state = public_state.clone();
    let handler = move |request: http::Request<hyper::body::Incoming>, _peer: SocketAddr| {
        let state = state.clone();
        async move {
            let started = Instant::now();
            let response = crate::serve::handle(&state, &request).await;
            crate::serve::log_access(request.method(), request.uri().path(), &response, started);
            response
        }
    };
    let public_task = tokio::spawn(listener::run(
        public_listener,
        handler,
        options,
        shutdown.clone(),
    ));

    tracing::info!(
        public = %format!("http://{public_addr}"),
        root = %config.root.display(),
        "listening"
    );
    if report.served.is_empty() {
        tracing::info!(
            "no site is deployed yet under {root}. Deploy a first one with:\n    project-http deploy --admin http://{admin} --service web ./dist\n  then open http://{public}/s/web/",
            root = config.root.display(),
            admin = config.admin_listen,
            public = public_addr,
        );
    }
    Ok(Running {
        public_addr,
        registry,
        public: public_state,
        layout,
        shutdown,
        tasks: vec![public_task],
    })
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP reloads.
pub async fn serve(overrides: Overrides, config: Config) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    let running = start(&config).await?;
    let mut config = config;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: re-reading config and rescanning the root");
                match running.reload(&overrides, &config).await {
                    Ok(next) => config = next,
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
