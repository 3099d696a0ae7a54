//! Truthful validators and caching (issue 11): date validators across
//! flips, rollbacks, activations, deduplicated files and external flips; the
//! header set of a 304; redirects that revalidate; HEAD that ignores Range.
//! The real binary, the real admin API, raw HTTP/1.1 on loopback.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use common::{get, request, send, tar_of, Root, Server};
use serde_json::Value;

const TOKEN: &str = "validators-token-5b1";
const AUTH: (&str, &str) = ("Authorization", "Bearer validators-token-5b1");

fn json(r: &common::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// A site whose `app.css` is `color`; `same.txt` is identical in all.
fn site(name: &str, color: &str) -> Vec<u8> {
    let index = format!("<h1>{name}</h1>");
    let css = format!("p{{color:{color}}}");
    tar_of(&[
        ("index.html", index.as_bytes()),
        ("app.css", css.as_bytes()),
        ("same.txt", b"the same bytes in every deployment"),
        ("VERSION", name.as_bytes()),
    ])
}

fn post(admin: SocketAddr, path: &str, body: &[u8]) -> Value {
    let r = send(admin, "POST", path, &[AUTH], body);
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.text());
    json(&r)
}

fn activate(admin: SocketAddr, id: &str) {
    post(
        admin,
        "/services/web/activate",
        format!("{{\"id\":\"{id}\"}}").as_bytes(),
    );
}

/// What a client saw for one URL at one time.
#[derive(Clone, Debug)]
struct Seen {
    step: String,
    last_modified: SystemTime,
    header: String,
    body: Vec<u8>,
}

/// Checks every date validator a client could hold for `path` against
/// what it answers now, then records the present answer.
fn check_url(addr: SocketAddr, path: &str, step: &str, history: &mut Vec<Seen>) {
    let r = get(addr, path, &[]);
    assert_eq!(r.status, 200, "{step}: {path}");
    let header = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let now = Seen {
        step: step.to_string(),
        last_modified: httpdate::parse_http_date(&header).unwrap(),
        header: header.clone(),
        body: r.body.clone(),
    };
    for old in history.iter() {
        assert!(
            now.last_modified >= old.last_modified,
            "{path}: Last-Modified went backwards from {} ({}) to {} ({step})",
            old.header,
            old.step,
            now.header
        );
        if old.body == now.body {
            continue; // a 304 or a 200 would both be true
        }
        // The content changed after `old`: no date validator may match.
        let ims = get(addr, path, &[("If-Modified-Since", &old.header)]);
        assert_eq!(
            (ims.status, &ims.body),
            (200, &now.body),
            "{path} at {step}: If-Modified-Since {} (from {}) matched changed content",
            old.header,
            old.step
        );
        let ius = get(addr, path, &[("If-Unmodified-Since", &old.header)]);
        assert_eq!(
            ius.status, 412,
            "{path} at {step}: If-Unmodified-Since {} (from {}) let changed content through",
            old.header, old.step
        );
        let resumed = get(
            addr,
            path,
            &[("Range", "bytes=2-"), ("If-Range", &old.header)],
        );
        assert_eq!(
            (resumed.status, &resumed.body),
            (200, &now.body),
            "{path} at {step}: If-Range {} (from {}) resumed into other content",
            old.header,
            old.step
        );
    }
    // The validator just sent matches, as it should.
    assert_eq!(
        get(addr, path, &[("If-Modified-Since", &header)]).status,
        304,
        "{path} at {step}"
    );
    assert_eq!(
        get(addr, path, &[("If-Unmodified-Since", &header)]).status,
        200,
        "{path} at {step}"
    );
    let resumed = get(addr, path, &[("Range", "bytes=2-"), ("If-Range", &header)]);
    assert_eq!(
        (resumed.status, &resumed.body[..]),
        (206, &now.body[2..]),
        "{path} at {step}"
    );
    history.push(now);
}

