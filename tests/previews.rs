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
            ("index.html", b"<script src=app.3f9c1a2b.js>"),
            ("app.3f9c1a2b.js", b"old()"),
            ("old.html", b"old page"),
            ("old.3f9c1a2b.html", b"old page"),
        ],
    );
    upload(
        admin,
        "",
        &[
            ("index.html", b"<script src=app.77aa2c3d.js>"),
            ("app.77aa2c3d.js", b"new()"),
        ],
    );
    // A page loaded before the flip asks for its bundle: still there.
    let r = server.get("/s/web/app.3f9c1a2b.js");
    assert_eq!((r.status, r.text().as_str()), (200, "old()"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    // HTML is never served from an old deployment; unknown files stay 404.
    assert_eq!(server.get("/s/web/old.html").status, 404);
    assert_eq!(server.get("/s/web/old.3f9c1a2b.html").status, 404);
    assert_eq!(server.get("/s/web/never.3f9c1a2c.js").status, 404);
    assert_eq!(server.get("/s/web/app.77aa2c3d.js").text(), "new()");
    assert_eq!(
        metric(admin, "project_http_skew_served_total{service=\"web\"}"),
        1
    );
}

/// Once the service directory has been still for a second, skew answers come
/// from a cached listing (src/site/retained.rs); a deployment added, made
/// live or deleted after that is still seen at once.
#[test]
fn skew_protection_sees_deployments_added_and_deleted_after_caching() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let settle = || std::thread::sleep(std::time::Duration::from_millis(1300));
    let (a, c) = ("/s/web/app.a1b2c3d4.js", "/s/web/app.c1c2c3d4.js");
    let first = upload(
        admin,
        "",
        &[("index.html", b"a"), ("app.a1b2c3d4.js", b"a()")],
    );
    upload(
        admin,
        "",
        &[("index.html", b"b"), ("app.b1b2c3d4.js", b"b()")],
    );
    assert_eq!(server.get(a).text(), "a()");
    settle();
    // Read and cached now; answered from the cache the second time.
    assert_eq!(server.get(a).text(), "a()");
    assert_eq!(server.get(a).text(), "a()");
    assert_eq!(server.get("/s/web/app.f1f2f3f4.js").status, 404);
    // A deployment staged after the listing was cached is not live: never
    // answered from. Once it was live and another replaced it, it is.
    let staged = upload(
        admin,
        "?activate=false",
        &[("index.html", b"c"), ("app.c1c2c3d4.js", b"c()")],
    );
    assert_eq!(server.get(c).status, 404);
    settle();
    assert_eq!(server.get(c).status, 404);
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        format!("{{\"id\":\"{staged}\"}}").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    upload(admin, "", &[("index.html", b"d")]);
    assert_eq!(server.get(c).text(), "c()");
    settle();
    assert_eq!(server.get(c).text(), "c()");
    assert_eq!(server.get(a).text(), "a()");
    // Deleted after being cached: never answered from again.
    let r = send(
        admin,
        "DELETE",
        &format!("/services/web/deployments/{first}"),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(server.get(a).status, 404);
    assert_eq!(server.get(c).text(), "c()");
    assert_eq!(
        metric(admin, "project_http_skew_served_total{service=\"web\"}"),
        7
    );
}

/// Issue 21: a deployment uploaded with `activate=false` (a review preview,
/// signed by default) was answered through skew protection to anyone, at
/// the service's own URL and under host routing, cacheable for 60 s.
#[test]
fn unactivated_deployments_never_answer_through_skew_protection() {
    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "host_suffix = \"p1.example.com\"\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    let by_host = |path: &str| {
        common::raw(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nHost: web.p1.example.com\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    upload(admin, "", &[("index.html", b"<h1>v1</h1>")]);
    let r = send(
        admin,
        "POST",
        "/services/web/deployments?activate=false",
        &[AUTH],
        &tar_of(&[
            ("index.html", b"<h1>v2</h1>"),
            ("app.js", b"v2 secret"),
            ("app.3f9c1a2b.js", b"v2 secret()"),
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    let v2 = answer["id"].as_str().unwrap().to_string();
    let link = answer["preview"].as_str().unwrap().to_string();
    let check = || {
        for path in ["/s/web/app.js", "/s/web/app.3f9c1a2b.js"] {
            let r = server.get(path);
            assert_eq!(r.status, 404, "{path}: {}", r.text());
        }
        for path in ["/app.js", "/app.3f9c1a2b.js"] {
            assert_eq!(by_host(path).status, 404, "host routing {path}");
        }
        let r = server.get(&format!("/s/web@{v2}/app.3f9c1a2b.js"));
        assert_eq!(r.status, 404, "unsigned preview");
    };
    check();
    // Also once the listing is cached (src/site/retained.rs).
    std::thread::sleep(std::time::Duration::from_millis(1300));
    check();
    // Only the signed link opens it.
    let r = server.get(&link);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>v2</h1>"));
    assert_eq!(
        metric(admin, "project_http_skew_served_total{service=\"web\"}"),
        0
    );
    // Once it has been live and was replaced, its assets are old assets.
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        format!("{{\"id\":\"{v2}\"}}").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    upload(admin, "", &[("index.html", b"<h1>v3</h1>")]);
    assert_eq!(server.get("/s/web/app.3f9c1a2b.js").text(), "v2 secret()");
    assert_eq!(by_host("/app.3f9c1a2b.js").text(), "v2 secret()");
    // Not a fingerprinted name: gone with the flip.
    assert_eq!(server.get("/s/web/app.js").status, 404);
}

/// Issue 21: rollback after v1, v2 (`activate=false`), v3 made v2 live.
#[test]
fn rollback_goes_to_the_previously_live_deployment() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let v1 = upload(admin, "", &[("index.html", b"v1")]);
    upload(admin, "?activate=false", &[("index.html", b"v2")]);
    upload(admin, "", &[("index.html", b"v3")]);
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["current"], v1.as_str());
    assert_eq!(server.get("/s/web/").text(), "v1");
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 409, "nothing older was live: {}", r.text());
    assert_eq!(server.get("/s/web/").text(), "v1");
}

/// Issue 21: a signed preview link of an id that was deleted and later
/// reused for new content opened the new content. Of the same kind: the
/// activation log's past of an id is not the past of a new deployment
/// made under it, for skew protection and rollback alike.
#[test]
fn an_id_reused_for_new_content_inherits_nothing() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let delete = |id: &str| {
        let r = send(
            admin,
            "DELETE",
            &format!("/services/web/deployments/{id}"),
            &[AUTH],
            b"",
        );
        assert_eq!(r.status, 204, "{}", r.text());
    };
    let staged = |files: &[(&str, &[u8])]| {
        let r = send(
            admin,
            "POST",
            "/services/web/deployments?id=rev&activate=false",
            &[AUTH],
            &tar_of(files),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let answer: Value = serde_json::from_slice(&r.body).unwrap();
        answer["preview"].as_str().unwrap().to_string()
    };
    upload(
        admin,
        "?id=x",
        &[("index.html", b"x1"), ("app.1a2b3c4d.js", b"x1()")],
    );
    let old_link = staged(&[("index.html", b"reviewed")]);
    let r = server.get(&old_link);
    assert_eq!((r.status, r.text().as_str()), (200, "reviewed"));
    let cookie = r.header("set-cookie").unwrap().to_string();
    let cookie = cookie.split(';').next().unwrap().to_string();
    upload(
        admin,
        "?id=y",
        &[("index.html", b"y"), ("app.5e6f7a8b.js", b"y()")],
    );
    delete("rev");
    delete("x");

    // The same ids, other content, never live.
    let new_link = staged(&[("index.html", b"never reviewed")]);
    assert_eq!(server.get(&old_link).status, 404, "the old link");
    let r = common::get(server.addr, "/s/web@rev/", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 404, "the old link's cookie");
    let r = server.get(&new_link);
    assert_eq!((r.status, r.text().as_str()), (200, "never reviewed"));
    upload(
        admin,
        "?id=x&activate=false",
        &[("index.html", b"x2"), ("app.9f8e7d6c.js", b"x2()")],
    );
    upload(admin, "?id=z", &[("index.html", b"z")]);
    assert_eq!(server.get("/s/web/app.9f8e7d6c.js").status, 404);
    assert_eq!(server.get("/s/web/app.5e6f7a8b.js").text(), "y()");
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["current"], "y", "not the new x, which was never live");
}

/// Deployments made live by hand (the seed runbook's `ln -s` + `mv -T`),
/// before the server started or while it runs, are in the activation log
/// (the watcher records them), so they count as live for skew protection
/// and rollback; one written by hand but never flipped to does not.
#[test]
fn deployments_made_live_by_hand_count_as_live() {
    use std::time::{Duration, Instant};
    let root = Root::new();
    root.deployment(
        "web",
        "hand1",
        &[("index.html", b"hand1"), ("app.4c4c5d5d.js", b"hand1()")],
    );
    root.flip("web", "hand1");
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    upload(admin, "", &[("index.html", b"v2")]);
    assert_eq!(server.get("/s/web/app.4c4c5d5d.js").text(), "hand1()");

    root.deployment(
        "web",
        "never",
        &[("index.html", b"never"), ("app.8a8a9b9b.js", b"never()")],
    );
    root.deployment(
        "web",
        "hand2",
        &[("index.html", b"hand2"), ("app.6e6e7f7f.js", b"hand2()")],
    );
    root.flip("web", "hand2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/s/web/").text() != "hand2" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get("/s/web/").text(), "hand2");
    let v3 = upload(admin, "", &[("index.html", b"v3")]);
    assert_eq!(server.get("/s/web/app.6e6e7f7f.js").text(), "hand2()");
    assert_eq!(
        server.get("/s/web/app.8a8a9b9b.js").status,
        404,
        "never live"
    );
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["current"], "hand2");
    assert_eq!(body["previous"], v3.as_str());
}

