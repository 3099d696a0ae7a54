//! Deduplicated storage and differential deploys, end to end: the real
//! binary, the real admin API, the real `deploy` command.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{send, tar_of, Root, Server};
use serde_json::Value;

const TOKEN: &str = "dedup-token-27e1";
const AUTH: (&str, &str) = ("Authorization", "Bearer dedup-token-27e1");

fn json(r: &common::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn upload(admin: SocketAddr, query: &str, tar: &[u8]) -> Value {
    let r = send(
        admin,
        "POST",
        &format!("/services/web/deployments{query}"),
        &[AUTH],
        tar,
    );
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    json(&r)
}

/// A deterministic file of `len` bytes.
fn blob(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn disk_bytes(admin: SocketAddr) -> u64 {
    let r = common::get(admin, "/services/web/deployments", &[AUTH]);
    json(&r)["diskBytes"].as_u64().unwrap()
}

#[test]
fn identical_files_are_hard_linked_and_pruning_never_breaks_another_deployment() {
    let root = Root::new();
    let config = common::public_previews_config(root.path());
    let (server, admin) =
        Server::start_with_token(root.path(), TOKEN, &["--keep", "3", "--config", &config]);
    let big: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("media/{i}.bin"), blob(i, 256 * 1024)))
        .collect();
    let site = |version: u32| {
        let index = format!("<h1>v{version}</h1>");
        let mut files: Vec<(&str, &[u8])> = big
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        files.push(("index.html", index.as_bytes()));
        tar_of(&files)
    };
    let first = upload(admin, "", &site(1));
    let one_copy = disk_bytes(admin);
    assert!(one_copy >= 8 * 256 * 1024, "{one_copy}");
    let second = upload(admin, "", &site(2));
    assert_eq!(second["linked"], 8, "{second}");
    let (a, b) = (
        first["id"].as_str().unwrap().to_string(),
        second["id"].as_str().unwrap().to_string(),
    );
    let meta = |id: &str, rel: &str| {
        std::fs::metadata(root.path().join("web").join(id).join(rel)).unwrap()
    };
    for i in 0..8 {
        let rel = format!("media/{i}.bin");
        assert_eq!(meta(&a, &rel).ino(), meta(&b, &rel).ino(), "{rel} shared");
        assert_eq!(meta(&b, &rel).nlink(), 2);
    }
    assert_ne!(meta(&a, "index.html").ino(), meta(&b, "index.html").ino());
    // Two deployments cost about one copy plus the change.
    let two = disk_bytes(admin);
    assert!(two < one_copy + 64 * 1024, "{one_copy} then {two}");

    // More deployments: the oldest are pruned (keep 3); the survivors,
    // which share every blob with the pruned ones, still serve them whole.
    for version in 3..=6 {
        upload(admin, "", &site(version));
    }
    assert!(!root.path().join("web").join(&a).exists(), "pruned");
    for (rel, data) in &big {
        assert_eq!(&server.get(&format!("/s/web/{rel}")).body, data);
    }
    let ids = common::history_ids(admin, "web", AUTH);
    assert_eq!(ids.len(), 3);
    // Deleting one (not active) leaves the others intact, previews included.
    let r = send(
        admin,
        "DELETE",
        &format!("/services/web/deployments/{}", ids[2]),
        &[AUTH],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    for (rel, data) in &big {
        assert_eq!(&server.get(&format!("/s/web@{}/{rel}", ids[1])).body, data);
        assert_eq!(&server.get(&format!("/s/web/{rel}")).body, data);
    }
    // The metrics count shared blocks once, like the history.
    let metrics = common::get(admin, "/metrics", &[AUTH]).text();
    let line = format!(
        "project_http_disk_bytes{{service=\"web\"}} {}",
        disk_bytes(admin)
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}

fn deploy_cli(server: &Server, admin: SocketAddr, dir: &Path, extra: &[&str]) -> (String, String) {
    let public = format!("http://{}", server.addr);
    let (ok, out, err) = common::deploy_web(admin, &public, TOKEN, dir, extra);
    assert!(ok, "{err}");
    (out, err)
}

/// Every file under `dir` (skipping our metadata), path → bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with(".deployer") {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_one_file_change_to_a_10_000_file_site_uploads_one_file() {
    let work = Root::new();
    let src = work.path().join("dist");
    for i in 0..10_000u32 {
        let path = src.join(format!("d{}/f{i}.txt", i % 50));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("file {i} {}", "x".repeat((i % 300) as usize))).unwrap();
    }
    std::fs::write(src.join("index.html"), "<h1>v1</h1>").unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("d0/f0.txt", src.join("alias.txt")).unwrap();

    let diff_root = Root::new();
    let (server, admin) = Server::start_with_token(diff_root.path(), TOKEN, &[]);
    let (_, err) = deploy_cli(&server, admin, &src, &[]);
    assert!(
        err.contains("10002 files,") && err.contains("(10001 sent"),
        "{err}"
    );

    std::fs::write(src.join("d7/f7.txt"), "changed").unwrap();
    let (id, err) = deploy_cli(&server, admin, &src, &[]);
    assert!(
        err.contains("10002 files,") && err.contains("(1 sent, 10000 stored once"),
        "one file sent: {err}"
    );
    assert_eq!(server.get("/s/web/d7/f7.txt").text(), "changed");
    assert_eq!(
        server.get("/s/web/d8/f8.txt").text(),
        format!("file 8 {}", "x".repeat(8))
    );

    // The same tree sent whole to another server: same id, same bytes.
    let full_root = Root::new();
    let (full, full_admin) = Server::start_with_token(full_root.path(), TOKEN, &[]);
    let (full_id, err) = deploy_cli(&full, full_admin, &src, &["--full"]);
    assert!(err.contains("10001 sent"), "{err}");
    assert_eq!(id, full_id);
    let diff_tree = tree(&diff_root.path().join("web").join(&id));
    let full_tree = tree(&full_root.path().join("web").join(&full_id));
    assert_eq!(diff_tree.len(), full_tree.len());
    assert!(
        diff_tree == full_tree,
        "differential and full deployments differ"
    );
    assert!(diff_root
        .path()
        .join("web")
        .join(&id)
        .join("empty")
        .is_dir());
}

