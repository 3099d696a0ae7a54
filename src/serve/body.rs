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

/// Opens `path` and returns a body streaming `len` bytes from `start`.
/// Opening happens before the response head is sent, so a file that vanished
/// from under the server becomes an error status, not a truncated 200.
pub async fn file_range(path: &Path, start: u64, len: u64) -> io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    let on_disk = file.metadata().await?.len();
    if start.checked_add(len).is_none_or(|end| end > on_disk) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} is shorter than indexed", path.display()),
        ));
    }
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let reader = file.take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, FILE_CHUNK);
    Ok(StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync())
}
