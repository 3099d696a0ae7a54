//! The narrow HTTP/1.1 fast path: a plain keep-alive `GET`/`HEAD` of a file
//! held in memory, answered from the head prepared for it
//! ([`crate::site::heads`]) without building a `Request`, a `HeaderMap` or
//! a `Response`.
//!
//! Why: under callgrind, hyper's parsing, dispatching and head encoding, and
//! the `http` maps around them, were more than half of a small-file
//! request's user-space instructions (docs/BENCHMARKS.md). A deployment is
//! immutable, so for the common request almost nothing is left to decide.
//!
//! What: [`respond`] looks at one request parsed by `httparse` and either
//! writes the whole answer (`200` or `304`) or declines. It declines
//! everything it does not answer exactly as [`super::handle`] would —
//! another method or version, a body, `Connection` other than
//! `keep-alive`, `Range`/`If-Range`/`If-Match`/`If-Unmodified-Since`, an
//! `If-Modified-Since` without `If-None-Match`, a repeated field it reads,
//! a target outside a conservative character set, anything but
//! `/s/<service>/<file>` of a current deployment (previews, host routing,
//! `/health`, redirects, rules, SPA fallback, skew protection, 404s), a
//! deployment with `_headers` or forced `_redirects`, a file that is not
//! held in memory or mapped (streamed), the second of a flip. A file not
//! yet loaded is [`Outcome::Cold`]: loaded ([`warm`]), then answered here.
//! hyper answers a declined request, alone or with the rest of the
//! connection ([`super::conn`]). The equivalence is
//! tested by sending the same requests with the fast path on and off
//! (`tests/fast_path.rs`) and fuzzed in-process against `handle`
//! (`crate::fuzz::check_fast_path`).

use std::cell::RefCell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;

use super::{cache_control_for, conditional, encoding, index_of, path, PublicState};
use crate::admin::metrics::Metrics;

/// Bodies up to this size are copied after the head (one write for both,
/// and pipelined answers batched); larger ones are written from their
/// shared bytes with a vectored write, which saves copying them in user
/// space (the kernel copies them either way).
pub const COPY_MAX: usize = 512;

/// What the fast path needs besides the request.
pub struct FastPath {
    pub state: std::sync::Arc<PublicState>,
    pub metrics: std::sync::Arc<Metrics>,
}

/// What [`respond`] did with a request.
#[derive(Debug)]
pub enum Outcome {
    /// The answer's head (and its body, when copied) was appended to the
    /// output; `Some(body)` is to be written right after it.
    Answered(Option<Bytes>),
    /// Not the fast path's: nothing was written, hyper answers it.
    Declined,
    /// The fast path's once this file is in memory ([`warm`]); nothing was
    /// written.
    Cold(Cold),
}

/// A file the fast path would answer but does not hold yet.
#[derive(Debug)]
pub struct Cold {
    deployment: std::sync::Arc<crate::site::Deployment>,
    path: String,
    encoding: Option<crate::site::index::Encoding>,
}

/// Loads a [`Cold`] file the way the full path does on a first request
/// (`file::held`: read within the memory budget, or mapped); false when
/// it is not held that way (streamed per response, or unreadable), which
/// leaves the request to hyper.
pub async fn warm(fast: &FastPath, cold: &Cold) -> bool {
    let Some(entry) = cold.deployment.file(&cold.path) else {
        return false;
    };
    let rep = entry.representation(cold.encoding);
    matches!(
        super::file::held(rep, &cold.deployment.memory, &fast.state.io).await,
        Some(Ok(_))
    )
}

/// The request fields the fast path reads, from one pass over the head.
#[derive(Default)]
struct Fields<'a> {
    host: Option<&'a [u8]>,
    accept_encoding: Option<&'a [u8]>,
    if_none_match: Option<&'a [u8]>,
    if_modified_since: bool,
}

