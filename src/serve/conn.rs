//! One public connection: the fast path ([`super::fast`]) where it answers,
//! hyper for everything else.
//!
//! The loop reads into one buffer, parses each complete request head with
//! `httparse`, and lets [`super::fast::respond`] answer it; answers to
//! pipelined requests are batched into one write. A request the fast path
//! declines is answered by hyper **alone** when it is an HTTP/1.1 request
//! without a body that leaves the connection as it is ([`one_shot`]:
//! hyper reads exactly that request's bytes, answers it, and gives the
//! connection back), so a 404, a redirect or a `Range` request does not
//! take a long-lived connection (a proxy's pooled one) off the fast path.
//! Anything else — a body, `Connection: close`, `Upgrade`, `Expect`, HTTP/1.0,
//! a head `httparse` refuses or one larger than [`MAX_HEAD`] — hands the
//! connection, with the bytes already read, to hyper for good ([`Rewind`]),
//! which then serves it exactly as it would have from the start.
//!
//! The header read timeout is hyper's rule (`header_read_timeout`, from the
//! moment the server waits for a request head, idle keep-alive time
//! included), kept with one timer per connection that is re-armed only when
//! it fires early, instead of once per request. On shutdown an idle
//! connection is closed; one with a request in progress is answered first.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::Body;
use super::fast::{self, FastPath, Outcome};

/// Request heads larger than this (incomplete so far) go to hyper, whose
/// limits and errors (431, 400) apply.
pub const MAX_HEAD: usize = 16 * 1024;

/// Header lines the fast path parses; a request with more goes to hyper.
const MAX_FIELDS: usize = 32;

/// How a connection left the fast path.
pub enum Handoff {
    /// Closed (by the client, on timeout, on shutdown, or on an I/O error).
    Closed,
    /// Hyper serves the rest, starting with the bytes already read.
    Hyper(Rewind),
}

/// What answers the requests the fast path declines.
pub struct Fallback<'a, H> {
    /// The public handler hyper calls.
    pub handler: &'a H,
    pub peer: SocketAddr,
    /// The listener's hyper settings; [`one_shot`] needs `half_close` on.
    pub builder: &'a hyper::server::conn::http1::Builder,
}

/// Serves `stream` on the fast path until it closes or hyper must take over.
pub async fn serve<H, F>(
    mut stream: TcpStream,
    fast: &FastPath,
    fallback: Fallback<'_, H>,
    header_read_timeout: Duration,
    shutdown: &CancellationToken,
) -> Handoff
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut input = BytesMut::with_capacity(4096);
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    let timer = tokio::time::sleep(header_read_timeout);
    tokio::pin!(timer);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    // When the server started waiting for the request head at the front
    // (hyper's rule: from the end of the previous answer, or the connect).
    let mut waiting_since = Instant::now();
    // The request at the front was just loaded by `fast::warm`: not again.
    let mut warmed = false;
    loop {
        // Some request was answered in this pass.
        let mut answered = false;
        // Answer every complete request already read.
        loop {
            if input.is_empty() {
                break;
            }
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut request = httparse::Request::new(&mut fields);
            let step = match request.parse(&input) {
                Ok(httparse::Status::Complete(used)) => {
                    match fast::respond(fast, &request, &mut output) {
                        Outcome::Answered(body) => Step::Answered(used, body),
                        Outcome::Cold(cold) if !warmed => Step::Warm(cold),
                        Outcome::Declined | Outcome::Cold(_)
                            if fast::hyper_answers_alone(&request) =>
                        {
                            Step::OneShot(used)
                        }
                        Outcome::Declined | Outcome::Cold(_) => Step::Handoff,
                    }
                }
                Ok(httparse::Status::Partial) if input.len() <= MAX_HEAD => break,
                _ => Step::Handoff,
            };
            warmed = matches!(step, Step::Warm(_));
            answered |= matches!(step, Step::Answered(..) | Step::OneShot(_));
            match step {
                Step::Warm(cold) => {
                    // Load it as the full path would, then parse it again;
                    // if it is not held that way, hyper answers (streams) it.
                    fast::warm(fast, &cold).await;
                }
                Step::Answered(used, body) => {
                    input.advance(used);
                    if let Some(body) = body {
                        if write_with(&mut stream, &output, &body).await.is_err() {
                            return Handoff::Closed;
                        }
                        output.clear();
                    }
                }
                Step::OneShot(used) => {
                    // Answers before it go first, in order.
                    if stream.write_all(&output).await.is_err() {
                        return Handoff::Closed;
                    }
                    output.clear();
                    let request = input.split_to(used).freeze();
                    match one_shot(&mut stream, request, &fallback).await {
                        Ok(unread) if unread.is_empty() => {}
                        Ok(unread) => {
                            // Not expected (hyper was given one request):
                            // put back whatever it read and did not use.
                            let rest = input.split();
                            input.extend_from_slice(&unread);
                            input.extend_from_slice(&rest);
                        }
                        Err(_) => return Handoff::Closed,
                    }
                }
                Step::Handoff => {
                    if stream.write_all(&output).await.is_err() {
                        return Handoff::Closed;
                    }
                    return Handoff::Hyper(Rewind {
                        prefix: input.freeze(),
                        stream,
                    });
                }
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return Handoff::Closed;
            }
            output.clear();
        }
        if answered {
            // The wait for the next request head starts now, whether or
            // not some of it was already read (a timer wake-up or a partial
            // read does not restart it).
            waiting_since = Instant::now();
        }
        if input.is_empty() && shutdown.is_cancelled() {
            return Handoff::Closed;
        }
        if input.capacity() - input.len() < 1024 {
            input.reserve(4096);
        }
        let idle = input.is_empty();
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut input) => read,
            () = &mut cancelled, if idle => return Handoff::Closed,
            () = &mut timer => {
                let deadline = waiting_since + header_read_timeout;
                if Instant::now() >= deadline {
                    return Handoff::Closed;
                }
                // Armed for an earlier request: wait for this one's deadline.
                timer.as_mut().reset(deadline);
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => return Handoff::Closed,
            Ok(_) => {}
        }
    }
}

