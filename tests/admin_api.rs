//! The admin API end to end: the real binary, real sockets, a real root.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{entries, gzip, raw_tar, send, tar_of, Response, Root, Server};
use serde_json::Value;
use tar::EntryType;

const TOKEN: &str = "test-token-5f2a";
const AUTH: (&str, &str) = ("Authorization", "Bearer test-token-5f2a");

fn start(root: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    Server::start_with_token(root, TOKEN, extra)
}

fn upload(admin: SocketAddr, service: &str, query: &str, body: &[u8]) -> Response {
    send(
        admin,
        "POST",
        &format!("/services/{service}/deployments{query}"),
        &[AUTH],
        body,
    )
}

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn site(version: &str) -> Vec<u8> {
    tar_of(&[
        ("index.html", format!("<h1>{version}</h1>").as_bytes()),
        (
            "assets/app.js",
            format!("console.log('{version}')").as_bytes(),
        ),
    ])
}

/// Opens a connection and sends the head of an upload of `len` bytes; the
/// caller writes (some of) the body.
fn begin_upload(admin: SocketAddr, len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!(
                "POST /services/web/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    stream
}

fn admin_get(admin: SocketAddr, path: &str) -> Response {
    common::get(admin, path, &[AUTH])
}

#[test]
fn deploy_serve_history_activate_rollback_delete() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);

    let r = upload(admin, "web", "", &site("v1"));
    assert_eq!(r.status, 201, "{}", r.text());
    let v1 = json(&r);
    assert_eq!(v1["service"], "web");
    assert_eq!(v1["files"], 2);
    assert_eq!(v1["active"], true);
    let id1 = v1["id"].as_str().unwrap().to_string();
    assert_eq!(id1.len(), 12);
    assert_eq!(server.get("/s/web/").text(), "<h1>v1</h1>");

    // gzip and zstd uploads are detected by their magic bytes.
    let r = upload(admin, "web", "", &gzip(&site("v2")));
    assert_eq!(r.status, 201, "{}", r.text());
    let id2 = json(&r)["id"].as_str().unwrap().to_string();
    assert_eq!(server.get("/s/web/").text(), "<h1>v2</h1>");
    let r = upload(
        admin,
        "web",
        "?id=release-3",
        &zstd::encode_all(&site("v3")[..], 3).unwrap(),
    );
    assert_eq!(
        (r.status, json(&r)["id"].as_str()),
        (201, Some("release-3"))
    );
    assert_eq!(
        server.get("/s/web/assets/app.js").text(),
        "console.log('v3')"
    );

    // Metadata and manifest are written, and never served.
    let meta: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("web/release-3/.deployer-meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["id"], "release-3");
    assert_eq!(meta["files"], 2);
    assert!(meta["createdAt"].as_str().unwrap().ends_with('Z'));
    let manifest =
        std::fs::read_to_string(root.path().join("web/release-3/.deployer-manifest")).unwrap();
    assert!(
        manifest.contains("  assets/app.js\n") && manifest.contains("  index.html\n"),
        "{manifest}"
    );
    assert_eq!(server.get("/s/web/.deployer-meta.json").status, 404);

    let r = admin_get(admin, "/services/web/deployments");
    assert_eq!(r.status, 200);
    let history = json(&r);
    assert_eq!(history["current"], "release-3");
    let ids: Vec<&str> = history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["release-3", id2.as_str(), id1.as_str()],
        "newest first"
    );
    assert_eq!(history["deployments"][0]["active"], true);
    assert_eq!(history["deployments"][1]["active"], false);
    assert!(history["deployments"][0]["createdAt"].is_string());

    let r = admin_get(admin, "/services");
    assert_eq!(
        json(&r)["services"],
        serde_json::json!([{"name": "web", "current": "release-3"}])
    );

    // Activate an older one, then roll back from it.
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        format!("{{\"id\":\"{id1}\"}}").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["previous"], "release-3");
    assert_eq!(server.get("/s/web/").text(), "<h1>v1</h1>");
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 409, "nothing older than the first: {}", r.text());
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        b"{\"id\":\"release-3\"}",
    );
    assert_eq!(r.status, 200);
    let r = send(admin, "POST", "/services/web/rollback", &[AUTH], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        (json(&r)["current"].as_str(), json(&r)["previous"].as_str()),
        (Some(id2.as_str()), Some("release-3"))
    );
    assert_eq!(server.get("/s/web/").text(), "<h1>v2</h1>");
    assert_eq!(
        std::fs::read_link(root.path().join("web/current")).unwrap(),
        Path::new(&id2)
    );

    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        b"{\"id\":\"nope\"}",
    );
    assert_eq!(r.status, 404);
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        b"not json",
    );
    assert_eq!(r.status, 400);

    // Delete: active → 409, inactive → 204, unknown → 404.
    assert_eq!(
        send(
            admin,
            "DELETE",
            &format!("/services/web/deployments/{id2}"),
            &[AUTH],
            b""
        )
        .status,
        409
    );
    assert_eq!(
        send(
            admin,
            "DELETE",
            &format!("/services/web/deployments/{id1}"),
            &[AUTH],
            b""
        )
        .status,
        204
    );
    assert!(!root.path().join("web").join(&id1).exists());
    assert_eq!(
        send(
            admin,
            "DELETE",
            &format!("/services/web/deployments/{id1}"),
            &[AUTH],
            b""
        )
        .status,
        404
    );

    assert_eq!(admin_get(admin, "/healthz").status, 200);
    assert_eq!(admin_get(admin, "/services/nosuch/deployments").status, 404);
    assert_eq!(admin_get(admin, "/nope").status, 404);
    assert_eq!(send(admin, "PUT", "/services", &[AUTH], b"").status, 405);
    assert_eq!(
        admin_get(admin, "/services/bad.name/deployments").status,
        400
    );
    let r = upload(admin, "web", "?id=../x", &site("v9"));
    assert_eq!(r.status, 400);
    assert!(json(&r)["error"]
        .as_str()
        .unwrap()
        .contains("invalid deployment id"));
}

