//! The public server, end to end: the real binary on loopback against a root
//! built on disk the way the seed runbook builds it.

mod common;

use std::fs::FileTimes;
use std::os::unix::fs::symlink;
use std::time::{Duration, UNIX_EPOCH};

use common::{get, raw, request, Root, Server};

const INDEX: &[u8] = b"<!doctype html><h1>web d1</h1>";
const NOT_FOUND_PAGE: &[u8] = b"<h1>custom 404</h1>";

/// A root with service `web` (deployment d1 current) and service `other`.
fn standard_root() -> Root {
    let root = Root::new();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    root.deployment(
        "web",
        "d1",
        &[
            ("index.html", INDEX),
            ("404.html", NOT_FOUND_PAGE),
            ("style.css", b"body{}"),
            ("app.js", b"console.log('identity');"),
            ("app.js.br", b"BROTLI-BYTES"),
            ("app.js.gz", b"GZIP-BYTES"),
            ("docs/index.html", b"<h1>docs</h1>"),
            ("docs/page.html", b"<h1>page</h1>"),
            ("empty/keep.txt", b"x"),
            ("data.bin", &big),
            ("digits.txt", b"0123456789"),
            (".env", b"SECRET_DOTENV"),
            (".git/config", b"SECRET_GITCONFIG"),
            ("c:", b"drive-like name is an ordinary file here"),
        ],
    );
    root.flip("web", "d1");
    root.deployment(
        "other",
        "o1",
        &[
            ("index.html", b"other"),
            ("private.txt", b"SECRET_OTHER_SERVICE"),
        ],
    );
    root.flip("other", "o1");
    // Seeded a while ago: every file's Last-Modified is an exact, past time.
    let seeded = std::time::SystemTime::now() - Duration::from_secs(3600);
    root.set_flip_time("web", seeded);
    root.set_flip_time("other", seeded);
    std::fs::write(root.path().join("outside.txt"), b"SECRET_OUTSIDE_ROOT").unwrap();
    let d1 = root.path().join("web/d1");
    symlink("/etc/passwd", d1.join("passwd")).unwrap();
    symlink("../../outside.txt", d1.join("outside-link.txt")).unwrap();
    symlink("../../other/o1/private.txt", d1.join("other-link.txt")).unwrap();
    root
}

#[test]
fn health_and_methods() {
    let root = Root::new();
    let server = Server::start(root.path(), &[]);
    let r = server.get("/health");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = request(server.addr, "HEAD", "/health", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(server.addr, method, "/s/web/", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(server.get("/").status, 404);
    assert_eq!(server.get("/s/").status, 404);
    assert_eq!(server.get("/s/nosuch/").status, 404);
}

#[test]
fn first_start_on_missing_root_creates_it_and_explains_how_to_deploy() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("data");
    let server = Server::start(&root, &[]);
    assert!(root.is_dir(), "root created");
    let hint = server
        .stderr
        .wait_for("No site is deployed yet", Duration::from_secs(5))
        .expect("first-start hint");
    let all = server.stderr.all().join("\n");
    assert!(
        all.contains(" deploy --admin http://127.0.0.1:"),
        "{hint}\n{all}"
    );
    assert!(all.contains(&format!("http://{}", server.addr)), "{all}");
}

#[test]
fn routing_redirects_and_index_files() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let r = server.get("/s/web");
    assert_eq!((r.status, r.header("location")), (301, Some("/s/web/")));
    let r = server.get("/s/web?x=1&y=2");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/s/web/?x=1&y=2"))
    );
    let r = server.get("/s/web/");
    assert_eq!((r.status, r.body.as_slice()), (200, INDEX));
    let r = server.get("/s/web/docs?q=1");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/s/web/docs/?q=1"))
    );
    let r = server.get("/s/web/docs/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>docs</h1>"));
    let r = server.get("/s/web/docs/page.html");
    assert_eq!(r.text(), "<h1>page</h1>");
    // A directory without index.html: no listing.
    let r = server.get("/s/web/empty/");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, NOT_FOUND_PAGE);
    // A trailing slash on a file is not the file.
    assert_eq!(server.get("/s/web/style.css/").status, 404);
    let r = server.get("/s/other/");
    assert_eq!(r.text(), "other");
}

