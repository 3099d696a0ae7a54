//! A real site through the site rules: a small mkdocs-material build with
//! a `_redirects` and a `_headers`, deployed by `project-http deploy` as a
//! directory (tar.gz) and as a `.zip`, crawled by `linkchecker`.
//!
//! Needs `mkdocs` (PyPI `mkdocs-material`) and `linkchecker` (Debian
//! package), both installed by `.ci/run`; skips loudly without them unless
//! `PROJECT_HTTP_REQUIRE_BROWSER=1`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Root, Server};

const TOKEN: &str = "mkdocs-token-7a90";
const AUTH: (&str, &str) = ("Authorization", "Bearer mkdocs-token-7a90");
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn tools_present() -> bool {
    let works = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["mkdocs", "linkchecker"]
        .into_iter()
        .filter(|t| !works(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{} not installed (pip install mkdocs-material; apt-get install linkchecker)",
        missing.join(" and ")
    );
    if std::env::var("PROJECT_HTTP_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("{message}, and PROJECT_HTTP_REQUIRE_BROWSER=1");
    }
    eprintln!("\n!!!!! SKIPPING the mkdocs/linkchecker test: {message} !!!!!\n");
    false
}

fn build_site(dir: &Path) -> std::path::PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("guide")).unwrap();
    std::fs::write(
        dir.join("mkdocs.yml"),
        "site_name: Rules demo\ntheme:\n  name: material\n\
         nav:\n  - Home: index.md\n  - Install: guide/install.md\n  - About: about.md\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("index.md"),
        "# Home\n\nRead how to [install](guide/install.md), or about [us](about.md).\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("guide/install.md"),
        "# Install\n\nBack [home](../index.md).\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("about.md"),
        "# About\n\nOld links go [here](../setup/).\n",
    )
    .unwrap();
    let status = Command::new("mkdocs")
        .args(["build", "--quiet", "--site-dir", "site"])
        .current_dir(dir)
        .env("NO_MKDOCS_2_WARNING", "1")
        .status()
        .unwrap();
    assert!(status.success(), "mkdocs build failed");
    let site = dir.join("site");
    // Rules the site ships: an old URL moved (linked from about/), and
    // security headers on every page.
    std::fs::write(
        site.join("_redirects"),
        "/setup/ /guide/install/ 301\n/docs/* /:splat 301\n",
    )
    .unwrap();
    std::fs::write(
        site.join("_headers"),
        "/*\n  X-Frame-Options: DENY\n  X-Content-Type-Options: nosniff\n",
    )
    .unwrap();
    site
}

/// Every file of `dir` as (relative path, bytes), for the zip.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn find(dir: &Path, prefix: &str, suffix: &str) -> String {
    files_of(dir)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.starts_with(prefix) && p.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in the build"))
}

#[test]
fn a_mkdocs_material_site_with_rules_passes_linkchecker() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let site = build_site(work.path());
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let public = format!("http://{}", server.addr);
    let (ok, out, err) = common::deploy_web(admin, &public, TOKEN, &site, &[]);
    assert!(ok, "{out}\n{err}");
    let ids = common::history_ids(admin, "web", AUTH);

    // Every internal link answers 200 (redirects followed), per linkchecker.
    let output = Command::new("linkchecker")
        .args(["--no-status", "--no-warnings", "--threads", "2"])
        .arg(format!("{public}/s/web/"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "linkchecker found broken links:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("0 errors"), "{report}");

    // The moved page, the headers, the bundles' caching policy.
    let r = server.get("/s/web/setup/");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/s/web/guide/install/"))
    );
    let r = server.get("/s/web/");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    for (prefix, suffix) in [
        ("assets/javascripts/bundle.", ".min.js"),
        ("assets/stylesheets/main.", ".min.css"),
    ] {
        let bundle = find(&site, prefix, suffix);
        let r = server.get(&format!("/s/web/{bundle}"));
        assert_eq!(
            (r.status, r.header("cache-control")),
            (200, Some(IMMUTABLE)),
            "{bundle}"
        );
    }
    let r = server.get("/s/web/search/search_index.json");
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));

    // The same site as a .zip: the same deployment, so the same id.
    let zip_path = work.path().join("site.zip");
    {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        for (rel, data) in files_of(&site) {
            w.start_file(rel, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(&data).unwrap();
        }
        w.finish().unwrap();
    }
    let (ok, out, err) = common::deploy_web(admin, &public, TOKEN, &zip_path, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        common::history_ids(admin, "web", AUTH),
        ids,
        "no new deployment"
    );
}