#[test]
fn identical_content_reuses_its_id_and_explicit_ids_conflict() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    let first = upload(admin, "web", "", &site("same"));
    assert_eq!(first.status, 201);
    let id = json(&first)["id"].as_str().unwrap().to_string();
    upload(admin, "web", "", &site("other"));
    assert_eq!(server.get("/s/web/").text(), "<h1>other</h1>");
    // Same bytes again (even compressed): 200, same id, re-activated.
    let again = upload(admin, "web", "", &gzip(&site("same")));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(json(&again)["id"], id.as_str());
    assert_eq!(json(&again)["active"], true);
    assert_eq!(server.get("/s/web/").text(), "<h1>same</h1>");
    // The activation log (.activations.jsonl) aside: no leftovers.
    let left: Vec<String> = entries(&root.path().join("web"))
        .into_iter()
        .filter(|e| e != ".activations.jsonl")
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");

    assert_eq!(upload(admin, "web", "?id=v1", &site("a")).status, 201);
    let r = upload(admin, "web", "?id=v1", &site("b"));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(server.get("/s/web/").text(), "<h1>a</h1>");
    assert_eq!(upload(admin, "web", "?id=v1", &site("a")).status, 200);
    // activate=false uploads without flipping.
    let r = upload(admin, "web", "?activate=false", &site("staged"));
    assert_eq!((r.status, json(&r)["active"].as_bool()), (201, Some(false)));
    assert_eq!(server.get("/s/web/").text(), "<h1>a</h1>");
}

#[test]
fn retention_keeps_five_and_never_the_active_one() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = upload(admin, "web", "", &site(&format!("v{i}")));
        assert_eq!(r.status, 201);
        ids.push(json(&r)["id"].as_str().unwrap().to_string());
    }
    let dirs: Vec<String> = entries(&root.path().join("web"))
        .into_iter()
        .filter(|n| ids.contains(n))
        .collect();
    let mut expected: Vec<String> = ids[2..].to_vec();
    expected.sort();
    assert_eq!(dirs, expected, "the two oldest were pruned");
    // The active one survives even when it is the oldest.
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[AUTH],
        format!("{{\"id\":\"{}\"}}", ids[2]).as_bytes(),
    );
    assert_eq!(r.status, 200);
    for i in 7..10 {
        assert_eq!(
            upload(admin, "web", "?activate=false", &site(&format!("v{i}"))).status,
            201
        );
    }
    let left = entries(&root.path().join("web"));
    assert!(left.contains(&ids[2]), "active kept: {left:?}");
    let kept = left.iter().filter(|n| n.len() == 12).count();
    assert_eq!(kept, 6, "5 newest + the active one: {left:?}");
    assert_eq!(server.get("/s/web/").text(), "<h1>v2</h1>");
    assert!(!left.iter().any(|n| n.ends_with(".tmp")));
}

