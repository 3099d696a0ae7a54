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
//!
//! `site_rules long <shape>` measures rule *matching* against one long
//! path (issue #21: it must be linear in the path's length, whatever the
//! patterns): 100 dynamic rules (the `max_dynamic_redirects` limit) of one
//! adversarial shape, looked up for one 60 000-byte site path, repeated for
//! at least half a second; it prints the wall time per lookup. It calls
//! `Redirects::lookup` and `HeaderRules::apply` directly: through the
//! server, a request target that long is now a 414 before any rule is
//! consulted. `site_rules long <shape> <N>` does exactly `N` lookups (for
//! callgrind: instructions at `N` minus at 0, over `N`). Shapes:
//! * `splat`: `/*-<i>.x /d/:splat 301` against `/aaa…a` (a splat followed
//!   by a literal that never matches: every split point is a candidate);
//! * `segments`: `/:a/:b/…/:h/*/:i/…/:p/z<i> /d/:splat 301` against
//!   `/a/a/…/a` (placeholders on both sides of the splat, 30 000 segments);
//! * `names`: as many placeholders as a 1 000-character rule holds (95
//!   before the splat, 95 after) against the same path;
//! * `headers`: 100 `_headers` blocks `/*-<i>.js` (the issue's `/*.js`
//!   example, 100 times) applied to `/aaa…a`.

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

/// The length of the site path `long` matches rules against.
const LONG: usize = 60_000;

fn long(shape: &str, count: Option<u32>) {
    use project_http::site::rules::{HeaderRules, Limits, Redirects};
    let limits = Limits::default();
    let (redirects, headers, path) = match shape {
        "splat" => {
            let text: String = (0..100)
                .map(|i| format!("/*-{i}.x /d/:splat 301\n"))
                .collect();
            (
                Redirects::parse(&text, &limits).unwrap(),
                HeaderRules::default(),
                format!("/{}", "a".repeat(LONG - 1)),
            )
        }
        "segments" => {
            let text: String = (0..100)
                .map(|i| {
                    format!(
                        "/:a/:b/:c/:d/:e/:f/:g/:h/*/:i/:j/:k/:l/:m/:n/:o/:p/z{i} /d/:splat 301\n"
                    )
                })
                .collect();
            (
                Redirects::parse(&text, &limits).unwrap(),
                HeaderRules::default(),
                "/a".repeat(LONG / 2),
            )
        }
        "names" => {
            // As many placeholders as a 1 000-character rule holds, on both
            // sides of the splat: every one is a binary search.
            let text: String = (0..100)
                .map(|i| {
                    let before: String = (0..95).map(|k| format!("/:b{k}")).collect();
                    let after: String = (0..95).map(|k| format!("/:c{k}")).collect();
                    format!("{before}/*{after}/z{i} /d/:splat 301\n")
                })
                .collect();
            (
                Redirects::parse(&text, &limits).unwrap(),
                HeaderRules::default(),
                "/a".repeat(LONG / 2),
            )
        }
        "headers" => {
            let text: String = (0..100)
                .map(|i| format!("/*-{i}.js\n  X-Rule: {i}\n"))
                .collect();
            (
                Redirects::default(),
                HeaderRules::parse(&text, &limits).unwrap(),
                format!("/{}", "a".repeat(LONG - 1)),
            )
        }
        other => panic!("unknown shape {other:?}: splat, segments, names or headers"),
    };
    assert_eq!(path.len(), LONG);
    let started = std::time::Instant::now();
    let mut lookups = 0u32;
    let more = |lookups: u32| match count {
        Some(n) => lookups < n,
        None => lookups == 0 || started.elapsed() < std::time::Duration::from_millis(500),
    };
    while more(lookups) {
        let found = redirects.lookup(std::hint::black_box(&path));
        assert!(found.is_none());
        let mut map = http::HeaderMap::new();
        headers.apply(std::hint::black_box(&path), &mut map);
        assert!(map.is_empty());
        lookups += 1;
    }
    let per = started.elapsed().as_secs_f64() / f64::from(lookups.max(1));
    println!(
        "long {shape}: {lookups} lookups of a {LONG}-byte path against 100 rules, {:.3} ms each",
        per * 1e3
    );
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let kind = args.next().unwrap_or_else(|| "rules".to_string());
    if kind == "long" {
        let shape = args.next().unwrap_or_else(|| "splat".to_string());
        long(&shape, args.next().and_then(|n| n.parse().ok()));
        return;
    }
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
