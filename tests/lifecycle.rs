//! Flips under load, signals, and the guard rails against slow clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, parse_response, Root, Server};
use project_http::config::Config;
use project_http::site::{Deployment, IndexOptions};

const SMALL: usize = 4_000;
const LARGE: usize = 1_500_000;

/// Four clients hammer while the registry flips between two deployments
/// hundreds of times: every body is whole and from one version, and the
/// ETag sent with it is that version's.
#[test]
fn flips_under_load_give_only_whole_single_version_bodies() {
    let root = Root::new();
    for (id, fill) in [("d1", b'A'), ("d2", b'B')] {
        root.deployment(
            "web",
            id,
            &[
                ("index.html", &vec![fill; SMALL]),
                ("big.bin", &vec![fill; LARGE]),
            ],
        );
    }
    root.flip("web", "d1");
    let config = Config {
        root: root.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        // Never the default 127.0.0.1:9080: a server the README's first
        // command started may be running (tests/first_hour.rs checks).
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let running = runtime.block_on(project_http::app::start(&config)).unwrap();
    let addr = running.public_addr;
    let options = IndexOptions::from_config(&config);
    let builds: Vec<Arc<Deployment>> = ["d1", "d2"]
        .iter()
        .map(|id| {
            Arc::new(
                Deployment::build("web", id, &root.path().join("web").join(id), options).unwrap(),
            )
        })
        .collect();
    let etags: Vec<(String, String)> = builds
        .iter()
        .map(|d| {
            let tag = |p: &str| {
                d.file(p)
                    .unwrap()
                    .identity
                    .etag
                    .to_str()
                    .unwrap()
                    .to_string()
            };
            (tag("index.html"), tag("big.bin"))
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (stop, seen, etags) = (stop.clone(), seen.clone(), etags.clone());
            std::thread::spawn(move || {
                let mut requests = 0;
                while !stop.load(Ordering::Relaxed) || requests < 10 {
                    let (path, len) = if n % 2 == 0 {
                        ("/s/web/", SMALL)
                    } else {
                        ("/s/web/big.bin", LARGE)
                    };
                    let r = get(addr, path, &[]);
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body.len(), len, "whole body");
                    let first = r.body[0];
                    assert!(r.body.iter().all(|b| *b == first), "mixed body");
                    let version = usize::from(first == b'B');
                    let expected = if n % 2 == 0 {
                        &etags[version].0
                    } else {
                        &etags[version].1
                    };
                    assert_eq!(
                        r.header("etag"),
                        Some(expected.as_str()),
                        "ETag of the version sent"
                    );
                    seen[version].fetch_add(1, Ordering::Relaxed);
                    requests += 1;
                }
                requests
            })
        })
        .collect();
    let started = Instant::now();
    let mut flips = 0;
    while started.elapsed() < Duration::from_secs(2) || flips < 200 {
        running.registry.publish(builds[flips % 2].clone());
        flips += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    let total: usize = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .sum();
    assert!(total >= 40);
    assert!(
        seen[0].load(Ordering::Relaxed) > 0 && seen[1].load(Ordering::Relaxed) > 0,
        "both versions served"
    );
    runtime.block_on(running.stop());
}

/// SIGHUP: an external flip (`ln -s` + `mv -T`) and a changed config file apply.
#[test]
fn sighup_rescans_root_and_rereads_config() {
    let root = Root::new();
    root.deployment("web", "d1", &[("index.html", b"one"), ("a.css", b"x")]);
    root.deployment("web", "d2", &[("index.html", b"two"), ("a.css", b"x")]);
    root.flip("web", "d1");
    let config = root.path().join("c.toml");
    std::fs::write(&config, "cache_control_assets = \"public, max-age=60\"\n").unwrap();
    let server = Server::start(root.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(server.get("/s/web/").text(), "one");
    assert_eq!(
        server.get("/s/web/a.css").header("cache-control"),
        Some("public, max-age=60")
    );

    root.flip("web", "d2");
    root.deployment("new", "n1", &[("index.html", b"new service")]);
    root.flip("new", "n1");
    std::fs::write(
        &config,
        "cache_control_assets = \"public, max-age=31536000, immutable\"\n",
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both changes, not only the new service: the watcher may see them
    // in either order.
    while (server.get("/s/new/").status != 200 || server.get("/s/web/").text() != "two")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get("/s/web/").text(), "two");
    assert_eq!(server.get("/s/new/").text(), "new service");
    assert_eq!(
        server.get("/s/web/a.css").header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // A broken config on reload keeps the old one and the server running.
    std::fs::write(&config, "this is not toml = = =\n").unwrap();
    server.signal(libc::SIGHUP);
    server
        .stderr
        .wait_for("reload failed", Duration::from_secs(10))
        .expect("reload failure logged");
    assert_eq!(server.get("/s/web/").text(), "two");
}

/// SIGTERM: the listener closes, a download in flight completes, exit code 0.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let root = Root::new();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    root.deployment("web", "d1", &[("index.html", b"x"), ("big.bin", &big)]);
    root.flip("web", "d1");
    let mut server = Server::start(root.path(), &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /s/web/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = stream.read(&mut first).unwrap();
    assert!(n > 0);
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(server.addr).is_err() || get_fails(server.addr),
        "no new requests after SIGTERM"
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let (response, _) = parse_response(&all, false).expect("complete response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, big, "in-flight download completed");
    let status = server.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}");
}

fn get_fails(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// A client trickling headers is cut off by the header timeout while
/// others keep being served; at the connection limit new clients wait in the
/// backlog and are answered once a slot frees up. Three workers: the limit
/// is one for the port, not one per worker thread.
#[test]
fn slow_clients_are_cut_off_and_the_connection_limit_holds() {
    let root = Root::new();
    root.deployment("web", "d1", &[("index.html", b"hello")]);
    root.flip("web", "d1");
    let config = root.path().join("c.toml");
    std::fs::write(
        &config,
        "header_read_timeout_secs = 1\nmax_connections = 2\n",
    )
    .unwrap();
    let server = Server::start(
        root.path(),
        &["--config", config.to_str().unwrap(), "--workers", "3"],
    );

    // Two slowloris clients take both slots.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /s/web/ HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third client is not answered while both slots are held...
    let mut waiting = TcpStream::connect(server.addr).unwrap();
    waiting
        .write_all(b"GET /s/web/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(
        waiting.read(&mut buf).is_err(),
        "answered beyond the connection limit"
    );
    // ...and is answered once the header timeout has cut the slow ones off.
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut data = Vec::new();
    waiting.read_to_end(&mut data).unwrap();
    let (response, _) = parse_response(&data, false).expect("response after slots freed");
    assert_eq!(response.text(), "hello");
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        // The server closed the connection (possibly after a 408).
        let _ = s.read_to_end(&mut rest);
        let text = String::from_utf8_lossy(&rest);
        assert!(!text.contains("hello"), "slow client got the page: {text}");
    }
    assert_eq!(server.get("/s/web/").text(), "hello");
}
