//! The batched access log (src/access_log.rs): lines reach stdout within the
//! flush interval, in both formats, with hostile paths escaped, and SIGTERM
//! loses none of them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn site() -> Root {
    let root = Root::new();
    root.deployment(
        "web",
        "d1",
        &[("index.html", b"<h1>hi</h1>"), ("a.txt", b"aaaa")],
    );
    root.flip("web", "d1");
    root
}

/// Sends `count` keep-alive GETs on one connection and reads every answer.
fn burst(server: &Server, count: usize) {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut request = Vec::new();
    for i in 0..count {
        request.extend_from_slice(
            format!("GET /s/web/a.txt?n={i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
    }
    request.extend_from_slice(
        b"GET /s/web/a.txt?last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    stream.write_all(&request).unwrap();
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers).unwrap();
    let text = String::from_utf8_lossy(&answers);
    assert_eq!(
        text.matches("HTTP/1.1 200").count(),
        count + 1,
        "every request answered"
    );
}

#[test]
fn sigterm_loses_no_line() {
    let root = site();
    for format in ["text", "json"] {
        let mut server = Server::start(root.path(), &["--log-format", format, "--workers", "2"]);
        // 2 000 lines: several 32 KiB batches plus a partial one pending at
        // the signal, well within one flush interval.
        burst(&server, 1999);
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(15)).expect("exits");
        assert!(status.success(), "{format}: {status:?}");
        // The reader thread may still be draining the pipe.
        std::thread::sleep(Duration::from_millis(300));
        let lines: Vec<String> = server
            .stdout
            .all()
            .into_iter()
            .filter(|l| l.contains("/s/web/a.txt"))
            .collect();
        assert_eq!(
            lines.len(),
            2000,
            "{format}: every line written before exit"
        );
        if format == "json" {
            for line in &lines {
                let entry: serde_json::Value = serde_json::from_str(line).expect("json line");
                assert_eq!(entry["status"], 200);
                assert_eq!(entry["deployment"], "d1");
            }
        } else {
            assert!(
                lines.iter().all(|l| l.contains(" status=200 ")),
                "{}",
                lines[0]
            );
        }
    }
}

#[test]
fn lines_arrive_within_the_flush_interval_without_a_full_batch() {
    let root = site();
    let server = Server::start(root.path(), &[]);
    server.get("/s/web/a.txt");
    // One short line never fills a batch: the once-a-second flusher writes it.
    let line = server
        .stdout
        .wait_for("/s/web/a.txt", Duration::from_secs(3))
        .expect("the flusher wrote the line");
    assert!(line.contains("service=\"web\""), "{line}");
    assert!(line.contains("deployment=\"d1\""), "{line}");
}

#[test]
fn a_path_cannot_forge_a_line() {
    let root = site();
    let server = Server::start(root.path(), &["--log-format", "json"]);
    // A quote and a backslash are legal in a request target's bytes for
    // hyper; they must come out escaped, keeping one valid JSON object.
    let answer = raw(
        server.addr,
        b"GET /s/web/x\"y\\z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let line = server.stdout.wait_for("/s/web/x", Duration::from_secs(3));
    if let Some(line) = line {
        let entry: serde_json::Value = serde_json::from_str(&line).expect("one json object");
        assert_eq!(entry["path"], "/s/web/x\"y\\z");
    } else {
        // hyper refused the target before it reached the handler: nothing to log.
        assert_eq!(answer.status, 400);
    }
}

/// Sends `count` keep-alive GETs of `path` on one connection, then one
/// last with `Connection: close`; returns how many answered `status`.
fn requests(server: &Server, path: &str, count: usize, status: u16) -> usize {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let mut request = Vec::new();
    for i in 0..count {
        let close = if i + 1 == count {
            "Connection: close\r\n"
        } else {
            ""
        };
        request.extend_from_slice(
            format!("GET {path}?n={i} HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes(),
        );
    }
    stream.write_all(&request).unwrap();
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers).unwrap();
    String::from_utf8_lossy(&answers)
        .matches(&format!("HTTP/1.1 {status} "))
        .count()
}

/// Access lines of `path` once the server has exited (SIGTERM flushes).
fn lines_after_exit(mut server: Server, path: &str) -> Vec<String> {
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(300));
    server
        .stdout
        .all()
        .into_iter()
        .filter(|l| l.contains(path))
        .collect()
}

#[test]
fn access_log_off_by_flag_and_env_writes_nothing() {
    let root = site();
    let by_flag = Server::start(root.path(), &["--access-log", "off"]);
    let by_env = Server::start_with_env(root.path(), &[], &[("PROJECT_HTTP_ACCESS_LOG", "off")]);
    for server in [by_flag, by_env] {
        assert_eq!(requests(&server, "/s/web/a.txt", 50, 200), 50);
        assert_eq!(requests(&server, "/s/web/missing", 5, 404), 5);
        let stdout = lines_after_exit(server, "/s/web/");
        assert!(stdout.is_empty(), "{stdout:?}");
    }
    // The flag beats the file: on again over `access_log = false`.
    let config = root.path().join("quiet.toml");
    std::fs::write(&config, "access_log = false\n").unwrap();
    let server = Server::start(
        root.path(),
        &["--config", config.to_str().unwrap(), "--access-log", "on"],
    );
    assert_eq!(requests(&server, "/s/web/a.txt", 3, 200), 3);
    assert_eq!(lines_after_exit(server, "/s/web/a.txt").len(), 3);
}

#[test]
fn sampling_logs_one_in_n_successes_and_every_error() {
    let root = site();
    // One worker: the 1-in-N count is per worker thread, so exact here.
    let by_flag = Server::start(
        root.path(),
        &["--access-log-sample", "10", "--workers", "1"],
    );
    let by_env = Server::start_with_env(
        root.path(),
        &["--workers", "1"],
        &[("PROJECT_HTTP_ACCESS_LOG_SAMPLE", "10")],
    );
    for server in [by_flag, by_env] {
        assert_eq!(requests(&server, "/s/web/a.txt", 100, 200), 100);
        assert_eq!(requests(&server, "/s/web/missing", 30, 404), 30);
        assert_eq!(requests(&server, "/s/web/a.txt", 100, 200), 100);
        let lines = lines_after_exit(server, "/s/web/");
        let ok = lines.iter().filter(|l| l.contains(" status=200 ")).count();
        let missing = lines.iter().filter(|l| l.contains(" status=404 ")).count();
        assert_eq!((ok, missing), (20, 30), "{lines:?}");
    }
    // The file's setting, and 0 refused with the way to log nothing.
    let config = root.path().join("sample.toml");
    std::fs::write(&config, "access_log_sample = 4\n").unwrap();
    let server = Server::start(
        root.path(),
        &["--config", config.to_str().unwrap(), "--workers", "1"],
    );
    assert_eq!(requests(&server, "/s/web/a.txt", 40, 200), 40);
    assert_eq!(lines_after_exit(server, "/s/web/a.txt").len(), 10);
    std::fs::write(&config, "access_log_sample = 0\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("access_log = false"), "{err}");
}
