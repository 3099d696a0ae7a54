//! REDbot (`redbot` on PyPI, the HTTP linter of Mark Nottingham) against
//! the live server: the index, an asset with precompressed variants, a
//! directory redirect, a 404 and a preview URL. It checks caching,
//! validators, conditional requests, ranges and negotiation by sending real
//! follow-up requests. Zero BAD notes; WARN notes only those listed in
//! [`ACCEPTED_WARNINGS`] (each documented in docs/RELIABILITY.md).
//!
//! Skips loudly when `redbot` is not installed, unless
//! `PROJECT_HTTP_REQUIRE_REDBOT=1` (set by `.ci/run`, which installs it).

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{Root, Server};

/// WARN notes accepted, with the reason (docs/RELIABILITY.md says the same).
const ACCEPTED_WARNINGS: &[(&str, &str)] = &[(
    "STORE_PUBLIC_UNNECESSARY",
    "the default cache_control_assets keeps `public` so shared caches may store assets \
     of a site behind HTTP authentication (Traefik basicAuth), as nginx users write it",
)];

fn redbot() -> Option<String> {
    let found = Command::new("redbot")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("redbot".to_string());
    }
    if std::env::var("PROJECT_HTTP_REQUIRE_REDBOT").as_deref() == Ok("1") {
        panic!("redbot is required (PROJECT_HTTP_REQUIRE_REDBOT=1) but not installed: pip install redbot");
    }
    eprintln!("SKIP: redbot not installed (pip install redbot; .ci/run installs it)");
    None
}

/// Runs REDbot on `url`; returns (status, level, note id, summary) of every note.
fn lint(redbot: &str, url: &str) -> Vec<(u64, String, String, String)> {
    let output = Command::new(redbot)
        .args(["-o", "har", url])
        .output()
        .expect("run redbot");
    assert!(
        output.status.success(),
        "redbot {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let har: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("redbot {url} gave no HAR ({e})"));
    let mut notes = Vec::new();
    for entry in har["log"]["entries"].as_array().expect("entries") {
        let status = entry["response"]["status"].as_u64().unwrap_or(0);
        for note in entry["_red_messages"].as_array().into_iter().flatten() {
            notes.push((
                status,
                note["level"].as_str().unwrap_or("").to_string(),
                note["note_id"].as_str().unwrap_or("").to_string(),
                note["summary"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    notes
}

#[test]
fn redbot_finds_nothing_bad_on_index_asset_redirect_404_and_preview() {
    let Some(redbot) = redbot() else {
        return;
    };
    let root = Root::new();
    // Bodies longer than REDbot's 97-byte range probe: on a shorter one its
    // "partial" request covers the whole body (RANGE_CL_FULL, its artefact).
    let css = "p{color:red}\n".repeat(40);
    let gz = common::gzip(css.as_bytes());
    let page = format!(
        "<!doctype html><html lang=en><title>REDbot</title><link rel=stylesheet href=app.css>{}",
        "<p>A page with enough text to be a page.</p>\n".repeat(8)
    );
    root.deployment(
        "web",
        "d1",
        &[
            ("index.html", page.as_bytes()),
            ("app.css", css.as_bytes()),
            ("app.css.gz", &gz),
            ("docs/index.html", page.as_bytes()),
        ],
    );
    root.deployment("web", "d0", &[("index.html", page.as_bytes())]);
    root.flip("web", "d1");
    root.set_flip_time("web", SystemTime::now() - Duration::from_secs(120));
    let server = Server::start(root.path(), &[]);
    let base = format!("http://{}", server.addr);
    let mut problems = Vec::new();
    for (path, status) in [
        ("/s/web/", 200),
        ("/s/web/app.css", 200),
        ("/s/web/docs", 301),
        ("/s/web/missing.html", 404),
        ("/s/web@d0/", 200),
    ] {
        let notes = lint(&redbot, &format!("{base}{path}"));
        assert!(
            notes.iter().any(|n| n.0 == status),
            "{path}: REDbot saw no {status}: {notes:?}"
        );
        for (_, level, id, summary) in notes {
            let accepted = ACCEPTED_WARNINGS.iter().any(|(a, _)| *a == id);
            if level == "BAD" || (level == "WARN" && !accepted) {
                problems.push(format!("{path}: {level} {id}: {summary}"));
            }
        }
    }
    assert!(problems.is_empty(), "REDbot:\n{}", problems.join("\n"));
}
