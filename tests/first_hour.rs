//! The first hour of a new user (issue 12): two servers on one root, a
//! failed first deploy, the CLI's own wording of server errors, startup
//! errors, the first-start hint, the deploy summary and generated siblings.
//! Everything against the real binary on loopback ports the kernel picks.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{entries, send, tar_of, Response, Root, Server};
use serde_json::Value;

const TOKEN: &str = "first-hour-token-81c3";
const AUTH: (&str, &str) = ("Authorization", "Bearer first-hour-token-81c3");

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

/// A 20 MB upload whose bytes do not compress (so sending it takes real
/// writes), with an index.html.
fn big_site() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..20_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    tar_of(&[("index.html", b"<h1>big</h1>"), ("big.bin", &big)])
}

/// Opens a connection and sends the head of an upload of `len` bytes.
fn begin_upload(admin: SocketAddr, service: &str, len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .write_all(
            format!(
                "POST /services/{service}/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    stream
}

/// Sends `body` in 256 KiB pieces with a pause after each (a slow uploader).
fn trickle(stream: &mut TcpStream, body: &[u8], pause: Duration) {
    for piece in body.chunks(256 * 1024) {
        stream.write_all(piece).unwrap();
        std::thread::sleep(pause);
    }
}

fn answer(mut stream: TcpStream) -> Response {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    common::parse_response(&data, false)
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&data)))
        .0
}

fn upload_dirs(service_dir: &Path) -> Vec<String> {
    entries(service_dir)
        .into_iter()
        .filter(|n| n.starts_with("upload-") && n.ends_with(".tmp"))
        .collect()
}

fn wait_for_upload_dir(service_dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(name) = upload_dirs(service_dir).pop() {
            return name;
        }
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Item 1: server A receives a slow 20 MB upload; a second `serve` on the
/// same root (here on A's very ports, so it fails to bind, as in the
/// report) must leave A's upload alone, and A's upload completes.
#[test]
fn a_second_server_on_the_same_root_keeps_a_live_upload() {
    let root = Root::new();
    let (a, admin) = start(root.path(), &[]);
    let body = big_site();
    let mut stream = begin_upload(admin, "web", body.len());
    let (head, rest) = body.split_at(2_000_000);
    stream.write_all(head).unwrap();
    let web = root.path().join("web");
    let in_flight = wait_for_upload_dir(&web);

    let second = Command::new(common::binary())
        .args(["serve", "--root"])
        .arg(root.path())
        .args(["--listen", &a.addr.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--admin-token", TOKEN])
        .env_remove("PROJECT_HTTP_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second server bound A's ports"
    );
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(
        !stderr.contains("removed unfinished upload"),
        "the second server removed a live upload:\n{stderr}"
    );
    assert!(
        stderr.contains("kept an unfinished upload another live process owns"),
        "{stderr}"
    );
    assert!(web.join(&in_flight).is_dir(), "{:?}", entries(&web));

    trickle(&mut stream, rest, Duration::from_millis(5));
    let response = answer(stream);
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(a.get("/s/web/").text(), "<h1>big</h1>");
    assert!(upload_dirs(&web).is_empty(), "{:?}", entries(&web));

    // A leftover nobody owns (its server died) is still removed at startup.
    std::fs::create_dir_all(web.join("upload-dead.tmp/sub")).unwrap();
    drop(a);
    let (b, _) = start(root.path(), &[]);
    b.stderr
        .wait_for("removed unfinished upload", Duration::from_secs(5))
        .expect("a dead upload is cleaned");
    assert!(!web.join("upload-dead.tmp").exists());
}

/// Item 1, the other half: an upload whose directory is removed anyway
/// (by hand, by an older server) answers a clear 409, not a 500 naming an
/// internal step, and leaves nothing behind.
#[test]
fn an_upload_whose_directory_vanished_gets_a_clear_error() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    assert_eq!(
        upload(
            admin,
            "web",
            "",
            &tar_of(&[("index.html", b"<h1>kept</h1>")])
        )
        .status,
        201
    );
    let body = big_site();
    let mut stream = begin_upload(admin, "web", body.len());
    let (head, rest) = body.split_at(2_000_000);
    stream.write_all(head).unwrap();
    let web = root.path().join("web");
    let in_flight = wait_for_upload_dir(&web);
    // The server keeps writing files into it meanwhile: a removal can meet
    // a file created after it emptied a directory (ENOTEMPTY); try again.
    let mut attempts = 0;
    while let Err(e) = std::fs::remove_dir_all(web.join(&in_flight)) {
        attempts += 1;
        assert!(attempts < 50, "cannot remove the upload directory: {e}");
        if e.kind() == std::io::ErrorKind::NotFound {
            break;
        }
    }
    // The server may answer before reading everything.
    for piece in rest.chunks(256 * 1024) {
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    let response = answer(stream);
    assert_eq!(response.status, 409, "{}", response.text());
    let message = json(&response)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("removed from disk") && message.contains("send it again"),
        "{message}"
    );
    assert!(!message.contains("precompressing"), "{message}");
    assert_eq!(server.get("/s/web/").text(), "<h1>kept</h1>");
    assert!(upload_dirs(&web).is_empty(), "{:?}", entries(&web));
}

/// Item 3: a failed first deploy leaves no service directory, and a
/// service directory without any deployment is listed nowhere.
#[test]
fn a_failed_first_deploy_leaves_no_phantom_service() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &[]);
    let r = upload(admin, "docs", "", &tar_of(&[("readme.txt", b"no index")]));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        !root.path().join("docs").exists(),
        "{:?}",
        entries(&root.path().join("docs"))
    );
    // Not a tar either.
    let r = upload(admin, "docs", "", b"definitely not a tar archive at all");
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(!root.path().join("docs").exists());

    // A directory with no deployment (made by hand, or left by an older
    // version) is not a service: not in GET /services, `list` or the dashboard.
    std::fs::create_dir_all(root.path().join("empty")).unwrap();
    std::fs::write(root.path().join("empty/.lock"), "").unwrap();
    assert_eq!(
        upload(admin, "web", "", &tar_of(&[("index.html", b"hi")])).status,
        201
    );
    let services = json(&common::get(admin, "/services", &[AUTH]));
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    let list = Command::new(common::binary())
        .args(["list", "--admin", &format!("http://{admin}")])
        .env("PROJECT_HTTP_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(
        listing.contains("web") && !listing.contains("empty") && !listing.contains("docs"),
        "{listing}"
    );
    // The dashboard, through a session.
    let login = send(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}").as_bytes(),
    );
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = common::get(admin, "/", &[("Cookie", &cookie)]).text();
    assert!(page.contains("data-service=\"web\""), "{page}");
    assert!(!page.contains("data-service=\"empty\""), "{page}");
    assert!(!page.contains("data-service=\"docs\""), "{page}");
}

