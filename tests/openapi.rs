//! The admin API's OpenAPI document (`GET /openapi.json`) against the live
//! server: readable without a token, and fuzzed by schemathesis (PyPI) with
//! every check on (tests/openapi/schemathesis.toml) for a bounded number of
//! examples per operation. Any 5xx, undocumented status, response outside its
//! schema, accepted invalid input or refused valid input fails the test.
//!
//! The server runs with an admin token and a deployed site on a throwaway
//! root, so destructive operations (deleting deployments, revoking tokens)
//! harm nothing. `GET /events` (a stream that never ends) is read until a
//! short timeout (tests/openapi/schemathesis.toml).
//!
//! Skips loudly when `schemathesis` is not installed, unless
//! `PROJECT_HTTP_REQUIRE_SCHEMATHESIS=1` (set by `.ci/run`, which installs it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{send, tar_of, Root, Server};
use serde_json::Value;

const TOKEN: &str = "openapi-token-7d1f";
const AUTH: (&str, &str) = ("Authorization", "Bearer openapi-token-7d1f");
/// Examples per operation and phase (schemathesis `--max-examples`).
const MAX_EXAMPLES: &str = "20";

fn schemathesis() -> Option<String> {
    let found = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("schemathesis".to_string());
    }
    if std::env::var("PROJECT_HTTP_REQUIRE_SCHEMATHESIS").as_deref() == Ok("1") {
        panic!(
            "schemathesis is required (PROJECT_HTTP_REQUIRE_SCHEMATHESIS=1) but not installed: \
             python3 -m pip install schemathesis"
        );
    }
    eprintln!(
        "SKIP: schemathesis not installed (python3 -m pip install schemathesis; .ci/run installs it)"
    );
    None
}

fn deploy_site(admin: std::net::SocketAddr) {
    let r = send(
        admin,
        "POST",
        "/services/web/deployments?id=v1&message=first",
        &[AUTH],
        &tar_of(&[("index.html", b"<h1>v1</h1>")]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn document_is_public_and_describes_the_routes() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    // No token: still readable.
    let r = common::get(admin, "/openapi.json", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let upload = &doc["paths"]["/services/{service}/deployments"]["post"];
    for status in ["201", "401", "403", "413", "415", "422", "507"] {
        assert!(
            upload["responses"].get(status).is_some(),
            "upload does not document {status}"
        );
    }
    // Everything else still needs the token.
    assert_eq!(common::get(admin, "/services", &[]).status, 401);
    assert_eq!(common::get(admin, "/services", &[AUTH]).status, 200);
    // A documented path under an undocumented method: 405 naming the right ones.
    let r = common::request(admin, "PATCH", "/services/web/deployments/v1/pin", &[AUTH]);
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("PUT, DELETE"));
    // The concrete manifest path shadows the {id} template (OpenAPI's rule),
    // and an upload may not take the id `manifest`.
    let r = common::request(
        admin,
        "DELETE",
        "/services/web/deployments/manifest",
        &[AUTH],
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = send(
        admin,
        "POST",
        "/services/web/deployments?id=manifest",
        &[AUTH],
        &tar_of(&[("index.html", b"x")]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

/// The number after `label:` in the run's summary (`Selected: 16/17`, `Tested: 16`).
fn summary_count(output: &str, label: &str) -> Option<usize> {
    let line = output.lines().find(|l| l.trim_start().starts_with(label))?;
    line.split(':')
        .nth(1)?
        .trim()
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[test]
fn schemathesis_finds_nothing() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let root = Root::new();
    let (mut server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    deploy_site(admin);
    let doc: Value = serde_json::from_slice(&common::get(admin, "/openapi.json", &[]).body)
        .expect("openapi.json");
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi/schemathesis.toml");
    // Reports and hypothesis' files go to a scratch directory, not the checkout.
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg("300")
        .arg(&schemathesis)
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{admin}/openapi.json"))
        .args(["-H", &format!("{}: {}", AUTH.0, AUTH.1)])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .current_dir(scratch.path())
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "schemathesis took {:.1} s:\n{stdout}",
        elapsed.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}\nserver log:\n{}",
        output.status.code(),
        server.stderr.all().join("\n")
    );
    // Every operation was exercised (schemathesis leaves out the document's
    // own, public, operation): a run that selected nothing must not pass.
    let (selected, tested) = (
        summary_count(&stdout, "Selected:"),
        summary_count(&stdout, "Tested:"),
    );
    assert_eq!(
        (selected, tested),
        (Some(operations - 1), Some(operations - 1)),
        "not every operation was tested:\n{stdout}"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited during the run"
    );
    // The run left the server working.
    assert_eq!(common::get(admin, "/healthz", &[AUTH]).status, 200);
}
