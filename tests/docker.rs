//! ensure / status / migrate against the real Docker engine.
//!
//! These tests build the image (`scripts/build-image.sh project-http:test`)
//! once per run, then drive the real binary. They skip with a loud message
//! when no engine is reachable, and fail instead when
//! `PROJECT_HTTP_REQUIRE_DOCKER=1` (as `.ci/run` sets). Every test removes
//! what it created, by name and label: never other containers.

mod common;

use std::collections::HashMap;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::docker::{build_image, docker, docker_ok, engine_ready, run};
use common::tar_of;
use serde_json::Value;

const IMAGE: &str = "project-http:test";

/// True when the Docker tests can run (the image built); panics when they
/// must and cannot.
fn docker_ready() -> bool {
    if !engine_ready("Docker tests") {
        return false;
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(|| build_image(IMAGE)) {
        panic!("cannot build the image {IMAGE}: {e}");
    }
    true
}

/// A project id, its network, and cleanup of everything labelled with it.
struct TestProject {
    id: String,
    network: String,
    /// Anonymous volumes of containers the test created (the image declares
    /// VOLUME /srv/static), removed at the end.
    volumes: std::cell::RefCell<Vec<String>>,
}

impl TestProject {
    fn new(tag: &str) -> TestProject {
        let id = format!("t{}{tag}", std::process::id());
        TestProject {
            network: format!("ph-test-{id}"),
            id,
            volumes: Default::default(),
        }
    }

    /// Notes a container's volumes for cleanup.
    fn track_volumes(&self, container: &str) {
        let c = self.inspect(container);
        for m in c["Mounts"].as_array().into_iter().flatten() {
            if let Some(name) = m["Name"].as_str() {
                self.volumes.borrow_mut().push(name.to_string());
            }
        }
    }

    fn container(&self) -> String {
        format!("project-http-{}", self.id)
    }

    fn inspect(&self, name: &str) -> Value {
        let text = docker_ok(&["inspect", name]);
        serde_json::from_str::<Value>(&text).expect("inspect JSON")[0].clone()
    }

    fn ip(&self) -> String {
        let c = self.inspect(&self.container());
        c["NetworkSettings"]["Networks"][&self.network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn token(&self) -> String {
        let c = self.inspect(&self.container());
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| {
                e.as_str()
                    .unwrap()
                    .strip_prefix("PROJECT_HTTP_ADMIN_TOKEN=")
                    .map(str::to_string)
            })
            .expect("token in env")
    }

    fn ensure(&self, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec![
            "ensure",
            "--project",
            &self.id,
            "--host",
            "site.example.test",
            "--network",
            &self.network,
            "--image",
            IMAGE,
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// `ensure` as [`TestProject::ensure`] runs it, with
    /// `PROJECT_HTTP_ADMIN_TOKEN` exported in its environment.
    fn ensure_with_exported_token(&self, token: &str) -> (bool, String, String) {
        let output = Command::new(common::binary())
            .args([
                "ensure",
                "--project",
                &self.id,
                "--host",
                "site.example.test",
                "--network",
                &self.network,
                "--image",
                IMAGE,
            ])
            .env("PROJECT_HTTP_ADMIN_TOKEN", token)
            .output()
            .expect("project-http");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Waits until the container reports healthy.
    /// The file I/O backend the container's server logged at startup.
    fn io_backend(&self) -> String {
        backend_of(&self.container())
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let c = self.inspect(&self.container());
            let health = c["State"]["Health"]["Status"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if health == "healthy" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container never became healthy: {}",
                c["State"]
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// GETs a public path over the container's IP, retrying while it starts.
    fn get(&self, path: &str) -> common::Response {
        let addr = format!("{}:8080", self.ip())
            .parse()
            .expect("container address");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
                return common::get(addr, path, &[]);
            }
            assert!(
                Instant::now() < deadline,
                "container not answering on {addr}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let filter = format!("label=deployer.project={}", self.id);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker(&["rm", "-f", "-v", id]);
        }
        docker(&["rm", "-f", "-v", &self.container()]);
        for volume in self.volumes.borrow().iter() {
            docker(&["volume", "rm", "-f", volume]);
        }
        docker(&["volume", "rm", "-f", &format!("project-{}-static", self.id)]);
        docker(&["network", "rm", &self.network]);
    }
}

/// The file I/O backend a container's server logged at startup.
fn backend_of(container: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = logs
        .lines()
        .rev()
        .find(|l| l.contains("file I/O backend"))
        .unwrap_or_else(|| panic!("no backend line in the logs:\n{logs}"));
    for backend in ["uring", "epoll"] {
        if line.contains(&format!("io_backend=\"{backend}\""))
            || line.contains(&format!("\"io_backend\":\"{backend}\""))
        {
            return backend.to_string();
        }
    }
    panic!("no backend named in {line}");
}

#[test]
fn ensure_creates_serves_is_idempotent_and_repairs_drift() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("e");
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created"), "{out}");
    assert!(out.contains("admin token (generated"), "{out}");
    let volume = format!("project-{}-static", project.id);
    assert_eq!(
        docker_ok(&["volume", "inspect", &volume, "--format", "{{.Name}}"]),
        volume
    );
    docker_ok(&["network", "inspect", &project.network]);

    let c = project.inspect(&project.container());
    let labels: HashMap<String, String> =
        serde_json::from_value(c["Config"]["Labels"].clone()).unwrap();
    let router = format!("project-{}", project.id);
    let expected: HashMap<String, String> = [
        ("traefik.enable", "true".to_string()),
        ("traefik.docker.network", project.network.clone()),
        (
            &*format!("traefik.http.routers.{router}.entrypoints"),
            "web".to_string(),
        ),
        (
            &*format!("traefik.http.routers.{router}.rule"),
            "Host(`site.example.test`)".to_string(),
        ),
        (
            &*format!("traefik.http.services.{router}.loadbalancer.server.port"),
            "8080".to_string(),
        ),
        ("deployer.managed", "true".to_string()),
        ("deployer.project", project.id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(labels, expected, "labels exactly as specified");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    // Logs bounded by default: json-file, 10m × 3.
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(c["HostConfig"]["LogConfig"]["Config"]["max-size"], "10m");
    assert_eq!(c["HostConfig"]["LogConfig"]["Config"]["max-file"], "3");
    assert_eq!(c["HostConfig"]["Memory"], 256 * 1024 * 1024);
    assert_eq!(c["Config"]["User"], "101:101");
    let bindings = &c["HostConfig"]["PortBindings"];
    assert!(
        bindings.is_null() || bindings.as_object().is_some_and(|m| m.is_empty()),
        "no host ports: {bindings}"
    );
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["Name"] == volume.as_str() && m["Destination"] == "/srv/static"));
    project.wait_healthy();

    // Deploy to the admin port on the container's address; served publicly.
    let site = std::env::temp_dir().join(format!("ph-docker-site-{}", project.id));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>in a container</h1>").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(site.join("big.bin"), &big).unwrap();
    let admin = format!("http://{}:9080", project.ip());
    let token = project.token();
    let (ok, id, err) = run(&[
        "deploy",
        "--admin",
        &admin,
        "--token",
        &token,
        "--service",
        "web",
        site.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(project.get("/s/web/").text(), "<h1>in a container</h1>");
    assert_eq!(project.get("/s/web/big.bin").body, big);
    let _ = std::fs::remove_dir_all(&site);
    // Docker's default seccomp profile blocks io_uring from Engine 25 on
    // (moby #46762); older engines allow it. The server takes what it gets.
    let engine = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    let major: u32 = engine.split('.').next().unwrap().parse().unwrap();
    let expected = if major >= 25 { "epoll" } else { "uring" };
    assert_eq!(project.io_backend(), expected, "engine {engine}");

    // status, as a table and as JSON.
    let (ok, table, err) = run(&["status", "--project", &project.id]);
    assert!(ok, "{err}");
    assert!(
        table.contains("healthy") && table.contains(id.trim()),
        "{table}"
    );
    let (ok, json, _) = run(&["status", "--project", &project.id, "--json"]);
    assert!(ok);
    let status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["services"][0]["name"], "web");
    assert_eq!(status["services"][0]["current"], id.trim());
    assert!(status["services"][0]["disk_bytes"].as_u64().unwrap() > 0);
    // The router's URL per service, the engine's figures, logs, disk.
    assert_eq!(
        status["routers"][0]["urls"][0],
        "http://site.example.test/s/web/"
    );
    assert_eq!(status["routers"][0]["entrypoints"][0], "web");
    assert_eq!(
        status["resources"]["memory_limit_bytes"],
        256 * 1024 * 1024,
        "{json}"
    );
    assert!(status["resources"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(status["resources"]["network_rx_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["logs"]["options"]["max-size"], "10m");
    assert_eq!(status["logs"]["access_log"], "on");
    assert!(status["volume_free_bytes"].as_u64().unwrap() > 0, "{json}");
    assert!(
        table.contains("http://site.example.test/s/web/") && table.contains("cpu "),
        "{table}"
    );

    // Second run: nothing to do.
    let before = c["Id"].as_str().unwrap().to_string();
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(
        project.inspect(&project.container())["Id"]
            .as_str()
            .unwrap(),
        before
    );

    // Drift: recreated, volume kept, files still served, token kept; the
    // log options and the access-log mode are part of the drift check.
    let (ok, out, err) = project.ensure(&[
        "--memory-mib",
        "300",
        "--log-opt",
        "max-size=20m",
        "--access-log",
        "off",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recreated")
            && out.contains("memory")
            && out.contains("log options differ")
            && out.contains("environment differs"),
        "{out}"
    );
    let after = project.inspect(&project.container());
    assert_ne!(after["Id"].as_str().unwrap(), before);
    assert_eq!(after["HostConfig"]["Memory"], 300 * 1024 * 1024);
    assert_eq!(
        after["HostConfig"]["LogConfig"]["Config"]["max-size"],
        "20m"
    );
    let env = after["Config"]["Env"].to_string();
    assert!(env.contains("PROJECT_HTTP_ACCESS_LOG=off"), "{env}");
    assert_eq!(project.token(), token);
    assert_eq!(project.get("/s/web/").text(), "<h1>in a container</h1>");

    // --io-uring: recreated with the profile that allows io_uring, which the
    // server then uses; the same files come back through it.
    let (ok, out, err) = project.ensure(&["--memory-mib", "300", "--io-uring"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recreated") && out.contains("seccomp"),
        "{out}"
    );
    let with_uring = project.inspect(&project.container());
    let opts = with_uring["HostConfig"]["SecurityOpt"].to_string();
    assert!(opts.contains("io_uring_setup"), "{opts}");
    project.wait_healthy();
    assert_eq!(project.io_backend(), "uring");
    assert_eq!(project.get("/s/web/").text(), "<h1>in a container</h1>");
    assert_eq!(project.get("/s/web/big.bin").body, big);
    let (ok, out, err) = project.ensure(&["--memory-mib", "300", "--io-uring"]);
    assert!(ok && out.contains("nothing changed"), "{out}{err}");
}

/// An exported PROJECT_HTTP_ADMIN_TOKEN (another server's) does not
/// rotate an existing project's token: ensure keeps it, says so, and a
/// deployer with the project's token is still let in.
#[test]
fn ensure_keeps_the_token_when_another_is_exported() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("tk");
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    let token = project.token();
    project.wait_healthy();
    let before = project.inspect(&project.container())["Id"].clone();

    let (ok, out, err) = project.ensure_with_exported_token("another-servers-token-5d1e");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("nothing changed") && out.contains("admin token: kept"),
        "{out}"
    );
    assert!(
        err.contains("PROJECT_HTTP_ADMIN_TOKEN in the environment is not this project's"),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains("another-servers-token-5d1e"));
    assert_eq!(project.token(), token);
    assert_eq!(project.inspect(&project.container())["Id"], before);
    let admin = format!("{}:9080", project.ip()).parse().unwrap();
    let bearer = format!("Bearer {token}");
    let r = common::get(admin, "/services", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A new project does not adopt an exported PROJECT_HTTP_ADMIN_TOKEN: it
/// gets a token of its own, shown once.
#[test]
fn ensure_gives_a_new_project_its_own_token_despite_an_exported_one() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("tn");
    let foreign = "another-servers-token-77c2";
    let (ok, out, err) = project.ensure_with_exported_token(foreign);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created"), "{out}");
    let token = project.token();
    assert_ne!(token, foreign);
    assert!(
        out.contains(&format!(
            "admin token (generated; keep it for deploys): {token}"
        )),
        "{out}"
    );
    assert!(err.contains("was not used"), "{err}");
    assert!(!format!("{out}{err}").contains(foreign));
}

#[test]
fn ensure_refuses_foreign_containers_and_missing_images_creating_nothing() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("c");
    docker_ok(&["create", "--name", &project.container(), IMAGE]);
    project.track_volumes(&project.container());
    let (ok, _, err) = project.ensure(&[]);
    assert!(!ok);
    assert!(err.contains("not managed by project-http"), "{err}");
    let volume = format!("project-{}-static", project.id);
    assert!(
        !docker(&["volume", "inspect", &volume]).status.success(),
        "volume half-created"
    );
    assert!(
        !docker(&["network", "inspect", &project.network])
            .status
            .success(),
        "network half-created"
    );
    docker_ok(&["rm", "-f", &project.container()]);

    let (ok, _, err) = run(&[
        "ensure",
        "--project",
        &project.id,
        "--host",
        "x.test",
        "--network",
        &project.network,
        "--image",
        "project-http:no-such-tag",
    ]);
    assert!(!ok);
    assert!(err.contains("scripts/build-image.sh"), "{err}");
    assert!(!docker(&["volume", "inspect", &volume]).status.success());
}

/// Two projects on one `--host`: Traefik would route the host to one of
/// them only, so `ensure` warns and names the other project's container.
/// The image check then fails, so nothing of this project is created.
#[test]
fn ensure_warns_when_another_project_routes_the_host() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("w");
    let other = TestProject::new("w2");
    let host = format!("shared-{}.example.test", project.id);
    let rule = format!(
        "traefik.http.routers.project-{}.rule=Host(`{host}`)",
        other.id
    );
    let owner = format!("deployer.project={}", other.id);
    let name = other.container();
    docker_ok(&[
        "create",
        "--name",
        &name,
        "--label",
        "deployer.managed=true",
        "--label",
        &owner,
        "--label",
        &rule,
        IMAGE,
    ]);
    other.track_volumes(&name);
    let ensure = |host: &str| {
        run(&[
            "ensure",
            "--project",
            &project.id,
            "--host",
            host,
            "--network",
            &project.network,
            "--image",
            "project-http:no-such-tag",
        ])
    };
    let (ok, _, err) = ensure(&host);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "warning: {host} is already routed by container {name} (project {})",
            other.id
        )),
        "{err}"
    );
    let (ok, _, err) = ensure(&format!("alone-{}.example.test", project.id));
    assert!(!ok);
    assert!(!err.contains("already routed"), "{err}");
}

/// Creates a fake old per-deployment container from the project's image,
/// with the old labels and files copied in through the archive API.
fn old_container(
    project: &TestProject,
    name: &str,
    service: &str,
    deployment: &str,
    files: &[(&str, &[u8])],
) {
    docker_ok(&[
        "create",
        "--name",
        name,
        "--label",
        "deployer.managed=true",
        "--label",
        "deployer.nginx.static=true",
        "--label",
        &format!("deployer.project={}", project.id),
        "--label",
        &format!("deployer.service={service}"),
        "--label",
        &format!("deployer.deployment={deployment}"),
        IMAGE,
    ]);
    project.track_volumes(name);
    let entries: Vec<(String, &[u8])> = files
        .iter()
        .map(|(p, d)| (format!("usr/share/nginx/html/{p}"), *d))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let tar = tar_of(&borrowed);
    // `docker cp -` is the archive API's PUT /containers/{id}/archive.
    let mut child = Command::new("docker")
        .args(["cp", "-", &format!("{name}:/")])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // Created one after the other: make creation times distinct.
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn migrate_moves_old_containers_verifies_and_cleans_up() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("m");
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    project.wait_healthy();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let old_a = format!("old-{}-blog-b1", project.id);
    let old_b = format!("old-{}-blog-b2", project.id);
    let old_c = format!("old-{}-shop-s1", project.id);
    old_container(
        &project,
        &old_a,
        "blog",
        "b1",
        &[("index.html", b"<h1>blog one</h1>")],
    );
    old_container(
        &project,
        &old_b,
        "blog",
        "b2",
        &[
            ("index.html", b"<h1>blog two</h1>"),
            ("posts/a b.html", b"post"),
            ("big.bin", &big),
        ],
    );
    old_container(
        &project,
        &old_c,
        "shop",
        "s1",
        &[("index.html", b"<h1>shop</h1>"), (".hidden", b"x")],
    );

    let traefik = tempfile::tempdir().unwrap();
    let stale = traefik.path().join("blog-b1.yml");
    std::fs::write(&stale, format!("http:\n  services:\n    blog-b1:\n      loadBalancer:\n        servers:\n          - url: http://{old_a}:80\n")).unwrap();
    let unrelated = traefik.path().join("other.yml");
    std::fs::write(&unrelated, "http:\n  routers: {}\n").unwrap();
    let dir = traefik.path().to_str().unwrap();

    // Dry run: a plan, no change.
    let (ok, plan, err) = run(&[
        "migrate",
        "--project",
        &project.id,
        "--remove-old",
        "--traefik-dynamic-dir",
        dir,
    ]);
    assert!(ok, "{err}");
    assert!(
        plan.contains("dry run") && plan.contains(&old_a) && plan.contains("activate b2"),
        "{plan}"
    );
    assert_eq!(project.get("/s/blog/").status, 404);
    assert!(docker(&["inspect", &old_a]).status.success());
    assert!(stale.exists());

    let (ok, out, err) = run(&[
        "migrate",
        "--project",
        &project.id,
        "--apply",
        "--remove-old",
        "--traefik-dynamic-dir",
        dir,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("verified blog: 3 files") && out.contains("verified shop: 1 files"),
        "{out}"
    );
    assert_eq!(project.get("/s/blog/").text(), "<h1>blog two</h1>");
    assert_eq!(project.get("/s/blog/posts/a%20b.html").text(), "post");
    assert_eq!(project.get("/s/blog/big.bin").body, big);
    assert_eq!(project.get("/s/shop/").text(), "<h1>shop</h1>");
    for old in [&old_a, &old_b, &old_c] {
        assert!(
            !docker(&["inspect", old]).status.success(),
            "{old} not removed"
        );
    }
    assert!(!stale.exists(), "stale Traefik file removed");
    assert!(unrelated.exists(), "unrelated Traefik file kept");
    let admin = format!("http://{}:9080", project.ip());
    let token = project.token();
    let (ok, listing, _) = run(&[
        "list",
        "--admin",
        &admin,
        "--token",
        &token,
        "--service",
        "blog",
        "--json",
    ]);
    assert!(ok);
    let history: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(history["current"], "b2");
    assert_eq!(
        history["deployments"].as_array().unwrap().len(),
        2,
        "both blog deployments kept"
    );

    // Second run: nothing left to do.
    let (ok, out, err) = run(&[
        "migrate",
        "--project",
        &project.id,
        "--apply",
        "--remove-old",
        "--traefik-dynamic-dir",
        dir,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to migrate"), "{out}");
}

/// The io_uring fallback, for real: the same image under the profile that
/// `ensure --io-uring` uses runs io_uring; under that profile minus the
/// three io_uring syscalls, `io_uring_setup` fails with EPERM and the
/// server says so and serves through epoll.
#[test]
fn the_io_backend_follows_what_seccomp_allows() {
    if !docker_ready() {
        return;
    }
    let (ok, profile, err) = run(&["seccomp-profile"]);
    assert!(ok, "{err}");
    let with_uring: Value = serde_json::from_str(&profile).unwrap();
    let mut without_uring = with_uring.clone();
    let names = without_uring["syscalls"][0]["names"]
        .as_array_mut()
        .unwrap();
    let before = names.len();
    names.retain(|n| !n.as_str().unwrap().starts_with("io_uring"));
    assert_eq!(before - names.len(), 3);

    for (label, profile, expected) in [
        ("uring", &with_uring, "uring"),
        ("nouring", &without_uring, "epoll"),
    ] {
        let file =
            std::env::temp_dir().join(format!("ph-seccomp-{label}-{}.json", std::process::id()));
        std::fs::write(&file, profile.to_string()).unwrap();
        let name = format!("ph-test-seccomp-{label}-{}", std::process::id());
        let _ = docker(&["rm", "-f", "-v", &name]);
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--security-opt",
            &format!("seccomp={}", file.display()),
            "-e",
            "PROJECT_HTTP_ADMIN_LISTEN=127.0.0.1:9080",
            IMAGE,
        ]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let logs = loop {
            let out = docker(&["logs", &name]);
            let logs = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            if logs.contains("listening") || Instant::now() > deadline {
                break logs;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let backend = backend_of(&name);
        let _ = docker(&["rm", "-f", "-v", &name]);
        let _ = std::fs::remove_file(&file);
        assert!(
            logs.contains("listening"),
            "the server did not start:\n{logs}"
        );
        assert_eq!(backend, expected, "{label}:\n{logs}");
        if expected == "epoll" {
            assert!(logs.contains("io_uring unavailable"), "{logs}");
        }
    }
}

/// What an `ensure` killed half-way leaves: a `-next` container beside
/// the canonical one is drained and removed by the next run (no stale
/// router keeps serving); a `-next` alone (the old one already removed,
/// not yet renamed) becomes the canonical container. A second `ensure`
/// of the project while one runs is refused by the lock.
#[test]
fn ensure_settles_what_an_interrupted_ensure_left() {
    if !docker_ready() {
        return;
    }
    let project = TestProject::new("i");
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    project.wait_healthy();
    let serving = project.inspect(&project.container())["Id"].clone();
    let next = format!("{}-next", project.container());
    let owned = [
        "--label",
        "deployer.managed=true",
        "--label",
        &format!("deployer.project={}", project.id),
    ];
    let mut create = vec!["create", "--name", &next];
    create.extend_from_slice(&owned);
    create.extend_from_slice(&["--network", &project.network, IMAGE]);
    docker_ok(&create);
    // Made without the project's mount, it has an anonymous volume (the
    // image's VOLUME /srv/static): removing the container removes it too.
    project.track_volumes(&next);
    let anonymous: Vec<String> = project.inspect(&next)["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    docker_ok(&["start", &next]);
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("interrupted ensure"), "{err}");
    assert!(out.contains("nothing changed"), "{out}");
    assert!(!docker(&["inspect", &next]).status.success(), "-next left");
    assert!(
        !docker(&["volume", "inspect", &anonymous[0]])
            .status
            .success(),
        "the removed -next container's anonymous volume was left dangling"
    );
    assert_eq!(project.inspect(&project.container())["Id"], serving);

    // Only -next: it is renamed, then ensured like any container.
    docker_ok(&["rename", &project.container(), &next]);
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("it becomes"), "{err}");
    assert_eq!(project.inspect(&project.container())["Id"], serving);
    assert!(!docker(&["inspect", &next]).status.success());

    // The lock: held by this test, ensure is refused at once.
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("project-http-ensure-{}.lock", project.id)))
        .unwrap();
    assert_eq!(
        unsafe { libc::flock(std::os::unix::io::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let (ok, _, err) = project.ensure(&[]);
    assert!(!ok);
    assert!(err.contains("another `project-http ensure`"), "{err}");
    drop(lock);
    let (ok, out, err) = project.ensure(&[]);
    assert!(ok && out.contains("nothing changed"), "{out}{err}");
}
