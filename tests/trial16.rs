//! Findings of a newcomer's trial of the admin API (issue 16): what a
//! client sends never panics the server, refusals reach the CLI, optional
//! bodies are optional, provenance stays printable, no-ops stay quiet.
//! The real binary, real sockets, a real root.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{send, tar_of, Response, Root, Server};
use serde_json::Value;

const TOKEN: &str = "trial16-token-5e2a";
const AUTH: (&str, &str) = ("Authorization", "Bearer trial16-token-5e2a");

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn upload(admin: SocketAddr, query: &str, body: &[u8]) -> Response {
    send(
        admin,
        "POST",
        &format!("/services/web/deployments{query}"),
        &[AUTH],
        body,
    )
}

fn site(version: &str) -> Vec<u8> {
    tar_of(&[("index.html", format!("<h1>{version}</h1>").as_bytes())])
}

fn cli(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::binary())
        .args(args)
        .env("PROJECT_HTTP_ADMIN_URL", format!("http://{admin}"))
        .env("PROJECT_HTTP_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `?at=` past year 9999 once normalised to UTC is a 400 naming the range
/// (it used to panic formatting the date and drop the connection).
#[test]
fn activations_at_past_year_9999_is_a_400_not_a_panic() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "?id=v1", &site("v1")).status, 201);
    for at in [
        "9999-12-31T23:59:60Z",
        "9999-12-31T23:30:00-01:00",
        "9999-12-31T23:59:59.5-00:01",
    ] {
        let r = common::get(
            admin,
            &format!("/services/web/activations?at={at}"),
            &[AUTH],
        );
        assert_eq!(r.status, 400, "{at}: {}", r.text());
        let message = json(&r)["error"].as_str().unwrap().to_string();
        assert!(
            message.contains("out of range") && message.contains("9999-12-31T23:59:59Z"),
            "{message}"
        );
    }
    // The last writable instant still answers.
    let r = common::get(
        admin,
        "/services/web/activations?at=9999-12-31T23:59:59Z",
        &[AUTH],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["live"], "v1");
    // A `+` decoded as a space: the 400 says how to write it.
    let r = common::get(
        admin,
        "/services/web/activations?at=2026-01-31T16:05:00+02:00",
        &[AUTH],
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("%2B"), "{}", r.text());
    assert!(!server.stderr.contains("panicked"), "the server panicked");
}

/// `<dir>/site` with an `index.html` and `noise.bin` of `len` incompressible
/// bytes (returned too).
fn noisy_site(dir: &Path, len: u32) -> (std::path::PathBuf, Vec<u8>) {
    let site_dir = dir.join("site");
    std::fs::create_dir(&site_dir).unwrap();
    std::fs::write(site_dir.join("index.html"), "<h1>hello</h1>").unwrap();
    let noise: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(site_dir.join("noise.bin"), &noise).unwrap();
    (site_dir, noise)
}

/// `project-http deploy ./dir` against a server that refuses for disk space
/// (507) or size (413) shows the server's message and does not retry.
#[test]
fn deploy_cli_shows_507_and_413_refusals_without_retrying() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    // The upload is well over 1000 bytes on the wire.
    let (site_dir, _) = noisy_site(dir.path(), 256 << 10);
    for (name, text, code, needle) in [
        (
            "disk.toml",
            "min_free_bytes = 4611686018427387904\n",
            "507",
            "min_free_bytes",
        ),
        (
            "size.toml",
            "max_upload_bytes = 1000\n",
            "413",
            "max_upload_bytes = 1000",
        ),
    ] {
        let path = config(dir.path(), name, text);
        let (server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &path]);
        let public = format!("http://{}", server.addr);
        let started = std::time::Instant::now();
        let (ok, stdout, stderr) =
            common::deploy_web(admin, &public, TOKEN, &site_dir, &["--id", "big"]);
        assert!(!ok, "{name}: deploy succeeded: {stdout}");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(stderr.contains(code), "{name}: no {code} in {stderr}");
        assert!(
            !stderr.contains("retrying") && !stderr.contains("cannot reach"),
            "{name}: {stderr}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(!root.path().join("web/big").exists());
    }
}