/// Runs the binary with `args`, the admin token in the environment when
/// given; returns (success, stdout, stderr, elapsed).
fn cli(args: &[&str], token: Option<&str>) -> (bool, String, String, Duration) {
    let mut command = Command::new(common::binary());
    command.args(args).env_remove("PROJECT_HTTP_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("PROJECT_HTTP_ADMIN_TOKEN", token);
    }
    let started = Instant::now();
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// `project-http deploy --admin URL --service web [EXTRA…] SITE`.
fn deploy_cli(
    url: &str,
    site: &Path,
    extra: &[&str],
    token: Option<&str>,
) -> (bool, String, String, Duration) {
    let mut args = vec!["deploy", "--admin", url, "--service", "web"];
    args.extend_from_slice(extra);
    args.push(site.to_str().unwrap());
    cli(&args, token)
}

/// Item 4: the hint a first start prints is a command that works from
/// where the user is (here: the binary's real path, as it is not on PATH
/// and not run by cargo) and a URL a client can open.
#[test]
fn the_first_start_hint_runs_as_printed() {
    let root = Root::new();
    let data = root.path().join("data");
    let server = Server::start_custom(&data, &["--admin-token", TOKEN], |command| {
        command.env_remove("CARGO");
    });
    server
        .stderr
        .wait_for("No site is deployed yet", Duration::from_secs(5))
        .expect("the hint");
    let lines = server.stderr.all();
    let at = lines
        .iter()
        .position(|l| l.starts_with("No site is deployed yet"))
        .unwrap();
    // With a token: first how to set it (never the token itself), then the
    // command, then the URL.
    let export = lines[at + 1].trim().to_string();
    assert!(
        export.starts_with("export PROJECT_HTTP_ADMIN_TOKEN=<") && !export.contains(TOKEN),
        "{export}"
    );
    let command = lines[at + 2].trim().to_string();
    let open = lines[at + 3].clone();
    assert!(
        command.starts_with(&format!("{} deploy ", common::binary())),
        "{command}"
    );
    assert!(!open.contains("0.0.0.0") && !command.contains("0.0.0.0"));
    let url = open.strip_prefix("then open ").expect(&open).to_string();

    let site = root.path().join("dist");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>first</h1>").unwrap();
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("export PROJECT_HTTP_ADMIN_TOKEN={TOKEN}\n{command}"),
        ])
        .current_dir(root.path())
        .env_remove("PROJECT_HTTP_ADMIN_TOKEN")
        .env_remove("PROJECT_HTTP_ADMIN_URL")
        .env_remove("PROJECT_HTTP_PUBLIC_URL")
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let path = url
        .strip_prefix(&format!("http://{}", server.addr))
        .unwrap_or_else(|| panic!("{url} is not the public address {}", server.addr));
    assert_eq!(server.get(path).text(), "<h1>first</h1>");
}

