//! Soak: GETs on many paths from several clients while a deploy lands every
//! 2 s and a rollback every 3 s. Zero non-2xx/3xx answers; descriptors and
//! memory flat. CI runs 10 s; the documented full form is 60 s:
//! `PROJECT_HTTP_SOAK_SECS=60 cargo test --release --test soak -- --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{send, tar_of, Root, Server};

const FILES: usize = 50;

fn site(version: u32) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|i| {
            let size = if i % 10 == 0 { 200_000 } else { 1_000 + i * 37 };
            (
                format!("assets/f{i}.txt"),
                vec![b'a' + (version % 26) as u8; size],
            )
        })
        .chain(std::iter::once((
            "index.html".to_string(),
            format!("v{version}").into_bytes(),
        )))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    tar_of(&borrowed)
}

fn status_field(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn soak_mixed_load_with_deploys_and_rollbacks() {
    let seconds: u64 = std::env::var("PROJECT_HTTP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let root = Root::new();
    let server = Server::start(root.path(), &["--admin-token", "soak"]);
    let admin = server.admin_addr();
    let auth = [("Authorization", "Bearer soak")];
    assert_eq!(
        send(admin, "POST", "/services/web/deployments", &auth, &site(0)).status,
        201
    );
    let pid = server.child.id();
    // Warm up: every file once, so the in-memory cache is filled.
    for i in 0..FILES {
        server.get(&format!("/s/web/assets/f{i}.txt"));
    }
    // The flip watcher opens its descriptors (inotify, and the epoll and
    // eventfd of its thread) after "listening": the baseline comes after.
    server
        .stderr
        .wait_for("watching for external flips", Duration::from_secs(60))
        .expect("the flip watcher started");
    let (rss_start, fds_start) = (status_field(pid, "VmRSS:"), fds(pid));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let addr = server.addr;
    let readers: Vec<_> = (0..4u64)
        .map(|t| {
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            std::thread::spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let pick = (n >> 33) as usize % (FILES + 1);
                    let path = if pick == FILES {
                        "/s/web/".to_string()
                    } else {
                        format!("/s/web/assets/f{pick}.txt")
                    };
                    let r = common::get(addr, &path, &[]);
                    if (200..400).contains(&r.status) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("{path}: {}", r.status);
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let (mut deploys, mut rollbacks, mut admin_errors) = (0u32, 0u32, 0u32);
    let mut next_deploy = Duration::from_secs(2);
    let mut next_rollback = Duration::from_secs(3);
    while started.elapsed() < Duration::from_secs(seconds) {
        let now = started.elapsed();
        if now >= next_deploy {
            deploys += 1;
            let r = send(
                admin,
                "POST",
                "/services/web/deployments",
                &auth,
                &site(deploys),
            );
            admin_errors += u32::from(r.status != 201);
            next_deploy += Duration::from_secs(2);
        }
        if now >= next_rollback {
            rollbacks += 1;
            let r = send(admin, "POST", "/services/web/rollback", &auth, b"");
            admin_errors += u32::from(![200, 409].contains(&r.status));
            next_rollback += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_end, fds_end) = (status_field(pid, "VmRSS:"), fds(pid));
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!(
        "soak {seconds} s: {ok} GETs answered 2xx/3xx, {bad} not; {deploys} deploys, {rollbacks} rollbacks, \
         {admin_errors} admin errors; VmRSS {rss_start} → {rss_end} kB; fds {fds_start} → {fds_end}"
    );
    assert_eq!(bad, 0, "non-2xx/3xx answers during the soak");
    assert_eq!(admin_errors, 0);
    assert!(ok > 100, "the readers did run: {ok}");
    assert!(
        fds_end <= fds_start + 4,
        "descriptors grew: {fds_start} → {fds_end}"
    );
    // Flat memory: retention bounds what is held; allow allocator slack.
    assert!(
        rss_end < rss_start * 2 + 32 * 1024,
        "RSS grew: {rss_start} → {rss_end} kB"
    );
}
