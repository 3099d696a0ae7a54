//! The response body type shared by the public and admin servers.

use std::io;
use std::path::Path;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size for files streamed from disk.
const FILE_CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Files up to this size are sent from one memory mapping (one blocking
/// hop, no read copies); larger ones are streamed in chunks.
const MAP_LIMIT: u64 = 64 << 20;
/// Up to this size the mapping is made on the async worker itself.
const INLINE_MAP_LIMIT: u64 = 4 << 20;

/// A read-only mapping of part of a file, owned by the `Bytes` made from it.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and private; it is only read through
// shared slices and unmapped once, on drop.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live PROT_READ mapping until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned, once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Maps `len` bytes of `path` from `start` (prefaulted with MAP_POPULATE,
/// so sending never waits on page faults). Deployments are immutable: a
/// file is never truncated while mapped.
fn map_range(path: &Path, start: u64, len: u64) -> io::Result<Bytes> {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(path)?;
    let on_disk = file.metadata()?.len();
    check_range(path, on_disk, start, len)?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let aligned = start / page * page;
    let delta = (start - aligned) as usize;
    let map_len = len as usize + delta;
    // SAFETY: a fresh read-only private mapping of an open file; checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            file.as_raw_fd(),
            aligned as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let bytes = Bytes::from_owner(Mapping { ptr, len: map_len });
    Ok(bytes.slice(delta..delta + len as usize))
}

/// Maps all of a file that must be `size` bytes long, prefaulted, for the
/// index to keep ([`crate::site::index::Representation::mapping`]).
pub fn map_whole(path: &Path, size: u64) -> io::Result<Bytes> {
    let bytes = map_range(path, 0, size)?;
    let on_disk = std::fs::metadata(path)?.len();
    if on_disk != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} changed size since it was indexed", path.display()),
        ));
    }
    Ok(bytes)
}

/// The range must lie inside the file as it is on disk now (it was
/// checked against the indexed size; a changed file is an error, never a
/// short body).
fn check_range(path: &Path, on_disk: u64, start: u64, len: u64) -> io::Result<()> {
    if start.checked_add(len).is_none_or(|end| end > on_disk) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} is shorter than indexed", path.display()),
        ));
    }
    Ok(())
}

/// Opens `path` and returns a body of `len` bytes from `start`.
/// Opening happens before the response head is sent, so a file that vanished
/// from under the server becomes an error status, not a truncated 200.
pub async fn file_range(path: &Path, start: u64, len: u64) -> io::Result<Body> {
    if len <= INLINE_MAP_LIMIT {
        // Inline, not on the blocking pool: open + mmap of a file in the
        // page cache costs microseconds, less than the thread hop.
        return Ok(full(map_range(path, start, len)?));
    }
    if len <= MAP_LIMIT {
        // Large: prefaulting could read from disk for long; keep it off
        // the async workers.
        let owned = path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || map_range(&owned, start, len))
            .await
            .map_err(io::Error::other)??;
        return Ok(full(bytes));
    }
    let mut file = tokio::fs::File::open(path).await?;
    let on_disk = file.metadata().await?.len();
    check_range(path, on_disk, start, len)?;
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let reader = file.take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, FILE_CHUNK);
    Ok(StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync())
}
