//! The admin API's route table: every (method, path template) the API
//! answers, as data.
//!
//! The router ([`super::route`]) resolves a request against [`ROUTES`] and
//! dispatches on the [`Op`] it finds, so the table is the whole API: the
//! OpenAPI document ([`super::openapi`]) is checked against it by a test, and
//! a path that matches a template under another method is answered 405 with
//! an `Allow` header (RFC 9110 §15.5.6). The dashboard's HTML routes
//! (`GET /`, `POST /login`, `POST /logout`, `POST /ui/*`) are not API routes
//! and are not in the table.

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenApi,
    Health,
    Metrics,
    Events,
    ListServices,
    History,
    Upload,
    Manifest,
    DeleteDeployment,
    Activate,
    Rollback,
    Preview,
    Pin,
    Unpin,
    Activations,
    ListTokens,
    CreateToken,
    RevokeToken,
}

/// Every admin API route: method, path template (`{name}` matches one
/// non-empty segment), operation. Templates are tried in order.
pub const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/openapi.json", Op::OpenApi),
    ("GET", "/healthz", Op::Health),
    ("GET", "/metrics", Op::Metrics),
    ("GET", "/events", Op::Events),
    ("GET", "/services", Op::ListServices),
    ("GET", "/services/{service}/deployments", Op::History),
    ("POST", "/services/{service}/deployments", Op::Upload),
    (
        "POST",
        "/services/{service}/deployments/manifest",
        Op::Manifest,
    ),
    (
        "DELETE",
        "/services/{service}/deployments/{id}",
        Op::DeleteDeployment,
    ),
    ("POST", "/services/{service}/activate", Op::Activate),
    ("POST", "/services/{service}/rollback", Op::Rollback),
    (
        "POST",
        "/services/{service}/deployments/{id}/preview",
        Op::Preview,
    ),
    ("PUT", "/services/{service}/deployments/{id}/pin", Op::Pin),
    (
        "DELETE",
        "/services/{service}/deployments/{id}/pin",
        Op::Unpin,
    ),
    ("GET", "/services/{service}/activations", Op::Activations),
    ("GET", "/tokens", Op::ListTokens),
    ("POST", "/tokens", Op::CreateToken),
    ("DELETE", "/tokens/{name}", Op::RevokeToken),
];

/// The outcome of matching a request against [`ROUTES`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// The operation and the values of the template's placeholders, in order.
    Found(Op, Vec<&'a str>),
    /// The path exists under other methods: the `Allow` header's value.
    WrongMethod(String),
    NotFound,
}

/// The placeholders' values when `segments` fit `template`, else `None`.
fn fit<'a>(template: &str, segments: &[&'a str]) -> Option<Vec<&'a str>> {
    let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.iter().zip(segments) {
        if part.starts_with('{') && part.ends_with('}') {
            params.push(*segment);
        } else if part != segment {
            return None;
        }
    }
    Some(params)
}

/// Resolves `method` on the path `segments` (empty segments removed). A
/// template with more literal segments shadows one with fewer (OpenAPI's
/// rule: concrete paths match before templated ones), so
/// `/services/web/deployments/manifest` is only the manifest route.
pub fn resolve<'a>(method: &str, segments: &[&'a str]) -> Resolved<'a> {
    let literals = |template: &str| {
        template
            .split('/')
            .filter(|p| !p.is_empty() && !p.starts_with('{'))
            .count()
    };
    let fitting: Vec<(&str, &str, Op, Vec<&'a str>)> = ROUTES
        .iter()
        .filter_map(|(m, t, op)| fit(t, segments).map(|params| (*m, *t, *op, params)))
        .collect();
    let Some(most) = fitting.iter().map(|(_, t, _, _)| literals(t)).max() else {
        return Resolved::NotFound;
    };
    let mut allowed: Vec<&str> = Vec::new();
    for (route_method, template, op, params) in fitting {
        if literals(template) != most {
            continue;
        }
        if route_method == method {
            return Resolved::Found(op, params);
        }
        if !allowed.contains(&route_method) {
            allowed.push(route_method);
            // HEAD answers wherever GET does (`handle` maps it to GET).
            if route_method == "GET" {
                allowed.push("HEAD");
            }
        }
    }
    Resolved::WrongMethod(allowed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_in_table_order() {
        assert_eq!(
            resolve("POST", &["services", "web", "deployments", "manifest"]),
            Resolved::Found(Op::Manifest, vec!["web"])
        );
        assert_eq!(
            resolve("DELETE", &["services", "web", "deployments", "v1"]),
            Resolved::Found(Op::DeleteDeployment, vec!["web", "v1"])
        );
        assert_eq!(
            resolve("GET", &["services", "web", "deployments", "v1", "pin"]),
            Resolved::WrongMethod("PUT, DELETE".into())
        );
        assert_eq!(
            resolve("DELETE", &["services", "web", "deployments", "manifest"]),
            Resolved::WrongMethod("POST".into())
        );
        assert_eq!(resolve("GET", &["nope"]), Resolved::NotFound);
        assert_eq!(
            resolve("POST", &["services", "web", "activations"]),
            Resolved::WrongMethod("GET, HEAD".into())
        );
        assert_eq!(
            resolve("DELETE", &["tokens", "ci"]),
            Resolved::Found(Op::RevokeToken, vec!["ci"])
        );
    }
}
