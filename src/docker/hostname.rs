//! `ensure --host`: what Traefik's `Host()` matcher can match, checked
//! before anything is created.
//!
//! Traefik compares `Host(`x`)` with the request's host name literally
//! (case-insensitively), so anything that is not a DNS name (RFC 1123
//! labels: letters, digits, inner hyphens, 1-63 characters each, 253 in
//! all) or an IP address makes a router that never matches. Each refusal
//! says what to pass instead.

use anyhow::{bail, Result};

/// `host` as it goes in a URL's authority (RFC 3986 §3.2.2): an IPv6
/// address in brackets, anything else as is.
pub fn url_host(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Accepts a DNS host name or an IP address; refuses the rest with a
/// message naming the fix.
pub fn validate_host(host: &str) -> Result<()> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let refuse = |why: &str| -> Result<()> { bail!("invalid --host {host:?}: {why}") };
    if host.is_empty() {
        return refuse("empty; give the host name visitors use, like p42.example.com");
    }
    if host.contains("://") || host.contains('/') {
        return refuse("give the bare host name, without scheme or path (like p42.example.com)");
    }
    if host.contains('(') || host.contains('`') || host.contains(' ') {
        return refuse(
            "give the bare host name, not a Traefik rule: ensure writes Host(`<HOST>`) itself",
        );
    }
    if host.contains('*') {
        return refuse(
            "a wildcard is not a host name and Host() never matches it: pass the bare domain \
             and --subdomains (e.g. --host p1.example.com --subdomains for *.p1.example.com: \
             <service>.p1.example.com then serves each service at /)",
        );
    }
    if host.ends_with('.') {
        return refuse("drop the trailing dot: Traefik matches the name without it");
    }
    if host.starts_with('[') || host.contains(':') {
        return refuse(
            "no port or brackets: Host() matches the name only (an IPv6 address goes bare)",
        );
    }
    if !host.is_ascii() {
        return refuse("use the name's ASCII (punycode, xn--…) form, which is what browsers send");
    }
    if host.len() > 253 {
        return refuse("longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return refuse("empty label (two dots in a row, or a leading dot)");
        }
        if label.len() > 63 {
            return refuse(&format!("label {label:?} is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse(&format!("label {label:?} starts or ends with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return refuse(&format!(
                "{c:?} is not allowed in a host name (letters, digits and inner '-' only, RFC 1123)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_host;

    #[test]
    fn names_and_addresses_pass() {
        for ok in [
            "p42.example.com",
            "localhost",
            "P42.Example.COM",
            "xn--bcher-kva.example",
            "a-b.c1.example",
            "192.0.2.10",
            "2001:db8::1",
        ] {
            validate_host(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn dead_routers_are_refused_with_the_fix() {
        for (bad, hint) in [
            ("*.p1.example.com", "--subdomains"),
            ("Host(`x.example`)", "not a Traefik rule"),
            ("https://x.example/", "without scheme"),
            ("x.example:8080", "no port"),
            ("x.example.", "trailing dot"),
            ("under_score.example", "not allowed"),
            ("-x.example", "starts or ends"),
            ("a..b", "empty label"),
            ("bücher.example", "punycode"),
            ("", "empty"),
        ] {
            let error = validate_host(bad).expect_err(bad).to_string();
            assert!(error.contains(hint), "{bad}: {error}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(validate_host(&long).is_err());
    }
}
