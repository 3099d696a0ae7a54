//! Hostile clients over real sockets: slowloris, idle floods, huge headers,
//! pipelining, abandoned downloads, and what each port exposes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{parse_response, send, Root, Server};

fn site(root: &Root) {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    root.deployment(
        "web",
        "d1",
        &[
            ("index.html", b"<h1>hi</h1>"),
            ("a.txt", b"A"),
            ("b.txt", b"B"),
            ("big.bin", &big),
        ],
    );
    root.flip("web", "d1");
}

fn fd_count(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The server's descriptor count at rest, after it has finished starting
/// and has served one request. `serve` says "listening" before its flip
/// watcher (a task spawned next to the listeners) has run: that task briefly
/// holds a service's `.lock` and `.activations.jsonl` (recording flips made
/// while no server ran), then opens three descriptors for good (inotify,
/// and the epoll and eventfd of the `notify` thread). On a loaded machine
/// all that came after a baseline taken right after "listening", and the
/// test saw 1 or 2 "leaked" descriptors. It logs "watching for external
/// flips" once it is set up (with inotify or by polling).
fn resting_fds(server: &Server) -> usize {
    server
        .stderr
        .wait_for("watching for external flips", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "the flip watcher never started; stderr:\n{}",
                server.stderr.all().join("\n")
            )
        });
    let before = fd_count(server);
    // One request served; its connection is closed by the server just
    // after the client has read the end of the answer.
    assert_eq!(server.get("/s/web/a.txt").status, 200);
    settle_fds(server, before)
}

/// Waits until the server's descriptor count is back to `baseline`.
fn settle_fds(server: &Server, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = fd_count(server);
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slowloris_is_cut_off_while_others_are_served() {
    let root = Root::new();
    site(&root);
    let config = root.path().join("c.toml");
    std::fs::write(&config, "header_read_timeout_secs = 2\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    let request = b"GET /s/web/ HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n";
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let started = Instant::now();
    let mut sent = 0;
    let mut served = 0;
    // Trickle one byte per 100 ms on every slow connection, while a normal
    // client keeps fetching.
    while started.elapsed() < Duration::from_secs(4) && sent < request.len() {
        for s in &mut slow {
            let _ = s.write_all(&request[sent..sent + 1]);
        }
        sent += 1;
        let r = server.get("/s/web/");
        assert_eq!(
            r.status, 200,
            "a normal client was not served during slowloris"
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 20);
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            !text.contains("<h1>hi</h1>"),
            "a slowloris client got the page: {text}"
        );
    }
}

#[test]
fn two_thousand_idle_connections_do_not_block_new_clients() {
    project_http::app::raise_fd_limit();
    let root = Root::new();
    site(&root);
    let server = Server::start(root.path(), &[]);
    let baseline = resting_fds(&server);
    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let started = Instant::now();
    let r = server.get("/s/web/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "A"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        fd_count(&server) >= baseline + 1000,
        "the idle connections were accepted"
    );
    drop(idle);
    let after = settle_fds(&server, baseline);
    assert!(
        after <= baseline,
        "descriptors leaked: {baseline} before, {after} after"
    );
}

#[test]
fn a_one_mebibyte_header_block_gets_431() {
    let root = Root::new();
    site(&root);
    let server = Server::start(root.path(), &[]);
    let mut request = b"GET /s/web/ HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1024 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let r = common::raw(server.addr, &request);
    assert_eq!(r.status, 431);
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let root = Root::new();
    site(&root);
    let server = Server::start(root.path(), &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut batch = Vec::new();
    for path in [
        "/s/web/a.txt",
        "/s/web/b.txt",
        "/s/web/missing",
        "/s/web/a.txt",
        "/health",
    ] {
        batch.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"GET /s/web/b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(&batch).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut data = Vec::new();
    stream.read_to_end(&mut data).unwrap();
    let mut answers = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let (r, used) = parse_response(rest, false).expect("a whole response");
        answers.push((r.status, r.text()));
        rest = &rest[used..];
    }
    let expected = [
        (200, "A"),
        (200, "B"),
        (404, "not found\n"),
        (200, "A"),
        (200, "ok"),
        (200, "B"),
    ];
    let got: Vec<(u16, &str)> = answers.iter().map(|(s, t)| (*s, t.as_str())).collect();
    assert_eq!(got, expected);
}

#[test]
fn abandoned_downloads_do_not_leak_descriptors() {
    let root = Root::new();
    site(&root);
    let server = Server::start(root.path(), &[]);
    let baseline = resting_fds(&server);
    for _ in 0..30 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /s/web/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 8192];
        let _ = s.read(&mut buf);
        // Close with most of the 3 MB body unread.
    }
    let after = settle_fds(&server, baseline);
    assert!(
        after <= baseline,
        "descriptors leaked: {baseline} before, {after} after"
    );
    assert_eq!(server.get("/s/web/big.bin").body.len(), 3_000_000);
}

