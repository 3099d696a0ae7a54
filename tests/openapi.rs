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

/// The JSON Schema verdicts (Draft 2020-12, Python's `jsonschema`, which
/// schemathesis installs) of each (schema, value) pair; `None` when
/// `jsonschema` cannot be imported (skipped like schemathesis itself).
fn schema_verdicts(pairs: &[(Value, Value)]) -> Option<Vec<bool>> {
    use std::io::Write;
    schemathesis()?;
    let script = "import json, sys, jsonschema\n\
                  pairs = json.load(sys.stdin)\n\
                  print(json.dumps([jsonschema.Draft202012Validator(s).is_valid(v) for s, v in pairs]))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let input = serde_json::to_vec(pairs).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python3 jsonschema failed");
    Some(serde_json::from_slice(&output.stdout).expect("verdicts"))
}

/// The upload's query parameters as documented and as the server takes
/// them agree on every control character (C0, DEL, C1), tab, line feed and
/// a few printable ones: a value the document allows is stored, one it
/// refuses is answered 400. (Each probe sits inside the value: a trailing
/// one would test the regex dialect's `$`, not the rule.)
#[test]
fn upload_query_rules_match_the_server_character_by_character() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let doc: Value = serde_json::from_slice(&common::get(admin, "/openapi.json", &[]).body)
        .expect("openapi.json");
    let upload = &doc["paths"]["/services/{service}/deployments"]["post"];
    let schema_of = |name: &str| {
        upload["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} parameter"))["schema"]
            .clone()
    };
    let probes: Vec<char> = (0u32..0x20)
        .chain(0x7f..0xa0)
        .chain([0x20, 0x3d, 0xe9, 0x2028, 0xfeff])
        .filter_map(char::from_u32)
        .collect();
    // (parameter, value): the label's probe in its value, then in its key.
    let mut cases: Vec<(&str, String)> = Vec::new();
    for c in &probes {
        for name in ["id", "message", "commit", "branch"] {
            cases.push((name, format!("a{c}b")));
        }
        cases.push(("label", format!("k=a{c}b")));
        cases.push(("label", format!("a{c}b=v")));
    }
    let pairs: Vec<(Value, Value)> = cases
        .iter()
        .map(|(name, value)| {
            let value = if *name == "label" {
                serde_json::json!([value])
            } else {
                serde_json::json!(value)
            };
            (schema_of(name), value)
        })
        .collect();
    let Some(documented) = schema_verdicts(&pairs) else {
        return;
    };
    let site = tar_of(&[("index.html", b"<h1>q</h1>")]);
    let mut disagree = Vec::new();
    for ((name, value), allowed) in cases.iter().zip(documented) {
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let r = send(
            admin,
            "POST",
            &format!("/services/web/deployments?activate=false&{name}={encoded}"),
            &[AUTH],
            &site,
        );
        assert!(
            [200, 201, 400].contains(&r.status),
            "{name}={value:?}: {} {}",
            r.status,
            r.text()
        );
        if allowed != (r.status != 400) {
            disagree.push(format!(
                "{name}={value:?}: documented {}, server {} {}",
                if allowed { "valid" } else { "invalid" },
                r.status,
                r.text()
            ));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

/// A zip with `partial=true` is refused with 422, and the document says so.
#[test]
fn a_zip_with_partial_is_a_documented_422() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("index.html", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"<h1>z</h1>").unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let r = send(
        admin,
        "POST",
        "/services/web/deployments?partial=true",
        &[AUTH],
        &zip,
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let doc: Value = serde_json::from_slice(&common::get(admin, "/openapi.json", &[]).body)
        .expect("openapi.json");
    let upload = &doc["paths"]["/services/{service}/deployments"]["post"];
    let refused = upload["responses"]["422"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("zip") && refused.contains("partial=true"),
        "the 422 does not name a zip with partial=true: {refused}"
    );
}