/// A query the server refuses before it reads the body (a control
/// character in `--message`, an id it does not allow, an over-long label),
/// or a token it refuses: `deploy` says so at once, before the upload (the
/// query is checked as the server parses it; a full upload is preceded by
/// an empty manifest that the token must pass), with no retry and no
/// "broken pipe". The upload is an 8 MiB archive file, far more than the
/// socket buffers hold.
#[test]
fn deploy_cli_shows_a_refused_query_or_token_without_retrying() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let (site_dir, noise) = noisy_site(dir.path(), 8 << 20);
    let archive = dir.path().join("site.tar");
    std::fs::write(
        &archive,
        tar_of(&[
            ("index.html", &b"<h1>hello</h1>"[..]),
            ("noise.bin", &noise),
        ]),
    )
    .unwrap();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let public = format!("http://{}", server.addr);
    let label = format!("k={}", "v".repeat(300));
    for source in [&site_dir, &archive] {
        for (extra, token, needle) in [
            (
                vec!["--message", "bad\u{1b}[31m"],
                TOKEN,
                "control character",
            ),
            (vec!["--id", "bad.id"], TOKEN, "id"),
            (vec!["--label", label.as_str()], TOKEN, "label"),
            (vec!["--full"], "not-the-token", "refused the token"),
        ] {
            let started = std::time::Instant::now();
            let (ok, stdout, stderr) = common::deploy_web(admin, &public, token, source, &extra);
            assert!(!ok, "{extra:?}: deploy succeeded: {stdout}");
            assert!(stderr.contains(needle), "{source:?} {extra:?}: {stderr}");
            assert!(
                !stderr.contains("retrying")
                    && !stderr.contains("cannot reach")
                    && !stderr.contains("Broken pipe"),
                "{source:?} {extra:?}: {stderr}"
            );
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
        }
    }
    assert!(!root.path().join("web").exists(), "nothing left on disk");
}

/// The server's side of the same: a client that writes the whole body
/// before reading (as ureq does) still reads the refusal, whether the query
/// was refused (400) or the declared length is over `max_upload_bytes`
/// (413): the server reads the rest instead of closing on it (bounded in
/// time).
#[test]
fn a_refused_upload_is_read_to_its_end_and_answered() {
    use std::io::{Read, Write};
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "small.toml", "max_upload_bytes = 1000000\n");
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &path]);
    let body = vec![7u8; 8 << 20];
    for (query, status) in [("?id=bad.id", 400), ("", 413)] {
        let mut stream = std::net::TcpStream::connect(admin).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        write!(
            stream,
            "POST /services/web/deployments{query} HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        for chunk in body.chunks(64 << 10) {
            stream
                .write_all(chunk)
                .unwrap_or_else(|e| panic!("{query:?}: the server closed on the body: {e}"));
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "{query:?}: closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{query:?}: {text}"
        );
    }
}

