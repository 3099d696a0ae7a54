//! The one interface through which the public server reads files from disk:
//! "read a whole small file into memory" and "give me a body for this byte
//! range". Two backends sit behind it:
//!
//! - **epoll** (tokio's default runtime): ranges up to 64 MiB are sent from
//!   one memory mapping, larger ones are streamed from the blocking pool.
//! - **uring**: reads go to a thread running a `tokio-uring` runtime, which
//!   reads with io_uring and hands the chunks back over a bounded channel.
//!
//! The backend is chosen once at startup ([`FileIo::start`]): `auto` takes
//! io_uring when the kernel and seccomp allow it (Docker Engine 25+'s
//! default profile does not: `io_uring_setup` fails with EPERM) and falls
//! back to epoll.
//!
//! Where io_uring is used is decided by what the side-by-side harness
//! measured (docs/BENCHMARKS.md, "io_uring"): a mapping of the whole file
//! kept in the index beat io_uring reads for every size up to 64 MiB, so
//! those files never come here after their first response. What does come
//! here, and goes through io_uring when it runs: the first read of each
//! small file (then held in memory) and files above 64 MiB, streamed.

mod uring;

use std::io;
use std::path::Path;

use anyhow::{bail, Result};
use bytes::Bytes;

use super::body::{self, Body};
use crate::config::IoBackendChoice;

/// The backend that runs, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Epoll,
    Uring,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "uring",
        }
    }
}

/// Reads files for the public server through the chosen backend.
pub enum FileIo {
    Epoll,
    Uring(uring::Reader),
}

impl FileIo {
    /// Starts the backend `choice` asks for. `auto` falls back to epoll
    /// (saying why); `uring` fails when io_uring cannot be set up.
    /// `threads` is the number of io_uring threads (one ring each).
    pub fn start(choice: IoBackendChoice, threads: usize) -> Result<(FileIo, Option<String>)> {
        match choice {
            IoBackendChoice::Epoll => Ok((FileIo::Epoll, None)),
            IoBackendChoice::Uring => match uring::Reader::start(threads) {
                Ok(reader) => Ok((FileIo::Uring(reader), None)),
                Err(e) => bail!(
                    "io_backend = \"uring\" but io_uring cannot be set up: {e}. Inside Docker \
                     the default seccomp profile blocks io_uring: start the container with \
                     `project-http ensure --io-uring`, or set io_backend = \"auto\""
                ),
            },
            IoBackendChoice::Auto => match uring::Reader::start(threads) {
                Ok(reader) => Ok((FileIo::Uring(reader), None)),
                Err(e) => Ok((FileIo::Epoll, Some(format!("io_uring unavailable: {e}")))),
            },
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            FileIo::Epoll => Backend::Epoll,
            FileIo::Uring(_) => Backend::Uring,
        }
    }

    /// Reads all of a small file, which must still be `size` bytes long.
    pub async fn read_whole(&self, path: &Path, size: u64) -> io::Result<Bytes> {
        let bytes = match self {
            FileIo::Uring(reader) => reader.read_all(path, size).await?,
            FileIo::Epoll => Bytes::from(tokio::fs::read(path).await?),
        };
        if bytes.len() as u64 != size {
            return Err(changed_size(path));
        }
        Ok(bytes)
    }

    /// A body of `len` bytes of `path` from `start`. The file is opened (and
    /// for io_uring, the first chunk read) before this returns, so a file
    /// that vanished becomes an error status, never a truncated 200.
    pub async fn range(&self, path: &Path, start: u64, len: u64) -> io::Result<Body> {
        match self {
            FileIo::Uring(reader) => reader.range(path, start, len).await,
            FileIo::Epoll => body::file_range(path, start, len).await,
        }
    }
}

pub(crate) fn changed_size(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} changed size since it was indexed", path.display()),
    )
}