/// Item 5: the CLI says server errors in its own terms: its flags and
/// environment variables, a missing token apart from a wrong one, no
/// internal step names.
#[test]
fn the_cli_words_server_errors_in_its_own_terms() {
    let root = Root::new();
    let (_server, admin) = start(&root.path().join("data"), &[]);
    let url = format!("http://{admin}");
    let site = root.path().join("dist");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("readme.txt"), "no index here").unwrap();
    let deploy = |token: Option<&str>| deploy_cli(&url, &site, &["--no-verify"], token);
    let (ok, _, err, _) = deploy(Some(TOKEN));
    assert!(!ok);
    assert!(
        err.contains("index.html") && err.contains("pass --no-require-index"),
        "{err}"
    );
    assert!(!err.contains("require_index=false"), "{err}");

    let (ok, _, err, _) = deploy(None);
    assert!(!ok);
    assert!(
        err.contains("wants a token: pass --token <TOKEN> or set PROJECT_HTTP_ADMIN_TOKEN"),
        "{err}"
    );
    let (ok, _, wrong, _) = deploy(Some("not-the-token"));
    assert!(!ok);
    assert!(
        wrong.contains("refused the token given (--token or PROJECT_HTTP_ADMIN_TOKEN)"),
        "{wrong}"
    );
    for text in [&err, &wrong] {
        assert!(
            !text.contains("(manifest)") && !text.contains("Authorization"),
            "{text}"
        );
    }
    let (ok, _, err, _) = cli(&["list", "--admin", &url], None);
    assert!(!ok && err.contains("wants a token"), "{err}");

    // A tarball of the build directory itself (`tar czf site.tar.gz dist`):
    // the message says where index.html is and how to pack it.
    std::fs::write(site.join("index.html"), "<h1>in dist</h1>").unwrap();
    let packed = root.path().join("prefixed.tar");
    std::fs::write(
        &packed,
        tar_of(&[("dist/index.html", &b"<h1>in dist</h1>"[..])]),
    )
    .unwrap();
    let (ok, _, err, _) = deploy_cli(&url, &packed, &["--no-verify"], Some(TOKEN));
    assert!(!ok);
    assert!(
        err.contains("but dist/index.html") && err.contains("tar -C <dir> -czf site.tar.gz ."),
        "{err}"
    );
    assert!(!err.contains("strip_components"), "{err}");
}

/// Item 6: a deploy to a loopback admin where nothing listens fails at
/// once with the message that says what to check, without retry rounds.
#[test]
fn a_deploy_to_a_stopped_server_fails_fast() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let site = Root::new();
    std::fs::write(site.path().join("index.html"), "x").unwrap();
    let (ok, _, err, elapsed) = cli(
        &[
            "deploy",
            "--admin",
            &url,
            "--service",
            "web",
            site.path().to_str().unwrap(),
        ],
        Some(TOKEN),
    );
    assert!(!ok);
    assert!(
        err.contains("cannot reach the admin API")
            && err.contains("is `project-http serve` running"),
        "{err}"
    );
    assert!(!err.contains("retrying") && !err.contains("list:"), "{err}");
    // What failed, not the internal request that met it.
    assert!(
        !err.contains("/deployments") && err.contains("Connection refused"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}: {err}");
}

