//! The deployer's side of the admin API: `deploy`, `rollback`, `list`.
//!
//! `deploy` streams: a directory is tarred (and gzipped) on the fly into a
//! pipe that the HTTP request reads from, a `.tar`/`.tar.gz`/`.tar.zst` or
//! `.zip` file is sent as is (the server detects the format by magic bytes). Nothing is buffered whole, on either side. Connection
//! errors, 429 and 5xx answers are retried with exponential backoff (the
//! source is re-read from the start each time).

pub mod provenance;
pub mod verify;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Attempts at most, for retryable failures.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

pub struct AdminClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// What to deploy and how.
pub struct DeployRequest<'a> {
    pub service: &'a str,
    pub source: &'a Path,
    pub id: Option<&'a str>,
    pub activate: bool,
    pub require_index: bool,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// For directories: send only what the server lacks.
    pub differential: bool,
    /// Message, commit, labels sent with the upload.
    pub provenance: provenance::Provenance,
}

enum Differential {
    Done(Value),
    Unsupported(String),
}

/// A failure the server answered with.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(300))
                .build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// Runs `send` until it succeeds, fails for good, or attempts run out.
    fn with_retries(
        &self,
        what: &str,
        mut send: impl FnMut() -> Result<ureq::Response, Failure>,
    ) -> Result<Value> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let last = attempt == ATTEMPTS;
            let retryable = match send() {
                Ok(response) => return parse_json(response),
                Err(Failure::Local(e)) => return Err(e),
                Err(Failure::Http(e)) => match *e {
                    ureq::Error::Status(status, response) => {
                        let error = self.in_cli_terms(api_error(status, response));
                        // 507 (disk full) will not heal by retrying.
                        let transient = status == 429 || (status >= 500 && status != 507);
                        if !transient || last {
                            return Err(anyhow!(error).context(format!("{what} failed")));
                        }
                        error.to_string()
                    }
                    // Nothing listens on a loopback admin: the server is
                    // not running, which retrying will not change.
                    ureq::Error::Transport(e)
                        if last || (attempt == 1 && self.refused_on_loopback(&e)) =>
                    {
                        // ureq's own text names the request's URL, an
                        // internal step (`…/deployments/manifest`): say
                        // what failed, not where.
                        let cause = std::error::Error::source(&e)
                            .map_or_else(|| e.kind().to_string(), |c| format!("{}: {c}", e.kind()));
                        return Err(anyhow!("{cause}")).context(format!(
                            "{what} failed: cannot reach the admin API at {} (is `project-http serve` running, and is --admin right?)",
                            self.base
                        ));
                    }
                    ureq::Error::Transport(e) => e.to_string(),
                },
            };
            eprintln!("{what}: attempt {attempt} failed ({retryable}); retrying in {backoff:?}");
            std::thread::sleep(backoff);
            backoff *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// A server error in this command's terms: the flags and environment
    /// variables a user of the CLI has, not the HTTP request behind them.
    fn in_cli_terms(&self, error: ApiError) -> ApiError {
        let message = match error.status {
            401 if self.token.is_none() => format!(
                "the admin API at {} wants a token: pass --token <TOKEN> or set PROJECT_HTTP_ADMIN_TOKEN (the token the server was started with)",
                self.base
            ),
            // The server knows why: say it (expired, revoked) in CLI terms.
            401 if error.message.contains("expired") || error.message.contains("revoked") => {
                format!(
                    "the admin API at {} refused the token given (--token or PROJECT_HTTP_ADMIN_TOKEN): {}",
                    self.base,
                    error
                        .message
                        .replace("project-http token create", "`project-http token create`")
                )
            }
            401 => format!(
                "the admin API at {} refused the token given (--token or PROJECT_HTTP_ADMIN_TOKEN): it is not the server's admin token",
                self.base
            ),
            _ => error
                .message
                .replace(
                    "(send require_index=false to allow that)",
                    "(pass --no-require-index to allow that)",
                )
                .replace(
                    "send strip_components=1 to serve",
                    "deploy that directory itself, or pack the archive from inside it \
                     (`tar -C <dir> -czf site.tar.gz .`), to serve",
                )
                .replace("require_index=false", "--no-require-index"),
        };
        ApiError {
            status: error.status,
            message,
        }
    }

    /// Whether `error` is "connection refused" from an admin URL on a
    /// loopback host (nothing is listening there).
    fn refused_on_loopback(&self, error: &ureq::Transport) -> bool {
        let host = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, rest)| rest);
        let host = crate::host::without_port(host.split('/').next().unwrap_or(host));
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut source: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(error);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return loopback && io.kind() == std::io::ErrorKind::ConnectionRefused;
            }
            source = e.source();
        }
        false
    }

    /// Deploys a directory or an archive. A directory goes as a
    /// differential deploy when the server supports it: its manifest first,
    /// then only the files the server lacks. An older server (404/405 on
    /// the manifest route) or a server that lost content in between (400
    /// from the partial upload) gets a full upload instead.
    pub fn deploy(&self, request: &DeployRequest<'_>) -> Result<Value> {
        let meta = std::fs::metadata(request.source)
            .with_context(|| format!("cannot read {}", request.source.display()))?;
        // The service name and the query as the server checks them: a
        // refusal is said now, before any byte is sent.
        crate::store::check_service_name(request.service).map_err(|message| anyhow!(message))?;
        crate::admin::deploy::check_upload_query(Some(&Self::upload_query(request, None)))
            .map_err(|message| anyhow!("deploy refused before sending anything: {message}"))?;
        if meta.is_dir() && request.differential {
            match self.deploy_differential(request)? {
                Differential::Done(answer) => return Ok(answer),
                Differential::Unsupported(why) => {
                    eprintln!(
                        "deploy: differential upload not possible ({why}); sending everything"
                    )
                }
            }
        }
        self.deploy_full(request, &meta)
    }

    /// `POST …/deployments` with [`Self::upload_query`].
    fn upload_path(request: &DeployRequest<'_>, extra: Option<&str>) -> String {
        let query = Self::upload_query(request, extra);
        format!(
            "/services/{}/deployments{}{query}",
            request.service,
            if query.is_empty() { "" } else { "?" },
        )
    }

    /// The upload's query: id, activate, require_index, `extra`, provenance.
    fn upload_query(request: &DeployRequest<'_>, extra: Option<&str>) -> String {
        let mut query = Vec::new();
        if let Some(id) = request.id {
            query.push(format!("id={id}"));
        }
        if !request.activate {
            query.push("activate=false".to_string());
        }
        if !request.require_index {
            query.push("require_index=false".to_string());
        }
        query.extend(extra.map(str::to_string));
        query.extend(request.provenance.query());
        query.join("&")
    }

    fn deploy_differential(&self, request: &DeployRequest<'_>) -> Result<Differential> {
        let tree = Tree::read(request.source)?;
        let manifest: serde_json::Map<String, Value> = tree
            .files
            .iter()
            .map(|(rel, digest)| (rel.clone(), Value::String(digest.clone())))
            .collect();
        let body = Value::Object(manifest).to_string();
        let answer = match self.ask_manifest(request.service, &body)? {
            Ok(answer) => answer,
            Err(status) => {
                return Ok(Differential::Unsupported(format!(
                    "the server answered {status} to the manifest"
                )))
            }
        };
        let missing: std::collections::HashSet<String> = answer
            .get("missing")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let path = Self::upload_path(request, Some("partial=true"));
        let tree = std::sync::Arc::new(tree);
        let missing = std::sync::Arc::new(missing);
        let sent = self.with_retries("deploy", || {
            let (reader, producer) = match partial_tar(tree.clone(), missing.clone()) {
                Ok(opened) => opened,
                Err(e) => return Err(Failure::Local(e)),
            };
            let response = self
                .request("POST", &path)
                .set("Content-Type", "application/x-tar")
                .send(reader);
            let _ = producer.join();
            Ok(response?)
        });
        match sent {
            Ok(answer) => Ok(Differential::Done(answer)),
            Err(e) => match e.downcast_ref::<ApiError>() {
                // The server pruned content between the two requests.
                Some(api) if api.status == 422 && api.message.contains("no longer has") => {
                    Ok(Differential::Unsupported(api.message.clone()))
                }
                _ => Err(e),
            },
        }
    }

    /// `POST /services/{service}/deployments/manifest` with `body`, retried
    /// like every request. `Ok(Err(status))`: the server has no such route
    /// (404/405, an older server); any other refusal is an error.
    fn ask_manifest(&self, service: &str, body: &str) -> Result<Result<Value, u16>> {
        let asked = self.with_retries("deploy", || {
            Ok(self
                .request("POST", &format!("/services/{service}/deployments/manifest"))
                .set("Content-Type", "application/json")
                .send_string(body)?)
        });
        match asked {
            Ok(answer) => Ok(Ok(answer)),
            Err(e) => match e.downcast_ref::<ApiError>() {
                Some(api) if api.status == 404 || api.status == 405 => Ok(Err(api.status)),
                _ => Err(e),
            },
        }
    }

    /// Asks the manifest route with an empty manifest before a full
    /// upload: a wrong token, a missing scope or a bad service name is
    /// answered there in a few bytes, not while a large body is being sent
    /// (ureq writes the whole body before it reads, and sees only a broken
    /// pipe when the server refuses early). A server without that route
    /// is asked nothing more.
    fn preflight(&self, service: &str) -> Result<()> {
        self.ask_manifest(service, "{}").map(|_| ())
    }

    fn deploy_full(&self, request: &DeployRequest<'_>, meta: &std::fs::Metadata) -> Result<Value> {
        self.preflight(request.service)?;
        let source = request.source;
        let path = Self::upload_path(request, None);
        let show_progress = request.progress && std::io::stderr().is_terminal();
        let mut tar_errors: Vec<anyhow::Error> = Vec::new();
        let result = self.with_retries("deploy", || {
            let (reader, total, producer) = match open_source(source, meta.is_dir()) {
                Ok(opened) => opened,
                Err(e) => return Err(Failure::Local(e)),
            };
            let reader: Box<dyn Read + Send> = if show_progress {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                Box::new(bar.wrap_read(reader))
            } else {
                reader
            };
            let zip = !meta.is_dir()
                && source
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
            let content_type = if zip {
                "application/zip"
            } else {
                "application/x-tar"
            };
            let mut http = self
                .request("POST", &path)
                .set("Content-Type", content_type);
            if !meta.is_dir() {
                http = http.set("Content-Length", &total.to_string());
            }
            let response = http.send(reader);
            if let Some(producer) = producer {
                if let Ok(Err(e)) = producer.join() {
                    tar_errors.push(e);
                }
            }
            Ok(response?)
        });
        if let Some(e) = tar_errors.pop() {
            return Err(e.context(format!("cannot read {}", source.display())));
        }
        result
    }

    pub fn rollback(&self, service: &str) -> Result<Value> {
        self.with_retries("rollback", || {
            Ok(self
                .request("POST", &format!("/services/{service}/rollback"))
                .call()?)
        })
    }

    pub fn activate(&self, service: &str, id: &str) -> Result<Value> {
        self.with_retries("activate", || {
            Ok(self
                .request("POST", &format!("/services/{service}/activate"))
                .set("Content-Type", "application/json")
                .send_string(&serde_json::json!({ "id": id }).to_string())?)
        })
    }

    /// Pins (`PUT …/pin`) or unpins (`DELETE …/pin`) a deployment.
    pub fn pin(&self, service: &str, id: &str, pinned: bool) -> Result<Value> {
        let method = if pinned { "PUT" } else { "DELETE" };
        self.with_retries(if pinned { "pin" } else { "unpin" }, || {
            Ok(self
                .request(method, &format!("/services/{service}/deployments/{id}/pin"))
                .call()?)
        })
    }

    /// `POST /services/{service}/deployments/{id}/preview`: a preview
    /// path (signed when the server signs previews) valid for `ttl` ("7d").
    pub fn preview_link(&self, service: &str, id: &str, ttl: Option<&str>) -> Result<Value> {
        self.with_retries("preview link", || {
            Ok(self
                .request(
                    "POST",
                    &format!("/services/{service}/deployments/{id}/preview"),
                )
                .set("Content-Type", "application/json")
                .send_string(&serde_json::json!({ "ttl": ttl }).to_string())?)
        })
    }

    /// `GET /tokens`.
    pub fn tokens(&self) -> Result<Value> {
        self.with_retries("listing tokens", || {
            Ok(self.request("GET", "/tokens").call()?)
        })
    }

    /// `POST /tokens`: the answer carries the new token, shown once.
    pub fn create_token(&self, body: &Value) -> Result<Value> {
        self.with_retries("creating a token", || {
            Ok(self
                .request("POST", "/tokens")
                .set("Content-Type", "application/json")
                .send_string(&body.to_string())?)
        })
    }

    /// `DELETE /tokens/{name}`.
    pub fn revoke_token(&self, name: &str) -> Result<Value> {
        self.with_retries("revoking a token", || {
            Ok(self.request("DELETE", &format!("/tokens/{name}")).call()?)
        })
    }

    /// Activates `id` again after a verified deploy failed its check
    /// (recorded as `verify-rollback` in the activation log).
    pub fn activate_after_failed_verify(&self, service: &str, id: &str) -> Result<Value> {
        self.with_retries("activate", || {
            Ok(self
                .request("POST", &format!("/services/{service}/activate"))
                .set("Content-Type", "application/json")
                .send_string(
                    &serde_json::json!({ "id": id, "reason": "verify-rollback" }).to_string(),
                )?)
        })
    }

    /// Uploads a stream that cannot be replayed (so it is not retried).
    /// `query` is the upload's query string without `?`.
    pub fn upload_stream(
        &self,
        service: &str,
        query: &str,
        body: impl Read + Send,
    ) -> Result<Value> {
        let response = self
            .request("POST", &format!("/services/{service}/deployments?{query}"))
            .set("Content-Type", "application/x-tar")
            .send(body);
        match response {
            Ok(response) => parse_json(response),
            Err(ureq::Error::Status(status, response)) => {
                Err(anyhow!(self.in_cli_terms(api_error(status, response)))
                    .context(format!("upload to {service} failed")))
            }
            Err(e) => Err(anyhow!("{e}")).context(format!("upload to {service} failed")),
        }
    }

    /// `GET /metrics`, as text.
    pub fn metrics(&self) -> Result<String> {
        let response = self
            .request("GET", "/metrics")
            .call()
            .map_err(|e| anyhow!("{e}"))
            .context("cannot read metrics")?;
        response.into_string().context("cannot read metrics")
    }

    pub fn services(&self) -> Result<Value> {
        self.with_retries("list", || Ok(self.request("GET", "/services").call()?))
    }

    pub fn deployments(&self, service: &str) -> Result<Value> {
        self.with_retries("list", || {
            Ok(self
                .request("GET", &format!("/services/{service}/deployments"))
                .call()?)
        })
    }
}

