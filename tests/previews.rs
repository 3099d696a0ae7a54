//! Preview URLs (`/s/<service>@<id>/…`) and skew protection, end to end:
//! the real binary, real sockets, deployments made through the admin API.

mod common;

use std::net::SocketAddr;

use common::{send, tar_of, Response, Root, Server};
use serde_json::Value;

const TOKEN: &str = "preview-token-81c3";
const AUTH: (&str, &str) = ("Authorization", "Bearer preview-token-81c3");

fn upload(admin: SocketAddr, query: &str, files: &[(&str, &[u8])]) -> String {
    let r = send(
        admin,
        "POST",
        &format!("/services/web/deployments{query}"),
        &[AUTH],
        &tar_of(files),
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    body["id"].as_str().unwrap().to_string()
}

fn metric(admin: SocketAddr, line_start: &str) -> u64 {
    let r = common::get(admin, "/metrics", &[AUTH]);
    r.text()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

fn assert_preview_headers(r: &Response) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-robots-tag"), Some("noindex"));
}

#[test]
fn previews_serve_active_and_inactive_deployments_read_only() {
    let root = Root::new();
    let config = common::public_previews_config(root.path());
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &config]);
    let live = upload(admin, "", &[("index.html", b"<h1>live</h1>")]);
    let staged = upload(
        admin,
        "?activate=false",
        &[
            ("index.html", b"<h1>staged</h1>"),
            ("docs/index.html", b"docs"),
        ],
    );

    // The inactive one is reachable by id; the public URL still serves live.
    let r = server.get(&format!("/s/web@{staged}/"));
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>staged</h1>"));
    assert_preview_headers(&r);
    assert_eq!(server.get("/s/web/").text(), "<h1>live</h1>");
    // Directory redirects and 404s keep the preview's headers.
    let r = server.get(&format!("/s/web@{staged}/docs"));
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("/s/web@{staged}/docs/").as_str())
    );
    let r = server.get(&format!("/s/web@{staged}/missing.js"));
    assert_eq!(r.status, 404);
    assert_preview_headers(&r);
    // The active one by id, too.
    let r = server.get(&format!("/s/web@{live}/index.html"));
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>live</h1>"));
    assert_preview_headers(&r);
    // Read-only: only GET and HEAD.
    let r = common::request(server.addr, "POST", &format!("/s/web@{staged}/"), &[]);
    assert_eq!(r.status, 405);
    // Unknown, hostile and deleted ids are 404/400, never another deployment.
    assert_eq!(server.get("/s/web@nope/").status, 404);
    assert_eq!(server.get("/s/web@current/").status, 404);
    assert_eq!(server.get("/s/web@..%2Fx/").status, 400);
    assert_eq!(server.get("/s/nope@x/").status, 404);
    let r = send(
        admin,
        "DELETE",
        &format!("/services/web/deployments/{staged}"),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(server.get(&format!("/s/web@{staged}/")).status, 404);
}

#[test]
fn previews_can_be_switched_off() {
    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "previews = false\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    let id = upload(admin, "", &[("index.html", b"x")]);
    assert_eq!(server.get(&format!("/s/web@{id}/")).status, 404);
    assert_eq!(server.get("/s/web/").text(), "x");
}

#[test]
fn skew_protection_answers_old_assets_but_never_old_html() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    upload(
        admin,
        "",
        &[
            ("index.html", b"<script src=app.3f9c1.js>"),
            ("app.3f9c1.js", b"old()"),
            ("old.html", b"old page"),
        ],
    );
    upload(
        admin,
        "",
        &[
            ("index.html", b"<script src=app.77aa2.js>"),
            ("app.77aa2.js", b"new()"),
        ],
    );
    // A page loaded before the flip asks for its bundle: still there.
    let r = server.get("/s/web/app.3f9c1.js");
    assert_eq!((r.status, r.text().as_str()), (200, "old()"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    // HTML is never served from an old deployment; unknown files stay 404.
    assert_eq!(server.get("/s/web/old.html").status, 404);
    assert_eq!(server.get("/s/web/never.js").status, 404);
    assert_eq!(server.get("/s/web/app.77aa2.js").text(), "new()");
    assert_eq!(
        metric(admin, "project_http_skew_served_total{service=\"web\"}"),
        1
    );
}

/// Once the service directory has been still for a second, skew answers come
/// from a cached listing (src/site/retained.rs); a deployment added or
/// deleted after that is still seen at once.
#[test]
fn skew_protection_sees_deployments_added_and_deleted_after_caching() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let settle = || std::thread::sleep(std::time::Duration::from_millis(1300));
    let first = upload(admin, "", &[("index.html", b"a"), ("app.a.js", b"a()")]);
    upload(admin, "", &[("index.html", b"b"), ("app.b.js", b"b()")]);
    assert_eq!(server.get("/s/web/app.a.js").text(), "a()");
    settle();
    // Read and cached now; answered from the cache the second time.
    assert_eq!(server.get("/s/web/app.a.js").text(), "a()");
    assert_eq!(server.get("/s/web/app.a.js").text(), "a()");
    assert_eq!(server.get("/s/web/app.z.js").status, 404);
    // A staged deployment added after the listing was cached.
    upload(
        admin,
        "?activate=false",
        &[("index.html", b"c"), ("app.c.js", b"c()")],
    );
    assert_eq!(server.get("/s/web/app.c.js").text(), "c()");
    settle();
    assert_eq!(server.get("/s/web/app.c.js").text(), "c()");
    assert_eq!(server.get("/s/web/app.a.js").text(), "a()");
    // Deleted after being cached: never answered from again.
    let r = send(
        admin,
        "DELETE",
        &format!("/services/web/deployments/{first}"),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(server.get("/s/web/app.a.js").status, 404);
    assert_eq!(server.get("/s/web/app.c.js").text(), "c()");
    assert_eq!(
        metric(admin, "project_http_skew_served_total{service=\"web\"}"),
        7
    );
}

#[test]
fn skew_protection_can_be_switched_off() {
    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "skew_protection = false\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    upload(admin, "", &[("index.html", b"a"), ("app.1.js", b"1")]);
    upload(admin, "", &[("index.html", b"b"), ("app.2.js", b"2")]);
    assert_eq!(server.get("/s/web/app.1.js").status, 404);
}