/// Item 7: a root that is a file gets one clear error line; a missing
/// root is created and the log names its absolute path.
#[test]
fn startup_errors_are_clear_and_said_once() {
    let root = Root::new();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (ok, _, err, _) = cli(
        &[
            "serve",
            "--root",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("is a file, not a directory"), "{err}");
    assert!(!err.contains("File exists"), "{err}");
    assert_eq!(err.matches("is a file").count(), 1, "said once:\n{err}");

    let missing = root.path().join("typo/data");
    let server = Server::start(&missing, &[]);
    let absolute = missing.canonicalize().unwrap();
    server
        .stderr
        .wait_for(
            &format!("created the root directory {}", absolute.display()),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{}", server.stderr.all().join("\n")));
}

/// Item 8: the summary counts uploaded files; generated siblings are
/// reported apart and are not URLs, while an uploaded `.br` file is.
#[test]
fn generated_siblings_are_counted_apart_and_not_addressable() {
    let root = Root::new();
    let (server, admin) = start(&root.path().join("data"), &[]);
    let site = root.path().join("dist");
    std::fs::create_dir_all(&site).unwrap();
    let page = format!("<h1>page</h1>{}", "<p>text</p>".repeat(300));
    std::fs::write(site.join("index.html"), &page).unwrap();
    std::fs::write(site.join("notes.txt.br"), "my own brotli-named file").unwrap();
    let (ok, _, err, _) = cli(
        &[
            "deploy",
            "--admin",
            &format!("http://{admin}"),
            "--public",
            &format!("http://{}", server.addr),
            "--service",
            "web",
            "--quiet",
            site.to_str().unwrap(),
        ],
        Some(TOKEN),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(": 2 files,")
            && err.contains("(2 sent, 0 stored once with earlier deployments)")
            && err.contains("; 2 compressed variants (.br/.gz) generated"),
        "{err}"
    );
    assert_eq!(server.get("/s/web/index.html.br").status, 404);
    assert_eq!(server.get("/s/web/index.html.gz").status, 404);
    let br = common::get(server.addr, "/s/web/", &[("Accept-Encoding", "br")]);
    assert_eq!(
        br.header("content-encoding"),
        Some("br"),
        "still an encoding"
    );
    assert_eq!(
        server.get("/s/web/notes.txt.br").text(),
        "my own brotli-named file"
    );
    // The same again: everything stored once, nothing generated anew counted as sent.
    std::fs::write(site.join("extra.txt"), "new").unwrap();
    let (ok, _, err, _) = cli(
        &[
            "deploy",
            "--admin",
            &format!("http://{admin}"),
            "--no-verify",
            "--service",
            "web",
            site.to_str().unwrap(),
        ],
        Some(TOKEN),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(": 3 files,") && err.contains("(1 sent, 2 stored once"),
        "{err}"
    );
}

/// Item 10: every flag of every command has a help text; the public `/`
/// says where sites are; `healthcheck` names its URL once.
#[test]
fn help_texts_the_public_top_and_healthcheck() {
    for command in [
        "serve",
        "deploy",
        "rollback",
        "activate",
        "list",
        "healthcheck",
        "ensure",
        "status",
        "migrate",
    ] {
        let (ok, help, err, _) = cli(&[command, "--help"], None);
        assert!(ok, "{err}");
        // In `--help`, a flag's text follows on its line or on the next
        // ones; a flag with no help text is followed by a blank line or
        // the next flag.
        let lines: Vec<&str> = help.lines().map(str::trim).collect();
        for (n, line) in lines.iter().enumerate() {
            if line.starts_with("--") || line.get(2..3) == Some(",") {
                let next = lines.get(n + 1).copied().unwrap_or("");
                assert!(
                    line.contains("  ") || (!next.is_empty() && !next.starts_with('-')),
                    "`{command} --help`: {line:?} has no help text\n{help}"
                );
            }
        }
    }
    let root = Root::new();
    let server = Server::start(root.path(), &[]);
    let top = server.get("/");
    assert_eq!(top.status, 404);
    assert!(
        top.text().contains("/s/<service>/") && top.text().contains("/health"),
        "{}",
        top.text()
    );

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", free.local_addr().unwrap());
    drop(free);
    let (ok, _, err, _) = cli(&["healthcheck", "--url", &url, "--timeout", "2"], None);
    assert!(!ok);
    assert_eq!(err.matches(&url).count(), 1, "{err}");
    let (ok, _, err, _) = cli(
        &[
            "healthcheck",
            "--url",
            &format!("http://{}/health", server.addr),
        ],
        None,
    );
    assert!(ok, "{err}");
}

/// Item 3's kind, beyond uploads (found by a fresh-clone trial): changing
/// a service that does not exist is a 404 and leaves nothing on disk —
/// before, activate, rollback, delete and pin each left `<root>/<name>/.lock`.
#[test]
fn changing_a_service_that_does_not_exist_leaves_nothing() {
    let root = Root::new();
    let (_server, admin) = start(root.path(), &[]);
    let json_type = ("Content-Type", "application/json");
    let cases: [(&str, String, &[u8]); 4] = [
        (
            "POST",
            "/services/ghost1/activate".into(),
            br#"{"id":"abc"}"#,
        ),
        ("POST", "/services/ghost2/rollback".into(), b""),
        ("DELETE", "/services/ghost3/deployments/abc".into(), b""),
        ("PUT", "/services/ghost4/deployments/abc/pin".into(), b""),
    ];
    for (method, path, body) in cases {
        let r = send(admin, method, &path, &[AUTH, json_type], body);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        let name = path.split('/').nth(2).unwrap();
        assert!(
            !root.path().join(name).exists(),
            "{method} {path} left {:?}",
            entries(&root.path().join(name))
        );
    }
}

/// Output into a pipe whose reader is gone (`project-http list | head -0`,
/// `status | head -1`) ends the command quietly with success, as the
/// coreutils and ripgrep do, instead of a `println!` panic (exit 101 and
/// "failed printing to stdout"). The reader is closed before the command
/// starts, so its first write meets `EPIPE` every time.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let root = Root::new();
    let (_server, admin) = start(&root.path().join("data"), &[]);
    let url = format!("http://{admin}");
    let site = root.path().join("dist");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>piped</h1>").unwrap();
    let (ok, _, err, _) = deploy_cli(&url, &site, &["--no-verify"], Some(TOKEN));
    assert!(ok, "{err}");
    for args in [
        vec!["list", "--admin", url.as_str()],
        vec!["list", "--admin", url.as_str(), "--service", "web"],
        vec!["seccomp-profile"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(common::binary())
            .args(&args)
            .env("PROJECT_HTTP_ADMIN_TOKEN", TOKEN)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && err.is_empty(),
            "{args:?} into a closed pipe: {:?}, stderr: {err}",
            output.status
        );
    }
    // But a token is shown only once: losing it is an error that says
    // what to do.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(common::binary())
        .args([
            "token", "create", "--admin", &url, "--name", "piped", "--scope", "read",
        ])
        .env("PROJECT_HTTP_ADMIN_TOKEN", TOKEN)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not be written to standard output")
            && err.contains("project-http token revoke piped"),
        "{err}"
    );
}

