//! `host[:port]` handling shared by the public server (host routing), the
//! dashboard (preview links) and the deploy client (the public URL next to
//! an admin URL): one place that knows what counts as a port; and the
//! request `Host` rules both listeners apply (RFC 9112 §3.2).

use http::{HeaderMap, Uri, Version};

/// Why a request is refused for its host (a 400, RFC 9112 §3.2), or
/// `None`: an HTTP/1.1 request without a `Host` field, any request with
/// more than one, a `Host` value that is not `uri-host [":" port]` (RFC
/// 3986 §3.2.2–3; empty is allowed), or a target whose authority carries
/// userinfo (RFC 9110 §4.2.4).
pub fn refusal(version: Version, headers: &HeaderMap, uri: &Uri) -> Option<&'static str> {
    let mut fields = headers.get_all(http::header::HOST).iter();
    let first = fields.next();
    if fields.next().is_some() {
        return Some("bad request: more than one Host header field (RFC 9112 §3.2)");
    }
    match first {
        None if version == Version::HTTP_11 => {
            return Some(
                "bad request: an HTTP/1.1 request needs a Host header field (RFC 9112 §3.2)",
            )
        }
        Some(value) if !valid_field(value.as_bytes()) => {
            return Some("bad request: the Host header field is not host[:port] (RFC 9112 §3.2)")
        }
        _ => {}
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Some("bad request: userinfo in the request target (RFC 9110 §4.2.4)");
    }
    None
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 3986), or empty:
/// no userinfo, no path, a port of digits within 0–65535 (or empty, as
/// `port = *DIGIT` allows).
pub fn valid_field(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    if value.contains(&b'@') || http::uri::Authority::try_from(value).is_err() {
        return false;
    }
    let port = if value.starts_with(b"[") {
        // An IP literal: `[…]` then an optional `:port`.
        match value.iter().position(|&b| b == b']') {
            Some(end) => match &value[end + 1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return false,
            },
            None => return false,
        }
    } else {
        let mut parts = value.splitn(3, |&b| b == b':');
        let (_, port, extra) = (parts.next(), parts.next(), parts.next());
        if extra.is_some() {
            return false;
        }
        port
    };
    port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit)
            && (p.is_empty() || std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()))
    })
}

/// A conservative subset of [`valid_field`] the fast path checks without
/// parsing: letters, digits, `.` and `-`, then at most an optional `:`
/// with 1–5 digits below 65536. Anything else is left to the full path.
pub fn plain_field(value: &[u8]) -> bool {
    let (name, port) = match value.iter().position(|&b| b == b':') {
        Some(at) => (&value[..at], Some(&value[at + 1..])),
        None => (value, None),
    };
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 5
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok())
        })
}

/// `host` without a trailing `:<digits>` (or a bare `:`); anything else is left alone
/// (`[::1]` stays whole, `[::1]:8080` loses only the port).
pub fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        // RFC 3986: `port = *DIGIT`, so an empty port is a port too.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `base` (`scheme://host[:port][/path]`, a public URL) with its host
/// replaced by `host` and its path dropped: `https://p1.example.com` and
/// `v42--docs.p1.example.com` give `https://v42--docs.p1.example.com`; a
/// port stays (`http://127.0.0.1:8080` gives `http://<host>:8080`). A base
/// without a scheme is taken as `http`. For preview links under host
/// routing, whose site is at the host's `/`.
pub fn with_host(base: &str, host: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let name = without_port(authority);
    let port = &authority[name.len()..];
    let port = if port == ":" { "" } else { port };
    format!("{scheme}://{host}{port}")
}

#[cfg(test)]
mod tests {
    use super::{plain_field, refusal, valid_field, with_host, without_port};

    #[test]
    fn host_fields_as_rfc_9112_reads_them() {
        for good in [
            "",
            "localhost",
            "a.example",
            "a.example:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "A-B.c.",
        ] {
            assert!(valid_field(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b",
            "a b@@/x",
            "u@a.example",
            "a.example:abc",
            "a.example:99999",
            "a/x",
            "a.example, b.example",
            "a\tb",
        ] {
            assert!(!valid_field(bad.as_bytes()), "{bad:?}");
            assert!(!plain_field(bad.as_bytes()), "{bad:?}");
        }
        // The fast path's subset never takes what the full path refuses.
        for plain in ["localhost", "a.example:8080", "x", "1.2.3.4:65535"] {
            assert!(plain_field(plain.as_bytes()) && valid_field(plain.as_bytes()));
        }
        assert!(!plain_field(b"[::1]:80") && !plain_field(b"") && !plain_field(b"a:"));

        let uri: http::Uri = "/x".parse().unwrap();
        let mut one = http::HeaderMap::new();
        one.insert("host", "a".parse().unwrap());
        assert_eq!(refusal(http::Version::HTTP_11, &one, &uri), None);
        let none = http::HeaderMap::new();
        assert!(refusal(http::Version::HTTP_11, &none, &uri).is_some());
        assert_eq!(refusal(http::Version::HTTP_10, &none, &uri), None);
        let mut two = one.clone();
        two.append("host", "a".parse().unwrap());
        assert!(refusal(http::Version::HTTP_10, &two, &uri).is_some());
        let userinfo: http::Uri = "http://u:p@a/x".parse().unwrap();
        assert!(refusal(http::Version::HTTP_11, &one, &userinfo).is_some());
    }

    #[test]
    fn with_host_keeps_scheme_and_port_only() {
        let host = "v42--docs.p1.example.com";
        assert_eq!(
            with_host("https://p1.example.com/", host),
            "https://v42--docs.p1.example.com"
        );
        assert_eq!(
            with_host("http://127.0.0.1:8080", host),
            "http://v42--docs.p1.example.com:8080"
        );
        assert_eq!(
            with_host("http://[::1]:8080/static?x", host),
            "http://v42--docs.p1.example.com:8080"
        );
        assert_eq!(with_host("p1.example.com", host), format!("http://{host}"));
        assert_eq!(
            with_host("https://u:p@p1.example.com:", host),
            format!("https://{host}")
        );
    }

    #[test]
    fn strips_only_a_numeric_port() {
        assert_eq!(without_port("web.example.com:8080"), "web.example.com");
        assert_eq!(without_port("web.example.com"), "web.example.com");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
        assert_eq!(without_port("host:"), "host");
        assert_eq!(without_port("host:80x"), "host:80x");
    }
}
