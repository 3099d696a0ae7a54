//! Faults: SIGKILL at random moments of uploads, a deployment deleted from
//! under the running server, and concurrent uploads, flips and rollbacks.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{entries, send, tar_of, Root, Server};
use serde_json::Value;

const TOKEN: &str = "faults-token";
const AUTH: (&str, &str) = ("Authorization", "Bearer faults-token");

fn start(root: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    Server::start_with_token(root, TOKEN, extra)
}

/// A version of the site: index.html names the version, data.bin is large
/// and derived from it, so a mix of versions is detectable.
fn version(n: u32, big: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..big as u32)
        .map(|i| ((i * 31 + n) % 253) as u8)
        .collect();
    tar_of(&[
        ("index.html", format!("version {n}").as_bytes()),
        ("data.bin", &data),
    ])
}

fn upload(admin: SocketAddr, service: &str, body: &[u8]) -> common::Response {
    send(
        admin,
        "POST",
        &format!("/services/{service}/deployments"),
        &[AUTH],
        body,
    )
}

/// A tiny deterministic generator (xorshift), seeded from the clock and
/// printed, so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Rng {
        let seed = std::env::var("PROJECT_HTTP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("random seed {seed} (set PROJECT_HTTP_TEST_SEED to replay)");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Checks the served site is one whole version: index.html and data.bin agree.
fn served_version(server: &Server, big: usize) -> u32 {
    let index = server.get("/s/web/").text();
    let n: u32 = index
        .strip_prefix("version ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a whole deployment: index.html is {index:?}"));
    let data = server.get("/s/web/data.bin").body;
    let expected: Vec<u8> = (0..big as u32)
        .map(|i| ((i * 31 + n) % 253) as u8)
        .collect();
    assert!(data == expected, "data.bin is not version {n}'s");
    n
}

