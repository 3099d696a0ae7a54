//! Host routing without a config file (`--host-suffix`,
//! `PROJECT_HTTP_HOST_SUFFIX`) and previews on their own host
//! (`<id>--<service>.<suffix>`, src/serve/host_routing.rs): the right
//! deployment's bytes, signed like the path form, 404 for what no DNS label
//! can name, and the links the API, the dashboard and the CLI hand out.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;

const SUFFIX: &str = "p1.example.com";
const TOKEN: &str = "host-routing-test-token";

/// GET `path` with `Host: host` (and extra header lines).
fn at(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    raw(addr, text.as_bytes())
}

/// `web`: v1 current, v42 retained (not current), V7 (capitals) retained;
/// `my--site`: current s1.
fn sites() -> Root {
    let root = Root::new();
    root.deployment(
        "web",
        "v1",
        &[("index.html", b"<h1>v1</h1>"), ("app.js", b"js v1")],
    );
    root.deployment(
        "web",
        "v42",
        &[
            ("index.html", b"<h1>v42</h1>"),
            ("app.js", b"js v42"),
            ("docs/index.html", b"<h1>v42 docs</h1>"),
        ],
    );
    root.deployment("web", "V7", &[("index.html", b"<h1>V7</h1>")]);
    root.flip("web", "v1");
    root.deployment("my--site", "s1", &[("index.html", b"<h1>my--site</h1>")]);
    root.flip("my--site", "s1");
    root
}

fn host(label: &str) -> String {
    format!("{label}.{SUFFIX}")
}

