//! Response heads prepared once per representation of a file.
//!
//! A deployment is immutable, so everything a `200` or a `304` for one
//! stored form of a file says about it — `ETag`, `Content-Type`,
//! `Content-Encoding`, `Vary`, `Content-Length`, `Accept-Ranges`,
//! `X-Content-Type-Options` — is known once the index is built. Building a
//! [`HeaderMap`] header by header per request was the largest single cost
//! of a small-file answer (~17 % of the process's instructions per request
//! under callgrind, docs/BENCHMARKS.md); cloning a prepared map and setting
//! the fields that may differ per request costs a fraction of it.
//!
//! What stays per request: `Cache-Control` (the configuration may change on
//! SIGHUP, and the same file is answered with a shorter one by skew
//! protection, a rewrite or a preview), `Last-Modified` (the date of the
//! deployment that answers the URL, "now" within the second of a flip),
//! `Date` (hyper's, cached per second), the conditional and range decisions
//! and a site's `_headers` (matched against the request path, which may
//! differ for one file: `/about`, `/about.html`, a rewrite).
//!
//! Heads are made on the first answer of a representation, not at index
//! time, so files nobody asks for cost no memory (≈ 1 KiB per form asked for).

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    LAST_MODIFIED, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue};

use super::index::{FileEntry, Representation};

/// The prepared heads of one representation.
#[derive(Debug, Clone)]
pub struct Heads {
    /// A full `200` (GET or HEAD): every field, in the order they are
    /// sent. `Cache-Control` and `Last-Modified` hold placeholders that
    /// [`Heads::ok`] replaces in place.
    ok: HeaderMap,
    /// A `304` (RFC 9110 §15.4.5: `Cache-Control`, `ETag`, `Vary`; no
    /// representation metadata). `Cache-Control` is a placeholder.
    not_modified: HeaderMap,
    /// The same heads serialised as HTTP/1.1 field lines (`name: value\r\n`,
    /// names lowercase as hyper writes them) for the fast path
    /// (`serve::fast`), cut around the per-request fields.
    wire: Wire,
}

/// [`Heads`] as bytes: a `200` is `cache-control` + `ok_a` +
/// `last-modified` + `ok_b`, a `304` is `cache-control` + `not_modified`
/// (the order of the maps, so both paths send the fields alike).
#[derive(Debug, Clone)]
pub struct Wire {
    pub ok_a: Box<[u8]>,
    pub ok_b: Box<[u8]>,
    pub not_modified: Box<[u8]>,
}

