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

#[cfg(test)]
mod tests {
    use super::without_port;

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