#[test]
fn keep_can_be_set_by_flag() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &["--keep", "2"]);
    for i in 0..4 {
        assert_eq!(
            upload(admin, "web", "", &site(&format!("v{i}"))).status,
            201
        );
    }
    let dirs = entries(&root.path().join("web"))
        .into_iter()
        .filter(|n| n.len() == 12)
        .count();
    assert_eq!(dirs, 2);
}

/// Every bad upload: the right status, a JSON error, nothing left on disk,
/// and the current deployment still serving the same bytes.
#[test]
fn bad_uploads_leave_nothing_and_keep_serving() {
    let root = Root::new();
    let config = root.path().join("c.toml");
    std::fs::write(&config, "max_upload_bytes = 1048576\nmax_files = 50\n").unwrap();
    let data = root.path().join("data");
    let (server, admin) = start(&data, &["--config", config.to_str().unwrap()]);
    assert_eq!(upload(admin, "web", "", &site("good")).status, 201);
    let before = entries(&data.join("web"));

    let index = ("index.html", EntryType::Regular, &b"<h1>evil</h1>"[..], "");
    let many: Vec<String> = (0..60).map(|i| format!("f{i}.txt")).collect();
    let mut many_files: Vec<(&str, &[u8])> = vec![("index.html", b"x")];
    many_files.extend(many.iter().map(|n| (n.as_str(), &b"x"[..])));
    let big = vec![b'x'; 2 << 20];
    let bomb = gzip(&tar_of(&[("index.html", &vec![0u8; 16 << 20])]));
    let valid = site("evil");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "absolute path",
            raw_tar(&[index, ("/etc/cron.d/evil", EntryType::Regular, b"x", "")]),
            422,
        ),
        (
            "dot-dot",
            raw_tar(&[index, ("../../evil", EntryType::Regular, b"x", "")]),
            422,
        ),
        (
            "dot-dot inside",
            raw_tar(&[index, ("a/../../evil", EntryType::Regular, b"x", "")]),
            422,
        ),
        (
            "symlink out",
            raw_tar(&[index, ("passwd", EntryType::Symlink, b"", "/etc/passwd")]),
            422,
        ),
        (
            "relative symlink out",
            raw_tar(&[index, ("up", EntryType::Symlink, b"", "../../..")]),
            422,
        ),
        (
            "hard link out",
            raw_tar(&[index, ("h", EntryType::Link, b"", "/etc/passwd")]),
            422,
        ),
        (
            "char device",
            raw_tar(&[index, ("null", EntryType::Char, b"", "")]),
            422,
        ),
        (
            "fifo",
            raw_tar(&[index, ("pipe", EntryType::Fifo, b"", "")]),
            422,
        ),
        (
            "control char",
            raw_tar(&[index, ("a\u{7}b", EntryType::Regular, b"x", "")]),
            422,
        ),
        ("missing index", tar_of(&[("other.html", b"x")]), 422),
        ("truncated", valid[..700].to_vec(), 400),
        ("truncated gzip", gzip(&valid)[..40].to_vec(), 400),
        (
            "not an archive",
            b"<html> this is neither a tarball nor a zip".repeat(20),
            415,
        ),
        (
            "broken zip",
            b"PK\x03\x04 this starts like a zip but is none".repeat(20),
            400,
        ),
        ("too many files", tar_of(&many_files), 413),
        ("gzip bomb", bomb, 413),
        ("too large", tar_of(&[("index.html", &big)]), 413),
    ];
    for (what, body, status) in cases {
        let r = upload(admin, "web", "", &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let error = json(&r)["error"].as_str().unwrap_or_default().to_string();
        assert!(!error.is_empty(), "{what}: JSON error expected");
        assert_eq!(
            entries(&data.join("web")),
            before,
            "{what}: left something behind"
        );
        assert_eq!(server.get("/s/web/").text(), "<h1>good</h1>", "{what}");
    }
    assert!(!data.join("etc").exists() && !root.path().join("evil").exists());
    let metrics = admin_get(admin, "/metrics").text();
    assert!(
        metrics.contains("project_http_deploy_failures_total{service=\"web\"} 17"),
        "{metrics}"
    );
}