/// The field lines of `map` from its first field after `from` (exclusive;
/// `None`: from the start) up to `to` (exclusive; `None`: to the end).
fn field_lines(
    map: &HeaderMap,
    from: Option<&http::HeaderName>,
    to: Option<&http::HeaderName>,
) -> Box<[u8]> {
    let mut out = Vec::new();
    let mut started = from.is_none();
    for (name, value) in map {
        if !started {
            started = Some(name) == from;
            continue;
        }
        if Some(name) == to {
            break;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.into_boxed_slice()
}

/// Stands in for a field set per request; never sent.
const PLACEHOLDER: HeaderValue = HeaderValue::from_static("-");

impl Heads {
    /// Prepares the heads of `rep`, one form of `entry`.
    pub fn new(entry: &FileEntry, rep: &Representation) -> Heads {
        let negotiated = !entry.encoded.is_empty();
        let mut not_modified = HeaderMap::with_capacity(3);
        not_modified.insert(CACHE_CONTROL, PLACEHOLDER);
        if negotiated {
            not_modified.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        not_modified.insert(ETAG, rep.etag.clone());

        let mut ok = HeaderMap::with_capacity(9);
        ok.insert(CACHE_CONTROL, PLACEHOLDER);
        if negotiated {
            ok.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        ok.insert(ETAG, rep.etag.clone());
        ok.insert(LAST_MODIFIED, PLACEHOLDER);
        ok.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        ok.insert(CONTENT_TYPE, entry.content_type.clone());
        ok.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(e) = rep.encoding {
            ok.insert(CONTENT_ENCODING, HeaderValue::from_static(e.token()));
        }
        ok.insert(CONTENT_LENGTH, HeaderValue::from(rep.size));
        let wire = Wire {
            ok_a: field_lines(&ok, Some(&CACHE_CONTROL), Some(&LAST_MODIFIED)),
            ok_b: field_lines(&ok, Some(&LAST_MODIFIED), None),
            not_modified: field_lines(&not_modified, Some(&CACHE_CONTROL), None),
        };
        Heads {
            ok,
            not_modified,
            wire,
        }
    }

    /// The serialised forms of these heads ([`Wire`]).
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// The head of a full `200` with these per-request fields.
    pub fn ok(&self, cache_control: &HeaderValue, last_modified: &HeaderValue) -> HeaderMap {
        let mut headers = self.ok.clone();
        headers.insert(CACHE_CONTROL, cache_control.clone());
        headers.insert(LAST_MODIFIED, last_modified.clone());
        headers
    }

    /// The head of a `304` with this `Cache-Control`.
    pub fn not_modified(&self, cache_control: &HeaderValue) -> HeaderMap {
        let mut headers = self.not_modified.clone();
        headers.insert(CACHE_CONTROL, cache_control.clone());
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::index::Encoding;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn rep(encoding: Option<Encoding>, size: u64, etag: &'static str) -> Representation {
        Representation {
            encoding,
            disk_path: PathBuf::from("/nonexistent"),
            size,
            etag: HeaderValue::from_static(etag),
            cache: None,
            mapping: None,
            heads: OnceLock::new(),
        }
    }

    fn names(headers: &HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn ok_and_not_modified_heads_of_a_negotiated_form() {
        let entry = FileEntry {
            identity: rep(None, 2048, "\"id\""),
            encoded: vec![rep(Some(Encoding::Br), 700, "\"br\"")],
            content_type: HeaderValue::from_static("text/html; charset=utf-8"),
            is_html: true,
            fingerprinted: false,
            bytes_vary: false,
        };
        let heads = Heads::new(&entry, &entry.encoded[0]);
        let cc = HeaderValue::from_static("no-cache");
        let lm = HeaderValue::from_static("Mon, 30 Nov 2026 04:00:00 GMT");
        assert_eq!(
            names(&heads.ok(&cc, &lm)),
            [
                ("cache-control", "no-cache"),
                ("vary", "Accept-Encoding"),
                ("etag", "\"br\""),
                ("last-modified", "Mon, 30 Nov 2026 04:00:00 GMT"),
                ("accept-ranges", "bytes"),
                ("content-type", "text/html; charset=utf-8"),
                ("x-content-type-options", "nosniff"),
                ("content-encoding", "br"),
                ("content-length", "700"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert_eq!(
            names(&heads.not_modified(&cc)),
            [
                ("cache-control", "no-cache"),
                ("vary", "Accept-Encoding"),
                ("etag", "\"br\""),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }

    fn serialised(headers: &HeaderMap) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in headers {
            out.extend_from_slice(format!("{n}: ").as_bytes());
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn wire_forms_are_the_maps_field_lines() {
        let entry = FileEntry {
            identity: rep(None, 2048, "\"id\""),
            encoded: vec![rep(Some(Encoding::Gzip), 700, "\"gz\"")],
            content_type: HeaderValue::from_static("text/css"),
            is_html: false,
            fingerprinted: false,
            bytes_vary: false,
        };
        let cc = HeaderValue::from_static("public, max-age=300");
        let lm = HeaderValue::from_static("Mon, 30 Nov 2026 04:00:00 GMT");
        for rep in [&entry.identity, &entry.encoded[0]] {
            let heads = Heads::new(&entry, rep);
            let wire = heads.wire();
            let mut ok = b"cache-control: public, max-age=300\r\n".to_vec();
            ok.extend_from_slice(&wire.ok_a);
            ok.extend_from_slice(b"last-modified: Mon, 30 Nov 2026 04:00:00 GMT\r\n");
            ok.extend_from_slice(&wire.ok_b);
            assert_eq!(
                String::from_utf8(ok).unwrap(),
                String::from_utf8(serialised(&heads.ok(&cc, &lm))).unwrap()
            );
            let mut not_modified = b"cache-control: public, max-age=300\r\n".to_vec();
            not_modified.extend_from_slice(&wire.not_modified);
            assert_eq!(not_modified, serialised(&heads.not_modified(&cc)));
        }
    }

    #[test]
    fn identity_only_form_has_no_vary_and_no_coding() {
        let entry = FileEntry {
            identity: rep(None, 0, "\"e\""),
            encoded: vec![],
            content_type: HeaderValue::from_static("image/png"),
            is_html: false,
            fingerprinted: false,
            bytes_vary: false,
        };
        let heads = Heads::new(&entry, &entry.identity);
        let cc = HeaderValue::from_static("public, max-age=60");
        let ok = heads.ok(&cc, &HeaderValue::from_static("x"));
        assert!(ok.get(VARY).is_none() && ok.get(CONTENT_ENCODING).is_none());
        assert_eq!(ok.get(CONTENT_LENGTH).unwrap(), "0");
        assert_eq!(ok.get(CACHE_CONTROL).unwrap(), "public, max-age=60");
        assert_eq!(ok.len(), 7);
        let nm = heads.not_modified(&cc);
        assert_eq!(names(&nm).len(), 2);
        assert!(nm.get(VARY).is_none());
    }
}