#[test]
fn not_found_uses_the_deployments_404_page() {
    let root = standard_root();
    root.deployment("bare", "b1", &[("index.html", b"bare")]);
    root.flip("bare", "b1");
    std::fs::create_dir_all(root.path().join("nocurrent/x1")).unwrap();
    let server = Server::start(root.path(), &[]);
    let r = server.get("/s/web/missing.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, NOT_FOUND_PAGE);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = request(server.addr, "HEAD", "/s/web/missing.html", &[]);
    assert_eq!(r.status, 404);
    let r = server.get("/s/bare/missing.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "not found\n");
    assert_eq!(
        server.get("/s/nocurrent/").status,
        404,
        "service without current"
    );
    assert_eq!(server.get("/s/unknown/x").status, 404);
}

#[test]
fn spa_fallback_is_per_service() {
    let root = standard_root();
    root.deployment(
        "app",
        "a1",
        &[("index.html", b"spa shell"), ("main.js", b"js")],
    );
    root.flip("app", "a1");
    let config = root.path().join("config.toml");
    std::fs::write(&config, "[services.app]\nspa_fallback = true\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    let r = server.get("/s/app/users/42/settings");
    assert_eq!((r.status, r.text().as_str()), (200, "spa shell"));
    assert_eq!(
        server.get("/s/app/missing.js").status,
        404,
        "assets are not rewritten"
    );
    assert_eq!(server.get("/s/app/main.js").text(), "js");
    assert_eq!(
        server.get("/s/web/users/42").status,
        404,
        "web has no SPA fallback"
    );
}

/// Every traversal vector that broke some server, sent raw.
#[test]
fn traversal_vectors_never_leak() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let cases: &[(&str, u16)] = &[
        ("/s/web/../../outside.txt", 400),
        ("/s/web/../other/private.txt", 400),
        ("/s/web/.%2e/.%2e/outside.txt", 400),
        ("/s/web/%2e%2e/%2e%2e/outside.txt", 400),
        ("/s/web/%2E%2E/other/o1/private.txt", 400),
        ("/s/web/%252e%252e/%252e%252e/outside.txt", 404),
        ("/s/web/%%32%65%%32%65/outside.txt", 400),
        ("/s/web/..%2f..%2foutside.txt", 400),
        ("/s/web/docs%2fpage.html", 400),
        ("/s/web/..%5c..%5coutside.txt", 400),
        ("/s/web/%5c..%5c..%5cetc%5cpasswd", 400),
        ("/s/web/index.html%00.png", 400),
        ("/s/web/%c0%ae%c0%ae/%c0%ae%c0%ae/outside.txt", 400),
        ("/s/web/%c0%af", 400),
        ("/s/web/./.git/config", 404),
        ("/s/web/.git/config", 404),
        ("/s/web/.env", 404),
        ("/s/web/%2eenv", 404),
        ("/s/web/.deployer-meta.json", 404),
        ("/s/web/a/../.env", 400),
        ("/s/..%2fother/private.txt", 400),
        ("/s/..%2f..%2foutside.txt", 400),
        ("/s/web/passwd", 404),
        ("/s/web/outside-link.txt", 404),
        ("/s/web/other-link.txt", 404),
        ("/s/web/c:/..%5c..%5coutside.txt", 400),
        ("/s/web/c:%5cwindows", 400),
        ("/s/../etc/passwd", 400),
        ("/s/./web/", 400),
        ("/s/we%62/index.html", 200),
    ];
    let secrets = [
        "root:",
        "SECRET_OUTSIDE_ROOT",
        "SECRET_OTHER_SERVICE",
        "SECRET_DOTENV",
        "SECRET_GITCONFIG",
    ];
    for (path, expected) in cases {
        let r = raw(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let text = r.text();
        for secret in secrets {
            assert!(!text.contains(secret), "{path} leaked {secret}: {text}");
        }
        assert_eq!(r.status, *expected, "{path}: {text}");
    }
    // A raw backslash in the request line: refused, by hyper or by us.
    let r = raw(
        server.addr,
        b"GET /s/web/..\\..\\outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    // The drive-like name is an ordinary file on Linux, served as such.
    assert_eq!(server.get("/s/web/c:").status, 200);
    // The server is still alive and serving.
    assert_eq!(server.get("/s/web/").body, INDEX);
}

#[test]
fn headers_types_and_cache_policy() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let r = server.get("/s/web/index.html");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.header("content-length"),
        Some(INDEX.len().to_string().as_str())
    );
    assert!(r.header("date").is_some());
    let lm = r.header("last-modified").expect("last-modified");
    assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");
    let etag = r.header("etag").expect("etag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "{etag}"
    );
    assert!(r.header("vary").is_none(), "no encodings, no Vary");

    let r = server.get("/s/web/style.css");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    let r = server.get("/s/web/data.bin");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.len(), 300_000);
    assert_eq!(r.body[299_999], (299_999u32 % 251) as u8);

    let r = request(server.addr, "HEAD", "/s/web/data.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert!(r.body.is_empty());
}

#[test]
fn etags_come_from_content_not_mtime_and_size() {
    let root = Root::new();
    // Two deployments as a timestamp-zeroing build tool makes them:
    // same path, same size, same mtime, different bytes.
    for (service, body) in [("one", b"AAAA"), ("two", b"BBBB")] {
        let dir = root.deployment(service, "d", &[("app.js", body)]);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join("app.js"))
            .unwrap();
        file.set_times(
            FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(315_532_800)),
        )
        .unwrap();
        root.flip(service, "d");
        // Both made current at the same time: same Last-Modified.
        root.set_flip_time(service, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }
    let server = Server::start(root.path(), &[]);
    let a = server.get("/s/one/app.js");
    let b = server.get("/s/two/app.js");
    assert_eq!(a.header("last-modified"), b.header("last-modified"));
    assert_eq!(a.header("content-length"), b.header("content-length"));
    assert_ne!(a.header("etag"), b.header("etag"));
    // A cache holding one's validator must not get a 304 for two's bytes.
    let r = get(
        server.addr,
        "/s/two/app.js",
        &[("If-None-Match", a.header("etag").unwrap())],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "BBBB"));
}

