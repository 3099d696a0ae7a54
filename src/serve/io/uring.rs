//! The io_uring backend: threads each running a `tokio-uring` runtime, fed
//! read jobs over a channel by the (epoll) tokio workers that run hyper.
//!
//! hyper has no io_uring body support, so the socket side stays on epoll;
//! what io_uring takes over is the file side: open, read and close are
//! submitted to the ring instead of being done by a blocking-pool thread or
//! through page faults on a mapping. Chunks come back over a bounded channel
//! (one chunk in flight per response), so a slow client never makes the
//! server hold more than two chunks of its file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use crate::serve::body::{self, Body};

/// Bytes read per submission when streaming. Ranges up to [`ONE_READ`] are
/// read with one submission into one buffer.
const CHUNK: usize = 256 * 1024;
const ONE_READ: u64 = 1 << 20;
/// Submission queue size of each ring.
const RING_ENTRIES: u32 = 256;

/// One read: `len` bytes of `path` from `start`, delivered as chunks.
struct Job {
    path: PathBuf,
    start: u64,
    len: u64,
    /// Also check that the file ends exactly at `start + len`.
    expect_eof: bool,
    chunks: mpsc::Sender<io::Result<Bytes>>,
}

/// Handle to the io_uring threads; dropping it stops them once their
/// in-flight reads are done.
pub struct Reader {
    threads: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Reader {
    /// Starts `threads` io_uring threads, failing (with the kernel's
    /// reason) when a ring cannot be set up.
    pub fn start(threads: usize) -> io::Result<Reader> {
        let mut senders = Vec::with_capacity(threads.max(1));
        for n in 0..threads.max(1) {
            let (jobs_tx, jobs_rx) = mpsc::unbounded_channel::<Job>();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
            std::thread::Builder::new()
                .name(format!("uring-{n}"))
                .spawn(move || run_ring(jobs_rx, ready_tx))?;
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("io_uring thread exited while starting"))??;
            senders.push(jobs_tx);
        }
        Ok(Reader {
            threads: senders,
            next: AtomicUsize::new(0),
        })
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.threads[n]
            .send(job)
            .map_err(|_| io::Error::other("the io_uring thread has stopped"))
    }

    /// Reads all `size` bytes of a file, failing if it is longer or shorter.
    pub async fn read_all(&self, path: &Path, size: u64) -> io::Result<Bytes> {
        let (tx, mut rx) = mpsc::channel(1);
        self.submit(Job {
            path: path.to_path_buf(),
            start: 0,
            len: size,
            expect_eof: true,
            chunks: tx,
        })?;
        let mut parts = Vec::new();
        while let Some(chunk) = rx.recv().await {
            parts.push(chunk?);
        }
        Ok(match parts.len() {
            1 => parts.pop().unwrap_or_default(),
            _ => Bytes::from(parts.concat()),
        })
    }

    /// A body of `len` bytes of `path` from `start`; the first chunk (or
    /// the open error) has arrived when this returns.
    pub async fn range(&self, path: &Path, start: u64, len: u64) -> io::Result<Body> {
        if len == 0 {
            // Still open it, so a vanished file is an error here too.
            std::fs::metadata(path)?;
            return Ok(body::empty());
        }
        let (tx, mut rx) = mpsc::channel(1);
        self.submit(Job {
            path: path.to_path_buf(),
            start,
            len,
            expect_eof: false,
            chunks: tx,
        })?;
        let first = match rx.recv().await {
            Some(chunk) => chunk?,
            None => return Err(io::Error::other("the io_uring read ended without data")),
        };
        if first.len() as u64 == len {
            return Ok(body::full(first));
        }
        let rest = stream::poll_fn(move |cx| rx.poll_recv(cx));
        let chunks = stream::once(async { Ok(first) }).chain(rest);
        Ok(StreamBody::new(chunks.map(|c| c.map(Frame::data))).boxed_unsync())
    }
}

/// The body of one io_uring thread: set the ring up, say whether that
/// worked, then run jobs until every sender is gone.
fn run_ring(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio_uring::Runtime::new(tokio_uring::builder().entries(RING_ENTRIES)) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    runtime.block_on(async move {
        while let Some(job) = jobs.recv().await {
            tokio_uring::spawn(read_job(job));
        }
    });
}

async fn read_job(job: Job) {
    let file = match tokio_uring::fs::File::open(&job.path).await {
        Ok(file) => file,
        Err(e) => {
            let _ = job.chunks.send(Err(e)).await;
            return;
        }
    };
    let end = job.start.saturating_add(job.len);
    let chunk = if job.len <= ONE_READ {
        job.len as usize
    } else {
        CHUNK
    };
    let mut pos = job.start;
    while pos < end {
        let want = chunk.min((end - pos) as usize);
        let (result, buf) = file.read_at(Vec::with_capacity(want), pos).await;
        let message = match result {
            Ok(0) => Err(shorter(&job.path)),
            Ok(n) => {
                pos += n as u64;
                Ok(Bytes::from(buf))
            }
            Err(e) => Err(e),
        };
        let failed = message.is_err();
        if job.chunks.send(message).await.is_err() || failed {
            let _ = file.close().await;
            return; // the client went away, or the error was delivered
        }
    }
    if job.expect_eof {
        let (result, _) = file.read_at(Vec::with_capacity(1), end).await;
        match result {
            Ok(0) => {}
            Ok(_) => {
                let _ = job.chunks.send(Err(super::changed_size(&job.path))).await;
            }
            Err(e) => {
                let _ = job.chunks.send(Err(e)).await;
            }
        }
    }
    let _ = file.close().await;
}

fn shorter(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{} is shorter than indexed", path.display()),
    )
}
