//! Shared helpers for integration tests: a root built on disk the way the seed
//! runbook builds it, the real `project-http` binary started on loopback, and
//! a raw HTTP/1.1 client that sends exactly the bytes a test writes (so
//! traversal vectors are not "fixed" by a client library first).
#![allow(dead_code)]

pub mod docker;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A temporary root directory with services and deployments.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `<root>/<service>/<id>/` with the given files.
    pub fn deployment(&self, service: &str, id: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.path().join(service).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, content) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        dir
    }

    /// Points `current` at `id` the way the seed runbook does:
    /// `ln -s <id> current.tmp && mv -T current.tmp current`.
    pub fn flip(&self, service: &str, id: &str) {
        let service_dir = self.path().join(service);
        let tmp = service_dir.join("current.tmp-test");
        let _ = std::fs::remove_file(&tmp);
        symlink(id, &tmp).unwrap();
        std::fs::rename(&tmp, service_dir.join("current")).unwrap();
    }
}

impl Root {
    /// Sets the mtime of `<service>/current` (the time the deployment
    /// became current, which is every file's Last-Modified) to `time`, as
    /// if the flip had happened then.
    pub fn set_flip_time(&self, service: &str, time: std::time::SystemTime) {
        let link = self.path().join(service).join("current");
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
        let stamp = libc::timespec {
            tv_sec: since.as_secs() as libc::time_t,
            tv_nsec: since.subsec_nanos() as _,
        };
        let path = std::ffi::CString::new(link.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string and two timespecs; the link itself is changed.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                path.as_ptr(),
                [stamp, stamp].as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(rc, 0, "utimensat {}", link.display());
    }
}

/// Lines a child process wrote, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.all().iter().any(|l| l.contains(needle))
    }

    /// Waits until a line containing `needle` appears.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self.all().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn collect(self, stream: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                self.0.lock().unwrap().push(line);
            }
        });
    }
}

/// The real binary, running `serve` on loopback ports chosen by the kernel.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: Lines,
    pub stderr: Lines,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_project-http")
}

