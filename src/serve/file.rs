//! Answering with one file of a deployment: representation choice,
//! validators, conditionals, ranges, headers, body.

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, LAST_MODIFIED, RANGE, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::{self, Body};
use super::conditional::{self, Precondition};
use super::encoding;
use super::io::FileIo;
use super::range::{self, RangeOutcome};
use crate::site::index::{FileEntry, MemoryBudget, Representation};

/// How a file is being answered.
pub struct FileAnswer<'a> {
    pub entry: &'a FileEntry,
    pub request_headers: &'a HeaderMap,
    pub head: bool,
    pub cache_control: &'a HeaderValue,
    /// `Some(404)` for the deployment's `404.html`: no conditionals, no ranges.
    pub error_status: Option<StatusCode>,
    /// The deployment's budget for holding small files in memory.
    pub memory: &'a MemoryBudget,
    /// How files are read from disk.
    pub io: &'a FileIo,
}

impl FileAnswer<'_> {
    pub async fn respond(self) -> Response<Body> {
        let entry = self.entry;
        let accept = self
            .request_headers
            .get(ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let chosen = encoding::negotiate(accept, entry.encodings());
        let rep = entry.representation(chosen);
        let etag = rep.etag.to_str().unwrap_or("");

        let mut builder = Response::builder()
            .header(CONTENT_TYPE, entry.content_type.clone())
            .header(CACHE_CONTROL, self.cache_control.clone())
            .header(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if !entry.encoded.is_empty() {
            builder = builder.header(VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if let Some(e) = chosen {
            builder = builder.header(CONTENT_ENCODING, HeaderValue::from_static(e.token()));
        }

        if let Some(status) = self.error_status {
            return send(
                builder.status(status),
                rep,
                self.memory,
                self.io,
                0,
                rep.size,
                self.head,
            )
            .await;
        }

        builder = builder
            .header(ETAG, rep.etag.clone())
            .header(LAST_MODIFIED, entry.last_modified.clone())
            .header(ACCEPT_RANGES, HeaderValue::from_static("bytes"));

        match conditional::evaluate(self.request_headers, etag, entry.modified) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                return finish(builder.status(StatusCode::NOT_MODIFIED), body::empty());
            }
            Precondition::Failed => {
                return finish(
                    builder
                        .status(StatusCode::PRECONDITION_FAILED)
                        .header(CONTENT_LENGTH, 0),
                    body::empty(),
                );
            }
        }

        let outcome = match self.request_headers.get(RANGE) {
            Some(value)
                if conditional::if_range_allows(self.request_headers, etag, entry.modified) =>
            {
                range::evaluate(value.as_bytes(), rep.size)
            }
            _ => RangeOutcome::Full,
        };
        match outcome {
            RangeOutcome::Full => {
                send(
                    builder.status(StatusCode::OK),
                    rep,
                    self.memory,
                    self.io,
                    0,
                    rep.size,
                    self.head,
                )
                .await
            }
            RangeOutcome::Partial { start, end } => {
                let builder = builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, format!("bytes {start}-{end}/{}", rep.size));
                send(
                    builder,
                    rep,
                    self.memory,
                    self.io,
                    start,
                    end - start + 1,
                    self.head,
                )
                .await
            }
            RangeOutcome::Unsatisfiable => finish(
                builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{}", rep.size))
                    .header(CONTENT_LENGTH, 0),
                body::empty(),
            ),
        }
    }
}

/// Sends `len` bytes of `rep` from `start`: from memory when the bytes are
/// held (loading a small file on its first request, within the budget),
/// else streamed from the versioned directory.
async fn send(
    builder: http::response::Builder,
    rep: &Representation,
    memory: &MemoryBudget,
    io: &FileIo,
    start: u64,
    len: u64,
    head: bool,
) -> Response<Body> {
    let builder = builder.header(CONTENT_LENGTH, len);
    if head {
        return finish(builder, body::empty());
    }
    if let Some(bytes) = rep.cached() {
        return finish(builder, slice(bytes, start, len));
    }
    if let Some(cell) = &rep.cache {
        if memory.try_reserve(rep.size) {
            match io.read_whole(&rep.disk_path, rep.size).await {
                Ok(bytes) => {
                    if cell.set(bytes.clone()).is_err() {
                        memory.release(rep.size); // another request won the race
                    }
                    return finish(builder, slice(&bytes, start, len));
                }
                Err(e) => {
                    memory.release(rep.size);
                    return file_error(rep, e);
                }
            }
        }
    }
    if let Some(cell) = &rep.mapping {
        let mapped = match cell.get() {
            Some(bytes) => Ok(bytes.clone()),
            None => {
                // Prefaulting may read the file from disk: off the async workers.
                let (path, size) = (rep.disk_path.clone(), rep.size);
                match tokio::task::spawn_blocking(move || body::map_whole(&path, size)).await {
                    Ok(Ok(bytes)) => Ok(cell.get_or_init(|| bytes).clone()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            }
        };
        return match mapped {
            Ok(bytes) => finish(builder, slice(&bytes, start, len)),
            Err(e) => file_error(rep, e),
        };
    }
    match io.range(&rep.disk_path, start, len).await {
        Ok(body) => finish(builder, body),
        Err(e) => file_error(rep, e),
    }
}

fn slice(bytes: &Bytes, start: u64, len: u64) -> Body {
    // The range was checked against rep.size, which equals bytes.len().
    let start = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(bytes.len());
    body::full(bytes.slice(start..end))
}

/// A file the index knows could not be read: it was deleted or changed under
/// the server. 404 when gone, 500 otherwise; never a panic, never a partial 200.
fn file_error(rep: &Representation, error: std::io::Error) -> Response<Body> {
    let status = if error.kind() == std::io::ErrorKind::NotFound {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    tracing::error!(path = %rep.disk_path.display(), error = %error, "cannot read indexed file");
    super::plain(status, status.canonical_reason().unwrap_or("error"))
}

pub(super) fn finish(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build response");
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}
