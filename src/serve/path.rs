//! Request-path decoding: the first line of defence against traversal.
//!
//! The raw path is split on `/` *before* percent-decoding, then each segment
//! is decoded exactly once. Anything ambiguous is refused (400) rather than
//! normalized: NUL and control bytes, a backslash, an encoded `/`, a `..`
//! segment, malformed `%` escapes, invalid UTF-8 (which includes overlong
//! forms like `%c0%ae`). Segments starting with `.` are decoded but flagged,
//! so the router answers them 404 (dotfiles are never served).

use std::fmt;

/// The longest request-target the public server reads, in bytes (the
/// path and query as sent; scheme and authority too in absolute form):
/// 8 KiB, nginx's `large_client_header_buffers` line. A longer one is
/// answered `414 URI Too Long` (RFC 9110 §15.5.15) before anything else is
/// looked at, identically by hyper ([`super::handle`]) and the fast path
/// (which declines it), so no rule matching, file lookup or log line ever
/// works on more than this.
pub const MAX_TARGET: usize = 8 * 1024;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadEscape,
    InvalidUtf8,
    ForbiddenByte,
    EncodedSlash,
    DotDot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path must start with /",
            PathError::BadEscape => "malformed percent-escape in path",
            PathError::InvalidUtf8 => "path is not valid UTF-8",
            PathError::ForbiddenByte => "path contains a NUL, control character or backslash",
            PathError::EncodedSlash => "path segment contains an encoded /",
            PathError::DotDot => "path contains a .. segment",
        })
    }
}

/// A decoded request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPath {
    /// Non-empty decoded segments (empty ones from `//` are dropped).
    pub segments: Vec<String>,
    /// The path ended in `/` (or was `/`).
    pub trailing_slash: bool,
}

impl DecodedPath {
    /// True when any segment starts with `.` (including `.` itself).
    pub fn has_hidden_segment(&self) -> bool {
        self.segments.iter().any(|s| s.starts_with('.'))
    }
}

/// Decodes the path part of a request target (no query string).
pub fn decode(raw: &str) -> Result<DecodedPath, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments = Vec::new();
    for raw_segment in split_slash(rest) {
        if raw_segment.is_empty() {
            continue;
        }
        let segment = decode_segment(raw_segment)?;
        if segment == ".." {
            return Err(PathError::DotDot);
        }
        segments.push(segment);
    }
    Ok(DecodedPath {
        segments,
        trailing_slash: raw.ends_with('/'),
    })
}

/// `s` split at every `/`, as `s.split('/')` does, with a byte search
/// (cheaper than `str::split`'s char searcher on short paths; `/` is ASCII,
/// so every piece is a `str`).
fn split_slash(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == b'/') {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    // The common segment has no escape and no forbidden byte: it is its
    // own decoding (and already UTF-8), so it is copied as is.
    if raw.bytes().all(|b| b != b'%' && !forbidden(b)) {
        return Ok(raw.to_owned());
    }
    decode_escaped(raw)
}

/// NUL and control bytes, DEL and backslash: refused anywhere in a path.
fn forbidden(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b'\\'
}

/// Byte-by-byte decoding of a segment that has escapes (or bytes to refuse).
fn decode_escaped(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let decoded = if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_value(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex_value(*c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    let value = hi * 16 + lo;
                    if value == b'/' {
                        return Err(PathError::EncodedSlash);
                    }
                    value
                }
                _ => return Err(PathError::BadEscape),
            }
        } else {
            i += 1;
            b
        };
        if forbidden(decoded) {
            return Err(PathError::ForbiddenByte);
        }
        out.push(decoded);
    }
    String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Vec<String> {
        decode(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .segments
    }

    #[test]
    fn plain_and_escaped() {
        assert_eq!(ok("/s/web/a%20b.txt"), ["s", "web", "a b.txt"]);
        assert_eq!(ok("/s/web/%C3%A9t%C3%A9"), ["s", "web", "été"]);
        assert_eq!(ok("//s///web/"), ["s", "web"]);
        assert!(decode("/s/web/").unwrap().trailing_slash);
        assert!(!decode("/s/web").unwrap().trailing_slash);
        assert!(decode("/").unwrap().segments.is_empty());
    }

    #[test]
    fn double_encoding_is_decoded_once() {
        // `%252e%252e` is the literal name "%2e%2e", not "..".
        assert_eq!(ok("/s/web/%252e%252e/x"), ["s", "web", "%2e%2e", "x"]);
    }

    #[test]
    fn traversal_vectors_are_refused() {
        let cases = [
            ("/s/web/../etc/passwd", PathError::DotDot),
            ("/s/web/.%2e/etc/passwd", PathError::DotDot),
            ("/s/web/%2e%2e/etc/passwd", PathError::DotDot),
            ("/s/web/%2E%2E/x", PathError::DotDot),
            ("/s/web/%%32%65/x", PathError::BadEscape),
            ("/s/web/%", PathError::BadEscape),
            ("/s/web/%zz", PathError::BadEscape),
            ("/s/web/a%2fb", PathError::EncodedSlash),
            ("/s/web/a%2Fb", PathError::EncodedSlash),
            ("/s/..%2fother/x", PathError::EncodedSlash),
            ("/s/web/a%5cb", PathError::ForbiddenByte),
            ("/s/web/a\\b", PathError::ForbiddenByte),
            ("/s/web/a%00b", PathError::ForbiddenByte),
            ("/s/web/a%0ab", PathError::ForbiddenByte),
            ("/s/web/%c0%ae%c0%ae/x", PathError::InvalidUtf8),
            ("/s/web/%ff", PathError::InvalidUtf8),
            ("s/web", PathError::NotAbsolute),
        ];
        for (raw, expected) in cases {
            assert_eq!(decode(raw), Err(expected), "{raw}");
        }
    }

    proptest::proptest! {
        /// The shortcut for segments without escapes decodes exactly as
        /// the byte-by-byte decoder does.
        #[test]
        fn shortcut_agrees_with_the_byte_decoder(raw in r"[a-fA-F0-9xyz%./\\\x00-\x1f\x7fé-]{0,12}") {
            proptest::prop_assert_eq!(decode_segment(&raw), decode_escaped(&raw));
        }

        /// The byte splitter cuts exactly where `str::split('/')` does.
        #[test]
        fn split_slash_agrees_with_str_split(raw in r"[a/é%.]{0,16}") {
            proptest::prop_assert_eq!(
                split_slash(&raw).collect::<Vec<_>>(),
                raw.split('/').collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn hidden_segments_are_flagged() {
        assert!(decode("/s/web/./.git/config").unwrap().has_hidden_segment());
        assert!(decode("/s/web/a/.env").unwrap().has_hidden_segment());
        assert!(decode("/s/web/%2eenv").unwrap().has_hidden_segment());
        assert!(!decode("/s/web/a.b/c").unwrap().has_hidden_segment());
    }
}
