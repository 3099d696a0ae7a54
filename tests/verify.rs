//! Verified deploys: `project-http deploy` checks the flip through the
//! public port and rolls back by itself when what is served is not what
//! was uploaded.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use common::{Root, Server};

const TOKEN: &str = "verify-token-0b9d";

fn deploy(admin: SocketAddr, public: &str, dir: &Path, extra: &[&str]) -> (bool, String, String) {
    common::deploy_web(admin, public, TOKEN, dir, extra)
}

fn site(root: &Root, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.path().join(name);
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn a_deployment_that_serves_wrong_is_rolled_back_automatically() {
    let work = Root::new();
    let data = work.path().join("data");
    let (server, admin) = Server::start_with_token(&data, TOKEN, &[]);
    let public = format!("http://{}", server.addr);

    let good = site(
        &work,
        "good",
        &[("index.html", "<h1>good</h1>"), ("assets/app.js", "ok()")],
    );
    let (ok, good_id, err) = deploy(admin, &public, &good, &["--verify-path", "/assets/app.js"]);
    assert!(ok, "{err}");
    assert!(err.contains("verified 2 path(s)"), "{err}");

    // The new build relies on a dotfile path, which the public server never
    // serves: uploaded fine, served 404, so it must not stay active.
    let bad = site(
        &work,
        "bad",
        &[
            ("index.html", "<h1>bad</h1>"),
            (".well-known/security.txt", "Contact: x"),
        ],
    );
    let (ok, out, err) = deploy(
        admin,
        &public,
        &bad,
        &["--verify-path", ".well-known/security.txt"],
    );
    assert!(!ok, "must fail: {out}{err}");
    assert!(
        err.contains("/s/web/.well-known/security.txt: answered 404"),
        "{err}"
    );
    assert!(
        err.contains(&format!("rolled back: web is serving {good_id} again")),
        "{err}"
    );
    assert_eq!(server.get("/s/web/").text(), "<h1>good</h1>");
    // The failed deployment is kept for inspection, as a preview.
    let bad_id = err
        .split("deployed web as ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string();
    // At the (signed) link the message gives.
    let link = err
        .split("kept for inspection at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|url| url.find("/s/").map(|i| url[i..].to_string()))
        .unwrap();
    assert!(link.starts_with(&format!("/s/web@{bad_id}/")), "{link}");
    assert_eq!(server.get(&link).text(), "<h1>bad</h1>");

    // A public port that never answers: timeout, rolled back too.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let other = site(&work, "other", &[("index.html", "<h1>other</h1>")]);
    let (ok, _, err) = deploy(admin, &silent_url, &other, &["--verify-timeout", "2s"]);
    assert!(!ok);
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(server.get("/s/web/").text(), "<h1>good</h1>");

    // --no-verify trusts the flip.
    let (ok, _, err) = deploy(admin, &silent_url, &other, &["--no-verify"]);
    assert!(ok, "{err}");
    assert_eq!(server.get("/s/web/").text(), "<h1>other</h1>");
}

#[test]
fn a_first_deployment_that_fails_verification_says_nothing_could_be_rolled_back() {
    let work = Root::new();
    let (server, admin) = Server::start_with_token(&work.path().join("data"), TOKEN, &[]);
    let public = format!("http://{}", server.addr);
    let dir = site(&work, "first", &[("index.html", "x"), (".hidden", "y")]);
    let (ok, _, err) = deploy(admin, &public, &dir, &["--verify-path", ".hidden"]);
    assert!(!ok);
    assert!(
        err.contains("no previous deployment to roll back to"),
        "{err}"
    );
}