/// What to do with the request at the front of the buffer.
enum Step {
    /// Load the file it asks for, then parse it again.
    Warm(fast::Cold),
    /// The fast path answered the request of this many bytes.
    Answered(usize, Option<bytes::Bytes>),
    /// hyper answers the request of this many bytes alone.
    OneShot(usize),
    /// hyper takes the connection.
    Handoff,
}

/// hyper answers `request` (one whole request head, no body) on `stream`
/// and gives the connection back: it reads exactly those bytes, then — once
/// the handler has produced the answer, so the head hyper writes is the
/// keep-alive one it would write on a long connection — end of input, which
/// (with `half_close`) lets it finish writing and return. Returns what hyper
/// read but did not use (nothing, normally).
async fn one_shot<H, F>(
    stream: &mut TcpStream,
    request: Bytes,
    fallback: &Fallback<'_, H>,
) -> Result<Bytes, hyper::Error>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let answered = Arc::new(Answered::default());
    let io = OneRequest {
        stream,
        request,
        answered: answered.clone(),
    };
    let (handler, peer) = (fallback.handler.clone(), fallback.peer);
    let service = service_fn(move |request| {
        let (handler, answered) = (handler.clone(), answered.clone());
        async move {
            let response = handler(request, peer).await;
            answered.set();
            Ok::<_, Infallible>(response)
        }
    });
    // On shutdown it is let finish: it ends with this one answer anyway.
    let parts = fallback
        .builder
        .serve_connection(TokioIo::new(io), service)
        .without_shutdown()
        .await?;
    Ok(parts.read_buf)
}

/// Set once the handler has answered the one request ([`one_shot`]).
#[derive(Default)]
struct Answered(Mutex<(bool, Option<Waker>)>);

impl Answered {
    fn set(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = true;
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }
}

/// The connection as hyper sees it for one request: that request's bytes,
/// then nothing until it is answered, then end of input.
struct OneRequest<'a> {
    stream: &'a mut TcpStream,
    request: Bytes,
    answered: Arc<Answered>,
}

impl AsyncRead for OneRequest<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.request.is_empty() {
            let n = self.request.len().min(buf.remaining());
            buf.put_slice(&self.request[..n]);
            self.request.advance(n);
            return Poll::Ready(Ok(()));
        }
        let mut state = self.answered.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 {
            return Poll::Ready(Ok(())); // end of input
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for OneRequest<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection goes on after this request.
        Poll::Ready(Ok(()))
    }
}

/// Writes `head` then `body` with vectored writes.
async fn write_with(stream: &mut TcpStream, head: &[u8], body: &Bytes) -> io::Result<()> {
    let (mut head, mut body) = (head, &body[..]);
    while !head.is_empty() {
        let n = stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    stream.write_all(body).await
}

/// A connection with bytes already read from it: reads return those first.
/// What hyper serves after the fast path declined.
pub struct Rewind {
    prefix: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Rewind {
    /// A connection with nothing read yet.
    pub fn new(stream: TcpStream) -> Rewind {
        Rewind {
            prefix: Bytes::new(),
            stream,
        }
    }
}