#[test]
fn sigkill_at_random_moments_of_uploads_never_leaves_a_partial_site() {
    const BIG: usize = 2_000_000;
    let root = Root::new();
    let mut rng = Rng::from_clock();
    let (server, admin) = start(root.path(), &[]);
    assert_eq!(upload(admin, "web", &version(0, BIG)).status, 201);
    drop(server);
    let mut completed = 0;
    for round in 1..=20u32 {
        let (mut server, admin) = start(root.path(), &[]);
        let before = served_version(&server, BIG);
        let body = version(round, BIG);
        let uploader = std::thread::spawn(move || {
            let Ok(mut stream) = TcpStream::connect(admin) else {
                return;
            };
            let head = format!(
                "POST /services/web/deployments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            for chunk in body.chunks(64 * 1024) {
                if stream.write_all(chunk).is_err() {
                    return;
                }
            }
            let mut answer = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
        });
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        server.signal(libc::SIGKILL);
        server.wait_exit(Duration::from_secs(5)).expect("killed");
        let _ = uploader.join();
        drop(server);

        let (server, _admin) = start(root.path(), &[]);
        let after = served_version(&server, BIG);
        assert!(
            after == before || after == round,
            "round {round}: served version {after}, expected {before} or {round}"
        );
        if after == round {
            completed += 1;
        }
        let leftovers: Vec<String> = entries(&root.path().join("web"))
            .into_iter()
            .filter(|n| n.ends_with(".tmp") || n.starts_with("current.tmp"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: left {leftovers:?}");
    }
    eprintln!(
        "20 kills: {completed} uploads had completed, {} had not",
        20 - completed
    );
}

#[test]
fn a_deployment_deleted_under_the_server_gives_errors_not_crashes() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    let r = upload(admin, "web", &version(1, 300_000));
    let id = serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(root.path().join("web").join(&id)).unwrap();
    let big = server.get("/s/web/data.bin");
    assert!([404, 500].contains(&big.status), "{}", big.status);
    let small = server.get("/s/web/index.html");
    assert!([404, 500].contains(&small.status), "{}", small.status);
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(
        upload(admin, "web", &version(2, 300_000)).status,
        201,
        "the next deploy works"
    );
    assert_eq!(served_version(&server, 300_000), 2);
    let errors = server.stderr.all().join("\n");
    assert!(errors.contains("cannot read indexed file"), "{errors}");
}

/// 20 uploads at once to one service and 20 to 20 services: all succeed,
/// exactly one is active per service, retention holds, nothing is left over.
#[test]
fn concurrent_uploads_keep_history_consistent() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    let threads: Vec<_> = (0..40u32)
        .map(|i| {
            std::thread::spawn(move || {
                let service = if i < 20 {
                    "shared".to_string()
                } else {
                    format!("svc{i}")
                };
                let r = upload(
                    admin,
                    &service,
                    &tar_of(&[("index.html", format!("upload {i}").as_bytes())]),
                );
                (i, service, r.status, r.text())
            })
        })
        .collect();
    for t in threads {
        let (i, service, status, text) = t.join().unwrap();
        assert_eq!(status, 201, "upload {i} to {service}: {text}");
    }
    let history: Value =
        serde_json::from_slice(&common::get(admin, "/services/shared/deployments", &[AUTH]).body)
            .unwrap();
    let list = history["deployments"].as_array().unwrap();
    assert_eq!(list.len(), 5, "retention keeps 5: {history}");
    assert_eq!(list.iter().filter(|d| d["active"] == true).count(), 1);
    let current = history["current"].as_str().unwrap();
    let served = server.get("/s/shared/").text();
    let expected =
        std::fs::read_to_string(root.path().join("shared").join(current).join("index.html"))
            .unwrap();
    assert_eq!(served, expected, "the server serves what current names");
    for i in 20..40 {
        assert_eq!(
            server.get(&format!("/s/svc{i}/")).text(),
            format!("upload {i}")
        );
    }
    let leftovers: Vec<String> = entries(&root.path().join("shared"))
        .into_iter()
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Activations and rollbacks racing with uploads: every answer is a clean
/// status, and afterwards current, the served bytes and the history agree.
#[test]
fn flips_and_rollbacks_racing_with_uploads_stay_consistent() {
    let root = Root::new();
    let (server, admin) = start(root.path(), &[]);
    for i in 0..3 {
        assert_eq!(
            upload(
                admin,
                "web",
                &tar_of(&[("index.html", format!("seed {i}").as_bytes())])
            )
            .status,
            201
        );
    }
    let unexpected = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4u32 {
        let unexpected = unexpected.clone();
        threads.push(std::thread::spawn(move || {
            for k in 0..10u32 {
                let r = match (t, k % 3) {
                    (0 | 1, _) => upload(
                        admin,
                        "web",
                        &tar_of(&[("index.html", format!("race {t}-{k}").as_bytes())]),
                    ),
                    (_, 0) => send(admin, "POST", "/services/web/rollback", &[AUTH], b""),
                    _ => {
                        let ids = common::history_ids(admin, "web", AUTH);
                        let id = &ids[(k as usize) % ids.len()];
                        send(
                            admin,
                            "POST",
                            "/services/web/activate",
                            &[AUTH],
                            format!("{{\"id\":\"{id}\"}}").as_bytes(),
                        )
                    }
                };
                // 404: activating an id pruned meanwhile; 409: nothing older to roll back to.
                if ![200, 201, 404, 409].contains(&r.status) {
                    eprintln!("unexpected {}: {}", r.status, r.text());
                    unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(unexpected.load(Ordering::Relaxed), 0);
    let history: Value =
        serde_json::from_slice(&common::get(admin, "/services/web/deployments", &[AUTH]).body)
            .unwrap();
    let current = history["current"]
        .as_str()
        .expect("a current deployment")
        .to_string();
    let list = history["deployments"].as_array().unwrap();
    assert!(list.len() <= 6, "retention: {}", list.len());
    assert_eq!(list.iter().filter(|d| d["active"] == true).count(), 1);
    let on_disk =
        std::fs::read_to_string(root.path().join("web").join(&current).join("index.html")).unwrap();
    assert_eq!(server.get("/s/web/").text(), on_disk);
    assert!(!entries(&root.path().join("web"))
        .iter()
        .any(|n| n.contains(".tmp")));
}
