//! The HTTP/1.1 fast path (`src/serve/fast.rs`) answers exactly as hyper's
//! full path does: the same requests, sent to two servers on one root —
//! one with the fast path (the default), one with `--http1-fast-path off`
//! — get the same status, fields (all but `Date`) and body, one by one and
//! pipelined on one connection; and the fast path did answer most of them
//! (its counter in `/metrics`), so the comparison is not between two
//! copies of hyper.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{exchange, get, gzip, parse_response, Root, Server};

/// The fixture: what a real site has (precompressed HTML, a fingerprinted
/// asset, a file above the copy limit, odd names, a 404 page, dotfiles),
/// and a second site with `_headers` and `_redirects`, which the fast path
/// leaves to hyper.
fn fixture(root: &Root) {
    let html =
        "<!doctype html><title>t</title>".to_string() + &"<p>hello fast path</p>\n".repeat(120);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    root.deployment(
        "web",
        "v1",
        &[
            ("index.html", html.as_bytes()),
            ("index.html.gz", &gzip(html.as_bytes())),
            ("app.css", b"p{color:red}"),
            ("app.3f9c1a2b7d.js", b"console.log(1)"),
            ("about.html", b"<p>about</p>"),
            ("sub/index.html", b"<p>sub</p>"),
            ("sub/deep/a b.txt", b"spaced"),
            ("\u{e9}t\u{e9}.txt", b"accents"),
            ("big.bin", &big),
            ("404.html", b"<p>custom 404</p>"),
            (".secret", b"hidden"),
        ],
    );
    root.flip("web", "v1");
    // Out of the second of the flip, where answers are dated "now".
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    root.set_flip_time("web", past);
    root.deployment(
        "rules",
        "r1",
        &[
            ("index.html", b"<p>rules</p>"),
            ("app.css", b"p{}"),
            ("_headers", b"/*\n  X-Frame-Options: DENY\n"),
            ("_redirects", b"/old /app.css 301\n"),
        ],
    );
    root.flip("rules", "r1");
    root.set_flip_time("rules", past);
}

/// A response as compared: status line's code, fields but `Date` (sorted,
/// names lowercase), body.
type Seen = (u16, BTreeMap<String, String>, Vec<u8>);

