//! project-http: a static file server for versioned, atomically flipped deployments.
//!
//! Data flows one way: store (disk layout) → site (in-memory index, arc-swap
//! registry) → serve (public HTTP). [`app`] wires them together for the
//! `serve` command; `main.rs` only parses the command line.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod bridge;
pub mod client;
pub mod config;
pub mod deploy;
pub mod docker;
pub mod first_start;
#[doc(hidden)]
pub mod fuzz;
pub mod host;
pub mod logging;
pub mod previews;
pub mod serve;
pub mod site;
pub mod store;
pub mod watch;
