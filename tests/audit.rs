//! Who deployed what, and who may: provenance, the activation log, pins,
//! scoped tokens (issue 16). The real binary, real sockets, a real root.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{send, tar_of, Response, Root, Server};
use serde_json::Value;

const TOKEN: &str = "audit-token-9c41";
const AUTH: (&str, &str) = ("Authorization", "Bearer audit-token-9c41");

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn site(version: &str) -> Vec<u8> {
    tar_of(&[("index.html", format!("<h1>{version}</h1>").as_bytes())])
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

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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

/// `deploy --message --commit --label` and git's own commit/branch/dirty
/// end up in the metadata, the API, `list` and the event.
#[test]
fn provenance_from_flags_and_git() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let public = format!("http://{}", server.addr);

    // A site inside a git work tree, on branch "release", committed then touched.
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "release"]);
    let site_dir = repo.path().join("public");
    std::fs::create_dir(&site_dir).unwrap();
    std::fs::write(site_dir.join("index.html"), "<h1>git</h1>").unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "one"]);
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    let (ok, _, err) = cli(
        admin,
        &[
            "deploy",
            "--public",
            &public,
            "--service",
            "web",
            "--quiet",
            "--id",
            "clean",
            "--message",
            "first & best: 100%",
            "--label",
            "ticket=OPS-1",
            "--label",
            "env=prod",
            site_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    std::fs::write(site_dir.join("index.html"), "<h1>dirty</h1>").unwrap();
    let (ok, _, err) = cli(
        admin,
        &[
            "deploy",
            "--public",
            &public,
            "--service",
            "web",
            "--quiet",
            "--id",
            "dirty",
            site_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    // Explicit --commit wins over git; a tarball gets no git fields.
    let (ok, _, err) = cli(
        admin,
        &[
            "deploy",
            "--public",
            &public,
            "--service",
            "web",
            "--quiet",
            "--id",
            "explicit",
            "--commit",
            "abc123",
            site_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");

    let history = json(&common::get(admin, "/services/web/deployments", &[AUTH]));
    let by_id = |id: &str| {
        history["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {history}"))
    };
    let clean = by_id("clean");
    assert_eq!(clean["message"], "first & best: 100%");
    assert_eq!(clean["commit"], head.as_str());
    assert_eq!(clean["branch"], "release");
    assert_eq!(clean["dirty"], false);
    assert_eq!(clean["labels"]["ticket"], "OPS-1");
    assert_eq!(clean["labels"]["env"], "prod");
    assert_eq!(clean["actor"], "admin");
    let dirty = by_id("dirty");
    assert_eq!(dirty["commit"], head.as_str());
    assert_eq!(dirty["dirty"], true);
    assert!(dirty.get("message").is_none(), "{dirty}");
    assert_eq!(by_id("explicit")["commit"], "abc123");

    // On disk, in .deployer-meta.json.
    let meta: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("web/clean/.deployer-meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["message"], "first & best: 100%");
    assert_eq!(meta["actor"], "admin");

    // `list` shows commit, actor and message.
    let (ok, out, err) = cli(admin, &["list", "--service", "web"]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("clean")).unwrap();
    assert!(
        line.contains(&head[..8]) && line.contains("admin") && line.contains("first & best"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("dirty") && l.contains(&format!("{}+", &head[..8]))),
        "{out}"
    );

    // The event carries it.
    let event = server
        .stderr
        .wait_for("OPS-1", Duration::from_secs(5))
        .expect("deployed event with labels");
    assert!(
        event.contains("deployment.deployed") && event.contains("first & best"),
        "{event}"
    );

    // Bad provenance is a 400, not a 5xx.
    let long = "x".repeat(300);
    for query in [
        "?label=novalue",
        "?label==v",
        "?dirty=maybe",
        &format!("?commit={long}"),
    ] {
        let r = upload(admin, "web", query, &site("bad"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
}

fn post_json(admin: SocketAddr, path: &str, body: &str) -> Response {
    send(
        admin,
        "POST",
        path,
        &[AUTH, ("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// (from, to, why, actor) of the activation log, oldest first.
fn timeline(admin: SocketAddr, service: &str) -> Vec<(String, String, String, String)> {
    let r = common::get(admin, &format!("/services/{service}/activations"), &[AUTH]);
    assert_eq!(r.status, 200, "{}", r.text());
    json(&r)["activations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or("-").to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["why"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn step(from: &str, to: &str, why: &str, actor: &str) -> (String, String, String, String) {
    (from.into(), to.into(), why.into(), actor.into())
}

/// `ln -s <id> current.tmp && mv -T current.tmp current`, the seed runbook's flip.
fn external_flip(root: &Path, service: &str, id: &str) {
    let dir = root.join(service);
    let tmp = dir.join("current.tmp-by-hand");
    std::os::unix::fs::symlink(id, &tmp).unwrap();
    let status = Command::new("mv")
        .arg("-T")
        .arg(&tmp)
        .arg(dir.join("current"))
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_for_len(
    admin: SocketAddr,
    service: &str,
    len: usize,
) -> Vec<(String, String, String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = timeline(admin, service);
        if log.len() >= len || std::time::Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn activation_log_matches_the_timeline_and_survives_restarts() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "web", "?id=a", &site("a")).status, 201);
    assert_eq!(upload(admin, "web", "?id=b", &site("b")).status, 201);
    assert_eq!(
        upload(admin, "web", "?id=c&activate=false", &site("c")).status,
        201
    );
    assert_eq!(
        post_json(admin, "/services/web/activate", r#"{"id":"c"}"#).status,
        200
    );
    // Activating what is live already is not a change: not logged.
    assert_eq!(
        post_json(admin, "/services/web/activate", r#"{"id":"c"}"#).status,
        200
    );
    assert_eq!(post_json(admin, "/services/web/rollback", "").status, 200);
    let r = post_json(
        admin,
        "/services/web/activate",
        r#"{"id":"a","reason":"verify-rollback"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(
        admin,
        "/services/web/activate",
        r#"{"id":"a","reason":"whim"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let before_external = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    external_flip(root.path(), "web", "c");
    let mut expected = vec![
        step("-", "a", "deploy", "admin"),
        step("a", "b", "deploy", "admin"),
        step("b", "c", "activate", "admin"),
        step("c", "b", "rollback", "admin"),
        step("b", "a", "verify-rollback", "admin"),
        step("a", "c", "external", "external"),
    ];
    assert_eq!(wait_for_len(admin, "web", expected.len()), expected);

    // What was live at a time: before the external flip, a; now, c.
    let at = humantime::format_rfc3339_nanos(before_external).to_string();
    let r = common::get(
        admin,
        &format!("/services/web/activations?at={at}"),
        &[AUTH],
    );
    assert_eq!(json(&r)["live"], "a", "{}", r.text());
    let r = common::get(
        admin,
        "/services/web/activations?at=2999-01-01T00:00:00Z",
        &[AUTH],
    );
    assert_eq!(json(&r)["live"], "c", "{}", r.text());
    let r = common::get(
        admin,
        "/services/web/activations?at=1999-01-01T00:00:00Z",
        &[AUTH],
    );
    assert_eq!(json(&r)["live"], Value::Null, "{}", r.text());
    let r = common::get(admin, "/services/web/activations?at=yesterday", &[AUTH]);
    assert_eq!(r.status, 400);
    assert_eq!(
        common::get(admin, "/services/nope/activations", &[AUTH]).status,
        404
    );

    // Restart: the log is the same; a flip made while down is recorded at start.
    drop(server);
    external_flip(root.path(), "web", "b");
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    expected.push(step("c", "b", "external", "external"));
    assert_eq!(wait_for_len(admin, "web", expected.len()), expected);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(timeline(admin, "web"), expected, "nothing recorded twice");
    // Durable on the volume, one JSON object per line.
    let text = std::fs::read_to_string(root.path().join("web/.activations.jsonl")).unwrap();
    assert_eq!(text.lines().count(), expected.len());
}

/// Two server processes on one root write one timeline: each flip once,
/// whichever process made it, and an external flip once though both see it.
#[test]
fn activation_log_with_two_servers_on_one_root() {
    let root = Root::new();
    let (_one, admin1) = Server::start_with_token(root.path(), TOKEN, &[]);
    let (_two, admin2) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin1, "web", "?id=a", &site("a")).status, 201);
    assert_eq!(upload(admin2, "web", "?id=b", &site("b")).status, 201);
    assert_eq!(
        post_json(admin1, "/services/web/activate", r#"{"id":"a"}"#).status,
        200
    );
    assert_eq!(
        post_json(admin2, "/services/web/rollback", "").status,
        409,
        "a is the oldest"
    );
    assert_eq!(
        post_json(admin2, "/services/web/activate", r#"{"id":"b"}"#).status,
        200
    );
    external_flip(root.path(), "web", "a");
    let expected = vec![
        step("-", "a", "deploy", "admin"),
        step("a", "b", "deploy", "admin"),
        step("b", "a", "activate", "admin"),
        step("a", "b", "activate", "admin"),
        step("b", "a", "external", "external"),
    ];
    assert_eq!(wait_for_len(admin1, "web", expected.len()), expected);
    // Give both watchers time to have seen every flip, then check again.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(timeline(admin1, "web"), expected);
    assert_eq!(timeline(admin2, "web"), expected);
}

fn ids_and_pins(admin: SocketAddr) -> Vec<(String, bool)> {
    let history = json(&common::get(admin, "/services/web/deployments", &[AUTH]));
    history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["pinned"] == true))
        .collect()
}

/// A pinned deployment survives retention, is not counted against keep,
/// cannot be deleted until unpinned, and is marked in listings.
#[test]
fn pinned_deployments_are_never_pruned() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &["--keep", "2"]);
    assert_eq!(upload(admin, "web", "?id=old", &site("old")).status, 201);
    std::thread::sleep(Duration::from_millis(5));
    let (ok, out, err) = cli(admin, &["pin", "--service", "web", "old"]);
    assert!(ok && out.contains("old pinned"), "{out}{err}");
    for v in ["v1", "v2", "v3"] {
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            upload(admin, "web", &format!("?id={v}"), &site(v)).status,
            201
        );
    }
    // keep=2 counts unpinned ones only: v3, v2 kept, v1 pruned, old pinned.
    let own = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(i, p)| (i.to_string(), *p)).collect()
    };
    assert_eq!(
        ids_and_pins(admin),
        own(&[("v3", false), ("v2", false), ("old", true)])
    );
    let r = send(
        admin,
        "DELETE",
        "/services/web/deployments/old",
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("pinned"), "{}", r.text());
    let (ok, out, _) = cli(admin, &["list", "--service", "web"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("P ") && l.contains("old")),
        "{out}"
    );
    assert_eq!(
        send(
            admin,
            "PUT",
            "/services/web/deployments/nope/pin",
            &[AUTH],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        send(
            admin,
            "PUT",
            "/services/web/deployments/a.b/pin",
            &[AUTH],
            b""
        )
        .status,
        400
    );
    // Unpinned, it counts again and is pruned at once (the oldest beyond keep).
    let (ok, _, err) = cli(admin, &["unpin", "--service", "web", "old"]);
    assert!(ok, "{err}");
    assert_eq!(ids_and_pins(admin), own(&[("v3", false), ("v2", false)]));
}

fn create_token(admin: SocketAddr, name: &str, scopes: &[&str]) -> String {
    let body = serde_json::json!({"name": name, "scopes": scopes}).to_string();
    let r = post_json(admin, "/tokens", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    json(&r)["token"].as_str().unwrap().to_string()
}

fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(grep_tree(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Each scope against each route: refused with 403 naming the missing
/// scope exactly when the table says so, allowed otherwise.
#[test]
fn scoped_tokens_per_route_table() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "web", "?id=w1", &site("w1")).status, 201);
    assert_eq!(upload(admin, "api", "?id=a1", &site("a1")).status, 201);
    let read = create_token(admin, "ro", &["read"]);
    let web = create_token(admin, "ci-web", &["deploy:web"]);
    let any = create_token(admin, "ci-all", &["deploy:*"]);
    let second_admin = create_token(admin, "ops", &["admin"]);
    let tokens = [
        ("admin", TOKEN.to_string()),
        ("ops", second_admin),
        ("ro", read.clone()),
        ("ci-web", web.clone()),
        ("ci-all", any),
    ];
    // (method, path, body, needed scope, who may)
    let all = ["admin", "ops", "ro", "ci-web", "ci-all"];
    let deployers_web = ["admin", "ops", "ci-web", "ci-all"];
    let deployers_api = ["admin", "ops", "ci-all"];
    let admins = ["admin", "ops"];
    let tar = site("t");
    type Row<'a> = (&'a str, &'a str, &'a [u8], &'a str, &'a [&'a str]);
    let table: Vec<Row> = vec![
        ("GET", "/services", b"", "read", &all),
        ("GET", "/services/web/deployments", b"", "read", &all),
        ("GET", "/services/api/activations", b"", "read", &all),
        ("GET", "/metrics", b"", "read", &all),
        ("GET", "/healthz", b"", "-", &all),
        (
            "POST",
            "/services/web/deployments?id=w2",
            &tar,
            "deploy:web",
            &deployers_web,
        ),
        (
            "POST",
            "/services/api/deployments?id=a2",
            &tar,
            "deploy:api",
            &deployers_api,
        ),
        (
            "POST",
            "/services/web/deployments/manifest",
            b"{}",
            "deploy:web",
            &deployers_web,
        ),
        (
            "POST",
            "/services/web/activate",
            br#"{"id":"w1"}"#,
            "deploy:web",
            &deployers_web,
        ),
        (
            "POST",
            "/services/api/activate",
            br#"{"id":"a1"}"#,
            "deploy:api",
            &deployers_api,
        ),
        (
            "POST",
            "/services/api/rollback",
            b"",
            "deploy:api",
            &deployers_api,
        ),
        (
            "PUT",
            "/services/api/deployments/a1/pin",
            b"",
            "deploy:api",
            &deployers_api,
        ),
        (
            "DELETE",
            "/services/api/deployments/a1/pin",
            b"",
            "deploy:api",
            &deployers_api,
        ),
        (
            "DELETE",
            "/services/api/deployments/nope",
            b"",
            "deploy:api",
            &deployers_api,
        ),
        ("GET", "/tokens", b"", "admin", &admins),
        (
            "POST",
            "/tokens",
            br#"{"name":"x","scopes":["read"]}"#,
            "admin",
            &admins,
        ),
        ("DELETE", "/tokens/nobody", b"", "admin", &admins),
    ];
    for (method, path, body, scope, allowed) in &table {
        for (name, token) in &tokens {
            let auth = format!("Bearer {token}");
            let r = send(
                admin,
                method,
                path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
            if allowed.contains(name) {
                assert!(
                    r.status != 403 && r.status != 401 && r.status < 500,
                    "{name} {method} {path}: {} {}",
                    r.status,
                    r.text()
                );
            } else {
                assert_eq!(r.status, 403, "{name} {method} {path}: {}", r.text());
                let message = json(&r)["error"].as_str().unwrap().to_string();
                assert!(
                    message.contains(&format!("lacks scope {scope}")) && message.contains(name),
                    "{name} {method} {path}: {message}"
                );
            }
        }
        // A second token named x would conflict: remove it between rounds.
        send(admin, "DELETE", "/tokens/x", &[AUTH], b"");
    }

    // The actor of a change is the token's name.
    let auth = format!("Bearer {web}");
    let r = send(
        admin,
        "POST",
        "/services/web/deployments?id=w3",
        &[("Authorization", &auth)],
        &site("w3"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let log = timeline(admin, "web");
    assert_eq!(log.last().unwrap().3, "ci-web", "{log:?}");

    // Listing shows names, scopes, last use; never a hash or a token.
    let listing = common::get(admin, "/tokens", &[AUTH]).text();
    assert!(
        listing.contains("ci-web") && listing.contains("lastUsedAt"),
        "{listing}"
    );
    assert!(
        !listing.contains(&web) && !listing.contains("sha256"),
        "{listing}"
    );
    let ci = json(&common::get(admin, "/tokens", &[AUTH]))["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci-web")
        .cloned()
        .unwrap();
    assert!(ci["lastUsedAt"].is_string(), "{ci}");

    // Revocation takes effect at once: the very next request is refused.
    assert_eq!(
        send(admin, "DELETE", "/tokens/ci-web", &[AUTH], b"").status,
        204
    );
    let r = common::get(admin, "/services", &[("Authorization", &auth)]);
    assert_eq!(r.status, 401, "{}", r.text());

    // Expired tokens are refused; bad requests are 400, not 5xx.
    let r = post_json(
        admin,
        "/tokens",
        r#"{"name":"brief","scopes":["read"],"expiresIn":"1s"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let brief = format!("Bearer {}", json(&r)["token"].as_str().unwrap());
    assert_eq!(
        common::get(admin, "/services", &[("Authorization", &brief)]).status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        common::get(admin, "/services", &[("Authorization", &brief)]).status,
        401
    );
    for bad in [
        r#"{"name":"admin","scopes":["read"]}"#,
        r#"{"name":"ok","scopes":["write"]}"#,
        r#"{"name":"ok","scopes":[]}"#,
        r#"{"name":"a/b","scopes":["read"]}"#,
        r#"{"name":"ok","scopes":["read"],"expiresIn":"soon"}"#,
        r#"{"scopes":["read"]}"#,
    ] {
        let r = post_json(admin, "/tokens", bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert_eq!(
        post_json(admin, "/tokens", r#"{"name":"ro","scopes":["read"]}"#).status,
        409
    );

    // No raw token anywhere on the volume, nor the bootstrap one.
    for token in [&read, &web, &TOKEN.to_string()] {
        let hits = grep_tree(root.path(), token.as_bytes());
        assert!(hits.is_empty(), "raw token on disk in {hits:?}");
    }

    // The CLI: create, list, revoke, and the new token works at once.
    let (ok, out, err) = cli(
        admin,
        &[
            "token",
            "create",
            "--name",
            "cli-made",
            "--scope",
            "deploy:web",
            "--scope",
            "read",
        ],
    );
    assert!(ok, "{err}");
    let made = out.trim().to_string();
    assert!(made.starts_with("ph_"), "{out}");
    let bearer = format!("Bearer {made}");
    assert_eq!(
        common::get(admin, "/services", &[("Authorization", &bearer)]).status,
        200
    );
    let (ok, out, _) = cli(admin, &["token", "list"]);
    assert!(
        ok && out.contains("cli-made") && out.contains("deploy:web,read"),
        "{out}"
    );
    let (ok, _, err) = cli(admin, &["token", "revoke", "cli-made"]);
    assert!(ok, "{err}");
    assert_eq!(
        common::get(admin, "/services", &[("Authorization", &bearer)]).status,
        401
    );
    drop(server);
}

/// With a token configured, previews are signed by default: unsigned,
/// expired and tampered links are 404; the signed link (from the deploy,
/// the CLI, the API) works, and its cookie carries it to the page's assets.
#[test]
fn signed_previews_refuse_unsigned_expired_and_tampered_links() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    assert_eq!(upload(admin, "web", "?id=live", &site("live")).status, 201);
    let staged = tar_of(&[("index.html", b"<h1>staged</h1>"), ("app.js", b"js")]);
    let r = upload(admin, "web", "?id=v42&activate=false", &staged);
    assert_eq!(r.status, 201, "{}", r.text());
    let link = json(&r)["preview"].as_str().unwrap().to_string();
    assert!(link.starts_with("/s/web@v42/?exp="), "{link}");

    assert_eq!(server.get("/s/web@v42/").status, 404, "unsigned");
    assert_eq!(server.get("/s/web@v42/app.js").status, 404, "unsigned");
    let r = server.get(&link);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>staged</h1>"));
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("Path=/s/web@v42/") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = common::get(server.addr, "/s/web@v42/app.js", &[("Cookie", &pair)]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "js"),
        "the cookie carries the signature"
    );

    // Tampered: another id, another expiry, another signature.
    let (exp, sig) = {
        let q = link.split('?').nth(1).unwrap();
        let exp = q.split('&').find_map(|p| p.strip_prefix("exp=")).unwrap();
        let sig = q.split('&').find_map(|p| p.strip_prefix("sig=")).unwrap();
        (exp.parse::<u64>().unwrap(), sig.to_string())
    };
    assert_eq!(
        server
            .get(&format!("/s/web@live/?exp={exp}&sig={sig}"))
            .status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/s/web@v42/?exp={}&sig={sig}", exp + 1))
            .status,
        404
    );
    let mut flipped = sig.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(
        server
            .get(&format!("/s/web@v42/?exp={exp}&sig={flipped}"))
            .status,
        404
    );
    let forged = format!("ph_preview_web_v42={exp}.{flipped}");
    assert_eq!(
        common::get(server.addr, "/s/web@v42/", &[("Cookie", &forged)]).status,
        404
    );

    // Expired: a link made for 1 s, used after it.
    let r = post_json(
        admin,
        "/services/web/deployments/v42/preview",
        r#"{"ttl":"1s"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let short = json(&r)["path"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(server.get(&short).status, 404, "expired");
    assert_eq!(
        post_json(admin, "/services/web/deployments/nope/preview", "{}").status,
        404
    );
    assert_eq!(
        post_json(
            admin,
            "/services/web/deployments/v42/preview",
            r#"{"ttl":"forever"}"#
        )
        .status,
        400
    );

    // The CLI prints the signed link of a deployment that is not activated.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>cli</h1>").unwrap();
    let public = format!("http://{}", server.addr);
    let (ok, _, err) = cli(
        admin,
        &[
            "deploy",
            "--public",
            &public,
            "--service",
            "web",
            "--quiet",
            "--no-activate",
            "--id",
            "review",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let printed = err
        .lines()
        .find_map(|l| l.strip_prefix("preview: "))
        .unwrap_or_else(|| panic!("no preview line in {err}"));
    let path = &printed[public.len()..];
    assert_eq!(server.get(path).text(), "<h1>cli</h1>");

    // `previews = true` (the old boolean) still means public.
    drop(server);
    let config = root.path().join("old.toml");
    std::fs::write(&config, "previews = true\n").unwrap();
    let (server, _admin) =
        Server::start_with_token(root.path(), TOKEN, &["--config", config.to_str().unwrap()]);
    assert_eq!(server.get("/s/web@v42/").status, 200);
}

/// The dashboard shows message, commit, actor and pin per deployment, a
/// Pin/Unpin button, and the activation timeline.
#[test]
fn dashboard_shows_provenance_pins_and_timeline() {
    let root = Root::new();
    let server = Server::start(root.path(), &[]); // no token: loopback, no login
    let admin = server.admin_addr();
    let up = |query: &str, v: &str| {
        send(
            admin,
            "POST",
            &format!("/services/web/deployments{query}"),
            &[],
            &site(v),
        )
        .status
    };
    assert_eq!(
        up(
            "?id=one&message=first%20%3Cb%3E&commit=0123456789abcdef&branch=main",
            "1"
        ),
        201
    );
    assert_eq!(up("?id=two&activate=false", "2"), 201);
    assert_eq!(
        send(admin, "PUT", "/services/web/deployments/one/pin", &[], b"").status,
        200
    );
    let r = send(
        admin,
        "POST",
        "/services/web/activate",
        &[("Content-Type", "application/json")],
        br#"{"id":"two"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let page = common::get(admin, "/", &[]).text();
    for needle in [
        "first &lt;b&gt;",
        "<code>01234567</code>",
        " on main",
        "by local",
        "badge pinned",
        "action=/ui/unpin",
        "action=/ui/pin",
        "Activations (2)",
        "<code>one</code> → <code>two</code> · activate by local",
        "deploy by local",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in the dashboard");
    }
}

/// On a small tmpfs root: the volume metrics, and an upload that would
/// leave less than min_free_bytes refused early with 507 saying what is free.
/// Mounting needs root: skipped loudly otherwise.
#[test]
fn disk_refusal_on_a_small_tmpfs_root() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("vol");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED disk_refusal_on_a_small_tmpfs_root: cannot mount a tmpfs (not root?)");
        assert!(
            std::env::var_os("PROJECT_HTTP_REQUIRE_TMPFS").is_none(),
            "tmpfs required"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let config = dir.path().join("disk.toml");
    std::fs::write(&config, format!("min_free_bytes = {}\n", 8 << 20)).unwrap();
    let (server, admin) =
        Server::start_with_token(&mount, TOKEN, &["--config", config.to_str().unwrap()]);
    let metrics = common::get(admin, "/metrics", &[AUTH]).text();
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in metrics"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("project_http_volume_total_bytes"), 16 << 20);
    assert!(gauge("project_http_volume_free_bytes") > 15 << 20);
    // A small upload fits.
    assert_eq!(
        upload(admin, "web", "?id=small", &site("small")).status,
        201
    );
    // 10 MiB would leave under 8 MiB of 16: refused before a byte is written.
    let big: Vec<u8> = (0..10u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = upload(
        admin,
        "web",
        "?id=big",
        &tar_of(&[("index.html", b"x"), ("big.bin", &big)]),
    );
    assert_eq!(r.status, 507, "{}", r.text());
    let message = json(&r)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("bytes free") && message.contains("min_free_bytes"),
        "{message}"
    );
    assert!(!mount.join("web/big").exists());
    assert_eq!(server.get("/s/web/").text(), "<h1>small</h1>");
    // The dashboard shows free disk (without a token it needs no login).
    drop(server);
    let server = Server::start(&mount, &["--config", config.to_str().unwrap()]);
    let page = common::get(server.admin_addr(), "/", &[]).text();
    assert!(
        page.contains("Volume: ") && page.contains("free of"),
        "no volume line"
    );
}

/// (head, body) of each request a receiver got.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A loopback receiver: records (headers, body) of every POST, answers 200.
fn receiver() -> (String, Received) {
    receiver_answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into())
}

/// A loopback receiver that records every request and gives each one
/// `answer` (a whole HTTP response).
fn receiver_answering(answer: String) -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            sink.lock()
                .unwrap()
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let mut stream = reader.into_inner();
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, got)
}

fn webhook_config(dir: &Path, name: &str, url: &str) -> String {
    webhooks_config(dir, name, &[url])
}

fn webhooks_config(dir: &Path, name: &str, urls: &[&str]) -> String {
    let path = dir.join(name);
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &path,
        format!("webhooks = [{list}]\nwebhook_secret = \"hook-secret\"\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// The value of `name` in the `/metrics` text.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = common::get(admin, "/metrics", &[AUTH]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Polls `done` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Receivers `[dead, healthy]`: the healthy one gets every event while the
/// dead one (accepts, never answers: 23.5 s per event with its retries)
/// is still on its first; past its own queue of 256 the dead one's events
/// are dropped, counted and logged for it alone.
#[test]
fn webhooks_a_dead_receiver_delays_and_drops_only_its_own_events() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    let (healthy_url, got) = receiver();
    let root = Root::new();
    let config = webhooks_config(root.path(), "hooks.toml", &[&dead_url, &healthy_url]);
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &config]);
    let ids = |got: &Received| -> Vec<u64> {
        let got = got.lock().unwrap();
        got.iter()
            .map(|(_, body)| {
                serde_json::from_str::<Value>(body).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    for v in ["a", "b", "c"] {
        assert_eq!(
            upload(admin, "web", &format!("?id={v}"), &site(v)).status,
            201
        );
    }
    // started + 3 × (deployed, activated); generous, and far below the
    // 23.5 s the dead receiver holds its first event.
    assert!(
        wait_until(Duration::from_secs(10), || got.lock().unwrap().len() >= 7),
        "the healthy receiver got {:?} of 7 events",
        ids(&got)
    );
    assert_eq!(ids(&got), (1..=7).collect::<Vec<_>>());
    assert_eq!(
        metric(
            admin,
            "project_http_webhook_deliveries_total{outcome=\"dropped\"}"
        ),
        0
    );

    // 2 × 140 more events: more than the dead receiver's queue holds.
    for i in 0..140 {
        let r = upload(admin, "web", &format!("?id=q{i}"), &site(&format!("q{i}")));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let last_arrived = || {
        got.lock().unwrap().iter().any(|(_, body)| {
            let v: Value = serde_json::from_str(body).unwrap();
            v["event"] == "deployment.activated" && v["data"]["current"] == "q139"
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), last_arrived),
        "the healthy receiver got {} events",
        got.lock().unwrap().len()
    );
    let healthy = ids(&got);
    assert!(healthy.len() >= 7 + 280, "{}", healthy.len());
    assert_eq!(
        healthy,
        (1..=healthy.len() as u64).collect::<Vec<_>>(),
        "the healthy receiver missed events"
    );
    let dropped = metric(
        admin,
        "project_http_webhook_deliveries_total{outcome=\"dropped\"}",
    );
    assert!(dropped > 0, "nothing dropped for the dead receiver");
    let full = server
        .stderr
        .wait_for("queue is full", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no drop logged:\n{}", server.stderr.all().join("\n")));
    assert!(full.contains("receiver=1"), "{full}");
    let lines = server.stderr.all();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("queue is full") && l.contains("receiver=2")),
        "the healthy receiver dropped events"
    );
    assert_eq!(
        metric(
            admin,
            "project_http_webhook_deliveries_total{outcome=\"failed\"}"
        ),
        0
    );
    drop(dead);
}

/// A 302 or 307 answer is a failed attempt, retried (4 attempts) and never
/// followed; a receiver URL's userinfo, path and query never reach the log.
#[test]
fn webhook_redirects_fail_unfollowed_and_logs_hide_receiver_secrets() {
    let (target, followed) = receiver();
    let redirect = |code: &str| {
        receiver_answering(format!(
            "HTTP/1.1 {code} Moved\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
    };
    let (url_302, got_302) = redirect("302");
    let (url_307, got_307) = redirect("307");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let secret_url =
        format!("http://hookuser:hunter2@127.0.0.1:{closed_port}/hooks/pathsecret?token=s3cret");
    let root = Root::new();
    let config = webhooks_config(
        root.path(),
        "hooks.toml",
        &[&url_302, &url_307, &secret_url],
    );
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &config]);
    // project.server.started, to each of the three: 4 attempts, 3.5 s of
    // back-off, then counted as failed.
    let failed = || {
        metric(
            admin,
            "project_http_webhook_deliveries_total{outcome=\"failed\"}",
        )
    };
    assert!(
        wait_until(Duration::from_secs(20), || failed() == 3),
        "failed: {}\n{}",
        failed(),
        server.stderr.all().join("\n")
    );
    assert_eq!(
        metric(
            admin,
            "project_http_webhook_deliveries_total{outcome=\"delivered\"}"
        ),
        0
    );
    for got in [&got_302, &got_307] {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got.iter().all(|(head, _)| head.starts_with("POST /hook ")),
            "{got:?}"
        );
    }
    assert!(
        followed.lock().unwrap().is_empty(),
        "a redirect was followed"
    );
    let lines = [server.stderr.all(), server.stdout.all()].concat();
    let failures: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("webhook delivery failed") && l.contains("receiver=3"))
        .collect();
    assert_eq!(failures.len(), 4, "{lines:#?}");
    assert!(
        failures[0].contains(&format!("http://***@127.0.0.1:{closed_port}/***?***")),
        "{}",
        failures[0]
    );
    for secret in ["hookuser", "hunter2", "pathsecret", "s3cret"] {
        assert!(
            !lines.iter().any(|l| l.contains(secret)),
            "{secret} in the log:\n{}",
            lines.join("\n")
        );
    }
}

/// Every event reaches a loopback receiver once, with a valid signature;
/// a receiver that never answers does not slow deploys down.
#[test]
fn webhooks_deliver_signed_events_once_and_never_slow_deploys() {
    use hmac::Mac;
    let (url, got) = receiver();
    let root = Root::new();
    let config = webhook_config(root.path(), "hooks.toml", &url);
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &["--config", &config]);
    assert_eq!(upload(admin, "web", "?id=a", &site("a")).status, 201);
    assert_eq!(upload(admin, "web", "?id=b", &site("b")).status, 201);
    assert_eq!(post_json(admin, "/services/web/rollback", "").status, 200);
    // started, deployed a, activated a, deployed b, activated b, rollback
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = got.lock().unwrap().clone();
    let mut kinds = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (head, body) in &got {
        let sig = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("X-Project-Http-Signature: ")
                    .or_else(|| l.strip_prefix("x-project-http-signature: "))
            })
            .unwrap_or_else(|| panic!("no signature in {head}"))
            .trim();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(body.as_bytes());
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            "{body}"
        );
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(
            ids.insert(v["id"].as_u64().unwrap()),
            "delivered twice: {body}"
        );
        kinds.push(v["event"].as_str().unwrap().to_string());
    }
    assert_eq!(
        kinds,
        [
            "project.server.started",
            "deployment.deployed",
            "deployment.activated",
            "deployment.deployed",
            "deployment.activated",
            "deployment.rollback"
        ],
        "{got:?}"
    );
    let metrics = common::get(admin, "/metrics", &[AUTH]).text();
    assert!(
        metrics.contains("project_http_webhook_deliveries_total{outcome=\"delivered\"} 6"),
        "{metrics}"
    );

    // A receiver that accepts and never answers, beside no receiver at all.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_url = format!("http://{}/hook", hang.local_addr().unwrap());
    let time_deploys = |admin: SocketAddr| {
        let started = std::time::Instant::now();
        for i in 0..10 {
            let r = upload(admin, "web", &format!("?id=t{i}"), &site(&format!("t{i}")));
            assert_eq!(r.status, 201, "{}", r.text());
        }
        started.elapsed()
    };
    let dead_root = Root::new();
    let dead_config = webhook_config(dead_root.path(), "dead.toml", &hang_url);
    let (_dead, dead_admin) =
        Server::start_with_token(dead_root.path(), TOKEN, &["--config", &dead_config]);
    let plain_root = Root::new();
    let (_plain, plain_admin) = Server::start_with_token(plain_root.path(), TOKEN, &[]);
    let with_dead = time_deploys(dead_admin);
    let without = time_deploys(plain_admin);
    eprintln!("10 deploys: {with_dead:?} with a receiver that never answers, {without:?} without webhooks");
    // Delivery to the hanging receiver takes 5 s per attempt; a deploy that
    // waited for it would take that long.
    assert!(
        with_dead < Duration::from_secs(4),
        "deploys waited for the webhook: {with_dead:?}"
    );
    drop(hang);
}