impl Server {
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(root, extra, &[])
    }

    pub fn start_with_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_custom(root, extra, |command| {
            for (k, v) in env {
                command.env(k, v);
            }
        })
    }

    /// Starts `serve` on loopback ports after `customize` has adjusted the
    /// command (environment, pre-exec limits), and waits until it listens.
    pub fn start_custom(
        root: &Path,
        extra: &[&str],
        customize: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("PROJECT_HTTP_ROOT")
            .env_remove("PROJECT_HTTP_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        customize(&mut command);
        let mut child = command.spawn().expect("start project-http");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.clone().collect(child.stdout.take().unwrap());
        stderr.clone().collect(child.stderr.take().unwrap());
        let Some(line) = stderr.wait_for("listening", Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("server did not start; stderr:\n{}", stderr.all().join("\n"));
        };
        let addr = field(&line, "public")
            .and_then(|url| url.strip_prefix("http://").map(str::to_string))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no public address in {line:?}"));
        Server {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a text log line (value ends at whitespace; quotes
/// stripped), or `"key":"value"` from a JSON one.
pub fn field(line: &str, key: &str) -> Option<String> {
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return value[key].as_str().map(str::to_string);
    }
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_string())
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` as is on a new connection and reads the whole answer
/// (the request should say `Connection: close`).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer and close before reading everything (an
    // oversized upload): a failed write still leaves its answer to read.
    let _ = stream.write_all(request);
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data);
    parse_response(&data, request.starts_with(b"HEAD"))
        .unwrap_or_else(|| {
            panic!(
                "unparseable response to {:?}: {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(&data)
            )
        })
        .0
}

/// GET `path` with extra header lines.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers)
}

/// `method path` with extra header lines. A site's files (`/s/…`) are
/// asked for on a keep-alive connection, as browsers and proxies do (so
/// the public server's fast path answers what it takes, `serve::fast`),
/// and the one answer is read by its `Content-Length`; everything else
/// with `Connection: close`.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let keep_alive = path.starts_with("/s/") && matches!(method, "GET" | "HEAD");
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{connection}");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    if keep_alive {
        exchange(addr, text.as_bytes())
    } else {
        raw(addr, text.as_bytes())
    }
}

/// Sends `request` on a new keep-alive connection and reads exactly one
/// answer (it must carry `Content-Length` or have no body).
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).expect("send request");
    let head = request.starts_with(b"HEAD");
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head_text = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let status = head_text.split_whitespace().nth(1).unwrap_or("");
            let framed = head
                || head_text.contains("\r\ncontent-length:")
                || matches!(status, "304" | "204");
            if framed {
                if let Some((response, _)) = parse_response(&data, head) {
                    return response;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
    parse_response(&data, head)
        .unwrap_or_else(|| {
            panic!(
                "unparseable response to {:?}: {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(&data)
            )
        })
        .0
}

/// Parses one response from the front of `data`; returns it and the bytes used.
pub fn parse_response(data: &[u8], head: bool) -> Option<(Response, usize)> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head_text = std::str::from_utf8(&data[..end]).ok()?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = HashMap::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let body_start = end + 4;
    let no_body = head || status == 304 || status == 204 || (100..200).contains(&status);
    let len = if no_body {
        0
    } else {
        match headers.get("content-length") {
            Some(l) => l.parse::<usize>().ok()?,
            None => data.len() - body_start,
        }
    };
    if data.len() < body_start + len {
        return None;
    }
    let body = data[body_start..body_start + len].to_vec();
    Some((
        Response {
            status,
            headers,
            body,
        },
        body_start + len,
    ))
}

/// Sends a request with a body (Content-Length) and reads the answer.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let mut request = text.into_bytes();
    request.extend_from_slice(body);
    raw(addr, &request)
}

/// A tar archive built in memory from (path, bytes) pairs.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Entries of a directory, sorted (to check nothing was left behind).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Server {
    /// Starts with an admin token; returns the server and its admin address.
    pub fn start_with_token(root: &Path, token: &str, extra: &[&str]) -> (Server, SocketAddr) {
        let mut args = vec!["--admin-token", token];
        args.extend_from_slice(extra);
        let server = Server::start(root, &args);
        let admin = server.admin_addr();
        (server, admin)
    }

    /// The admin address from the "listening" line.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self
            .stderr
            .wait_for("listening", Duration::from_secs(1))
            .expect("listening line");
        field(&line, "admin")
            .and_then(|url| url.strip_prefix("http://").map(str::to_string))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in {line:?}"))
    }
}

/// A tar whose headers are written byte for byte, so hostile entries
/// (absolute paths, `..`, links out, devices) can be made exactly.
pub fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        {
            let bytes = header.as_old_mut();
            bytes.name[..path.len()].copy_from_slice(path.as_bytes());
            bytes.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Runs `project-http deploy --quiet` of `dir` to service `web` through the
/// admin API at `admin`, verifying through `public`; returns (success,
/// stdout trimmed, stderr).
#[allow(dead_code)]
pub fn deploy_web(
    admin: SocketAddr,
    public: &str,
    token: &str,
    dir: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let url = format!("http://{admin}");
    let mut args = vec![
        "deploy",
        "--admin",
        &url,
        "--public",
        public,
        "--service",
        "web",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let output = Command::new(binary())
        .args(&args)
        .env("PROJECT_HTTP_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The deployment ids of `service`'s history (newest first), from the admin API.
#[allow(dead_code)]
pub fn history_ids(admin: SocketAddr, service: &str, auth: (&str, &str)) -> Vec<String> {
    let r = get(admin, &format!("/services/{service}/deployments"), &[auth]);
    let history: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Writes a config file with `previews = "public"` into `dir` and returns
/// its path, for tests about preview serving rather than signing.
#[allow(dead_code)]
pub fn public_previews_config(dir: &Path) -> String {
    let path = dir.join("public-previews.toml");
    std::fs::write(&path, "previews = \"public\"\n").unwrap();
    path.to_str().unwrap().to_string()
}