#[test]
fn the_public_port_never_serves_admin_routes() {
    let root = Root::new();
    site(&root);
    let server = Server::start(root.path(), &["--admin-token", "tok"]);
    for path in [
        "/services",
        "/services/web/deployments",
        "/metrics",
        "/healthz",
        "/events",
        "/",
    ] {
        let r = common::get(server.addr, path, &[("Authorization", "Bearer tok")]);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            !r.text().contains('{'),
            "{path} answered JSON: {}",
            r.text()
        );
    }
    let r = send(
        server.addr,
        "POST",
        "/services/web/deployments",
        &[("Authorization", "Bearer tok")],
        b"x",
    );
    assert_eq!(r.status, 405);
    let r = send(
        server.addr,
        "DELETE",
        "/services/web/deployments/d1",
        &[("Authorization", "Bearer tok")],
        b"",
    );
    assert_eq!(r.status, 405);
    assert!(root.path().join("web/d1").exists());
}

#[test]
fn the_admin_token_never_appears_in_logs() {
    let token = "SeCrEt-token-7c1e99";
    let root = Root::new();
    site(&root);
    for format in ["text", "json"] {
        let server = Server::start(
            root.path(),
            &["--admin-token", token, "--log-format", format],
        );
        let admin = server.admin_addr();
        let good = format!("Bearer {token}");
        let bad = format!("Bearer {token}x");
        common::get(admin, "/services", &[("Authorization", &good)]);
        common::get(admin, "/services", &[("Authorization", &bad)]);
        common::get(
            admin,
            &format!("/services?token={token}"),
            &[("Authorization", &good)],
        );
        common::get(
            server.addr,
            &format!("/s/web/?t={token}"),
            &[("Authorization", &good)],
        );
        let body = common::tar_of(&[("index.html", b"x")]);
        send(
            admin,
            "POST",
            "/services/web/deployments",
            &[("Authorization", &good)],
            &body,
        );
        std::thread::sleep(Duration::from_millis(300));
        let logs = format!(
            "{}\n{}",
            server.stdout.all().join("\n"),
            server.stderr.all().join("\n")
        );
        assert!(
            logs.contains("admin request"),
            "admin requests are logged: {logs}"
        );
        assert!(
            !logs.contains(token),
            "the token leaked into the {format} logs:\n{logs}"
        );
    }
}

/// Regression: with the common soft limit of open files (here 256), the
/// server used to stop accepting at ~250 connections. It now raises the
/// soft limit to the hard one at start.
#[test]
fn a_low_open_files_soft_limit_is_raised_at_start() {
    use std::os::unix::process::CommandExt;
    project_http::app::raise_fd_limit();
    let root = Root::new();
    site(&root);
    let server = Server::start_custom(root.path(), &[], |command| {
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = 256;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
    });
    let addr = server.addr;
    let held: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut probe = TcpStream::connect(addr).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe
        .write_all(b"GET /s/web/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = probe.read_to_end(&mut answer);
    drop(server);
    drop(held);
    let (r, _) = parse_response(&answer, false).expect("answered past 256 descriptors");
    assert_eq!(r.text(), "A");
}