impl<'a> Fields<'a> {
    /// `None` when a field makes the request hyper's.
    fn read(headers: &[httparse::Header<'a>]) -> Option<Fields<'a>> {
        let mut fields = Fields::default();
        for header in headers {
            let name = header.name.as_bytes();
            let slot = match name.len() {
                4 if name.eq_ignore_ascii_case(b"host") => &mut fields.host,
                15 if name.eq_ignore_ascii_case(b"accept-encoding") => &mut fields.accept_encoding,
                13 if name.eq_ignore_ascii_case(b"if-none-match") => &mut fields.if_none_match,
                17 if name.eq_ignore_ascii_case(b"if-modified-since") => {
                    fields.if_modified_since = true;
                    continue;
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    if header.value.eq_ignore_ascii_case(b"keep-alive") {
                        continue;
                    }
                    return None;
                }
                // Fields that change framing, the connection or the answer
                // in ways only the full path handles.
                2 if name.eq_ignore_ascii_case(b"te") => return None,
                5 if name.eq_ignore_ascii_case(b"range") => return None,
                6 if name.eq_ignore_ascii_case(b"expect") => return None,
                7 if name.eq_ignore_ascii_case(b"upgrade") => return None,
                8 if name.eq_ignore_ascii_case(b"if-match")
                    || name.eq_ignore_ascii_case(b"if-range") =>
                {
                    return None
                }
                14 if name.eq_ignore_ascii_case(b"content-length") => return None,
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return None,
                19 if name.eq_ignore_ascii_case(b"if-unmodified-since") => return None,
                _ => continue,
            };
            if slot.is_some() {
                // A repeated field: how lists combine is the full path's.
                return None;
            }
            *slot = Some(header.value);
        }
        // Without `Host`, or with one the fast path does not read as plain
        // `host[:port]`, the full path answers (a 400 when RFC 9112 §3.2
        // says so).
        if !fields.host.is_some_and(crate::host::plain_field) {
            return None;
        }
        Some(fields)
    }
}

/// Whether hyper can answer this declined request alone and hand the
/// connection back ([`super::conn`]): HTTP/1.1, no body (`Content-Length`
/// absent or `0`, no `Transfer-Encoding`), nothing that ends or changes the
/// connection (`Connection` other than `keep-alive`, `Upgrade`, `Expect`).
pub fn hyper_answers_alone(request: &httparse::Request<'_, '_>) -> bool {
    request.version == Some(1)
        && request.headers.iter().all(|header| {
            let name = header.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                header.value == b"0"
            } else if name.eq_ignore_ascii_case(b"connection") {
                header.value.eq_ignore_ascii_case(b"keep-alive")
            } else {
                !(name.eq_ignore_ascii_case(b"transfer-encoding")
                    || name.eq_ignore_ascii_case(b"upgrade")
                    || name.eq_ignore_ascii_case(b"expect"))
            }
        })
}

/// A field value as `http::HeaderValue::to_str` would give it, for a value
/// `httparse` accepted (tab, space to `~`, or bytes from 0x80: it refuses
/// other control bytes and DEL): ASCII only; `None` otherwise (then the
/// request is declined rather than guessed at).
fn text(value: &[u8]) -> Option<&str> {
    if value.is_ascii() {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// `If-None-Match` against `etag` (quoted, strong): the one-tag forms a
/// client sends back (`"x"`, `W/"x"`) compared as bytes, any other list
/// the way [`conditional::evaluate`] does. `None` when the value is not
/// text.
fn none_match(value: &[u8], etag: &str) -> Option<bool> {
    let single = value.strip_prefix(b"W/").unwrap_or(value);
    if single == etag.as_bytes() {
        return Some(true);
    }
    Some(conditional::none_match(text(value)?, etag))
}

/// Request-target bytes the fast path takes: RFC 3986 `pchar`, `/` and
/// `?` (unreserved, sub-delims, `:`, `@`, `%`). Anything else — `#`,
/// quotes, brackets, spaces, non-ASCII — is left to hyper and `http`'s own
/// parsing.
fn plain_target(target: &[u8]) -> bool {
    target.first() == Some(&b'/') && target.iter().all(|&b| PLAIN[usize::from(b)])
}

/// [`plain_target`]'s bytes as a table (one load per byte).
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'%'
                    | b'?'
            );
        b += 1;
    }
    table
};

/// `/s/<service>/<rel>` that [`path::decode`] would give back unchanged —
/// no escape, no empty segment, no segment starting with `.`, only
/// [`plain_target`] bytes — as `(service, rel, trailing slash)` without
/// decoding or allocating: `rel` is the segments after the service joined
/// by `/` (`""` for the top). `None`: decode it the full way.
fn plain_site_path(raw: &str) -> Option<(&str, std::borrow::Cow<'_, str>, bool)> {
    let rest = raw.strip_prefix("/s/")?;
    // One pass: no escape, no empty segment, no segment starting with `.`.
    let mut previous = b'/';
    for &b in rest.as_bytes() {
        if b == b'%' || (previous == b'/' && (b == b'/' || b == b'.')) {
            return None;
        }
        previous = b;
    }
    let slash = rest.bytes().position(|b| b == b'/')?;
    let (service, rel) = (&rest[..slash], &rest[slash + 1..]);
    let (rel, trailing) = match rel.strip_suffix('/') {
        Some(rel) => (rel, true),
        None => (rel, rel.is_empty()),
    };
    Some((service, std::borrow::Cow::Borrowed(rel), trailing))
}

