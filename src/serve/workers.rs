//! Worker threads for the public port: one current-thread tokio runtime per
//! worker, all accepting from the same listening socket (nginx's model).
//!
//! Why not tokio's multi-thread scheduler: a worker keeps at most 256 ready
//! tasks in its local queue and overflows the rest to a global queue that it
//! visits rarely while the local one has work, so with a thousand busy
//! keep-alive connections some of them wait: p99 at 1 000 connections was
//! 158 ms with it and 20 ms with a current-thread runtime, whose run queue is
//! one FIFO (docs/BENCHMARKS.md). A connection stays on the worker that
//! accepted it; every worker waits in `accept` on the same socket, and the
//! one that is least busy tends to get there first.
//!
//! The caller's runtime is worker 0 (it also runs the admin API and the
//! watcher); [`spawn_extra`] starts the others. The connection limit is one
//! semaphore shared by all of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::body::Body;
use super::listener::{self, ListenOptions};

/// The worker threads beyond the caller's own runtime.
pub struct ExtraWorkers {
    threads: Vec<JoinHandle<()>>,
}

/// Starts `workers - 1` threads, each running [`listener::run_shared`] on a
/// clone of `socket` in its own current-thread runtime, until `shutdown`.
pub fn spawn_extra<H, F>(
    socket: &std::net::TcpListener,
    workers: usize,
    handler: H,
    fast: Option<Arc<super::fast::FastPath>>,
    options: ListenOptions,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) -> Result<ExtraWorkers>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut threads = Vec::new();
    for number in 1..workers {
        let socket = socket
            .try_clone()
            .context("cannot share the public socket with a worker thread")?;
        let runtime = runtime().context("cannot start a worker's async runtime")?;
        let (handler, fast, permits, shutdown) = (
            handler.clone(),
            fast.clone(),
            permits.clone(),
            shutdown.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("worker-{number}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(listener) => {
                            listener::run_shared(
                                listener, handler, fast, options, permits, shutdown,
                            )
                                .await
                        }
                        Err(e) => {
                            tracing::error!(worker = number, error = %e, "worker cannot register the public socket; it serves nothing")
                        }
                    }
                });
                // Connections still open after the drain are dropped here;
                // blocking reads in flight get a moment to finish.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }
    Ok(ExtraWorkers { threads })
}

/// A worker's runtime: current-thread, with I/O and timers. The server's
/// main runtime (worker 0) is one too.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

impl ExtraWorkers {
    /// Waits for every worker to drain and stop (after `shutdown` was cancelled).
    pub async fn join(self) {
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        })
        .await;
    }
}