/// `deploy` without `--public` verifies through the port the server's
/// public listener really has (reported with the upload as `publicPort`),
/// not a fixed 8080: a server started with `--listen 127.0.0.1:<port>` is
/// verified, not "failed verification" and rolled back.
#[test]
fn a_deploy_verifies_through_the_servers_own_public_port() {
    let root = Root::new();
    let (server, admin) = start(&root.path().join("data"), &[]);
    let site = root.path().join("dist");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>verified</h1>").unwrap();
    let (ok, out, err, _) = deploy_cli(&format!("http://{admin}"), &site, &[], Some(TOKEN));
    assert!(ok, "{out}{err}");
    let through = format!(
        "verified 1 path(s) through http://127.0.0.1:{}",
        server.addr.port()
    );
    assert!(err.contains(&through), "{err}");
    let answer = upload(
        admin,
        "web",
        "",
        &tar_of(&[("index.html", &b"<h1>again</h1>"[..])]),
    );
    assert_eq!(json(&answer)["publicPort"], server.addr.port());

    // Where nothing answers, the failure says so and names --public.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    std::fs::write(site.join("index.html"), "<h1>elsewhere</h1>").unwrap();
    let (ok, _, err, _) = deploy_cli(
        &format!("http://{admin}"),
        &site,
        &["--public", &nowhere, "--verify-timeout", "1s"],
        Some(TOKEN),
    );
    assert!(!ok);
    assert!(
        err.contains(&format!("nothing answered at {nowhere}")) && err.contains("--public URL"),
        "{err}"
    );
}