/// Answers `request` into `out`, or declines it (see the module doc).
pub fn respond(fast: &FastPath, request: &httparse::Request<'_, '_>, out: &mut Vec<u8>) -> Outcome {
    let mut cold = None;
    match answer(fast, request, out, &mut cold) {
        Some(body) => Outcome::Answered(body),
        None => cold.map_or(Outcome::Declined, Outcome::Cold),
    }
}

fn answer(
    fast: &FastPath,
    request: &httparse::Request<'_, '_>,
    out: &mut Vec<u8>,
    cold: &mut Option<Cold>,
) -> Option<Option<Bytes>> {
    let head = match request.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    if request.version? != 1 {
        return None;
    }
    let target = request.path?;
    // Too long: hyper answers the 414 (`path::MAX_TARGET`).
    if target.len() > path::MAX_TARGET || !plain_target(target.as_bytes()) {
        return None;
    }
    let fields = Fields::read(request.headers)?;
    let started = crate::access_log::enabled().then(Instant::now);
    let state = &*fast.state;
    let settings = state.settings.load();
    if let Some(suffix) = settings.host_suffix.as_deref() {
        let host = match fields.host {
            Some(host) => Some(text(host)?),
            None => None,
        };
        if host.is_some_and(|h| super::host_routing::label(h, suffix).is_some()) {
            return None;
        }
    }
    let raw_path = match target.bytes().position(|b| b == b'?') {
        Some(end) => &target[..end],
        None => target,
    };
    let decoded;
    let (service, joined, trailing_slash) = match plain_site_path(raw_path) {
        Some(plain) => plain,
        None => {
            decoded = path::decode(raw_path).ok()?;
            let [s, service, rest @ ..] = decoded.segments.as_slice() else {
                return None;
            };
            if s != "s" || (rest.is_empty() && !decoded.trailing_slash) {
                return None;
            }
            if rest.iter().any(|segment| segment.starts_with('.')) {
                return None;
            }
            (
                service.as_str(),
                std::borrow::Cow::Owned(rest.join("/")),
                decoded.trailing_slash,
            )
        }
    };
    if service.contains('@') || !crate::store::is_valid_name(service) {
        return None;
    }
    let deployment = state.registry.get(service)?;
    if !deployment.rules.headers.is_empty() || deployment.rules.redirects.any_forced() {
        return None;
    }
    let index;
    let (file_path, entry) = if trailing_slash || joined.is_empty() {
        index = index_of(&deployment, &joined)?;
        (index.0.as_str(), index.1)
    } else {
        let entry = deployment.file(&joined)?;
        if settings.clean_urls_redirect && entry.is_html {
            return None;
        }
        (&*joined, entry)
    };
    let cache_control = cache_control_for(&settings, entry, file_path);
    let accept = match fields.accept_encoding {
        Some(value) => Some(text(value)?),
        None => None,
    };
    let rep = entry.representation(encoding::negotiate(accept, entry.encodings()));
    let etag = rep.etag.to_str().ok()?;
    let not_modified = match fields.if_none_match {
        Some(value) => none_match(value, etag)?,
        // A date alone is the full path's (it compares with the clock).
        None if fields.if_modified_since => return None,
        None => false,
    };
    let now = SystemTime::now();
    // Within the second of a flip the full path dates the answer "now".
    if deployment.modified() > now {
        return None;
    }
    let body = if head || not_modified {
        None
    } else {
        match rep.cached().or_else(|| rep.mapping.as_ref()?.get()) {
            Some(bytes) => Some(bytes.clone()),
            None => {
                *cold = Some(Cold {
                    deployment: deployment.clone(),
                    path: file_path.to_string(),
                    encoding: rep.encoding,
                });
                return None;
            }
        }
    };

    let wire = rep.heads(entry).wire();
    let (status, bytes) = if not_modified {
        out.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\ncache-control: ");
        out.extend_from_slice(cache_control.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&wire.not_modified);
        (304, 0)
    } else {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncache-control: ");
        out.extend_from_slice(cache_control.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&wire.ok_a);
        out.extend_from_slice(b"last-modified: ");
        out.extend_from_slice(deployment.last_modified().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&wire.ok_b);
        (200, if head { 0 } else { rep.size })
    };
    out.extend_from_slice(b"date: ");
    date(now, out);
    out.extend_from_slice(b"\r\n\r\n");
    let body = match body {
        Some(body) if body.len() <= COPY_MAX => {
            out.extend_from_slice(&body);
            None
        }
        body => body,
    };
    fast.metrics
        .record_fast_request(&deployment.service, status, bytes);
    if let Some(started) = started {
        crate::access_log::record_at(
            &crate::access_log::Entry {
                method: if head { "HEAD" } else { "GET" },
                path: raw_path,
                status,
                bytes,
                duration_us: started.elapsed().as_micros() as u64,
                service: &deployment.service,
                deployment: &deployment.id,
            },
            now,
        );
    }
    Some(body)
}