#[test]
fn host_suffix_by_flag_and_by_env_without_a_config_file() {
    let root = sites();
    let by_flag = Server::start(root.path(), &["--host-suffix", SUFFIX]);
    let by_env = Server::start_with_env(root.path(), &[], &[("PROJECT_HTTP_HOST_SUFFIX", SUFFIX)]);
    for server in [&by_flag, &by_env] {
        let line = server.stderr.wait_for("listening", Duration::from_secs(1));
        assert_eq!(
            line.and_then(|l| field(&l, "host_suffix")).as_deref(),
            Some(SUFFIX),
            "the startup line names the suffix"
        );
        let r = at(server.addr, &host("web"), "/", &[]);
        assert_eq!((r.status, r.text().as_str()), (200, "<h1>v1</h1>"));
        assert_eq!(
            at(server.addr, &host("web"), "/app.js", &[]).text(),
            "js v1"
        );
        assert_eq!(
            at(server.addr, SUFFIX, "/s/web/", &[]).text(),
            "<h1>v1</h1>",
            "the path form still answers on the bare suffix"
        );
    }
    // The flag beats the environment.
    let both = Server::start_with_env(
        root.path(),
        &["--host-suffix", "flag.test"],
        &[("PROJECT_HTTP_HOST_SUFFIX", "env.test")],
    );
    assert_eq!(
        at(both.addr, "web.flag.test", "/", &[]).text(),
        "<h1>v1</h1>"
    );
    assert_eq!(at(both.addr, "web.env.test", "/", &[]).status, 404);

    // The environment beats the file, and an empty value turns routing off.
    let config = root.path().join("suffix.toml");
    std::fs::write(&config, format!("host_suffix = \"{SUFFIX}\"\n")).unwrap();
    let config = config.to_str().unwrap();
    let from_file = Server::start(root.path(), &["--config", config]);
    assert_eq!(
        at(from_file.addr, &host("web"), "/", &[]).text(),
        "<h1>v1</h1>"
    );
    let off = Server::start_with_env(
        root.path(),
        &["--config", config],
        &[("PROJECT_HTTP_HOST_SUFFIX", "")],
    );
    let r = at(off.addr, &host("web"), "/", &[]);
    assert_eq!(r.status, 404, "host routing off: / is the server's own 404");
    assert!(r.text().contains("/s/<service>/"), "{}", r.text());

    // Validated as the file's setting is: a wildcard is refused at start.
    for bad in [
        "*.p1.example.com",
        "https://p1.example.com",
        ".p1.example.com",
    ] {
        let out = Command::new(binary())
            .args(["serve", "--root"])
            .arg(root.path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("PROJECT_HTTP_HOST_SUFFIX", bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            err.contains("host_suffix") && err.contains("bare domain"),
            "{bad}: {err}"
        );
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with two, is a
/// 400 (on the fast path's URLs too); §3.2.2: an absolute-form target
/// names the host, and `Host` is ignored.
#[test]
fn the_host_comes_from_one_host_field_or_the_absolute_target() {
    let root = sites();
    let server = Server::start(root.path(), &["--host-suffix", SUFFIX]);
    for head in [
        "GET /s/web/app.js HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        "GET /s/web/app.js HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_string(),
        format!(
            "GET / HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            host("web")
        ),
    ] {
        let r = raw(server.addr, head.as_bytes());
        assert_eq!(r.status, 400, "{head:?}: {}", r.text());
        assert!(r.text().contains("Host"), "{}", r.text());
    }
    // A value that is not host[:port], two fields in HTTP/1.0, userinfo in
    // the target: 400 too.
    for head in [
        "GET /s/web/app.js HTTP/1.1\r\nHost: a b@@/x\r\nConnection: close\r\n\r\n",
        "GET /s/web/app.js HTTP/1.1\r\nHost: a.test:99999\r\nConnection: close\r\n\r\n",
        "GET /s/web/app.js HTTP/1.1\r\nHost: a.test:abc\r\nConnection: close\r\n\r\n",
        "GET /s/web/app.js HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET http://u:p@web.p1.example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(server.addr, head.as_bytes());
        assert_eq!(r.status, 400, "{head:?}: {}", r.text());
    }
    // HTTP/1.0 without Host, and an empty Host (a target without an
    // authority, RFC 9112 §3.2), are answered.
    let r = raw(server.addr, b"GET /s/web/app.js HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "js v1"));
    let r = raw(
        server.addr,
        b"GET /s/web/app.js HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "js v1"));
    // Keep-alive on the fast path's URL: declined, answered 400 by hyper.
    let r = raw(
        server.addr,
        b"GET /s/web/app.js HTTP/1.1\r\nConnection: keep-alive\r\n\r\n\
          GET /s/web/app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let absolute = |target: String, host_field: String| {
        raw(
            server.addr,
            format!("GET {target} HTTP/1.1\r\nHost: {host_field}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let r = absolute(format!("http://{}/app.js", host("web")), host("my--site"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "js v1"),
        "by the target"
    );
    let r = absolute(format!("http://{}/", host("my--site")), host("web"));
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>my--site</h1>"));
}

#[test]
fn preview_subdomains_serve_the_deployment_and_refuse_what_no_label_names() {
    let root = sites();
    let dir = tempfile::tempdir().unwrap();
    let config = public_previews_config(dir.path());
    let server = Server::start(root.path(), &["--config", &config, "--host-suffix", SUFFIX]);
    let addr = server.addr;

    let r = at(addr, &host("v42--web"), "/", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>v42</h1>"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-robots-tag"), Some("noindex"));
    assert_eq!(at(addr, &host("v42--web"), "/app.js", &[]).text(), "js v42");
    // The site's root is the host's `/`: a directory redirects there.
    let r = at(addr, &host("v42--web"), "/docs", &[]);
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
    assert_eq!(
        at(addr, &host("v42--web"), "/docs/", &[]).text(),
        "<h1>v42 docs</h1>"
    );
    // Host names are case-insensitive; the current deployment by its id too.
    assert_eq!(
        at(addr, "V42--WEB.P1.Example.COM:443", "/", &[]).text(),
        "<h1>v42</h1>"
    );
    assert_eq!(at(addr, &host("v1--web"), "/", &[]).text(), "<h1>v1</h1>");
    assert_eq!(at(addr, &host("web"), "/", &[]).text(), "<h1>v1</h1>");
    // A served service whose name has `--` keeps its own subdomain.
    assert_eq!(
        at(addr, &host("my--site"), "/", &[]).text(),
        "<h1>my--site</h1>"
    );

    // 404, never 4xx-other or 5xx, for everything else.
    let long_id = "i".repeat(60);
    root.deployment("web", &long_id, &[("index.html", b"long")]);
    assert_eq!(
        common::get(addr, &format!("/s/web@{long_id}/"), &[]).text(),
        "long",
        "the path form reaches it"
    );
    let too_long = format!("{long_id}--web"); // 65 characters
    let r = at(addr, &host(&too_long), "/", &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("63"), "{}", r.text());
    for label in [
        "nosuch--web",
        "v42--nosuch",
        "--web",
        "v42--",
        "v7--web", // the id is `V7`: a host name cannot say so
        "a.b",
        "a_b--web",
        "nosuch",
    ] {
        let r = at(addr, &host(label), "/", &[]);
        assert_eq!(r.status, 404, "{label}: {}", r.text());
    }
    assert_eq!(common::get(addr, "/s/web@V7/", &[]).text(), "<h1>V7</h1>");

    // previews = "off": the subdomain form is off too.
    let off = root.path().join("off.toml");
    std::fs::write(&off, "previews = \"off\"\n").unwrap();
    let server = Server::start(
        root.path(),
        &["--config", off.to_str().unwrap(), "--host-suffix", SUFFIX],
    );
    assert_eq!(at(server.addr, &host("v42--web"), "/", &[]).status, 404);
    assert_eq!(at(server.addr, &host("web"), "/", &[]).status, 200);
}

#[test]
fn signed_preview_subdomains_need_the_signature_and_links_name_them() {
    let root = Root::new();
    let config = root.path().join("public-url.toml");
    std::fs::write(&config, format!("public_url = \"https://{SUFFIX}/\"\n")).unwrap();
    let (server, admin) = Server::start_with_token(
        root.path(),
        TOKEN,
        &[
            "--host-suffix",
            SUFFIX,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let auth = ("Authorization", format!("Bearer {TOKEN}"));
    let auth = (auth.0, auth.1.as_str());
    let upload = |query: &str, files: &[(&str, &[u8])]| {
        let r = send(
            admin,
            "POST",
            &format!("/services/web/deployments{query}"),
            &[auth],
            &tar_of(files),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
    };
    upload("?id=live", &[("index.html", b"<h1>live</h1>")]);
    let answer = upload(
        "?id=v42&activate=false",
        &[("index.html", b"<h1>staged</h1>"), ("app.js", b"js")],
    );
    assert_eq!(answer["previewHost"], "v42--web.p1.example.com");
    let path = answer["preview"].as_str().unwrap();
    let host_path = answer["previewHostPath"].as_str().unwrap();
    assert!(host_path.starts_with("/?exp="), "{host_path}");
    assert_eq!(&path[path.find('?').unwrap()..], &host_path[1..]);

    let preview = host("v42--web");
    let addr = server.addr;
    assert_eq!(at(addr, &preview, "/", &[]).status, 404, "unsigned");
    assert_eq!(at(addr, &preview, "/app.js", &[]).status, 404, "unsigned");
    let r = at(addr, &preview, host_path, &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>staged</h1>"));
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("Path=/;") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = at(addr, &preview, "/app.js", &[("Cookie", &pair)]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "js"),
        "the cookie carries the signature"
    );
    // The signature is for v42 of web only.
    assert_eq!(at(addr, &host("live--web"), host_path, &[]).status, 404);
    let tampered = host_path.replacen("exp=", "exp=1", 1);
    assert_eq!(at(addr, &preview, &tampered, &[]).status, 404);
    // The current site needs none.
    assert_eq!(at(addr, &host("web"), "/", &[]).text(), "<h1>live</h1>");

    // The API's link names the host too.
    let r = send(
        admin,
        "POST",
        "/services/web/deployments/v42/preview",
        &[auth, ("Content-Type", "application/json")],
        b"{}",
    );
    let link: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(link["host"], "v42--web.p1.example.com");
    let link_path = link["hostPath"].as_str().unwrap();
    assert_eq!(at(addr, &preview, link_path, &[]).status, 200);

    // The dashboard's Preview button opens the subdomain, with the scheme
    // and port of `public_url` (login first).
    let login = send(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}").as_bytes(),
    );
    let session = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session: {} {}", login.status, login.text()))
        .to_string();
    let page = common::get(admin, "/", &[("Cookie", &session)]).text();
    let href = page
        .split("href=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.contains("v42--web."))
        .unwrap_or_else(|| panic!("no subdomain preview link in the dashboard"))
        .replace("&amp;", "&");
    assert!(
        href.starts_with(&format!("https://v42--web.{SUFFIX}/?exp=")),
        "{href}"
    );
    let href_path = &href[href.find("/?").unwrap()..];
    assert_eq!(at(addr, &preview, href_path, &[]).text(), "<h1>staged</h1>");

    // `deploy --no-activate` prints the subdomain URL first, the path form next.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>cli</h1>").unwrap();
    let public = format!("https://{SUFFIX}");
    let (ok, _, err) = deploy_web(
        admin,
        &public,
        TOKEN,
        site.path(),
        &["--no-activate", "--id", "review"],
    );
    assert!(ok, "{err}");
    let url = err
        .lines()
        .find_map(|l| l.strip_prefix("preview: "))
        .unwrap_or_else(|| panic!("no preview line in {err}"));
    let expected = format!("https://review--web.{SUFFIX}/?exp=");
    assert!(url.starts_with(&expected), "{url}");
    let r = at(addr, &host("review--web"), &url[expected.len() - 6..], &[]);
    assert_eq!(r.text(), "<h1>cli</h1>");
    let path_form = err
        .lines()
        .find_map(|l| l.strip_prefix("preview (path form): "))
        .unwrap_or_else(|| panic!("no path form in {err}"));
    assert!(
        path_form.starts_with(&format!("{public}/s/web@review/?exp=")),
        "{path_form}"
    );

    // An id no host name can carry gets only the path form.
    let answer = upload(
        "?id=Caps&activate=false",
        &[("index.html", b"<h1>caps</h1>")],
    );
    assert!(answer["previewHost"].is_null(), "{answer}");
    assert!(answer["previewHostPath"].is_null(), "{answer}");
    assert!(answer["preview"]
        .as_str()
        .unwrap()
        .starts_with("/s/web@Caps/?exp="));
}