/// Why one attempt failed: the server or the network (maybe retryable),
/// or something on this side (never retried).
enum Failure {
    Http(Box<ureq::Error>),
    Local(anyhow::Error),
}

impl From<ureq::Error> for Failure {
    fn from(e: ureq::Error) -> Self {
        Failure::Http(Box::new(e))
    }
}

type Producer = std::thread::JoinHandle<Result<()>>;

/// The bytes to upload: a file as is, or a directory tarred and gzipped on
/// the fly by a thread writing into a pipe. Also returns the size (exact for
/// a file, the files' total for a directory, for the progress bar).
fn open_source(path: &Path, is_dir: bool) -> Result<(Box<dyn Read + Send>, u64, Option<Producer>)> {
    if !is_dir {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata()?.len();
        return Ok((Box::new(file), len, None));
    }
    let total = tree_size(path);
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let dir: PathBuf = path.to_path_buf();
    let producer = std::thread::spawn(move || -> Result<()> {
        let encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Deterministic);
        builder
            .append_dir_all(".", &dir)
            .with_context(|| format!("cannot tar {}", dir.display()))?;
        builder.into_inner()?.finish()?;
        Ok(())
    });
    Ok((Box::new(reader), total, Some(producer)))
}

/// A directory as the server will see it: regular files with their
/// SHA-256, symlinks, directories (relative, `/`-separated paths).
struct Tree {
    root: PathBuf,
    files: Vec<(String, String)>,
    links: Vec<(String, PathBuf)>,
    dirs: Vec<String>,
}

