//! The admin API's OpenAPI 3.1 description, served without a token at
//! `GET /openapi.json` (like most APIs publish their spec).
//!
//! The document is a checked-in file (`src/admin/openapi.json`) compiled
//! into the binary. It is kept true two ways: a unit test below compares
//! its paths and methods with the router's table ([`super::routes::ROUTES`]),
//! both directions; and `tests/openapi.rs` runs schemathesis against a live
//! server, which fails on a 5xx, an undocumented status or a response that
//! does not fit its schema.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::serve::body::{self, Body};

/// Where the document is served on the admin port.
pub const PATH: &str = "/openapi.json";

/// The document (OpenAPI 3.1.0, JSON).
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `200 application/json` with [`DOCUMENT`].
pub fn response() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, DOCUMENT.len())
        .header(CACHE_CONTROL, "no-cache")
        .body(body::full(DOCUMENT))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::routes::ROUTES;
    use super::*;

    /// (METHOD, template) of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (key, _) in item.as_object().expect("path item") {
                if ["get", "put", "post", "delete", "patch", "head", "options"]
                    .contains(&key.as_str())
                {
                    out.insert((key.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, template, _)| (method.to_string(), template.to_string()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routes).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes missing from openapi.json: {undocumented:?}; \
             documented but not routed: {unrouted:?}"
        );
        assert!(ROUTES.iter().any(|(m, t, _)| *m == "GET" && *t == PATH));
    }

    /// Every operation says what a refused token gets, and every `$ref`
    /// points at something that exists.
    #[test]
    fn operations_document_auth_failures_and_refs_resolve() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let public = op
                    .get("security")
                    .is_some_and(|s| s == &serde_json::json!([]));
                if !public {
                    assert!(
                        op["responses"].get("401").is_some(),
                        "{method} {path} does not document 401"
                    );
                }
            }
        }
        fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        match (k.as_str(), v) {
                            ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                            _ => refs(v, out),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("local $ref");
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }
}
