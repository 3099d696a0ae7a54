//! Uploads real build tools and hand-made tarballs produce that once broke
//! the server (issue 11): a link entry reusing a name, directory symlinks,
//! and the types and charsets their files are served with. The real binary,
//! the real admin API.

mod common;

use common::{get, raw_tar, send, tar_of, Root, Server};
use tar::EntryType;

const TOKEN: &str = "odd-uploads-token-9c2";
const AUTH: (&str, &str) = ("Authorization", "Bearer odd-uploads-token-9c2");

fn upload(admin: std::net::SocketAddr, tar: &[u8]) -> common::Response {
    send(admin, "POST", "/services/web/deployments", &[AUTH], tar)
}

/// Input 5: `VERSION`, then `VERSION` as a hard link to `VERSION` gave
/// `500 writing VERSION: File exists` (and the client retried it 5 times).
/// Any entry type reusing a path is refused like two regular entries.
#[test]
fn a_link_entry_reusing_a_name_is_422_naming_it_never_500() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let index = ("index.html", EntryType::Regular, &b"<h1>x</h1>"[..], "");
    type Entry<'a> = (&'a str, EntryType, &'a [u8], &'a str);
    let cases: Vec<Vec<Entry>> = vec![
        vec![
            index,
            ("VERSION", EntryType::Regular, b"1", ""),
            ("VERSION", EntryType::Link, b"", "VERSION"),
        ],
        vec![
            index,
            ("VERSION", EntryType::Regular, b"1", ""),
            ("VERSION", EntryType::Symlink, b"", "index.html"),
        ],
        vec![
            index,
            ("VERSION", EntryType::Symlink, b"", "index.html"),
            ("VERSION", EntryType::Link, b"", "index.html"),
        ],
        vec![
            index,
            ("dir/", EntryType::Directory, b"", ""),
            ("dir", EntryType::Symlink, b"", "index.html"),
        ],
        vec![
            index,
            ("VERSION", EntryType::Regular, b"1", ""),
            ("VERSION", EntryType::Regular, b"2", ""),
        ],
    ];
    for entries in cases {
        let r = upload(admin, &raw_tar(&entries));
        assert_eq!(r.status, 422, "{entries:?}: {}", r.text());
        assert!(r.text().contains("appears twice"), "{}", r.text());
    }
    assert_eq!(server.get("/health").status, 200);
}

/// Input 6: `latest -> v2` was accepted, then every URL under it was 404.
/// Now its files are served under the link's path, as nginx does; links
/// stay inside the deployment; cycles are refused at upload.
#[test]
fn directory_symlinks_are_served_under_the_link_path_and_cycles_refused() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let tar = raw_tar(&[
        ("index.html", EntryType::Regular, b"<h1>top</h1>", ""),
        ("v2/app.js", EntryType::Regular, b"console.log(2)", ""),
        ("v2/index.html", EntryType::Regular, b"<h1>v2</h1>", ""),
        ("latest", EntryType::Symlink, b"", "v2"),
        ("docs/current", EntryType::Symlink, b"", "../v2"),
    ]);
    let r = upload(admin, &tar);
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.get("/s/web/latest/app.js");
    assert_eq!((r.status, r.text().as_str()), (200, "console.log(2)"));
    assert_eq!(
        r.header("etag"),
        server.get("/s/web/v2/app.js").header("etag")
    );
    let r = server.get("/s/web/latest/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>v2</h1>"));
    let r = server.get("/s/web/latest");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/s/web/latest/"))
    );
    assert_eq!(server.get("/s/web/docs/current/app.js").status, 200);

    for cycle in [
        vec![
            ("index.html", EntryType::Regular, &b"x"[..], ""),
            ("docs/up", EntryType::Symlink, &b""[..], ".."),
        ],
        vec![
            ("index.html", EntryType::Regular, &b"x"[..], ""),
            ("a/b/", EntryType::Directory, &b""[..], ""),
            ("a/b/loop", EntryType::Symlink, &b""[..], "../../a"),
        ],
    ] {
        let r = upload(admin, &raw_tar(&cycle));
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("symlink"), "{}", r.text());
    }
    // The refused uploads changed nothing.
    assert_eq!(server.get("/s/web/latest/app.js").status, 200);
}

