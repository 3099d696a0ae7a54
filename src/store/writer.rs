//! Writes an upload's files on a thread of their own.
//!
//! The extractor reads and hashes; this thread does the `write(2)` calls.
//! On two cores that overlap is what brings an upload close to `tar -x`
//! speed. Buffers go round a small pool (4 × 256 KiB), so memory stays
//! flat. An error is remembered and reported at the next call; dropping
//! the writer waits for its thread, so nothing is written into the upload
//! directory after the extractor has given up on it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const CHUNK: usize = 256 * 1024;
const BUFFERS: usize = 4;

enum Job {
    /// Create a new file (create-new, no-follow, 0644); following data goes there.
    Create {
        path: PathBuf,
        rel: String,
    },
    Data(Vec<u8>),
    /// Answer when every job before it is done.
    Barrier(SyncSender<()>),
}

/// The first error the thread met: (entry path, error).
type Failure = Arc<Mutex<Option<(String, io::Error)>>>;

pub struct FileWriter {
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    /// A buffer handed back unused (a file's end), handed out first.
    spare: Option<Vec<u8>>,
    failure: Failure,
    thread: Option<JoinHandle<()>>,
}

impl FileWriter {
    pub fn new() -> FileWriter {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(BUFFERS);
        let (give_back, free) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = give_back.send(Vec::with_capacity(CHUNK));
        }
        let failure: Failure = Arc::default();
        let seen = failure.clone();
        let thread = std::thread::Builder::new()
            .name("upload-writer".to_string())
            .spawn(move || run(inbox, give_back, seen))
            .ok();
        FileWriter {
            jobs: Some(jobs),
            free,
            spare: None,
            failure,
            thread,
        }
    }

    /// The first error met so far, if any (taken: reported once).
    pub fn take_failure(&self) -> Option<(String, io::Error)> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// An empty buffer (waits for one to come back from the thread).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = match self.spare.take() {
            Some(buf) => buf,
            None => self.free.recv().unwrap_or_default(),
        };
        buf.clear();
        buf
    }

    /// Returns a buffer that was not sent.
    pub fn give_back(&mut self, buf: Vec<u8>) {
        self.spare = Some(buf);
    }

    fn send(&self, job: Job) -> io::Result<()> {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(io::Error::other("the upload writer thread is gone")),
        }
    }

    pub fn create(&self, path: PathBuf, rel: String) -> io::Result<()> {
        self.send(Job::Create { path, rel })
    }

    pub fn write(&self, data: Vec<u8>) -> io::Result<()> {
        self.send(Job::Data(data))
    }

    /// Waits until everything sent so far is written (before a hard link
    /// to a file of this upload, and at the end).
    pub fn barrier(&self) -> io::Result<()> {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Job::Barrier(done))?;
        wait.recv()
            .map_err(|_| io::Error::other("the upload writer thread is gone"))
    }
}

impl Default for FileWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        self.jobs.take();
        // Let the thread drain: it may be blocked returning a buffer.
        while self.free.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts writeback of a finished file without waiting for it, so the
/// sync at commit has less left to do.
fn start_writeback(file: &File) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: sync_file_range on a descriptor we own; it only schedules I/O.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn run(inbox: Receiver<Job>, give_back: SyncSender<Vec<u8>>, failure: Failure) {
    let mut current: Option<(File, String)> = None;
    let fail = |rel: &str, e: io::Error| {
        let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert((rel.to_string(), e));
    };
    for job in inbox {
        let failed = failure.lock().map(|f| f.is_some()).unwrap_or(true);
        match job {
            Job::Create { path, rel } => {
                if let Some((file, _)) = current.take() {
                    start_writeback(&file);
                }
                if failed {
                    continue;
                }
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                {
                    Ok(file) => current = Some((file, rel)),
                    Err(e) => fail(&rel, e),
                }
            }
            Job::Data(data) => {
                if let (Some((file, rel)), false) = (&mut current, failed) {
                    if let Err(e) = file.write_all(&data) {
                        fail(rel, e);
                        current = None;
                    }
                }
                // A full pool means the extractor is gone: then just drop it.
                let _ = give_back.try_send(data);
            }
            Job::Barrier(done) => {
                current = None;
                let _ = done.send(());
            }
        }
    }
}