#[test]
fn conditional_requests() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let first = server.get("/s/web/style.css");
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let addr = server.addr;

    let r = get(addr, "/s/web/style.css", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(
        addr,
        "/s/web/style.css",
        &[("If-None-Match", &format!("\"zz\", W/{etag}"))],
    );
    assert_eq!(r.status, 304, "weak comparison for If-None-Match");
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-None-Match", "*")]).status,
        304
    );
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-None-Match", "\"nope\"")]).status,
        200
    );
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-Modified-Since", &lm)]).status,
        304
    );
    assert_eq!(
        get(
            addr,
            "/s/web/style.css",
            &[("If-Modified-Since", "Thu, 01 Jan 1981 00:00:00 GMT")]
        )
        .status,
        200
    );
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-Match", &etag)]).status,
        200
    );
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-Match", "\"nope\"")]).status,
        412
    );
    assert_eq!(
        get(
            addr,
            "/s/web/style.css",
            &[("If-Unmodified-Since", "Thu, 01 Jan 1981 00:00:00 GMT")]
        )
        .status,
        412
    );
    assert_eq!(
        get(addr, "/s/web/style.css", &[("If-Unmodified-Since", &lm)]).status,
        200
    );
}

#[test]
fn ranges_and_if_range() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let addr = server.addr;
    let r = get(addr, "/s/web/digits.txt", &[("Range", "bytes=2-4")]);
    assert_eq!((r.status, r.text().as_str()), (206, "234"));
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(r.header("content-length"), Some("3"));
    assert_eq!(
        get(addr, "/s/web/digits.txt", &[("Range", "bytes=7-")]).text(),
        "789"
    );
    assert_eq!(
        get(addr, "/s/web/digits.txt", &[("Range", "bytes=-2")]).text(),
        "89"
    );
    let r = get(addr, "/s/web/digits.txt", &[("Range", "bytes=10-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));

    // A file streamed from disk (larger than the in-memory limit).
    let r = get(addr, "/s/web/data.bin", &[("Range", "bytes=100000-100009")]);
    assert_eq!(r.status, 206);
    let expected: Vec<u8> = (100_000..100_010u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(r.body, expected);
    let r = get(addr, "/s/web/data.bin", &[("Range", "bytes=-5")]);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 299995-299999/300000")
    );

    let etag = server
        .get("/s/web/digits.txt")
        .header("etag")
        .unwrap()
        .to_string();
    let r = get(
        addr,
        "/s/web/digits.txt",
        &[("Range", "bytes=0-0"), ("If-Range", &etag)],
    );
    assert_eq!((r.status, r.text().as_str()), (206, "0"));
    let r = get(
        addr,
        "/s/web/digits.txt",
        &[("Range", "bytes=0-0"), ("If-Range", "\"stale\"")],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789"));
}

#[test]
fn range_abuse_never_breaks_the_server() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let many = (0..200)
        .map(|i| format!("{i}-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let many = format!("bytes={many}");
    let vectors = [
        "bytes=-5,-9223372036854775808",
        "bytes=-9223372036854775808",
        "bytes=18446744073709551615-18446744073709551615",
        "bytes=18446744073709551616-",
        "bytes=0-18446744073709551616",
        "",
        "bytes=",
        "bytes=-",
        "bytes=--1",
        "bytes=5-1",
        "chars=0-1",
        many.as_str(),
    ];
    for vector in vectors {
        let r = get(server.addr, "/s/web/digits.txt", &[("Range", vector)]);
        assert!(
            [200, 206, 416].contains(&r.status),
            "{vector:?} gave {}",
            r.status
        );
        if r.status == 200 {
            assert_eq!(r.text(), "0123456789", "{vector:?}");
        }
    }
    let r = get(
        server.addr,
        "/s/web/digits.txt",
        &[("Range", "bytes=-5,-9223372036854775808")],
    );
    assert_eq!(r.status, 200, "several ranges are answered whole");
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn precompressed_siblings_by_accept_encoding() {
    let root = standard_root();
    let server = Server::start(root.path(), &[]);
    let addr = server.addr;
    let r = get(
        addr,
        "/s/web/app.js",
        &[("Accept-Encoding", "gzip, deflate, br")],
    );
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.text(), "BROTLI-BYTES");
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let br_etag = r.header("etag").unwrap().to_string();

    let r = get(
        addr,
        "/s/web/app.js",
        &[("Accept-Encoding", "br;q=0.5, gzip;q=0.9")],
    );
    assert_eq!(
        (r.header("content-encoding"), r.text().as_str()),
        (Some("gzip"), "GZIP-BYTES")
    );
    assert_ne!(
        r.header("etag"),
        Some(br_etag.as_str()),
        "each encoding has its own ETag"
    );

    let r = server.get("/s/web/app.js");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "console.log('identity');");
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = get(
        addr,
        "/s/web/app.js",
        &[("Accept-Encoding", "br;q=0, gzip;q=0")],
    );
    assert_eq!(r.header("content-encoding"), None);

    // Conditionals apply to the chosen encoding.
    let r = get(
        addr,
        "/s/web/app.js",
        &[("Accept-Encoding", "br"), ("If-None-Match", &br_etag)],
    );
    assert_eq!(r.status, 304);
    let r = get(
        addr,
        "/s/web/app.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &br_etag)],
    );
    assert_eq!(r.status, 200);
    // The sibling stays servable under its own name.
    assert_eq!(server.get("/s/web/app.js.gz").text(), "GZIP-BYTES");
}

#[test]
fn host_suffix_routing() {
    let root = standard_root();
    let config = root.path().join("config.toml");
    std::fs::write(&config, "host_suffix = \"project.example.com\"\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    let host = |host: &str, path: &str| {
        raw(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let r = host("web.project.example.com", "/");
    assert_eq!((r.status, r.body.as_slice()), (200, INDEX));
    assert_eq!(
        host("WEB.Project.Example.com:8080", "/docs/page.html").text(),
        "<h1>page</h1>"
    );
    assert_eq!(
        host("web.project.example.com", "/docs").header("location"),
        Some("/docs/")
    );
    assert_eq!(host("other.project.example.com", "/").text(), "other");
    assert_eq!(host("nosuch.project.example.com", "/").status, 404);
    assert_eq!(host("web.project.example.com", "/.env").status, 404);
    assert_eq!(
        host("project.example.com", "/s/web/").body,
        INDEX,
        "path routing still works"
    );
    assert_eq!(host("web.project.example.com", "/health").text(), "ok");
}

#[test]
fn broken_services_are_skipped_and_leftovers_cleaned() {
    let root = standard_root();
    std::fs::create_dir_all(root.path().join("broken")).unwrap();
    symlink("gone", root.path().join("broken/current")).unwrap();
    std::fs::create_dir_all(root.path().join("escape")).unwrap();
    symlink("../web/d1", root.path().join("escape/current")).unwrap();
    let tmp = root.deployment("web", "d2.tmp", &[("index.html", b"half written")]);
    let server = Server::start(root.path(), &[]);
    assert!(!tmp.exists(), "startup removes unfinished uploads");
    assert_eq!(server.get("/s/web/").body, INDEX);
    assert_eq!(server.get("/s/broken/").status, 404);
    assert_eq!(
        server.get("/s/escape/").status,
        404,
        "current must name a deployment of its own service"
    );
    let logs = server.stderr.all().join("\n");
    assert!(
        logs.contains("broken") && logs.contains("service skipped"),
        "{logs}"
    );
}

#[test]
fn access_log_lines_go_to_stdout() {
    let root = standard_root();
    let server = Server::start(root.path(), &["--log-format", "json"]);
    server.get("/s/web/digits.txt");
    let line = server
        .stdout
        .wait_for("digits.txt", Duration::from_secs(5))
        .expect("access line");
    let entry: serde_json::Value = serde_json::from_str(&line).expect("json access line");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/s/web/digits.txt");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes"], 10);
    assert_eq!(entry["service"], "web");
    assert_eq!(entry["deployment"], "d1");
    assert!(entry["duration_us"].is_u64());
    assert!(
        !server.stderr.contains("digits.txt"),
        "access lines are not on stderr"
    );
}