impl Tree {
    fn read(root: &Path) -> Result<Tree> {
        let mut tree = Tree {
            root: root.to_path_buf(),
            files: Vec::new(),
            links: Vec::new(),
            dirs: Vec::new(),
        };
        let mut stack = vec![String::new()];
        while let Some(rel_dir) = stack.pop() {
            let dir = root.join(&rel_dir);
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                let name = entry
                    .file_name()
                    .into_string()
                    .map_err(|n| anyhow!("{}: file names must be UTF-8", dir.join(n).display()))?;
                let rel = if rel_dir.is_empty() {
                    name
                } else {
                    format!("{rel_dir}/{name}")
                };
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    tree.dirs.push(rel.clone());
                    stack.push(rel);
                } else if kind.is_symlink() {
                    tree.links.push((rel, std::fs::read_link(entry.path())?));
                } else if kind.is_file() {
                    let digest = crate::site::index::sha256_file(&entry.path())
                        .with_context(|| format!("cannot read {}", entry.path().display()))?;
                    tree.files.push((rel, digest));
                }
            }
        }
        tree.files.sort();
        tree.links.sort();
        tree.dirs.sort();
        Ok(tree)
    }
}

/// A tar of the directories, symlinks, the files whose content the server
/// lacks (each content once) and a `.deployer-manifest` of every file,
/// written by a thread into a pipe.
fn partial_tar(
    tree: std::sync::Arc<Tree>,
    missing: std::sync::Arc<std::collections::HashSet<String>>,
) -> Result<(Box<dyn Read + Send>, Producer)> {
    let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let producer = std::thread::spawn(move || -> Result<()> {
        let encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        builder.mode(tar::HeaderMode::Deterministic);
        let mut listing = Vec::new();
        crate::store::meta::write_manifest(&mut listing, &tree.files)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(listing.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, crate::store::meta::MANIFEST_FILE, &listing[..])?;
        for rel in &tree.dirs {
            builder.append_dir(rel, tree.root.join(rel))?;
        }
        for (rel, target) in &tree.links {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder.append_link(&mut header, rel, target)?;
        }
        let mut sent = std::collections::HashSet::new();
        for (rel, digest) in &tree.files {
            if missing.contains(digest) && sent.insert(digest.clone()) {
                builder
                    .append_path_with_name(tree.root.join(rel), rel)
                    .with_context(|| format!("cannot tar {rel}"))?;
            }
        }
        builder.into_inner()?.finish()?;
        Ok(())
    });
    Ok((Box::new(reader), producer))
}

fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    crate::store::for_each_file(dir, false, |meta| total += meta.len());
    total
}

fn parse_json(response: ureq::Response) -> Result<Value> {
    if response.status() == 204 {
        return Ok(Value::Null);
    }
    let text = response.into_string().context("cannot read the answer")?;
    serde_json::from_str(&text)
        .with_context(|| format!("the admin API answered something that is not JSON: {text:.200}"))
}

fn api_error(status: u16, response: ureq::Response) -> ApiError {
    let text = response.into_string().unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    ApiError { status, message }
}

/// GET `url` once: Ok on 200, an error otherwise (never retried: Docker
/// retries health checks itself).
pub fn healthcheck(url: &str, timeout: Duration) -> Result<()> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    match agent.get(url).call() {
        Ok(response) if response.status() == 200 => Ok(()),
        Ok(response) => bail!("answered {}", response.status()),
        Err(ureq::Error::Status(status, _)) => bail!("answered {status}"),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The one-line summary `deploy` prints from the upload's answer. Counts
/// are of the files the user uploaded: `files` in the tree, `received` of
/// them sent in this upload (fewer in a differential deploy), `linked`
/// stored once with identical files of earlier deployments; precompressed
/// siblings the server generated are reported apart.
pub fn summary(service: &str, id: &str, answer: &Value) -> String {
    let count = |key: &str| answer[key].as_u64().unwrap_or(0);
    let mut line = format!(
        "deployed {service} as {id}: {} files, {} bytes ({} sent, {} stored once with earlier deployments)",
        count("files"),
        count("bytes"),
        count("received"),
        count("linked"),
    );
    if count("generated") > 0 {
        line.push_str(&format!(
            "; {} compressed variants (.br/.gz) generated",
            count("generated")
        ));
    }
    line.push_str(if answer["active"] == true {
        "; active"
    } else {
        "; not active"
    });
    line
}

/// Fails unless `value` has a string field `key`.
pub fn string_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    match value.get(key).and_then(Value::as_str) {
        Some(s) => Ok(s),
        None => bail!("the admin API answer has no {key:?}: {value}"),
    }
}