thread_local! {
    /// The `Date` of the current second (RFC 9110 §6.6.1), as hyper caches it.
    static DATE: RefCell<(u64, HeaderValue)> = const {
        RefCell::new((u64::MAX, HeaderValue::from_static("")))
    };
}

/// Appends the IMF-fixdate of `now` (formatted once per second per thread).
fn date(now: SystemTime, out: &mut Vec<u8>) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, crate::site::index::http_date(now));
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(raw: &[u8]) -> Option<(Option<String>, Option<String>, bool)> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        request.parse(raw).unwrap();
        let f = Fields::read(request.headers)?;
        let s = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
        Some((
            s(f.accept_encoding),
            s(f.if_none_match),
            f.if_modified_since,
        ))
    }

    #[test]
    fn fields_it_reads_and_fields_it_declines() {
        assert_eq!(
            fields(
                b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nIf-None-Match: \"a\"\r\n\r\n"
            ),
            Some((Some("br".into()), Some("\"a\"".into()), false))
        );
        assert_eq!(
            fields(b"GET / HTTP/1.1\r\nHost: x\r\nconnection: Keep-Alive\r\nIf-Modified-Since: x\r\n\r\n"),
            Some((None, None, true))
        );
        for declined in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nIf-Range: \"a\"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nIf-Match: *\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\naccept-encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nIf-None-Match: \"b\"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            // No Host: a 400, which is the full path's (RFC 9112 §3.2).
            b"GET / HTTP/1.1\r\nAccept-Encoding: br\r\n\r\n",
        ] {
            assert_eq!(
                fields(declined),
                None,
                "{}",
                String::from_utf8_lossy(declined)
            );
        }
    }

    #[test]
    fn plain_site_paths_are_what_decode_gives() {
        for raw in [
            "/s/web/",
            "/s/web/a.css",
            "/s/web/sub/",
            "/s/web/sub/deep/x.js",
            "/s/web/a-b_c~!$&'()*+,;=:@x",
            "/s/web",
            "/s/web//x",
            "/s/web/.x",
            "/s/web/a/../b",
            "/s/web/%41",
            "/s//x",
            "/s/",
            "/x/web/a",
        ] {
            let full = path::decode(raw).ok().and_then(|d| {
                let [s, service, rest @ ..] = d.segments.as_slice() else {
                    return None;
                };
                (s == "s"
                    && (!rest.is_empty() || d.trailing_slash)
                    && !rest.iter().any(|r| r.starts_with('.')))
                .then(|| (service.clone(), rest.join("/"), d.trailing_slash))
            });
            if let Some((service, rel, trailing)) = plain_site_path(raw) {
                assert_eq!(
                    Some((service.to_string(), rel.into_owned(), trailing)),
                    full,
                    "{raw}"
                );
            }
        }
        assert!(plain_site_path("/s/web/sub/").is_some());
        assert!(plain_site_path("/s/web/%41").is_none());
    }

    #[test]
    fn targets_outside_the_plain_set_are_declined() {
        assert!(plain_target(b"/s/web/a%20b.css?v=1&x=2"));
        assert!(plain_target(b"/s/web/"));
        for target in [
            &b"*"[..],
            b"http://x/s/web/",
            b"/s/web/a#b",
            b"/s/web/\"",
            b"/s/web/a b",
            b"/s/web/\xc3\xa9",
            b"/s/web/{x}",
            b"/s/web/a\\b",
            b"",
        ] {
            assert!(!plain_target(target), "{}", String::from_utf8_lossy(target));
        }
    }

    #[test]
    fn none_match_agrees_with_the_full_evaluation() {
        let etag = "\"abc\"";
        for value in [
            &b"\"abc\""[..],
            b"W/\"abc\"",
            b"\"abd\"",
            b"\"x\", \"abc\"",
            b"*",
            b"W/\"abc\" junk",
            b"",
            b"abc",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::IF_NONE_MATCH,
                HeaderValue::from_bytes(value).unwrap(),
            );
            let full = conditional::evaluate(&headers, etag, UNIX_EPOCH)
                == conditional::Precondition::NotModified;
            assert_eq!(none_match(value, etag), Some(full), "{value:?}");
        }
    }

    #[test]
    fn field_text_is_what_header_value_to_str_accepts() {
        // Values httparse accepts: tab, space to `~`, bytes from 0x80.
        for value in [
            &b"gzip, br"[..],
            b"\t\"x\"",
            b"",
            b"~ !",
            b"\xc3\xa9",
            b"a\x80",
        ] {
            let expected = HeaderValue::from_bytes(value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            assert_eq!(text(value).map(str::to_owned), expected, "{value:?}");
        }
    }
}
