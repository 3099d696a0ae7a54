//! A site's own rules, end to end: `_redirects`, `_headers`, immutable
//! caching of fingerprinted files, clean URLs and `index.htm`, deployed
//! through the admin API to the real binary and read over real sockets.

mod common;

use std::net::SocketAddr;

use common::{send, tar_of, Response, Root, Server};
use serde_json::Value;

const TOKEN: &str = "rules-token-5e1f";
const AUTH: (&str, &str) = ("Authorization", "Bearer rules-token-5e1f");

fn start(root: &Root, config: &str) -> (Server, SocketAddr) {
    let path = root.path().join("rules-test.toml");
    // Previews are read unsigned here (signed previews: tests/audit.rs).
    std::fs::write(&path, format!("previews = \"public\"\n{config}")).unwrap();
    Server::start_with_token(root.path(), TOKEN, &["--config", path.to_str().unwrap()])
}

fn try_upload(admin: SocketAddr, query: &str, files: &[(&str, &[u8])]) -> Response {
    send(
        admin,
        "POST",
        &format!("/services/web/deployments{query}"),
        &[AUTH],
        &tar_of(files),
    )
}

fn upload(admin: SocketAddr, query: &str, files: &[(&str, &[u8])]) -> String {
    let r = try_upload(admin, query, files);
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// GET with a given `Host` (host routing).
fn get_host(addr: SocketAddr, host: &str, path: &str) -> Response {
    common::raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn status_location(r: &Response) -> (u16, Option<&str>) {
    (r.status, r.header("location"))
}

const REDIRECTS: &str = "\
# moved pages
/old            /new            301
/temp           /new
/see-other      /new            303
/temporary      /new            307
/permanent      /new            308
/blog/:year/:slug  /posts/:year/:slug  301
/news/*         /articles/:splat   301
/search         /find?q=site    302
/away/*         https://example.com/:splat 301
/app/*          /app/shell.html 200
/rewritten      /target.html    200
/to-missing     /nothing-here.html 200
/store-closed   /closed.html    404
/shadowed.html  /new            301
/forced.html    /new            301!
/from-dir/*     /dir/           200
";

fn site() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("index.html", b"<h1>home</h1>"),
        ("new.html", b"<h1>new</h1>"),
        ("target.html", b"<h1>target</h1>"),
        ("closed.html", b"<h1>closed</h1>"),
        ("shadowed.html", b"<h1>shadowed file</h1>"),
        ("forced.html", b"<h1>forced file</h1>"),
        ("app/shell.html", b"<h1>shell</h1>"),
        ("dir/index.html", b"<h1>dir</h1>"),
        ("_redirects", REDIRECTS.as_bytes()),
    ]
}

#[test]
fn redirects_every_form_and_status_under_both_routings_and_previews() {
    let root = Root::new();
    let (server, admin) = start(&root, "host_suffix = \"sites.test\"\n");
    let id = upload(admin, "", &site());
    let a = server.addr;

    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/old", 301, Some("/new")),
        ("/old/", 301, Some("/new")),
        ("/old?utm=1", 301, Some("/new?utm=1")),
        ("/temp", 302, Some("/new")),
        ("/see-other", 303, Some("/new")),
        ("/temporary", 307, Some("/new")),
        ("/permanent", 308, Some("/new")),
        ("/blog/2024/hello", 301, Some("/posts/2024/hello")),
        ("/news/a/b.html", 301, Some("/articles/a/b.html")),
        ("/news/caf%C3%A9", 301, Some("/articles/caf%C3%A9")),
        ("/search?q=mine", 302, Some("/find?q=site")),
    ];
    for (path, status, location) in cases {
        // Path routing: the site's root is /s/web.
        let r = server.get(&format!("/s/web{path}"));
        let expected = location.map(|l| format!("/s/web{l}"));
        assert_eq!(
            status_location(&r),
            (*status, expected.as_deref()),
            "{path}"
        );
        // Host routing: the site's root is /.
        let r = get_host(a, "web.sites.test", path);
        assert_eq!(status_location(&r), (*status, *location), "host {path}");
        // A preview: the site's root is /s/web@<id>.
        let r = server.get(&format!("/s/web@{id}{path}"));
        let expected = location.map(|l| format!("/s/web@{id}{l}"));
        assert_eq!(
            status_location(&r),
            (*status, expected.as_deref()),
            "preview {path}"
        );
    }
    // External destinations are redirects, the same whatever the mount.
    let r = server.get("/s/web/away/x/y?z=1");
    assert_eq!(
        status_location(&r),
        (301, Some("https://example.com/x/y?z=1"))
    );

    // 200: an internal rewrite; the URL stays, the destination's file answers.
    for path in ["/s/web/app/any/deep/route", "/s/web/app/"] {
        let r = server.get(path);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "<h1>shell</h1>"),
            "{path}"
        );
    }
    let r = get_host(a, "web.sites.test", "/rewritten");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>target</h1>"));
    let r = server.get(&format!("/s/web@{id}/rewritten"));
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>target</h1>"));
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "still a preview"
    );
    let r = server.get("/s/web/from-dir/x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<h1>dir</h1>"),
        "a directory's index"
    );
    // A rewrite to a missing file is a 404, never a loop or a 5xx.
    assert_eq!(server.get("/s/web/to-missing").status, 404);
    // 404 rule: the destination's body with status 404.
    let r = server.get("/s/web/store-closed");
    assert_eq!((r.status, r.text().as_str()), (404, "<h1>closed</h1>"));

    // Precedence: an existing file wins over a rule, unless the rule has `!`.
    let r = server.get("/s/web/shadowed.html");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<h1>shadowed file</h1>")
    );
    let r = server.get("/s/web/forced.html");
    assert_eq!(status_location(&r), (301, Some("/s/web/new")));

    // The rule file itself is never served.
    assert_eq!(server.get("/s/web/_redirects").status, 404);
    assert_eq!(get_host(a, "web.sites.test", "/_redirects").status, 404);
}

#[test]
fn headers_combine_remove_and_override() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    let headers = "\
# every page
/*
  X-Frame-Options: DENY
  Content-Security-Policy: default-src 'self'
  X-Robots-Tag: noindex
/fonts/*
  Access-Control-Allow-Origin: *
  Cache-Control: public, max-age=86400
/
  Link: </style.css>; rel=preload; as=style
  ! X-Robots-Tag
/:page
  Link: </fonts/a.woff2>; rel=preload; as=font; crossorigin
";
    upload(
        admin,
        "",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("about.html", b"<h1>about</h1>"),
            ("style.css", b"body{}"),
            ("fonts/a.woff2", b"font"),
            ("_headers", headers.as_bytes()),
        ],
    );
    let r = server.get("/s/web/fonts/a.woff2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'self'")
    );

    let r = server.get("/s/web/");
    assert_eq!(r.header("x-robots-tag"), None, "removed by ! X-Robots-Tag");
    assert_eq!(
        r.header("link"),
        Some("</style.css>; rel=preload; as=style")
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    let r = server.get("/s/web/about.html");
    assert_eq!(r.header("x-robots-tag"), Some("noindex"));
    assert_eq!(
        r.header("link"),
        Some("</fonts/a.woff2>; rel=preload; as=font; crossorigin")
    );
    // Conditional requests keep the site's headers (a 304 carries them).
    let etag = r.header("etag").unwrap().to_string();
    let r = common::get(
        server.addr,
        "/s/web/about.html",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // The 404 page is the site's too.
    assert_eq!(
        server.get("/s/web/missing").header("x-frame-options"),
        Some("DENY")
    );
    assert_eq!(server.get("/s/web/_headers").status, 404);
}

#[test]
fn invalid_rules_are_a_422_naming_file_and_line_and_leave_nothing() {
    let root = Root::new();
    let (server, admin) = start(&root, "max_static_redirects = 3\n");
    upload(admin, "", &[("index.html", b"v1")]);
    let before = common::entries(&root.path().join("web"));
    let cases: &[(&str, &str, &str)] = &[
        (
            "_redirects",
            "/a /b\n\n/c /d 418\n",
            "_redirects, line 3: status 418",
        ),
        (
            "_redirects",
            "# c\n/a https://x.example/ 200\n",
            "_redirects, line 2: ",
        ),
        (
            "_redirects",
            "/a /b\n/c /d\n/e /f\n/g /h\n",
            "_redirects, line 4: more than 3 static",
        ),
        (
            "_headers",
            "/*\n  X-A: b\n  Transfer-Encoding: chunked\n",
            "_headers, line 3: Transfer-Encoding",
        ),
        ("_headers", "  X-A: b\n", "_headers, line 1: "),
    ];
    for (file, text, needle) in cases {
        let r = try_upload(admin, "", &[("index.html", b"v2"), (file, text.as_bytes())]);
        assert_eq!(r.status, 422, "{file}: {}", r.text());
        assert!(r.text().contains(needle), "{needle:?} not in {}", r.text());
        assert_eq!(
            common::entries(&root.path().join("web")),
            before,
            "nothing left on disk"
        );
        assert_eq!(server.get("/s/web/").text(), "v1", "still served");
    }
}

#[test]
fn deploy_prints_the_rule_error() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "x").unwrap();
    std::fs::write(site.path().join("_headers"), "/a\n  Content-Length: 1\n").unwrap();
    let public = format!("http://{}", server.addr);
    let (ok, _out, err) = common::deploy_web(admin, &public, TOKEN, site.path(), &[]);
    assert!(!ok);
    assert!(err.contains("_headers, line 2:"), "{err}");
}

#[test]
fn rollback_takes_the_old_rules_back() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    upload(
        admin,
        "",
        &[("index.html", b"v1"), ("_redirects", b"/go /one 301\n")],
    );
    upload(
        admin,
        "",
        &[("index.html", b"v2"), ("_redirects", b"/go /two 301\n")],
    );
    assert_eq!(
        server.get("/s/web/go").header("location"),
        Some("/s/web/two")
    );
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        server.get("/s/web/go").header("location"),
        Some("/s/web/one")
    );
    // A deployment without rule files has none: nothing lingers.
    upload(admin, "", &[("index.html", b"v3")]);
    assert_eq!(server.get("/s/web/go").status, 404);
}

#[test]
fn clean_urls_and_index_htm_in_their_order() {
    let root = Root::new();
    let (server, admin) = start(&root, "clean_urls_redirect = true\n");
    upload(
        admin,
        "",
        &[
            ("index.html", b"home"),
            ("about.html", b"about page"),
            ("both.html", b"both.html"),
            ("both/index.html", b"both dir"),
            ("legacy/index.htm", b"legacy htm"),
            ("pair/index.html", b"pair html"),
            ("pair/index.htm", b"pair htm"),
            ("_redirects", b"/about /elsewhere 301\n/ghost /about 200\n"),
        ],
    );
    // `/about` finds about.html; a non-forced rule does not shadow it.
    let r = server.get("/s/web/about");
    assert_eq!((r.status, r.text().as_str()), (200, "about page"));
    // The file's own name redirects to the clean URL (clean_urls_redirect).
    let r = server.get("/s/web/about.html?x=1");
    assert_eq!(status_location(&r), (301, Some("/s/web/about?x=1")));
    // A directory beats `<name>.html`, and then `both.html` keeps its name.
    assert_eq!(
        status_location(&server.get("/s/web/both")),
        (301, Some("/s/web/both/"))
    );
    assert_eq!(server.get("/s/web/both/").text(), "both dir");
    assert_eq!(server.get("/s/web/both.html").text(), "both.html");
    // index.htm is an index; index.html wins when both exist.
    assert_eq!(server.get("/s/web/legacy/").text(), "legacy htm");
    assert_eq!(server.get("/s/web/pair/").text(), "pair html");
    assert_eq!(
        status_location(&server.get("/s/web/pair/index.html")),
        (301, Some("/s/web/pair/"))
    );
    // A rewrite target is found the same way.
    assert_eq!(server.get("/s/web/ghost").text(), "about page");
}

#[test]
fn clean_urls_without_the_canonical_redirect() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    upload(
        admin,
        "",
        &[("index.html", b"home"), ("about.html", b"about page")],
    );
    assert_eq!(server.get("/s/web/about").text(), "about page");
    let r = server.get("/s/web/about.html");
    assert_eq!((r.status, r.text().as_str()), (200, "about page"));
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[test]
fn fingerprinted_files_are_immutable_unless_bytes_changed_under_their_name() {
    let root = Root::new();
    let (server, admin) = start(&root, "immutable_paths = [\"fonts/**\"]\n");
    upload(
        admin,
        "",
        &[
            ("index.html", b"home"),
            ("assets/index-BxYz12Ab.js", b"vite"),
            ("assets/javascripts/bundle.8c5f2e1d.min.js", b"mkdocs"),
            ("static/js/main.3f9c1a2b.js", b"webpack v1"),
            ("app.js", b"plain"),
            ("page-3f9c1a2b.html", b"html is never immutable"),
            ("fonts/Inter.woff2", b"font"),
            ("_astro/override.Bx12abCd.css", b"css"),
            (
                "_headers",
                b"/_astro/override.*\n  Cache-Control: no-cache\n",
            ),
        ],
    );
    let cc = |p: &str| {
        server
            .get(&format!("/s/web/{p}"))
            .header("cache-control")
            .map(str::to_string)
    };
    assert_eq!(cc("assets/index-BxYz12Ab.js").as_deref(), Some(IMMUTABLE));
    assert_eq!(
        cc("assets/javascripts/bundle.8c5f2e1d.min.js").as_deref(),
        Some(IMMUTABLE)
    );
    assert_eq!(cc("static/js/main.3f9c1a2b.js").as_deref(), Some(IMMUTABLE));
    assert_eq!(
        cc("fonts/Inter.woff2").as_deref(),
        Some(IMMUTABLE),
        "immutable_paths"
    );
    assert_eq!(cc("app.js").as_deref(), Some("public, max-age=300"));
    assert_eq!(cc("page-3f9c1a2b.html").as_deref(), Some("no-cache"));
    assert_eq!(
        cc("_astro/override.Bx12abCd.css").as_deref(),
        Some("no-cache"),
        "_headers wins"
    );

    // The next deployment reuses a fingerprinted name for other bytes (a
    // hand-rolled "hash"): it must not be immutable, and the log says so.
    upload(
        admin,
        "",
        &[
            ("index.html", b"home 2"),
            ("assets/index-BxYz12Ab.js", b"vite"),
            ("static/js/main.3f9c1a2b.js", b"webpack v2"),
            ("fonts/Inter.woff2", b"font v2"),
        ],
    );
    assert_eq!(
        cc("assets/index-BxYz12Ab.js").as_deref(),
        Some(IMMUTABLE),
        "same bytes"
    );
    assert_eq!(
        cc("static/js/main.3f9c1a2b.js").as_deref(),
        Some("public, max-age=300")
    );
    assert_eq!(
        cc("fonts/Inter.woff2").as_deref(),
        Some("public, max-age=300")
    );
    assert!(
        server
            .stderr
            .wait_for(
                "static/js/main.3f9c1a2b.js",
                std::time::Duration::from_secs(5)
            )
            .is_some_and(|l| l.contains("not immutable")),
        "the refusal is logged"
    );
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn a_zip_deploys_like_a_tarball_with_the_same_id() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    let files: Vec<(&str, &[u8])> = vec![
        ("index.html", b"<h1>zip</h1>"),
        ("about.html", b"about"),
        ("assets/index-BxYz12Ab.js", b"bundle"),
        ("_redirects", b"/old /about 301\n"),
        ("_headers", b"/*\n  X-Frame-Options: DENY\n"),
    ];
    // `deploy site.zip`: the CLI sends the file, the server detects zip.
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("site.zip");
    std::fs::write(&zip_path, zip_of(&files)).unwrap();
    let public = format!("http://{}", server.addr);
    let (ok, out, err) = common::deploy_web(admin, &public, TOKEN, &zip_path, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(server.get("/s/web/").text(), "<h1>zip</h1>");
    assert_eq!(
        server.get("/s/web/old").header("location"),
        Some("/s/web/about")
    );
    assert_eq!(
        server.get("/s/web/about").header("x-frame-options"),
        Some("DENY")
    );
    assert_eq!(
        server
            .get("/s/web/assets/index-BxYz12Ab.js")
            .header("cache-control"),
        Some(IMMUTABLE)
    );
    let zip_id = common::history_ids(admin, "web", AUTH)[0].clone();

    // The same tree as a .tar.gz is the same deployment.
    let r = send(
        admin,
        "POST",
        "/services/web/deployments",
        &[AUTH],
        &common::gzip(&tar_of(&files)),
    );
    assert_eq!(r.status, 200, "already there: {}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"].as_str(), Some(zip_id.as_str()));

    // A hostile zip is a 422 naming the entry; nothing is left behind.
    let before = common::entries(&root.path().join("web"));
    let r = send(
        admin,
        "POST",
        "/services/web/deployments",
        &[AUTH],
        &zip_of(&[("index.html", b"x"), ("../escape.html", b"x")]),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("../escape.html"), "{}", r.text());
    assert_eq!(common::entries(&root.path().join("web")), before);
    // Invalid rules inside a zip are refused the same way.
    let r = send(
        admin,
        "POST",
        "/services/web/deployments",
        &[AUTH],
        &zip_of(&[("index.html", b"x"), ("_redirects", b"/a\n")]),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("_redirects, line 1"), "{}", r.text());
}

#[test]
fn the_dashboard_shows_each_deployments_rules() {
    let root = Root::new();
    let (_server, admin) = start(&root, "");
    let with = upload(
        admin,
        "",
        &[
            ("index.html", b"1"),
            ("_redirects", b"/a /b 301\n/c/* /d/:splat 302\n"),
            ("_headers", b"/*\n  X-Frame-Options: DENY\n"),
        ],
    );
    let without = upload(admin, "", &[("index.html", b"2")]);
    let r = send(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = common::get(admin, "/", &[("Cookie", &cookie)]).text();
    assert!(page.contains(&with) && page.contains(&without));
    assert!(
        page.contains("Site rules: 2 redirect(s), 1 header block(s)"),
        "{page}"
    );
    assert!(
        page.contains("/c/* /d/:splat 302"),
        "the file's text: {page}"
    );
    assert_eq!(
        page.matches("class=site-rules").count(),
        1,
        "only the deployment with rules"
    );
}

/// Found by a trial as a new user: a site's rules must not make HTTP caches
/// lie. `_headers` cannot drop the server's `Vary: Accept-Encoding` from a
/// negotiated answer, cannot put representation metadata on a 304, and a
/// 200 rewrite never makes its URL immutable (the rule may point the URL
/// elsewhere in the next deployment).
#[test]
fn site_rules_cannot_make_caches_lie() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    let css = "p { color: red }\n".repeat(200);
    let headers = "\
/assets/*
  Vary: Cookie
  Content-Language: fr
  Content-Type: text/plain
/plain/*
  ! Vary
";
    let redirects = "/app.js /assets/main.3f9c1a2b.js 200\n";
    upload(
        admin,
        "",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("assets/site.css", css.as_bytes()),
            ("plain/site.css", css.as_bytes()),
            ("assets/main.3f9c1a2b.js", b"console.log(1)"),
            ("_headers", headers.as_bytes()),
            ("_redirects", redirects.as_bytes()),
        ],
    );
    for path in ["/s/web/assets/site.css", "/s/web/plain/site.css"] {
        let r = common::get(server.addr, path, &[("Accept-Encoding", "gzip")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        let vary = r.header("vary").unwrap_or("").to_ascii_lowercase();
        assert!(vary.contains("accept-encoding"), "{path}: Vary {vary:?}");
        let etag = r.header("etag").unwrap().to_string();
        let r = common::get(
            server.addr,
            path,
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
        );
        assert_eq!(r.status, 304, "{path}");
        for name in ["content-type", "content-language", "content-encoding"] {
            assert_eq!(r.header(name), None, "{path}: a 304 carries {name}");
        }
        let vary = r.header("vary").unwrap_or("").to_ascii_lowercase();
        assert!(
            vary.contains("accept-encoding"),
            "{path}: 304 Vary {vary:?}"
        );
    }
    // The rule's own header still applies where it may.
    let r = server.get("/s/web/assets/site.css");
    assert_eq!(r.header("content-language"), Some("fr"));
    // The fingerprinted file itself is immutable; the URL rewritten to it is not.
    let direct = server.get("/s/web/assets/main.3f9c1a2b.js");
    assert!(
        direct
            .header("cache-control")
            .unwrap()
            .contains("immutable"),
        "{:?}",
        direct.header("cache-control")
    );
    let rewritten = server.get("/s/web/app.js");
    assert_eq!(rewritten.text(), "console.log(1)");
    assert!(
        !rewritten
            .header("cache-control")
            .unwrap()
            .contains("immutable"),
        "{:?}",
        rewritten.header("cache-control")
    );
}

/// The raw head of the answer to `GET path` with `Host: host` (repeated
/// fields kept, which `Response` folds).
fn raw_head(addr: SocketAddr, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    let text = String::from_utf8_lossy(&data).into_owned();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

/// Issue #21, item 4: no `Location` the server builds leaves the site —
/// not a `_redirects` substitution with an empty first segment, not the
/// directory or mount redirect of a request path starting with `//`, under
/// path routing, host routing or a preview host — and destinations that
/// would (`//host`, `/\host`) or that redirect to themselves are refused at
/// upload.
#[test]
fn no_location_leaves_the_site() {
    let root = Root::new();
    let (server, admin) = start(&root, "host_suffix = \"sites.test\"\n");
    let before = upload(admin, "", &[("index.html", b"v1")]);
    for (text, needle) in [
        ("/a //evil.example/ 301\n", "_redirects, line 1: "),
        (
            "/ok /fine\n/a /\\evil.example 302\n",
            "_redirects, line 2: ",
        ),
        ("/app/ /app 301\n", "itself"),
        ("/blog/:slug /blog/:slug/ 301\n", "itself"),
    ] {
        let r = try_upload(
            admin,
            "",
            &[("index.html", b"v2"), ("_redirects", text.as_bytes())],
        );
        assert_eq!(r.status, 422, "{text}: {}", r.text());
        assert!(r.text().contains(needle), "{text}: {}", r.text());
    }
    let redirects = "/r/:a/* /:splat/:a 302\n/splat/* /:splat/new-splat 302\n";
    let id = upload(
        admin,
        "",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("docs/index.html", b"<h1>docs</h1>"),
            ("_redirects", redirects.as_bytes()),
        ],
    );
    assert_ne!(id, before);
    let a = server.addr;
    let service = "web.sites.test".to_string();
    let preview = format!("{id}--web.sites.test");
    let cases: Vec<(&str, String, &str)> = vec![
        // (host, request path, the Location a browser must get)
        (&service, "/r/evil.com/".into(), "/evil.com"),
        (&service, "/r/evil.com".into(), "/evil.com"),
        (&service, "/splat/".into(), "/new-splat"),
        (&service, "//docs".into(), "/docs/"),
        (&service, "///docs".into(), "/docs/"),
        (&preview, "//docs".into(), "/docs/"),
        (&preview, "/r/evil.com/".into(), "/evil.com"),
        ("localhost", "//s/web".into(), "/s/web/"),
        ("localhost", "//s/web/docs".into(), "/s/web/docs/"),
        ("localhost", format!("//s/web@{id}"), ""),
        ("localhost", "/s/web/r/evil.com/".into(), "/s/web//evil.com"),
    ];
    for (host, path, expected) in &cases {
        let r = get_host(a, host, path);
        let location = r.header("location").unwrap_or("");
        assert!(matches!(r.status, 301 | 302), "{host} {path}: {}", r.status);
        assert!(
            !location.starts_with("//") && !location.starts_with("/\\"),
            "{host} {path}: Location {location:?} names another host"
        );
        if !expected.is_empty() {
            assert_eq!(location, *expected, "{host} {path}");
        } else {
            assert_eq!(location, format!("/s/web@{id}/"), "{host} {path}");
        }
    }
}

/// Issue #21, item 5: `Set-Cookie` from two `_headers` blocks is two
/// fields (never one joined by `, `), and a rule's caching fields (the
/// README's own `/fonts/*` immutable example) apply to the file, not to the
/// 404 for a missing one or to a redirect, which keep the server's policy.
#[test]
fn headers_send_each_cookie_alone_and_leave_errors_the_servers_caching() {
    let root = Root::new();
    let (server, admin) = start(&root, "");
    let headers = "\
/*
  Set-Cookie: a=1; Path=/
/page
  Set-Cookie: b=2; Path=/
/fonts/*
  Access-Control-Allow-Origin: *
  Cache-Control: public, max-age=31536000, immutable
  Expires: Thu, 01 Dec 2099 16:00:00 GMT
";
    upload(
        admin,
        "",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("page.html", b"<h1>page</h1>"),
            ("fonts/a.woff2", b"font"),
            ("fonts/sub/b.woff2", b"font"),
            ("_headers", headers.as_bytes()),
        ],
    );
    let head = raw_head(server.addr, "localhost", "/s/web/page");
    let cookies: Vec<&str> = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then_some(value.trim())
        })
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"], "{head}");

    let font = server.get("/s/web/fonts/a.woff2");
    assert_eq!(font.status, 200);
    assert_eq!(
        font.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    for (path, status) in [
        ("/s/web/fonts/missing.woff2", 404),
        ("/s/web/fonts/sub", 301),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("expires"), None, "{path}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("*"),
            "{path}: the rule's other fields still apply"
        );
    }
}