/// Issue 21: a file removed from a site kept answering through skew
/// protection, also after a rollback, as long as an old deployment was kept.
#[test]
fn removed_files_are_unpublished_at_once() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let deploy = |files: &[(&str, &[u8])]| {
        let r = send(
            admin,
            "POST",
            "/services/leak/deployments",
            &[AUTH],
            &tar_of(files),
        );
        assert!(r.status == 201 || r.status == 200, "{}", r.text());
    };
    deploy(&[
        ("index.html", b"a"),
        ("secrets.json", b"{\"key\":1}"),
        ("app.5e6f7a8b.js", b"a()"),
    ]);
    deploy(&[("index.html", b"b")]);
    let check = || {
        let r = server.get("/s/leak/secrets.json");
        assert_eq!(r.status, 404, "{}", r.text());
        // A fingerprinted asset is what skew protection is for.
        assert_eq!(server.get("/s/leak/app.5e6f7a8b.js").text(), "a()");
    };
    check();
    std::thread::sleep(std::time::Duration::from_millis(1300));
    check();
    deploy(&[("index.html", b"c")]);
    let r = send(admin, "POST", "/services/leak/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.get("/s/leak/").text(), "b");
    check();
}

/// A deployment answers skew misses for `skew_window` after it stopped
/// being live, then no more (also from the cached listing); `0` never.
#[test]
fn skew_window_bounds_how_long_old_assets_answer() {
    use std::time::{Duration, Instant};
    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "skew_window = \"5s\"\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    upload(
        admin,
        "",
        &[("index.html", b"1"), ("app.1a1a2b2b.js", b"1()")],
    );
    upload(admin, "", &[("index.html", b"2")]);
    // v1 stopped being live before the second upload was answered.
    let ended = Instant::now();
    assert_eq!(server.get("/s/web/app.1a1a2b2b.js").text(), "1()");
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(server.get("/s/web/app.1a1a2b2b.js").text(), "1()");
    std::thread::sleep((ended + Duration::from_secs(6)).saturating_duration_since(Instant::now()));
    assert_eq!(server.get("/s/web/app.1a1a2b2b.js").status, 404);
    drop(server);

    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "skew_window = 0\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    upload(
        admin,
        "",
        &[("index.html", b"1"), ("app.1a1a2b2b.js", b"1()")],
    );
    upload(admin, "", &[("index.html", b"2")]);
    assert_eq!(server.get("/s/web/app.1a1a2b2b.js").status, 404);
}

#[test]
fn skew_protection_can_be_switched_off() {
    let root = Root::new();
    let config = root.path().join("ph.toml");
    std::fs::write(&config, "skew_protection = false\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config_arg.as_str()]);
    upload(
        admin,
        "",
        &[("index.html", b"a"), ("app.1a2b3c4d.js", b"1")],
    );
    upload(admin, "", &[("index.html", b"b")]);
    assert_eq!(server.get("/s/web/app.1a2b3c4d.js").status, 404);
}