/// Issue 11 input 1 and "Done when": back and forth between deployments with
/// identical and different files (deduplicated, hard-linked to an older
/// deployment's inode), by upload, rollback, activate and an external flip;
/// after each step every earlier Last-Modified is tried as
/// If-Modified-Since, If-Unmodified-Since and If-Range.
#[test]
fn date_validators_never_match_content_changed_by_a_flip_rollback_activate_or_dedup() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let addr = server.addr;
    let mut history: HashMap<&str, Vec<Seen>> = HashMap::new();
    let paths = ["/s/web/app.css", "/s/web/same.txt", "/s/web/"];
    let mut step = |name: &str, action: &mut dyn FnMut()| {
        action();
        // Last-Modified is exact once the second of the flip is over.
        std::thread::sleep(Duration::from_millis(1100));
        for path in paths {
            check_url(addr, path, name, history.entry(path).or_default());
        }
    };
    step("deploy red", &mut || {
        post(
            admin,
            "/services/web/deployments?id=red",
            &site("red", "red"),
        );
    });
    step("deploy blue", &mut || {
        post(
            admin,
            "/services/web/deployments?id=blue",
            &site("blue", "blue"),
        );
    });
    step("rollback to red", &mut || {
        post(admin, "/services/web/rollback", b"");
    });
    step("activate blue", &mut || activate(admin, "blue"));
    step("deploy red again (deduplicated)", &mut || {
        post(
            admin,
            "/services/web/deployments?id=red2",
            &site("red2", "red"),
        );
    });
    step("activate red", &mut || activate(admin, "red"));
    step("external flip to blue", &mut || {
        root.flip("web", "blue");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.get("/s/web/VERSION").text() != "blue" {
            assert!(Instant::now() < deadline, "external flip not picked up");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    step("activate red again", &mut || activate(admin, "red"));
    // The deduplicated file really is an older inode, with its old mtime.
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(root.path().join("web/red/app.css")).unwrap(),
        std::fs::metadata(root.path().join("web/red2/app.css")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "app.css of red2 is red's inode");
    let changes = history["/s/web/app.css"]
        .windows(2)
        .filter(|w| w[0].body != w[1].body)
        .count();
    assert!(changes >= 5, "the test flipped content {changes} times");
}

/// Within the second of a flip, Last-Modified is never later than Date and
/// never matches as a validator for what the flip replaced.
#[test]
fn a_flip_within_one_second_never_reuses_a_date() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let addr = server.addr;
    post(
        admin,
        "/services/web/deployments?id=red",
        &site("red", "red"),
    );
    let first = get(addr, "/s/web/app.css", &[]);
    post(
        admin,
        "/services/web/deployments?id=blue",
        &site("blue", "blue"),
    );
    let second = get(addr, "/s/web/app.css", &[]);
    assert_eq!(second.text(), "p{color:blue}");
    for r in [&first, &second] {
        let lm = httpdate::parse_http_date(r.header("last-modified").unwrap()).unwrap();
        let date = httpdate::parse_http_date(r.header("date").unwrap()).unwrap();
        assert!(lm <= date, "Last-Modified after Date");
    }
    let stale = first.header("last-modified").unwrap();
    let r = get(addr, "/s/web/app.css", &[("If-Modified-Since", stale)]);
    assert_eq!((r.status, r.text().as_str()), (200, "p{color:blue}"));
    let r = get(addr, "/s/web/app.css", &[("If-Unmodified-Since", stale)]);
    assert_eq!(r.status, 412);
}

fn seeded_root() -> Root {
    let root = Root::new();
    root.deployment(
        "web",
        "d1",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("app.js", b"console.log('identity');"),
            ("app.js.gz", b"GZIP-BYTES"),
            ("app.js.br", b"BROTLI-BYTES"),
            ("digits.txt", b"0123456789"),
            ("docs/index.html", b"<h1>docs</h1>"),
        ],
    );
    root.flip("web", "d1");
    root.set_flip_time("web", SystemTime::now() - Duration::from_secs(600));
    root
}

/// Issue 11 input 2: a 304 carries only what RFC 9110 §15.4.5 allows
/// (Cache-Control, Date, ETag, Vary here), never Content-Encoding,
/// Content-Type, Accept-Ranges or nosniff.
#[test]
fn not_modified_carries_only_the_fields_rfc_9110_allows() {
    let root = seeded_root();
    let server = Server::start(root.path(), &[]);
    let addr = server.addr;
    for accept in ["gzip", "br", "identity"] {
        let full = get(addr, "/s/web/app.js", &[("Accept-Encoding", accept)]);
        assert_eq!(full.status, 200);
        let etag = full.header("etag").unwrap().to_string();
        let lm = full.header("last-modified").unwrap().to_string();
        for condition in [("If-None-Match", etag.as_str()), ("If-Modified-Since", &lm)] {
            let r = get(
                addr,
                "/s/web/app.js",
                &[("Accept-Encoding", accept), condition],
            );
            assert_eq!(r.status, 304, "{accept} {condition:?}");
            let mut names: Vec<&str> = r
                .headers
                .keys()
                .map(String::as_str)
                .filter(|n| *n != "connection") // the test client's `close`
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["cache-control", "date", "etag", "vary"],
                "{accept} {condition:?}"
            );
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert_eq!(r.header("cache-control"), full.header("cache-control"));
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        }
    }
    // The 200 still describes its representation fully.
    let r = get(addr, "/s/web/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.header("content-type").is_some() && r.header("accept-ranges").is_some());
}

/// Issue 11 input 3: a directory redirect depends on the current
/// deployment, so caches must revalidate it.
#[test]
fn directory_redirects_must_be_revalidated() {
    let root = seeded_root();
    let server = Server::start(root.path(), &[]);
    for path in ["/s/web/docs", "/s/web/docs?x=1", "/s/web"] {
        let r = server.get(path);
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        // Revalidation: same Location, same ETag, 304.
        let etag = r
            .header("etag")
            .expect("a redirect has a validator")
            .to_string();
        let again = get(server.addr, path, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    // Once `docs` is a file, the old redirect's validator gets the file.
    root.deployment(
        "web",
        "d2",
        &[("index.html", b"x"), ("docs", b"now a file")],
    );
    let etag = server
        .get("/s/web/docs")
        .header("etag")
        .unwrap()
        .to_string();
    root.flip("web", "d2");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(server.addr, "/s/web/docs", &[("If-None-Match", &etag)]);
        if r.status == 200 {
            assert_eq!(r.text(), "now a file");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flip not picked up: {}",
            r.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 11 input 4: HEAD ignores Range (RFC 9110 §14.2); it answers
/// like a GET without one.
#[test]
fn head_ignores_range() {
    let root = seeded_root();
    let server = Server::start(root.path(), &[]);
    let addr = server.addr;
    for range in ["bytes=2-4", "bytes=100-", "bytes=-3", "bytes=0-0,5-6"] {
        let r = request(addr, "HEAD", "/s/web/digits.txt", &[("Range", range)]);
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.header("content-length"), Some("10"), "{range}");
        assert!(r.header("content-range").is_none(), "{range}");
        assert!(r.body.is_empty());
    }
    // GET still has ranges.
    let r = get(addr, "/s/web/digits.txt", &[("Range", "bytes=2-4")]);
    assert_eq!((r.status, r.text().as_str()), (206, "234"));
}
