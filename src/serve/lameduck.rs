//! The lame-duck period between SIGTERM and closing the listeners.
//!
//! A proxy that learns about backends from Docker (Traefik's Docker and
//! Swarm providers) keeps sending requests to a container until it sees
//! that container unhealthy, gone, or its task shut down; a server that
//! closes its listener on the first SIGTERM turns that window into failed
//! requests. With a stop grace of N seconds (`serve --stop-grace-secs`,
//! `PROJECT_HTTP_STOP_GRACE_SECS`; `ensure` sets it), the server first
//! answers `GET /health` with `503 draining` — so Docker's health check
//! turns the container `unhealthy` and the proxy drops it — while still
//! serving every other request normally for N seconds, and only then
//! stops accepting and drains in-flight requests (`drain_timeout`).
//!
//! The flag is process-wide, like the signal that sets it.

use std::sync::atomic::{AtomicBool, Ordering};

static DRAINING: AtomicBool = AtomicBool::new(false);

/// Marks the process as draining: `/health` answers 503 from now on.
pub fn start() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// True once [`start`] was called.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}
