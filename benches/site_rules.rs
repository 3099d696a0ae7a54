//! What a site's `_redirects` costs a plain file request: instruction
//! counts under callgrind (wall time on this shared machine swings too
//! much for a 10 % question).
//!
//! The binary answers `N` requests for an existing small file through
//! `serve::handle`, against one of three deployments of the same files:
//! `none` (no rule files), `rules` (2 000 static + 100 dynamic redirect
//! rules, Cloudflare Pages' limits) and `forced` (the same rules with `!`,
//! so every request looks them up before the files: the worst case).
//! Per-request cost = (count at N − count at 0) / N, which cancels the
//! setup (index build, rule parsing). `benches/site_rules.sh` runs the six
//! callgrind runs and prints the table for docs/BENCHMARKS.md.
//!
//! Run: `cargo bench --bench site_rules --no-run`, then
//! `benches/site_rules.sh`; or `site_rules <none|rules|forced> <N>` alone.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Request;
use project_http::config::Config;
use project_http::serve::io::FileIo;
use project_http::serve::{handle, PublicState, Settings};
use project_http::site::{Deployment, IndexOptions, Registry, Retained};
use project_http::store::Layout;

fn redirects(force: bool) -> String {
    let bang = if force { "!" } else { "" };
    let mut text = String::new();
    for i in 0..2_000 {
        text.push_str(&format!("/old/page-{i} /new/page-{i} 301{bang}\n"));
    }
    for i in 0..100 {
        text.push_str(&format!(
            "/blog-{i}/:year/:slug /posts/{i}/:year/:slug 301{bang}\n"
        ));
    }
    text
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let kind = args.next().unwrap_or_else(|| "rules".to_string());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("web").join("d1");
    std::fs::create_dir_all(site.join("assets")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>bench</h1>").unwrap();
    std::fs::write(site.join("assets/app.js"), "console.log(1);".repeat(20)).unwrap();
    match kind.as_str() {
        "none" => {}
        "rules" => std::fs::write(site.join("_redirects"), redirects(false)).unwrap(),
        "forced" => std::fs::write(site.join("_redirects"), redirects(true)).unwrap(),
        other => panic!("unknown kind {other:?}: none, rules or forced"),
    }
    let config = Config::default();
    let deployment =
        Deployment::build("web", "d1", &site, IndexOptions::from_config(&config)).unwrap();
    let expected_rules = if kind == "none" { 0 } else { 2_100 };
    assert_eq!(deployment.rules.redirects.rules().len(), expected_rules);
    let registry = Arc::new(Registry::new());
    registry.publish(Arc::new(deployment));
    let state = PublicState {
        registry,
        settings: ArcSwap::from_pointee(Settings::from_config(&config).unwrap()),
        io: FileIo::Epoll,
        retained: Arc::new(Retained::new(Layout::new(dir.path()))),
        preview_key: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = Request::get("/s/web/assets/app.js")
        .header("host", "localhost")
        .body(())
        .unwrap();
    for _ in 0..n {
        let response = runtime.block_on(handle(&state, &request));
        assert_eq!(response.status(), 200);
    }
    println!("{kind}: answered {n} requests");
}
