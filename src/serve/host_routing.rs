//! Host routing (`host_suffix`): which site a `Host` header names.
//!
//! With `host_suffix = "p1.example.com"` the first label of the host picks
//! the site, served at `/`:
//!
//! * `docs.p1.example.com` → the current deployment of service `docs`;
//! * `v42--docs.p1.example.com` → the retained deployment `v42` of `docs`
//!   (a preview, as `/s/docs@v42/` on the path form). `<service>@<id>` is
//!   not a DNS label, so the label is `<id>--<service>`, split at its
//!   **first** `--`, as Netlify's `deploy-preview-42--site.netlify.app`.
//!
//! A label that is itself the name of a service being served is that
//! service, even when it contains `--` (so a service named `a--b` keeps
//! its subdomain). Host names are case-insensitive and compared lowercased
//! (RFC 4343), so a deployment id or service name with capitals, an id
//! containing `--`, or a pair whose label would be longer than 63
//! characters (RFC 1035 §2.3.4) has no subdomain form: such hosts get 404,
//! and [`preview_label`] returns `None` so links use `/s/<service>@<id>/`.

/// The most characters in one DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// Separates the deployment id from the service in a preview label.
pub const PREVIEW_SEPARATOR: &str = "--";

/// What the label before the host suffix names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// The current deployment of this service.
    Service(&'a str),
    /// A retained deployment: `<id>--<service>`.
    Preview { service: &'a str, id: &'a str },
    /// No site: a label longer than [`MAX_LABEL`], or one that is no
    /// service name (e.g. `a.b` of `a.b.<suffix>`). The reason, for the 404.
    Invalid(&'static str),
}

/// The lowercased label of `host` before `suffix` (`.p1.example.com`,
/// lowercased, with its leading dot), when the host is under it; `host`
/// may carry a port and a trailing dot.
pub fn label(host: &str, suffix: &str) -> Option<String> {
    let host = crate::host::without_port(host).trim_end_matches('.');
    // Compared without allocating first: most hosts of a server with host
    // routing are under the suffix, but those that are not cost nothing.
    let cut = host.len().checked_sub(suffix.len())?;
    if cut == 0 || !host.is_char_boundary(cut) || !host[cut..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    Some(host[..cut].to_ascii_lowercase())
}

/// Routes a lowercased `label`; `is_service` says whether a service of
/// that exact name is being served.
pub fn route<'a>(label: &'a str, is_service: impl FnOnce(&str) -> bool) -> Route<'a> {
    if label.len() > MAX_LABEL {
        return Route::Invalid(
            "not found: a host name label is at most 63 characters (RFC 1035); \
             open /s/<service>@<id>/ on the main host instead",
        );
    }
    if !crate::store::is_valid_name(label) {
        return Route::Invalid("not found: the host names no service");
    }
    match label.split_once(PREVIEW_SEPARATOR) {
        Some((id, service)) if !is_service(label) => {
            if id.is_empty() || service.is_empty() {
                Route::Invalid("not found: a preview host is <id>--<service>.<host suffix>")
            } else {
                Route::Preview { service, id }
            }
        }
        _ => Route::Service(label),
    }
}

/// The subdomain label of deployment `id` of `service` (`<id>--<service>`)
/// when [`route`] would find it again: both names in lowercase letters,
/// digits and `-`, no `--` in the id, not starting or ending with `-`
/// (RFC 1123), at most [`MAX_LABEL`] characters. `None`: only the path form
/// `/s/<service>@<id>/` reaches it.
pub fn preview_label(service: &str, id: &str) -> Option<String> {
    let dns = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !dns(service) || !dns(id) || id.contains(PREVIEW_SEPARATOR) {
        return None;
    }
    let label = format!("{id}{PREVIEW_SEPARATOR}{service}");
    if label.len() > MAX_LABEL || label.starts_with('-') || label.ends_with('-') {
        return None;
    }
    Some(label)
}

/// The host of deployment `id` of `service` under `suffix` (as configured,
/// without a leading dot): `v42--docs.p1.example.com`, or `None` when the
/// pair has no subdomain form ([`preview_label`]).
pub fn preview_host(suffix: &str, service: &str, id: &str) -> Option<String> {
    preview_label(service, id).map(|label| format!("{label}.{}", suffix.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = ".p1.example.com";

    #[test]
    fn labels_under_the_suffix_only() {
        assert_eq!(
            label("docs.p1.example.com", SUFFIX).as_deref(),
            Some("docs")
        );
        assert_eq!(
            label("V42--Docs.P1.Example.COM.:8443", SUFFIX).as_deref(),
            Some("v42--docs")
        );
        assert_eq!(label("p1.example.com", SUFFIX), None);
        assert_eq!(label(".p1.example.com", SUFFIX), None);
        assert_eq!(label("docs.example.com", SUFFIX), None);
        assert_eq!(label("é.p1.example.com", SUFFIX).as_deref(), Some("é"));
        assert_eq!(
            label("\u{e9}p1.example.com", SUFFIX),
            None,
            "cut inside a character"
        );
    }

    #[test]
    fn services_previews_and_invalid_labels() {
        let none = |_: &str| false;
        assert_eq!(route("docs", none), Route::Service("docs"));
        assert_eq!(
            route("v42--docs", none),
            Route::Preview {
                service: "docs",
                id: "v42"
            }
        );
        // Split at the first `--`: the service may contain `--`.
        assert_eq!(
            route("v1--my--site", none),
            Route::Preview {
                service: "my--site",
                id: "v1"
            }
        );
        // A served service of that exact name wins.
        assert_eq!(
            route("my--site", |name| name == "my--site"),
            Route::Service("my--site")
        );
        assert!(matches!(route("--docs", none), Route::Invalid(_)));
        assert!(matches!(route("v1--", none), Route::Invalid(_)));
        assert!(matches!(route("a.b", none), Route::Invalid(_)));
        assert!(matches!(route("é", none), Route::Invalid(_)));
        let long = "a".repeat(64);
        assert!(matches!(route(&long, none), Route::Invalid(_)));
        assert_eq!(route(&long[..63], none), Route::Service(&long[..63]));
    }

    #[test]
    fn preview_labels_round_trip_or_are_refused() {
        let none = |_: &str| false;
        for (service, id) in [("docs", "v42"), ("my--site", "3f9c1a2b4d5e"), ("a", "b")] {
            let label = preview_label(service, id).unwrap();
            assert_eq!(route(&label, none), Route::Preview { service, id });
        }
        assert_eq!(
            preview_host("P1.example.com", "docs", "v42").as_deref(),
            Some("v42--docs.p1.example.com")
        );
        // Capitals, underscores, `--` in the id, edge hyphens, 64 characters.
        for (service, id) in [
            ("Docs", "v42"),
            ("docs", "V42"),
            ("my_site", "v1"),
            ("docs", "a--b"),
            ("docs", "-v1"),
            ("docs-", "v1"),
            ("s", &"i".repeat(61)),
        ] {
            assert_eq!(preview_label(service, id), None, "{service} {id}");
        }
        assert!(preview_label("s", &"i".repeat(60)).is_some());
    }
}