/// A declared Content-Length over the limit is refused before the body is
/// read, and the connection is closed rather than drained.
#[test]
fn oversized_upload_is_refused_without_reading_the_body() {
    let root = Root::new();
    let config = root.path().join("c.toml");
    std::fs::write(&config, "max_upload_bytes = 1048576\n").unwrap();
    let (_server, admin) = start(
        &root.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let mut stream = begin_upload(admin, 10 << 30);
    stream.write_all(&[0u8; 4096]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (response, _) =
        common::parse_response(&answer, false).expect("an answer before the body was sent");
    assert_eq!(response.status, 413);
    assert!(response.text().contains("max_upload_bytes"));
    assert!(entries(&root.path().join("data/web"))
        .iter()
        .all(|n| n == ".lock"));
}

#[test]
fn disk_full_gives_507_and_leaves_nothing() {
    let root = Root::new();
    let mount = root.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mount)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED disk_full_gives_507_and_leaves_nothing: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let (server, admin) = start(&mount, &[]);
    assert_eq!(upload(admin, "web", "", &site("small")).status, 201);
    let before = entries(&mount.join("web"));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = upload(
        admin,
        "web",
        "",
        &tar_of(&[("index.html", b"x"), ("big.bin", &big)]),
    );
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(json(&r)["error"].as_str().unwrap().contains("disk full"));
    assert_eq!(entries(&mount.join("web")), before);
    assert_eq!(server.get("/s/web/").text(), "<h1>small</h1>");
    assert_eq!(
        upload(admin, "web", "", &site("after")).status,
        201,
        "next deploy works"
    );
    drop(server);
}

#[test]
fn auth_is_required_everywhere_and_slows_down_guessers() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &[]);
    let routes = [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/events"),
        ("GET", "/services"),
        ("GET", "/services/web/deployments"),
        ("POST", "/services/web/deployments"),
        ("POST", "/services/web/activate"),
        ("POST", "/services/web/rollback"),
        ("DELETE", "/services/web/deployments/abc"),
        ("GET", "/nope"),
    ];
    for (i, (method, path)) in routes.iter().enumerate() {
        // Alternate between no token and a wrong one; the client address
        // accumulates failures, so later answers are slower: bounded below.
        let headers: &[(&str, &str)] = if i % 2 == 0 {
            &[]
        } else {
            &[("Authorization", "Bearer wrong")]
        };
        let r = send(admin, method, path, headers, b"");
        assert_eq!(r.status, 401, "{method} {path}");
        assert!(json(&r)["error"].as_str().unwrap().contains("token"));
    }
    let started = Instant::now();
    let r = send(
        admin,
        "GET",
        "/services",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "repeated failures are slowed down"
    );
    assert_eq!(
        send(admin, "GET", "/services", &[AUTH], b"").status,
        200,
        "the right token still works at once"
    );
}

#[test]
fn refuses_a_public_admin_address_without_a_token() {
    let root = Root::new();
    let output = Command::new(common::binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--root",
        ])
        .arg(root.path())
        .env_remove("PROJECT_HTTP_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without a token")
            && stderr.contains("--admin-token")
            && stderr.contains("PROJECT_HTTP_ADMIN_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn events_stream_reports_deploys_flips_and_prunes() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &["--keep", "1"]);
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(": subscribed") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
    upload(admin, "web", "", &site("a"));
    upload(admin, "web", "", &site("b"));
    upload(
        admin,
        "web",
        "",
        b"garbage that is not a tar at all..........",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = [
        "event: deployment.deployed",
        "event: deployment.activated",
        "event: deployment.retain.pruned",
        "event: deployment.failed",
    ];
    while Instant::now() < deadline {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if wanted.iter().all(|w| text.contains(w)) {
            break;
        }
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&seen);
    for w in wanted {
        assert!(text.contains(w), "missing {w} in:\n{text}");
    }
    assert!(text.contains("\"service\":\"web\""), "{text}");
}

/// Opens `GET /events<query>` and reads until `needle` has arrived (or
/// the stream stalls for 20 s); returns the stream and what it read.
fn events_until(admin: SocketAddr, query: &str, needle: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!(
                "GET /events{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => panic!("no {needle:?} in:\n{}", String::from_utf8_lossy(&seen)),
        }
    }
    (stream, String::from_utf8_lossy(&seen).into_owned())
}