/// `POST …/preview` with no body at all (no Content-Length) means the
/// defaults; a missing deployment is 404 whatever the body says.
#[test]
fn preview_without_a_body_means_defaults_and_a_missing_deployment_is_404() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "?id=v1", &site("v1")).status, 201);
    let bare = |id: &str| {
        common::raw(
            admin,
            format!(
                "POST /services/web/deployments/{id}/preview HTTP/1.1\r\nHost: localhost\r\n\
                 Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let r = bare("v1");
    assert_eq!(r.status, 200, "{}", r.text());
    let link = json(&r);
    assert!(link["path"].as_str().unwrap().starts_with("/s/web@v1/"));
    // Signed by default: the expiry is 7 days out.
    let expires = link["expiresAt"].as_str().unwrap();
    let week = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(7 * 86400),
    )
    .to_string();
    assert_eq!(&expires[..10], &week[..10], "{expires}");
    // Blank bodies are defaults too.
    for body in ["", "  \n", "{}"] {
        let r = send(
            admin,
            "POST",
            "/services/web/deployments/v1/preview",
            &[AUTH],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{body:?}: {}", r.text());
    }
    // Missing deployment: 404, not a complaint about the body.
    assert_eq!(bare("v42").status, 404);
    let r = send(
        admin,
        "POST",
        "/services/web/deployments/v42/preview",
        &[AUTH],
        b"not json",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = send(
        admin,
        "POST",
        "/services/web/deployments/current/preview",
        &[AUTH],
        b"not json",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid deployment id"), "{}", r.text());
    // A real body is still checked.
    let r = send(
        admin,
        "POST",
        "/services/web/deployments/v1/preview",
        &[AUTH],
        b"not json",
    );
    assert_eq!(r.status, 400);
}

/// Control characters (other than tab, and line feed in a message) and
/// invalid UTF-8 in provenance are refused; legacy ones already stored are
/// printed escaped by `list` and the dashboard.
#[test]
fn provenance_refuses_control_characters_and_invalid_utf8() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    for query in [
        "?message=a%00b%1b%5B31mRED",
        "?message=%1b%5B2J",
        "?message=a%7Fb",
        "?message=a%C2%9Bb",
        "?message=a%0Db",
        "?message=%FF%FE",
        "?label=k%3Da%1Bb",
        "?label=k%0A%3Dv",
        "?label=k%3D%FF",
        "?commit=%FF",
    ] {
        let r = upload(admin, &format!("{query}&id=bad"), &site("bad"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
    let r = upload(admin, "?id=bad&message=%FF%FE", &site("bad"));
    assert!(r.text().contains("UTF-8"), "{}", r.text());
    let r = upload(admin, "?id=bad&message=a%00b", &site("bad"));
    assert!(r.text().contains("U+0000"), "{}", r.text());
    assert!(!root.path().join("web/bad").exists());
    // Tab (and a line feed in a message) is text.
    let r = upload(
        admin,
        "?id=ok&message=fix%09login%0Asecond+line&label=k%3Da%09b",
        &site("ok"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // A legacy message stored before the check: escaped on the way out.
    let meta = root.path().join("web/ok/.deployer-meta.json");
    let mut value: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    value["message"] = Value::String("a\u{0}b\u{1b}[31mRED".into());
    std::fs::write(&meta, serde_json::to_vec(&value).unwrap()).unwrap();
    let (ok, stdout, stderr) = cli(admin, &["list", "--service", "web"]);
    assert!(ok, "{stderr}");
    assert!(
        !stdout.contains('\u{0}') && !stdout.contains('\u{1b}'),
        "raw control characters in {stdout:?}"
    );
    assert!(stdout.contains("a\\u{0}b\\u{1b}[31mRED"), "{stdout}");
    drop(server);
    let server = Server::start(root.path(), &[]);
    let page = common::get(server.admin_addr(), "/", &[]);
    assert_eq!(page.status, 200);
    let page = page.text();
    assert!(page.contains("RED"), "message not on the dashboard");
    assert!(
        !page.contains('\u{0}') && !page.contains('\u{1b}'),
        "raw control characters on the dashboard"
    );
}

/// Everything `GET /events` sends from now on, collected in the background.
fn event_stream(admin: SocketAddr) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // The subscription is live once the head has arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !seen.lock().unwrap().contains("text/event-stream") {
        assert!(std::time::Instant::now() < deadline, "no event stream");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    seen
}

/// The `data:` JSON of every `event: kind` frame seen so far.
fn frames(seen: &std::sync::Mutex<String>, kind: &str) -> Vec<Value> {
    let text = seen.lock().unwrap().clone();
    let marker = format!("event: {kind}\n");
    text.split(&marker)
        .skip(1)
        .filter_map(|rest| rest.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

fn wait_for_frames(seen: &std::sync::Mutex<String>, kind: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = frames(seen, kind);
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Activating the current deployment and pinning a pinned one emit nothing;
/// an external flip's event carries previous/why/actor; a failure its actor.
#[test]
fn no_op_actions_emit_no_events_and_events_carry_actor() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "?id=v1", &site("v1")).status, 201);
    assert_eq!(upload(admin, "?id=v2", &site("v2")).status, 201);
    let seen = event_stream(admin);
    let activate = |id: &str| {
        send(
            admin,
            "POST",
            "/services/web/activate",
            &[AUTH, ("Content-Type", "application/json")],
            format!("{{\"id\":\"{id}\"}}").as_bytes(),
        )
    };
    let pin = |method: &str| {
        send(
            admin,
            method,
            "/services/web/deployments/v1/pin",
            &[AUTH],
            b"",
        )
    };
    // No-ops, each twice.
    for _ in 0..2 {
        assert_eq!(activate("v2").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(pin("PUT").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(pin("DELETE").status, 200);
    }
    // Real changes, the last one marking the end of the stream.
    assert_eq!(activate("v1").status, 200);
    let activated = wait_for_frames(&seen, "deployment.activated", 1);
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["current"], "v1");
    assert_eq!(activated[0]["previous"], "v2");
    assert_eq!(frames(&seen, "deployment.pinned").len(), 1);
    assert_eq!(frames(&seen, "deployment.unpinned").len(), 1);
    // A flip by hand (`mv -T`): previous, why, actor like the others.
    let dir = root.path().join("web");
    std::os::unix::fs::symlink("v2", dir.join("current.tmp-by-hand")).unwrap();
    std::fs::rename(dir.join("current.tmp-by-hand"), dir.join("current")).unwrap();
    let activated = wait_for_frames(&seen, "deployment.activated", 2);
    assert_eq!(activated.len(), 2, "external flip not seen: {activated:?}");
    let external = &activated[1];
    assert_eq!(external["current"], "v2");
    assert_eq!(external["previous"], "v1", "{external}");
    assert_eq!(external["why"], "external", "{external}");
    assert_eq!(external["actor"], "external", "{external}");
    // A failed deploy names who tried.
    let r = upload(admin, "?id=broken", b"not a tar");
    assert!((400..500).contains(&r.status), "{}", r.text());
    let failed = wait_for_frames(&seen, "deployment.failed", 1);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["actor"], "admin", "{}", failed[0]);
}

fn create_token(admin: SocketAddr, body: &str) -> Response {
    send(
        admin,
        "POST",
        "/tokens",
        &[AUTH, ("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Tokens: a zero lifetime is refused, duplicate scopes are stored once,
/// expired and revoked tokens are told apart (API, CLI, `token list`), and
/// the dashboard says why a valid non-admin token cannot log in.
#[test]
fn token_refusals_say_expired_revoked_or_lacking_admin() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let (ok, _, stderr) = cli(
        admin,
        &[
            "token",
            "create",
            "--name",
            "zero",
            "--scope",
            "read",
            "--expires",
            "0d",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("more than 0"), "{stderr}");
    let r = create_token(admin, r#"{"name":"reader","scopes":["read","read"]}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r)["scopes"], serde_json::json!(["read"]));
    let reader = json(&r)["token"].as_str().unwrap().to_string();
    let r = create_token(
        admin,
        r#"{"name":"old","scopes":["read"],"expiresIn":"1h"}"#,
    );
    let old = json(&r)["token"].as_str().unwrap().to_string();
    // Make `old` expired, as an hour later.
    let path = root.path().join(".tokens.json");
    let mut tokens: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for t in tokens.as_array_mut().unwrap() {
        if t["name"] == "old" {
            t["expiresAt"] = Value::String("2020-01-01T00:00:00.000000000Z".into());
        }
    }
    std::fs::write(&path, serde_json::to_vec(&tokens).unwrap()).unwrap();
    let bearer = |token: &str| format!("Bearer {token}");
    let r = common::get(admin, "/services", &[("Authorization", &bearer(&old))]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("expired"), "{}", r.text());
    let (ok, stdout, _) = cli(admin, &["token", "list"]);
    assert!(ok);
    let line = stdout.lines().find(|l| l.starts_with("old ")).unwrap();
    assert!(line.contains("(expired)"), "{line}");
    let line = stdout.lines().find(|l| l.starts_with("reader ")).unwrap();
    assert!(!line.contains("expired"), "{line}");
    // The CLI relays "expired".
    let out = Command::new(common::binary())
        .args(["list"])
        .env("PROJECT_HTTP_ADMIN_URL", format!("http://{admin}"))
        .env("PROJECT_HTTP_ADMIN_TOKEN", &old)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    // Revoked: said so, and gone from the list.
    let (ok, _, stderr) = cli(admin, &["token", "revoke", "reader"]);
    assert!(ok, "{stderr}");
    let r = common::get(admin, "/services", &[("Authorization", &bearer(&reader))]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"), "{}", r.text());
    let (_, stdout, _) = cli(admin, &["token", "list"]);
    assert!(!stdout.contains("reader"), "{stdout}");
    // A wrong token is still just wrong.
    let r = common::get(admin, "/services", &[("Authorization", "Bearer ph_nope")]);
    assert!(r.text().contains("wrong admin token"), "{}", r.text());
    // Dashboard: a valid read token lacks scope admin, and says so.
    let r = create_token(admin, r#"{"name":"viewer","scopes":["read"]}"#);
    let viewer = json(&r)["token"].as_str().unwrap().to_string();
    let login = |token: &str| {
        send(
            admin,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={token}").as_bytes(),
        )
    };
    let page = login(&viewer);
    assert_eq!(page.status, 401);
    assert!(page.text().contains("lacks scope admin"), "{}", page.text());
    let page = login(&old);
    assert!(page.text().contains("expired"), "{}", page.text());
    let page = login("ph_nope");
    assert!(page.text().contains("Wrong token."), "{}", page.text());
}

/// The raw bytes of the answer to `request` (the server closes after it).
fn raw_bytes(addr: SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    String::from_utf8_lossy(&data).into_owned()
}

/// HEAD answers wherever GET does (RFC 9110 §9.3.2), with GET's status
/// and headers and no body; `/openapi.json` needs no token, so a wrong
/// method there is 405, not 401.
#[test]
fn head_wherever_get_and_openapi_wrong_method_is_405() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "?id=v1", &site("v1")).status, 201);
    for path in [
        "/openapi.json",
        "/services",
        "/services/web/deployments",
        "/services/web/activations",
        "/metrics",
        "/tokens",
        "/",
    ] {
        let get = common::get(admin, path, &[AUTH]);
        let head = common::request(admin, "HEAD", path, &[AUTH]);
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        let bytes = raw_bytes(
            admin,
            &format!(
                "HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(
            bytes.ends_with("\r\n\r\n"),
            "{path}: a body after HEAD: {bytes:?}"
        );
    }
    // Content-Length of a HEAD is the GET body's.
    let get = common::get(admin, "/openapi.json", &[]);
    let head = common::request(admin, "HEAD", "/openapi.json", &[]);
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    // HEAD needs the same token as GET.
    assert_eq!(common::request(admin, "HEAD", "/services", &[]).status, 401);
    // 405s list HEAD beside GET.
    let r = send(admin, "POST", "/services/web/activations", &[AUTH], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // The public description: a wrong method is 405 without a token too.
    for method in ["POST", "PUT", "DELETE"] {
        let r = send(admin, method, "/openapi.json", &[], b"");
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

/// A bad `PROJECT_HTTP_CHART_INTERVAL_MS` stops the server at startup
/// with a message naming it, instead of being silently ignored.
#[test]
fn bad_chart_interval_is_refused_at_startup() {
    let root = Root::new();
    for bad in ["fast", "0", "99999999999999999999999"] {
        let out = Command::new(common::binary())
            .args(["serve", "--root"])
            .arg(root.path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("PROJECT_HTTP_CHART_INTERVAL_MS", bad)
            .env_remove("PROJECT_HTTP_ROOT")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}: started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("PROJECT_HTTP_CHART_INTERVAL_MS") && stderr.contains(bad),
            "{bad}: {stderr}"
        );
    }
    // A good value starts.
    let server = Server::start_with_env(
        root.path(),
        &[],
        &[("PROJECT_HTTP_CHART_INTERVAL_MS", "500")],
    );
    assert_eq!(
        common::get(server.admin_addr(), "/healthz", &[]).status,
        200
    );
}

/// Durations a client sends (a preview's `ttl`, a token's `expiresIn`, a
/// signed link's `exp`) never overflow or panic: out of range is a 400 (or,
/// for a link, simply not valid).
#[test]
fn client_durations_and_expiries_never_overflow() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "?id=v1", &site("v1")).status, 201);
    for ttl in ["99999999999999999999999d", "584942417356y", "367d", "0s"] {
        let r = send(
            admin,
            "POST",
            "/services/web/deployments/v1/preview",
            &[AUTH],
            format!("{{\"ttl\":\"{ttl}\"}}").as_bytes(),
        );
        assert_eq!(r.status, 400, "{ttl}: {}", r.text());
    }
    for expires in ["99999999999999999999999d", "584942417356y", "101y", "0d"] {
        let r = create_token(
            admin,
            &format!("{{\"name\":\"t\",\"scopes\":[\"read\"],\"expiresIn\":\"{expires}\"}}"),
        );
        assert_eq!(r.status, 400, "{expires}: {}", r.text());
    }
    for exp in ["18446744073709551615", "99999999999999999999999", "-1"] {
        let r = server.get(&format!("/s/web@v1/?exp={exp}&sig=00"));
        assert!((400..500).contains(&r.status), "{exp}: {}", r.status);
    }
    assert!(!server.stderr.contains("panicked"), "the server panicked");
}

/// A chunked upload refused for `min_free_bytes` says its size is unknown
/// (it used to say "of 0 bytes").
#[test]
fn chunked_upload_refused_for_disk_space_says_unknown_size() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "disk.toml",
        "min_free_bytes = 4611686018427387904\n",
    );
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &path]);
    let body = site("v1");
    let mut request = format!(
        "POST /services/web/deployments?id=v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = common::raw(admin, &request);
    assert_eq!(r.status, 507, "{}", r.text());
    let message = json(&r)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("of unknown size") && !message.contains("of 0 bytes"),
        "{message}"
    );
    let r = upload(admin, "?id=v1", &body);
    assert_eq!(r.status, 507);
    assert!(
        r.text().contains(&format!("of {} bytes", body.len())),
        "{}",
        r.text()
    );
}