fn seen(response: common::Response) -> Seen {
    let mut fields: BTreeMap<String, String> = response.headers.into_iter().collect();
    fields.remove("date");
    (response.status, fields, response.body)
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = get(server.admin_addr(), "/metrics", &[]).text();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn servers(root: &Root) -> (Server, Server) {
    let fast = Server::start(root.path(), &[]);
    let full = Server::start(root.path(), &["--http1-fast-path", "off"]);
    (fast, full)
}

/// Every path × every set of fields, one keep-alive connection each.
#[test]
fn the_fast_path_answers_as_hyper_does() {
    let root = Root::new();
    fixture(&root);
    let (fast, full) = servers(&root);
    let etag = get(fast.addr, "/s/web/", &[])
        .header("etag")
        .expect("etag")
        .to_string();
    let gz_etag = get(fast.addr, "/s/web/", &[("Accept-Encoding", "gzip")])
        .header("etag")
        .expect("etag")
        .to_string();
    let last_modified = get(fast.addr, "/s/web/app.css", &[])
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    // The mapping of big.bin is made on its first answer (by hyper): ask
    // once on each server so both hold it.
    for server in [&fast, &full] {
        assert_eq!(get(server.addr, "/s/web/big.bin", &[]).body.len(), 100_000);
    }
    let paths = [
        "/s/web/",
        "/s/web/index.html",
        "/s/web/app.css",
        "/s/web/app.css?v=2&x",
        "/s/web/app.3f9c1a2b7d.js",
        "/s/web/about",
        "/s/web/about.html",
        "/s/web/sub/",
        "/s/web/sub",
        "/s/web//sub//index.html",
        "/s/web/sub/deep/a%20b.txt",
        "/s/web/%C3%A9t%C3%A9.txt",
        "/s/web/%c3%a9t%c3%a9.txt",
        "/s/web/big.bin",
        "/s/web/missing.css",
        "/s/web/.secret",
        "/s/web/../web/app.css",
        "/s/web/%2e%2e/x",
        "/s/web/a%2fb",
        "/s/web/%zz",
        "/s/web",
        "/s/nope/",
        "/s/web@v1/",
        "/s/rules/",
        "/s/rules/app.css",
        "/s/rules/old",
        "/health",
        "/",
    ];
    let inm = format!("If-None-Match: {etag}");
    let inm_list = format!("If-None-Match: \"x\", {etag}");
    let inm_weak = format!("If-None-Match: W/{etag}");
    let inm_gz = format!("If-None-Match: {gz_etag}");
    let ims = format!("If-Modified-Since: {last_modified}");
    let variants: Vec<Vec<String>> = vec![
        vec![],
        vec!["Accept-Encoding: gzip, deflate, br".into()],
        vec!["Accept-Encoding: gzip;q=0, br;q=0".into()],
        vec!["Accept-Encoding: identity;q=0".into()],
        vec!["Accept-Encoding: *".into()],
        vec![inm.clone()],
        vec![inm_list],
        vec![inm_weak],
        vec![inm_gz.clone(), "Accept-Encoding: gzip".into()],
        vec![inm_gz, "Accept-Encoding: br".into()],
        vec!["If-None-Match: \"nope\"".into()],
        vec!["If-None-Match: *".into()],
        vec![ims.clone()],
        vec![ims, inm.clone()],
        vec!["Range: bytes=0-3".into()],
        vec![inm.clone(), "If-None-Match: \"other\"".into()],
        vec!["Connection: keep-alive".into(), "X-Anything: 1".into()],
        vec!["Connection: close".into()],
        vec!["Cookie: a=b".into()],
        vec!["Accept-Encoding: g\u{e9}zip".into()],
    ];
    let mut compared = 0;
    for method in ["GET", "HEAD"] {
        for path in paths {
            for fields in &variants {
                let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
                for field in fields {
                    request.push_str(field);
                    request.push_str("\r\n");
                }
                request.push_str("\r\n");
                let a = seen(exchange(fast.addr, request.as_bytes()));
                let b = seen(exchange(full.addr, request.as_bytes()));
                assert_eq!(
                    a, b,
                    "fast path (left) and hyper (right) differ on\n{request}"
                );
                compared += 1;
            }
        }
    }
    let answered = metric(&fast, "project_http_fast_path_responses_total");
    assert_eq!(metric(&full, "project_http_fast_path_responses_total"), 0);
    // Of the requests compared, the fast path takes the plain ones: every
    // GET/HEAD of an existing file of `web` without Range, a repeated
    // field, Connection: close or an If-Modified-Since alone.
    assert!(
        answered >= 250,
        "the fast path answered only {answered} of {compared} requests"
    );
}

/// One connection, many requests written at once: answers in order, the
/// same on both servers, also after a request the fast path hands to hyper.
#[test]
fn pipelined_requests_get_the_same_answers_in_order() {
    let root = Root::new();
    fixture(&root);
    let (fast, full) = servers(&root);
    for server in [&fast, &full] {
        assert_eq!(get(server.addr, "/s/web/big.bin", &[]).body.len(), 100_000);
    }
    let requests = [
        ("GET", "/s/web/", ""),
        ("HEAD", "/s/web/app.css", ""),
        ("GET", "/s/web/big.bin", ""),
        ("GET", "/s/web/app.css", "Accept-Encoding: gzip\r\n"),
        ("GET", "/s/web/sub/", ""),
        // Handed to hyper from here on.
        ("GET", "/s/web/app.css", "Range: bytes=2-5\r\n"),
        ("GET", "/s/web/index.html", "Accept-Encoding: gzip\r\n"),
        ("GET", "/s/web/missing", ""),
        ("HEAD", "/s/web/", ""),
        ("GET", "/s/web/app.css", "Connection: close\r\n"),
    ];
    let mut batch = Vec::new();
    for (method, path, fields) in requests {
        batch.extend_from_slice(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes(),
        );
    }
    let answers = |addr: SocketAddr| -> Vec<Seen> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(&batch).unwrap();
        let mut data = Vec::new();
        stream.read_to_end(&mut data).unwrap();
        let mut rest = &data[..];
        let mut out = Vec::new();
        for (method, _, _) in requests {
            let (response, used) =
                parse_response(rest, method == "HEAD").expect("a whole response");
            out.push(seen(response));
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "bytes after the last answer");
        out
    };
    let (a, b) = (answers(fast.addr), answers(full.addr));
    assert_eq!(a.len(), requests.len());
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "answer {i} to {:?} differs", requests[i]);
    }
    assert_eq!(a[5].0, 206);
    assert!(metric(&fast, "project_http_fast_path_responses_total") >= 5);
}

