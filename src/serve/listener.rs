//! Accepting connections: the guard rails every listener shares.
//!
//! * a connection limit (a semaphore): at the limit the loop stops
//!   accepting, so the kernel's backlog holds new clients instead of the
//!   server running out of file descriptors;
//! * a header read timeout, so a client trickling headers (slowloris) is cut off;
//! * draining: on shutdown the listener closes at once, in-flight requests
//!   get up to `drain_timeout` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::Body;
use super::conn::{self, Handoff, Rewind};
use super::fast::FastPath;

/// Limits for one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled, then drains.
/// `handler` gets each request with the peer's address and logs nothing:
/// access logging is the caller's (it knows what to log).
pub async fn run<H, F>(
    listener: TcpListener,
    handler: H,
    options: ListenOptions,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(options.max_connections));
    run_shared(listener, handler, None, options, permits, shutdown).await
}

/// [`run`] with a connection limit shared with other listeners (the public
/// port's worker threads, [`super::workers`]); `options.max_connections` is
/// not read. With `fast`, each connection starts on the fast path
/// ([`super::conn`]) and goes to hyper (`handler`) at the first request it
/// declines.
pub async fn run_shared<H, F>(
    listener: TcpListener,
    handler: H,
    fast: Option<Arc<FastPath>>,
    options: ListenOptions,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let connections = TaskTracker::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true)
        // A client that shuts its sending side after its requests (a
        // half-close) still gets every answer, as from the fast path: by
        // default hyper stopped writing at the client's FIN, cutting a
        // large answer short (found by a trial).
        // Also what lets hyper answer one request the fast path declined
        // and give the connection back (serve::conn::one_shot).
        .half_close(true);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let (builder, fast, shutdown) = (builder.clone(), fast.clone(), shutdown.clone());
        connections.spawn(async move {
            let io = match fast {
                Some(fast) => {
                    let fallback = conn::Fallback {
                        handler: &handler,
                        peer,
                        builder: &builder,
                    };
                    let timeout = options.header_read_timeout;
                    match conn::serve(stream, &fast, fallback, timeout, &shutdown).await {
                        Handoff::Closed => return drop(permit),
                        Handoff::Hyper(io) => io,
                    }
                }
                None => Rewind::new(stream),
            };
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request, peer).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = shutdown.cancelled() => {
                    // Close when idle, after the answer in progress otherwise.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    let started = Instant::now();
    tokio::select! {
        () = connections.wait() => {
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "connections drained");
        }
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!(timeout_secs = options.drain_timeout.as_secs(), "drain timeout: closing remaining connections");
        }
    }
}