/// Inputs 7 and 8 over HTTP: types of what bundlers emit, and a page's own
/// charset declaration.
#[test]
fn types_and_declared_charsets_over_http() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let latin1: &[u8] = b"<!doctype html><meta charset=\"iso-8859-1\"><p>caf\xe9</p>";
    let tar = tar_of(&[
        ("index.html", b"<!doctype html><p>plain</p>"),
        ("latin1.html", latin1),
        ("lib.cjs", b"module.exports = 1;"),
        ("app.mjs", b"export default 1;"),
        ("app.js.map", b"{\"version\":3}"),
        ("site.webmanifest", b"{}"),
        (
            "feed.xml",
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss/>",
        ),
    ]);
    let r = upload(admin, &tar);
    assert_eq!(r.status, 201, "{}", r.text());
    for (path, expected) in [
        ("/s/web/", "text/html; charset=utf-8"),
        ("/s/web/latin1.html", "text/html; charset=iso-8859-1"),
        ("/s/web/lib.cjs", "text/javascript; charset=utf-8"),
        ("/s/web/app.mjs", "text/javascript; charset=utf-8"),
        ("/s/web/app.js.map", "application/json; charset=utf-8"),
        (
            "/s/web/site.webmanifest",
            "application/manifest+json; charset=utf-8",
        ),
        ("/s/web/feed.xml", "text/xml; charset=iso-8859-1"),
    ] {
        let r = get(server.addr, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(expected), "{path}");
    }
    assert_eq!(get(server.addr, "/s/web/latin1.html", &[]).body, latin1);
}

/// The deploy client fetches a file through each directory symlink of the
/// tree it uploaded: a server that accepted `latest -> v2` and then answered
/// 404 under `latest/` failed this verification (and rolled back).
#[test]
fn deploy_verification_fetches_through_directory_symlinks() {
    let work = Root::new();
    let (server, admin) = Server::start_with_token(&work.path().join("data"), TOKEN, &[]);
    let public = format!("http://{}", server.addr);
    let dir = work.path().join("site");
    std::fs::create_dir_all(dir.join("v2")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>top</h1>").unwrap();
    std::fs::write(dir.join("v2/app.js"), "console.log(2)").unwrap();
    std::os::unix::fs::symlink("v2", dir.join("latest")).unwrap();
    let (ok, out, err) = common::deploy_web(admin, &public, TOKEN, &dir, &[]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("verified 2 path(s)"), "{err}");
    assert_eq!(server.get("/s/web/latest/app.js").text(), "console.log(2)");
}

/// A differential upload whose manifest names a path the upload itself
/// took with a link or a directory, or a path through a file: the client's
/// fault, 422 (it was 500, an I/O error, while completing the upload).
#[test]
fn a_differential_manifest_colliding_with_the_upload_is_422() {
    let root = Root::new();
    let (server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let r = upload(
        admin,
        &tar_of(&[("index.html", b"one"), ("a.txt", b"shared")]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let digest = |data: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    };
    let manifest = |entries: &[(&str, &[u8])]| {
        entries
            .iter()
            .map(|(p, d)| format!("{}  {p}\n", digest(d)))
            .collect::<String>()
    };
    type Entry<'a> = (&'a str, EntryType, &'a [u8], &'a str);
    let cases: Vec<(String, Vec<Entry>)> = vec![
        // a.txt is declared (to be linked in) and uploaded as a symlink.
        (
            manifest(&[("index.html", b"two"), ("a.txt", b"shared")]),
            vec![
                ("index.html", EntryType::Regular, b"two", ""),
                ("a.txt", EntryType::Symlink, b"", "index.html"),
            ],
        ),
        // "dir" is declared as a file and uploaded as a directory.
        (
            manifest(&[("index.html", b"two"), ("dir", b"shared")]),
            vec![
                ("index.html", EntryType::Regular, b"two", ""),
                ("dir/", EntryType::Directory, b"", ""),
            ],
        ),
        // A declared path through an uploaded file.
        (
            manifest(&[("index.html", b"two"), ("index.html/a.txt", b"shared")]),
            vec![("index.html", EntryType::Regular, b"two", "")],
        ),
    ];
    for (declared, mut entries) in cases {
        entries.insert(
            0,
            (
                ".deployer-manifest",
                EntryType::Regular,
                declared.as_bytes(),
                "",
            ),
        );
        let r = send(
            admin,
            "POST",
            "/services/web/deployments?partial=true",
            &[AUTH],
            &raw_tar(&entries),
        );
        assert_eq!(r.status, 422, "{declared}: {}", r.text());
    }
    assert_eq!(server.get("/s/web/").text(), "one");
}