/// A client that says how many events it has accounted for (`?after=`, as
/// the dashboard page does) is told first when it missed some: a page
/// rendered just before a deploy whose stream connected just after it
/// would otherwise never show the deploy.
#[test]
fn events_stream_says_what_a_late_subscriber_missed() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &[]);
    upload(admin, "web", "", &site("a"));
    let (_, text) = events_until(admin, "?after=0", "event: events.missed");
    let data = text
        .split("event: events.missed\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap();
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["after"], 0, "{data}");
    let emitted = data["emitted"].as_u64().unwrap();
    assert!(emitted >= 2, "deployed and activated at least: {data}");
    // Up to date: nothing missed; what comes next arrives as usual.
    let (mut stream, text) = events_until(admin, &format!("?after={emitted}"), ": subscribed");
    upload(admin, "web", "", &site("b"));
    let mut seen = text.into_bytes();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: deployment.activated") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("events.missed"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    // Without `after`, no such event; a bad `after` is refused.
    for query in [
        "?after=x",
        "?after=-1",
        "?after=1&after=2",
        "?after=9007199254740992",
    ] {
        let r = common::get(admin, &format!("/events{query}"), &[AUTH]);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
    for query in ["", "?other=1"] {
        let (mut stream, mut text) = events_until(admin, query, ": subscribed");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let n = stream.read(&mut buf).unwrap_or(0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        assert!(!text.contains("events.missed"), "{query}: {text}");
    }
}

#[test]
fn metrics_count_requests_deploys_and_disk() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    upload(admin, "web", "", &site("m"));
    server.get("/s/web/");
    server.get("/s/web/missing");
    let text = admin_get(admin, "/metrics").text();
    for needle in [
        "project_http_requests_total{service=\"web\",status=\"200\"} 1",
        "project_http_requests_total{service=\"web\",status=\"404\"} 1",
        "project_http_deploys_total{service=\"web\"} 1",
        "project_http_last_deploy_timestamp_seconds{service=\"web\"}",
        "project_http_disk_bytes{service=\"web\"}",
        "# TYPE project_http_requests_total counter",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

/// Two server processes on one root: a deploy through one is served by the
/// other within a second (its watcher sees the flip).
#[test]
fn two_servers_share_a_root() {
    let root = Root::new();
    let (a, admin_a) = start(root.path(), &[]);
    upload(admin_a, "web", "", &site("one"));
    let (b, _admin_b) = start(root.path(), &[]);
    assert_eq!(b.get("/s/web/").text(), "<h1>one</h1>");
    upload(admin_a, "web", "", &site("two"));
    let flipped = Instant::now();
    while b.get("/s/web/").text() != "<h1>two</h1>" {
        assert!(
            flipped.elapsed() < Duration::from_secs(1),
            "replica did not pick up the flip within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.get("/s/web/").text(), "<h1>two</h1>");
}

/// The seed runbook's manual flip (`ln -s` + `mv -T`) is picked up, with
/// inotify and with polling. (Normally within 1 s, src/watch.rs; the bounds
/// here are generous because a loaded CI machine is not a benchmark.) The
/// flip comes right after the server started, so it may land before the
/// watcher has set up its watches: that one must be picked up too.
#[test]
fn external_flip_is_picked_up() {
    for mode in ["notify", "poll"] {
        let root = Root::new();
        root.deployment("web", "v1", &[("index.html", b"one")]);
        root.deployment("web", "v2", &[("index.html", b"two")]);
        root.flip("web", "v1");
        let config = root.path().join("c.toml");
        std::fs::write(&config, format!("watch = \"{mode}\"\n")).unwrap();
        let (server, _admin) = start(root.path(), &["--config", config.to_str().unwrap()]);
        assert_eq!(server.get("/s/web/").text(), "one");
        let status = Command::new("sh")
            .current_dir(root.path().join("web"))
            .args(["-c", "ln -s v2 current.tmp && mv -T current.tmp current"])
            .status()
            .unwrap();
        assert!(status.success());
        let flipped = Instant::now();
        while server.get("/s/web/").text() != "two" {
            assert!(
                flipped.elapsed() < Duration::from_secs(20),
                "{mode}: external flip not seen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A new service appearing from outside is served too.
        root.deployment("fresh", "f1", &[("index.html", b"fresh")]);
        root.flip("fresh", "f1");
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.get("/s/fresh/").status != 200 {
            assert!(
                Instant::now() < deadline,
                "{mode}: new service not picked up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGKILL in the middle of an upload: after a restart the previous
/// deployment is served and no `.tmp` is left.
#[test]
fn sigkill_mid_upload_restarts_clean() {
    let root = Root::new();
    let (mut server, admin) = start(root.path(), &[]);
    assert_eq!(upload(admin, "web", "", &site("before")).status, 201);
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 249) as u8).collect();
    let body = tar_of(&[("index.html", b"after"), ("big.bin", &big)]);
    let mut stream = begin_upload(admin, body.len());
    stream.write_all(&body[..body.len() / 2]).unwrap();
    // Wait until the upload directory exists and has data in it.
    let web = root.path().join("web");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !entries(&web).iter().any(|n| n.ends_with(".tmp")) {
        assert!(
            Instant::now() < deadline,
            "upload never started: {:?}",
            entries(&web)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(5)).expect("killed");
    assert!(
        entries(&web).iter().any(|n| n.ends_with(".tmp")),
        "the kill left a partial upload"
    );
    drop(stream);

    let (restarted, _admin) = start(root.path(), &[]);
    assert_eq!(restarted.get("/s/web/").text(), "<h1>before</h1>");
    assert!(
        !entries(&web).iter().any(|n| n.ends_with(".tmp")),
        "{:?}",
        entries(&web)
    );
}

/// The `deploy`, `list`, `rollback` commands against the real server.
#[test]
fn deploy_client_directory_and_tarball() {
    let root = Root::new();
    let (server, admin) = start(&root.path().join("data"), &[]);
    let url = format!("http://{admin}");
    let src = root.path().join("dist");
    std::fs::create_dir_all(src.join("css")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>from dir</h1>").unwrap();
    std::fs::write(src.join("css/site.css"), "body{color:red}").unwrap();
    std::os::unix::fs::symlink("css/site.css", src.join("alias.css")).unwrap();

    let public = format!("http://{}", server.addr);
    let run = |args: &[&str]| {
        let output = Command::new(common::binary())
            .args(args)
            .env("PROJECT_HTTP_ADMIN_TOKEN", TOKEN)
            .env("PROJECT_HTTP_PUBLIC_URL", &public)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, id_dir, err) = run(&[
        "deploy",
        "--admin",
        &url,
        "--service",
        "site",
        src.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(id_dir.len(), 12, "prints the id: {id_dir:?}");
    assert_eq!(server.get("/s/site/").text(), "<h1>from dir</h1>");
    assert_eq!(server.get("/s/site/css/site.css").text(), "body{color:red}");
    assert_eq!(
        server.get("/s/site/alias.css").text(),
        "body{color:red}",
        "inside symlink kept"
    );

    let tarball = root.path().join("site.tar.gz");
    std::fs::write(
        &tarball,
        gzip(&tar_of(&[("index.html", b"<h1>from tarball</h1>")])),
    )
    .unwrap();
    let (ok, id_tar, err) = run(&[
        "deploy",
        "--admin",
        &url,
        "--service",
        "site",
        "--id",
        "tarball-1",
        tarball.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(id_tar, "tarball-1");
    assert_eq!(server.get("/s/site/").text(), "<h1>from tarball</h1>");
    let plain = root.path().join("site.tar");
    std::fs::write(&plain, tar_of(&[("index.html", b"<h1>plain</h1>")])).unwrap();
    let (ok, _, err) = run(&[
        "deploy",
        "--admin",
        &url,
        "--service",
        "site",
        "--no-activate",
        plain.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        server.get("/s/site/").text(),
        "<h1>from tarball</h1>",
        "--no-activate"
    );

    let (ok, listing, _) = run(&["list", "--admin", &url, "--service", "site"]);
    assert!(ok);
    assert!(
        listing.contains("tarball-1") && listing.contains(&id_dir),
        "{listing}"
    );
    let (ok, out, err) = run(&["rollback", "--admin", &url, "--service", "site"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id_dir), "{out}");
    assert_eq!(server.get("/s/site/").text(), "<h1>from dir</h1>");
    let (ok, services, _) = run(&["list", "--admin", &url, "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&services).unwrap()["services"][0]["current"],
        id_dir.as_str()
    );

    // Errors are clear and non-zero.
    let bad = root.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("readme.txt"), "no index").unwrap();
    let (ok, _, err) = run(&[
        "deploy",
        "--admin",
        &url,
        "--service",
        "site",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("422") && err.contains("index.html"), "{err}");
    let output = Command::new(common::binary())
        .args([
            "deploy",
            "--admin",
            &url,
            "--service",
            "site",
            src.to_str().unwrap(),
        ])
        .env("PROJECT_HTTP_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
}

/// An upload that stops sending is aborted after the idle timeout: 408,
/// nothing left behind, the current deployment untouched.
#[test]
fn stalled_upload_times_out_and_leaves_nothing() {
    let root = Root::new();
    let config = root.path().join("c.toml");
    std::fs::write(&config, "upload_idle_timeout_secs = 1\n").unwrap();
    let data = root.path().join("data");
    let (server, admin) = start(&data, &["--config", config.to_str().unwrap()]);
    assert_eq!(upload(admin, "web", "", &site("kept")).status, 201);
    let before = entries(&data.join("web"));
    let body = tar_of(&[("index.html", &[b'x'; 100_000])]);
    let mut stream = begin_upload(admin, body.len());
    stream.write_all(&body[..30_000]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (response, _) =
        common::parse_response(&answer, false).expect("an answer to the stalled upload");
    assert_eq!(response.status, 408, "{}", response.text());
    assert_eq!(entries(&data.join("web")), before);
    assert_eq!(server.get("/s/web/").text(), "<h1>kept</h1>");
}

/// Deploy-time precompression: text files get `.br` and `.gz` siblings,
/// served per Accept-Encoding and identical to the original once decoded.
#[test]
fn text_files_are_precompressed_at_deploy_time() {
    use std::io::Read as _;
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    let html = "<!doctype html><p>precompressed at deploy time</p>\n".repeat(100);
    let css = "body { color: #123456; margin: 0 auto; }\n".repeat(80);
    let png: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let r = upload(
        admin,
        "web",
        "",
        &tar_of(&[
            ("index.html", html.as_bytes()),
            ("site.css", css.as_bytes()),
            ("tiny.js", b"x=1"),
            ("img.png", &png),
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        json(&r)["files"],
        4,
        "siblings are not counted as uploaded files"
    );

    for (path, original) in [
        ("/s/web/", html.as_bytes()),
        ("/s/web/site.css", css.as_bytes()),
    ] {
        let br = common::get(server.addr, path, &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
        assert!(br.body.len() < original.len() / 2);
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br.body[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, original, "{path}: br decodes to the original");

        let gz = common::get(server.addr, path, &[("Accept-Encoding", "gzip")]);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gz.body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, original, "{path}: gzip decodes to the original");

        let plain = server.get(path);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, original);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        assert_ne!(plain.header("etag"), br.header("etag"));
    }
    for path in ["/s/web/tiny.js", "/s/web/img.png"] {
        let r = common::get(server.addr, path, &[("Accept-Encoding", "gzip, br")]);
        assert_eq!(
            r.header("content-encoding"),
            None,
            "{path} is not precompressed"
        );
    }
    // The same upload again keeps its id: siblings are not part of the digest.
    let again = upload(
        admin,
        "web",
        "",
        &tar_of(&[
            ("index.html", html.as_bytes()),
            ("site.css", css.as_bytes()),
            ("tiny.js", b"x=1"),
            ("img.png", &png),
        ]),
    );
    assert_eq!(again.status, 200);
    assert_eq!(json(&again)["id"], json(&r)["id"]);
}

/// The admin port applies the same Host rules as the public one (RFC 9112
/// §3.2): without Host, with two, or with one that is not host[:port],
/// an HTTP/1.1 request is a 400, before the token is looked at.
#[test]
fn the_admin_api_refuses_a_request_without_one_valid_host() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &[]);
    for head in [
        format!("GET /services HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        format!("GET /services HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        format!("GET /services HTTP/1.1\r\nHost: a/b\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
    ] {
        let r = common::raw(admin, head.as_bytes());
        assert_eq!(r.status, 400, "{head:?}: {}", r.text());
        assert!(r.text().contains("Host"), "{}", r.text());
    }
    let r = common::raw(
        admin,
        format!("GET /services HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
