//! Hot-path micro benchmarks: what one request costs before the socket write
//! (path decode + registry snapshot + index lookup + header build), and what
//! an index build of a 10 000-file deployment costs (paid on every flip).
//!
//! Run: `cargo bench --bench hot_path`. Numbers go in docs/BENCHMARKS.md.

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use project_http::config::Config;
use project_http::serve::io::FileIo;
use project_http::serve::{handle, path, PublicState, Settings};
use project_http::site::{Deployment, IndexOptions, Registry, Retained};
use project_http::store::Layout;

fn site(files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..files {
        let path = dir.path().join(format!("d{}/f{i}.js", i % 100));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("console.log({i});").repeat(20)).unwrap();
    }
    std::fs::write(dir.path().join("index.html"), "<h1>bench</h1>".repeat(100)).unwrap();
    dir
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let options = IndexOptions::from_config(&config);
    let dir = site(10_000);

    c.bench_function("path_decode", |b| {
        b.iter(|| path::decode(std::hint::black_box("/s/web/assets/app.3f9c1%20x.js")).unwrap())
    });

    let registry = Arc::new(Registry::new());
    registry.publish(Arc::new(
        Deployment::build("web", "d1", dir.path(), options).unwrap(),
    ));
    let state = PublicState {
        preview_key: None,
        registry,
        settings: ArcSwap::from_pointee(Settings::from_config(&config).unwrap()),
        io: FileIo::Epoll,
        retained: Arc::new(Retained::new(Layout::new(dir.path()))),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = Request::get("/s/web/d7/f4207.js")
        .header("host", "localhost")
        .header("accept-encoding", "gzip, deflate, br")
        .body(())
        .unwrap();
    c.bench_function("handle_small_file_in_memory", |b| {
        b.iter(|| {
            let response = runtime.block_on(handle(&state, &request));
            assert_eq!(response.status(), 200);
        })
    });
    let conditional = Request::get("/s/web/index.html")
        .header("host", "localhost")
        .header("if-none-match", "\"0000\", \"1111\"")
        .body(())
        .unwrap();
    c.bench_function("handle_conditional_miss", |b| {
        b.iter(|| runtime.block_on(handle(&state, &conditional)))
    });

    let mut group = c.benchmark_group("index_build");
    group.sample_size(10);
    // As after an upload: digests come from the manifest, nothing is read.
    let with_manifest = site(10_000);
    let mut lines = Vec::new();
    for i in 0..10_000 {
        lines.push((format!("d{}/f{i}.js", i % 100), format!("{:064x}", i)));
    }
    lines.push(("index.html".to_string(), format!("{:064x}", 99_999)));
    let manifest = std::fs::File::create(with_manifest.path().join(".deployer-manifest")).unwrap();
    project_http::store::meta::write_manifest(manifest, &lines).unwrap();
    group.bench_function("10k_files_manifest", |b| {
        b.iter(|| Deployment::build("web", "d1", with_manifest.path(), options).unwrap())
    });
    group.bench_function("10k_files_hashing", |b| {
        b.iter(|| Deployment::build("web", "d1", dir.path(), options).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
