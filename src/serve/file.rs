//! Answering with one file of a deployment: representation choice,
//! validators, conditionals, ranges, headers, body.

use std::time::SystemTime;

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
    /// The date validator (whole seconds, rounded up) and its HTTP-date:
    /// when the URL started answering with this deployment's content
    /// ([`crate::site::Deployment::modified`]).
    pub modified: SystemTime,
    pub last_modified: &'a HeaderValue,
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

        // Fields a 304 repeats (RFC 9110 §15.4.5: Cache-Control, ETag, Vary;
        // Date is added by hyper); the representation's own metadata
        // (type, coding, ranges) only goes with a body. The common answers
        // (a full 200, a 304) use the form's prepared head instead
        // (site/heads.rs): same fields, same order, no map built per request.
        let base = || {
            let builder = Response::builder().header(CACHE_CONTROL, self.cache_control.clone());
            if entry.encoded.is_empty() {
                builder
            } else {
                builder.header(VARY, HeaderValue::from_static("Accept-Encoding"))
            }
        };
        let with_representation = |mut builder: http::response::Builder| {
            builder = builder
                .header(CONTENT_TYPE, entry.content_type.clone())
                .header(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            if let Some(e) = rep.encoding {
                builder = builder.header(CONTENT_ENCODING, HeaderValue::from_static(e.token()));
            }
            builder
        };

        if let Some(status) = self.error_status {
            let builder = with_representation(base())
                .status(status)
                .header(CONTENT_LENGTH, rep.size);
            return send(
                parts(builder),
                rep,
                self.memory,
                self.io,
                0,
                rep.size,
                self.head,
            )
            .await;
        }

        match conditional::evaluate(self.request_headers, etag, self.modified) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut response = Response::new(body::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                *response.headers_mut() = rep.heads(entry).not_modified(self.cache_control);
                return response;
            }
            Precondition::Failed => {
                return finish(
                    base()
                        .header(ETAG, rep.etag.clone())
                        .status(StatusCode::PRECONDITION_FAILED)
                        .header(CONTENT_LENGTH, 0),
                    body::empty(),
                );
            }
        }
        // An origin server never sends a Last-Modified later than its Date
        // (RFC 9110 §8.8.2.1): within the second of a flip, the date is
        // "now" (a validator older than the flip, so it never matches).
        let now = SystemTime::now();
        let flip_second;
        let last_modified = if self.modified <= now {
            self.last_modified
        } else {
            flip_second = crate::site::index::http_date(now);
            &flip_second
        };
        let validated = || {
            base()
                .header(ETAG, rep.etag.clone())
                .header(LAST_MODIFIED, last_modified.clone())
                .header(ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        };

        // Only GET has range handling: HEAD ignores Range (RFC 9110 §14.2).
        let outcome = match self.request_headers.get(RANGE) {
            Some(value)
                if !self.head
                    && conditional::if_range_allows(self.request_headers, etag, self.modified) =>
            {
                range::evaluate(value.as_bytes(), rep.size)
            }
            _ => RangeOutcome::Full,
        };
        match outcome {
            RangeOutcome::Full => {
                let (mut head, ()) = Response::new(()).into_parts();
                head.headers = rep.heads(entry).ok(self.cache_control, last_modified);
                send(head, rep, self.memory, self.io, 0, rep.size, self.head).await
            }
            RangeOutcome::Partial { start, end } => {
                let len = end - start + 1;
                let builder = with_representation(validated())
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, format!("bytes {start}-{end}/{}", rep.size))
                    .header(CONTENT_LENGTH, len);
                send(
                    parts(builder),
                    rep,
                    self.memory,
                    self.io,
                    start,
                    len,
                    self.head,
                )
                .await
            }
            RangeOutcome::Unsatisfiable => finish(
                validated()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(CONTENT_RANGE, format!("bytes */{}", rep.size))
                    .header(CONTENT_LENGTH, 0),
                body::empty(),
            ),
        }
    }
}

/// The head a builder describes (a builder error becomes a 500 head, as in
/// [`finish`]).
fn parts(builder: http::response::Builder) -> http::response::Parts {
    finish(builder, body::empty()).into_parts().0
}

/// Sends `len` bytes of `rep` from `start` under `head` (which carries the
/// `Content-Length`): from memory when the bytes are held (loading a small
/// file on its first request, within the budget), else streamed from the
/// versioned directory.
async fn send(
    head: http::response::Parts,
    rep: &Representation,
    memory: &MemoryBudget,
    io: &FileIo,
    start: u64,
    len: u64,
    head_only: bool,
) -> Response<Body> {
    if head_only {
        return Response::from_parts(head, body::empty());
    }
    match held(rep, memory, io).await {
        Some(Ok(bytes)) => Response::from_parts(head, slice(&bytes, start, len)),
        Some(Err(e)) => file_error(rep, e),
        None => match io.range(&rep.disk_path, start, len).await {
            Ok(body) => Response::from_parts(head, body),
            Err(e) => file_error(rep, e),
        },
    }
}

/// All the bytes of `rep` when it is held in memory or mapped: a small file
/// is read on its first request (within the deployment's `memory` budget),
/// a larger one up to the mapping limit is mapped once. `None`: it is
/// streamed per response (above the mapping limit, or small but over the
/// budget with no mapping). Also what the fast path loads a file with
/// before answering it (`serve::conn`).
pub async fn held(
    rep: &Representation,
    memory: &MemoryBudget,
    io: &FileIo,
) -> Option<std::io::Result<Bytes>> {
    if let Some(bytes) = rep.cached() {
        return Some(Ok(bytes.clone()));
    }
    if let Some(cell) = &rep.cache {
        if memory.try_reserve(rep.size) {
            return Some(match io.read_whole(&rep.disk_path, rep.size).await {
                Ok(bytes) => {
                    if cell.set(bytes.clone()).is_err() {
                        memory.release(rep.size); // another request won the race
                    }
                    Ok(bytes)
                }
                Err(e) => {
                    memory.release(rep.size);
                    Err(e)
                }
            });
        }
    }
    let cell = rep.mapping.as_ref()?;
    Some(match cell.get() {
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
    })
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
