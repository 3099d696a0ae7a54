//! `host[:port]` handling shared by the public server (host routing), the
//! dashboard (preview links) and the deploy client (the public URL next to
//! an admin URL): one place that knows what counts as a port.

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
    use super::{with_host, without_port};

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