/// A request head that arrives in pieces, and an idle connection, are cut
/// off after `header_read_timeout` as hyper does; a connection that keeps
/// asking is not.
#[test]
fn header_read_timeout_holds_on_the_fast_path() {
    let root = Root::new();
    fixture(&root);
    let config = root.path().join("c.toml");
    std::fs::write(&config, "header_read_timeout_secs = 1\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    // Busy for 2.5 s, one request every 250 ms: never idle for 1 s.
    let mut busy = TcpStream::connect(server.addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..10 {
        busy.write_all(b"GET /s/web/app.css HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = busy.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        std::thread::sleep(Duration::from_millis(250));
    }
    // Idle, then half a head: each closed within the timeout's bound.
    for partial in [&b""[..], b"GET /s/web/app.css HTTP/1.1\r\nHo"] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(partial).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut data = Vec::new();
        let _ = stream.read_to_end(&mut data);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "not closed after {:?}",
            started.elapsed()
        );
        assert!(!data.starts_with(b"HTTP/1.1 200"), "{data:?}");
    }
}

/// A request the fast path declines (a 404, a `Range`, a redirect, a POST
/// without a body) is answered by hyper alone: the connection stays open
/// with no `Connection: close`, and the next plain request is the fast
/// path's again — a proxy's long-lived pooled connection is not lost to
/// hyper after one odd request.
#[test]
fn a_declined_request_leaves_the_connection_on_the_fast_path() {
    let root = Root::new();
    fixture(&root);
    let server = Server::start(root.path(), &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut pending = Vec::new();
    let mut next = |stream: &mut TcpStream, head: &str| -> common::Response {
        stream.write_all(head.as_bytes()).unwrap();
        loop {
            if let Some((response, used)) = parse_response(&pending, head.starts_with("HEAD")) {
                let complete = response
                    .header("content-length")
                    .is_none_or(|l| l.parse::<usize>().unwrap() == response.body.len());
                if complete {
                    pending.drain(..used);
                    return response;
                }
            }
            let mut chunk = [0u8; 65536];
            let n = stream.read(&mut chunk).expect("connection kept open");
            assert!(n > 0, "connection closed after {head:?}");
            pending.extend_from_slice(&chunk[..n]);
        }
    };
    let plain = "GET /s/web/app.css HTTP/1.1\r\nHost: x\r\n\r\n";
    let before = metric(&server, "project_http_fast_path_responses_total");
    for (declined, status) in [
        ("GET /s/web/missing.css HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (
            "GET /s/web/app.css HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n",
            206,
        ),
        ("GET /s/web/sub HTTP/1.1\r\nHost: x\r\n\r\n", 301),
        (
            "POST /s/web/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
        ("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ] {
        let response = next(&mut stream, declined);
        assert_eq!(response.status, status, "{declined:?}");
        assert_eq!(response.header("connection"), None, "{declined:?}");
        let response = next(&mut stream, plain);
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "p{color:red}");
    }
    let after = metric(&server, "project_http_fast_path_responses_total");
    assert_eq!(after - before, 5, "each plain request after a declined one");
}

/// The header read timeout is counted from the end of the previous answer,
/// as hyper counts it (trial findings): an idle connection whose first
/// request came late is still closed, and a request head pipelined in
/// pieces after an answer gets the whole timeout from that answer.
#[test]
fn the_header_timeout_counts_from_the_last_answer() {
    let root = Root::new();
    fixture(&root);
    let config = root.path().join("c.toml");
    std::fs::write(&config, "header_read_timeout_secs = 3\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    let plain = b"GET /s/web/app.css HTTP/1.1\r\nHost: x\r\n\r\n";

    // The first request after 2 s, then idle: closed ~3 s after the answer.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    stream.write_all(plain).unwrap();
    let answered = std::time::Instant::now();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    assert!(data.starts_with(b"HTTP/1.1 200 OK"), "{data:?}");
    assert!(
        answered.elapsed() < Duration::from_secs(15),
        "an idle connection was kept {:?} after its answer",
        answered.elapsed()
    );

    // An answer and half the next head at 2 s, the rest 2 s later (4 s
    // after connecting, past the timeout; 2 s after the answer, within
    // it, with 1 s to spare for a loaded machine): both answered.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    stream
        .write_all(b"GET /s/web/app.css HTTP/1.1\r\nHost: x\r\n\r\nGET /s/web/ap")
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    stream
        .write_all(b"p.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    let (first, used) = parse_response(&data, false).expect("the first answer");
    assert_eq!(first.status, 200);
    let (second, _) = parse_response(&data[used..], false).expect("the second answer");
    assert_eq!(second.text(), "p{color:red}");
}

/// A client that shuts its sending side after its requests gets every
/// answer whole, from the fast path and from hyper (trial finding: hyper
/// stopped writing at the client's FIN).
#[test]
fn a_half_closing_client_gets_every_answer_whole() {
    let root = Root::new();
    fixture(&root);
    let (fast, full) = servers(&root);
    for server in [&fast, &full] {
        // Twice the 100 KB file, more than the socket buffers hold at once.
        let request = b"GET /s/web/big.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20);
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(&request).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut data = Vec::new();
        let _ = stream.read_to_end(&mut data);
        let mut rest = &data[..];
        for i in 0..20 {
            let (response, used) = parse_response(rest, false).unwrap_or_else(|| {
                panic!("answer {i} of 20 cut short ({} bytes in all)", data.len())
            });
            assert_eq!(response.body.len(), 100_000);
            rest = &rest[used..];
        }
    }
}

/// Issue #21, item 3: a request-target longer than 8 KiB (the documented
/// bound, `serve::path::MAX_TARGET`) is a 414 before any lookup or rule
/// matching, answered identically with and without the fast path — also
/// for an existing file behind a long query, which the fast path would
/// otherwise answer 200 — and the connection goes on serving.
#[test]
fn a_target_longer_than_the_bound_is_414_on_both_paths() {
    const MAX_TARGET: usize = 8 * 1024;
    let root = Root::new();
    fixture(&root);
    let (fast, full) = servers(&root);
    let padded = |path: &str, len: usize| format!("{path}?{}", "q".repeat(len - path.len() - 1));
    let cases = [
        (padded("/s/web/app.css", MAX_TARGET), 200),
        (padded("/s/web/app.css", MAX_TARGET + 1), 414),
        (padded("/s/rules/old", MAX_TARGET + 1), 414),
        (format!("/s/web/{}", "a".repeat(MAX_TARGET)), 414),
        // Over the fast path's 16 KiB head limit: hyper from the start.
        (format!("/s/web/{}", "a".repeat(60_000)), 414),
        (format!("/s/web/{}.js", "a/".repeat(30_000)), 414),
    ];
    for (target, status) in &cases {
        for method in ["GET", "HEAD"] {
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n\
                 GET /s/web/app.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            );
            let mut answers = Vec::new();
            for server in [&fast, &full] {
                let mut stream = TcpStream::connect(server.addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream.write_all(request.as_bytes()).unwrap();
                let mut data = Vec::new();
                stream.read_to_end(&mut data).unwrap();
                let (first, used) = parse_response(&data, method == "HEAD").expect("an answer");
                let (second, _) = parse_response(&data[used..], false).expect("a second answer");
                assert_eq!(second.status, 200, "the connection goes on after {status}");
                answers.push(seen(first));
            }
            assert_eq!(answers[0].0, *status, "{method} of {} bytes", target.len());
            assert_eq!(
                answers[0],
                answers[1],
                "fast path (left) and hyper (right) differ on {method} of {} bytes",
                target.len()
            );
        }
    }
}