#[test]
fn a_partial_upload_is_refused_when_content_is_missing_or_wrong() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    upload(
        admin,
        "",
        &tar_of(&[("index.html", b"one"), ("a.txt", b"shared")]),
    );
    let digest = |data: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    };
    // The manifest route answers what is missing.
    let body = serde_json::json!({"index.html": digest(b"two"), "a.txt": digest(b"shared")});
    let r = send(
        admin,
        "POST",
        "/services/web/deployments/manifest",
        &[AUTH],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["missing"], serde_json::json!([digest(b"two")]));

    let manifest = |entries: &[(&str, &[u8])]| {
        entries
            .iter()
            .map(|(p, d)| format!("{}  {p}\n", digest(d)))
            .collect::<String>()
    };
    let partial = |tar: &[u8]| {
        send(
            admin,
            "POST",
            "/services/web/deployments?partial=true",
            &[AUTH],
            tar,
        )
    };
    // Content the server never had: 422, nothing served changes.
    let lacking = manifest(&[("index.html", b"two"), ("b.txt", b"never uploaded")]);
    let tar = tar_of(&[
        (".deployer-manifest", lacking.as_bytes()),
        ("index.html", b"two"),
    ]);
    let r = partial(&tar);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("no longer has"), "{}", r.text());
    // An uploaded file that does not match its declared digest: 422.
    let wrong = manifest(&[("index.html", b"two"), ("a.txt", b"shared")]);
    let tar = tar_of(&[
        (".deployer-manifest", wrong.as_bytes()),
        ("index.html", b"tampered"),
    ]);
    let r = partial(&tar);
    assert_eq!(r.status, 422, "{}", r.text());
    // No manifest at all: 422.
    let r = partial(&tar_of(&[("index.html", b"two")]));
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(server.get("/s/web/").text(), "one");
    // A good one: only index.html travels, a.txt is linked.
    let tar = tar_of(&[
        (".deployer-manifest", wrong.as_bytes()),
        ("index.html", b"two"),
    ]);
    let answer = upload(admin, "?partial=true", &tar);
    assert_eq!(
        (answer["received"].as_u64(), answer["files"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(server.get("/s/web/").text(), "two");
    assert_eq!(server.get("/s/web/a.txt").text(), "shared");
}
