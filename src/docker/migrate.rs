//! `project-http migrate`: from one nginx container per deployment to the
//! project's single project-http container.
//!
//! Old containers are found by their labels (`deployer.managed=true`,
//! `deployer.nginx.static=true`, `deployer.project`, `deployer.service`,
//! `deployer.deployment`). Each one's `/usr/share/nginx/html` is streamed
//! out with the Docker archive API straight into the project server's
//! upload endpoint (the same validated ingest; nothing is held whole in
//! memory), under the old deployment id. Then the newest per service is
//! activated and every one of its files is fetched over HTTP from the
//! project server and compared with the old container's bytes. Only after
//! all of that succeeds, and only with `--remove-old`, are the old
//! containers and the Traefik dynamic files naming them removed.
//!
//! Without `--apply` it prints the plan and changes nothing. A second run
//! finds everything migrated and changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bollard::container::{
    DownloadFromContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{admin_endpoint, public_endpoint, Project, MANAGED_LABEL, PROJECT_LABEL};
use crate::client::AdminClient;

const NGINX_LABEL: &str = "deployer.nginx.static";
const SERVICE_LABEL: &str = "deployer.service";
const DEPLOYMENT_LABEL: &str = "deployer.deployment";
const HTML_DIR: &str = "/usr/share/nginx/html";

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub project: Project,
    pub apply: bool,
    pub remove_old: bool,
    pub traefik_dynamic_dir: Option<PathBuf>,
}

/// One old per-deployment container.
#[derive(Debug, Clone, Serialize)]
pub struct OldDeployment {
    pub container: String,
    pub container_id: String,
    pub service: String,
    pub deployment: String,
    pub created: i64,
    /// Already present in the project server (a previous run).
    pub migrated: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct MigrateReport {
    pub applied: bool,
    pub old: Vec<OldDeployment>,
    /// service → deployment made current.
    pub activate: BTreeMap<String, String>,
    /// (service, files checked) after activation.
    pub verified: Vec<(String, usize)>,
    pub removed_containers: Vec<String>,
    pub removed_files: Vec<PathBuf>,
    /// Human-readable steps, in order.
    pub plan: Vec<String>,
}

pub async fn migrate(docker: &Docker, options: &MigrateOptions) -> Result<MigrateReport> {
    let project = &options.project;
    let server = super::project_server(docker, project).await?;
    let (admin_url, token) = admin_endpoint(&server)?;
    let public_url = public_endpoint(&server)?;
    let admin = std::sync::Arc::new(AdminClient::new(&admin_url, token));

    let mut old = discover(docker, project).await?;
    let mut report = MigrateReport {
        applied: options.apply,
        ..Default::default()
    };
    if old.is_empty() {
        report.plan.push(format!(
            "nothing to migrate: no old containers of project {}",
            project.id
        ));
        return Ok(report);
    }

    // What the project server has already (a previous run).
    let mut present: HashMap<String, (Option<String>, Vec<String>)> = HashMap::new();
    for service in old
        .iter()
        .map(|o| o.service.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let client = admin.clone();
        let name = service.clone();
        let history = tokio::task::spawn_blocking(move || client.deployments(&name)).await?;
        let entry = match history {
            Ok(h) => (
                h["current"].as_str().map(str::to_string),
                h["deployments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["id"].as_str().map(str::to_string))
                    .collect(),
            ),
            Err(_) => (None, Vec::new()),
        };
        present.insert(service, entry);
    }
    for o in &mut old {
        o.migrated = present
            .get(&o.service)
            .is_some_and(|(_, ids)| ids.contains(&o.deployment));
    }
    let mut newest: BTreeMap<String, &OldDeployment> = BTreeMap::new();
    for o in &old {
        match newest.get(&o.service) {
            Some(n) if (n.created, &n.deployment) >= (o.created, &o.deployment) => {}
            _ => {
                newest.insert(o.service.clone(), o);
            }
        }
    }
    for o in &old {
        report.plan.push(if o.migrated {
            format!(
                "{}: {} from {} is already migrated",
                o.service, o.deployment, o.container
            )
        } else {
            format!(
                "{}: copy {} of {} into {} as deployment {}",
                o.service,
                HTML_DIR,
                o.container,
                project.container(),
                o.deployment
            )
        });
    }
    for (service, o) in &newest {
        let current = present.get(service).and_then(|(c, _)| c.as_deref());
        if current != Some(o.deployment.as_str()) {
            report.plan.push(format!(
                "{service}: activate {} (the newest) and verify every file over HTTP",
                o.deployment
            ));
        } else {
            report.plan.push(format!(
                "{service}: {} is already current; verify every file over HTTP",
                o.deployment
            ));
        }
        report
            .activate
            .insert(service.clone(), o.deployment.clone());
    }
    let traefik_files = match &options.traefik_dynamic_dir {
        Some(dir) if options.remove_old => stale_traefik_files(dir, &old)?,
        _ => Vec::new(),
    };
    if options.remove_old {
        for o in &old {
            report
                .plan
                .push(format!("remove old container {}", o.container));
        }
        for f in &traefik_files {
            report
                .plan
                .push(format!("remove Traefik dynamic file {}", f.display()));
        }
    }
    report.old = old.clone();
    if !options.apply {
        return Ok(report);
    }

    // 1. Copy, each straight from the archive API into the upload endpoint.
    for o in old.iter().filter(|o| !o.migrated) {
        copy(docker, &admin, o).await.with_context(|| {
            format!(
                "migrating {} failed; the old containers are untouched",
                o.container
            )
        })?;
    }
    // 2. Activate the newest per service.
    for (service, id) in &report.activate {
        let current = present.get(service).and_then(|(c, _)| c.as_deref());
        if current != Some(id.as_str()) {
            let (client, s, d) = (admin.clone(), service.clone(), id.clone());
            tokio::task::spawn_blocking(move || client.activate(&s, &d))
                .await?
                .with_context(|| {
                    format!("cannot activate {service}/{id}; the old containers are untouched")
                })?;
        }
    }
    // 3. Verify every served file against the old container's bytes.
    for (service, o) in &newest {
        let checked = verify(docker, &public_url, o).await.with_context(|| {
            format!("verification of {service} failed; the old containers are untouched")
        })?;
        report.verified.push((service.clone(), checked));
    }
    // 4. Only now, and only when asked, remove what is stale.
    if options.remove_old {
        for o in &old {
            docker
                .remove_container(
                    &o.container_id,
                    // With its anonymous volumes (`docker rm -v`): every
                    // file it served was verified above against the copy.
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await
                .with_context(|| format!("cannot remove old container {}", o.container))?;
            report.removed_containers.push(o.container.clone());
        }
        for file in traefik_files {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
            report.removed_files.push(file);
        }
    }
    Ok(report)
}

async fn discover(docker: &Docker, project: &Project) -> Result<Vec<OldDeployment>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{MANAGED_LABEL}=true"),
            format!("{NGINX_LABEL}=true"),
            format!("{PROJECT_LABEL}={}", project.id),
        ],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await
        .context("cannot list containers")?;
    let mut old = Vec::new();
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let service = labels.get(SERVICE_LABEL).cloned().unwrap_or_default();
        let deployment = labels.get(DEPLOYMENT_LABEL).cloned().unwrap_or_default();
        if !crate::store::is_valid_name(&service)
            || !crate::store::is_valid_name(&deployment)
            || deployment == crate::store::CURRENT
        {
            bail!(
                "old container {name} has {SERVICE_LABEL}={service:?} and {DEPLOYMENT_LABEL}={deployment:?}; \
                 both must match [A-Za-z0-9_-]{{1,64}}: fix its labels or migrate it by hand"
            );
        }
        old.push(OldDeployment {
            container: name,
            container_id: c.id.unwrap_or_default(),
            service,
            deployment,
            created: c.created.unwrap_or(0),
            migrated: false,
        });
    }
    old.sort_by(|a, b| {
        (&a.service, a.created, &a.deployment).cmp(&(&b.service, b.created, &b.deployment))
    });
    Ok(old)
}

/// Streams a container's directory as a tar into a blocking reader, which
/// `consume` runs on a blocking thread.
async fn with_archive<T: Send + 'static>(
    docker: &Docker,
    container_id: &str,
    consume: impl FnOnce(crate::bridge::ChannelReader) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (sender, reader) = crate::bridge::channel(8);
    let mut stream = Box::pin(docker.download_from_container(
        container_id,
        Some(DownloadFromContainerOptions {
            path: HTML_DIR.to_string(),
        }),
    ));
    let pump = async move {
        while let Some(chunk) = stream.next().await {
            let item =
                chunk.map_err(|e| std::io::Error::other(format!("archive download failed: {e}")));
            let failed = item.is_err();
            if sender.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let work = tokio::task::spawn_blocking(move || consume(reader));
    let (_, result) = tokio::join!(pump, work);
    result.context("archive task panicked")?
}

async fn copy(
    docker: &Docker,
    admin: &std::sync::Arc<AdminClient>,
    old: &OldDeployment,
) -> Result<()> {
    let admin = admin.clone();
    let (service, id) = (old.service.clone(), old.deployment.clone());
    // The archive's entries are `html/...`: strip that folder.
    let query = format!("id={id}&activate=false&require_index=false&strip_components=1");
    with_archive(docker, &old.container_id, move |reader| {
        admin.upload_stream(&service, &query, reader).map(|_| ())
    })
    .await
}

/// Fetches every file of the old container from the project server's public
/// port and compares bytes; returns how many files were checked.
async fn verify(docker: &Docker, public_url: &str, old: &OldDeployment) -> Result<usize> {
    let base = format!("{public_url}/s/{}/", old.service);
    let container = old.container.clone();
    with_archive(docker, &old.container_id, move |reader| {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build();
        let mut archive = tar::Archive::new(reader);
        let mut checked = 0;
        for entry in archive
            .entries()
            .context("cannot read the old container's archive")?
        {
            let mut entry = entry.context("cannot read the old container's archive")?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some((_, rel)) = path.split_once('/') else {
                continue;
            };
            if rel.is_empty() || rel.split('/').any(|s| s.starts_with('.')) {
                continue; // dotfiles are never served
            }
            let mut expected = Sha256::new();
            std::io::copy(&mut entry, &mut HashWriter(&mut expected))?;
            let url = format!("{base}{}", encode_path(rel));
            let response = agent
                .get(&url)
                .call()
                .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
            let mut served = Sha256::new();
            std::io::copy(
                &mut response.into_reader().take(u64::MAX),
                &mut HashWriter(&mut served),
            )?;
            if served.finalize() != expected.finalize() {
                bail!("{url} does not serve the same bytes as {container}:{HTML_DIR}/{rel}");
            }
            checked += 1;
        }
        Ok(checked)
    })
    .await
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Percent-encodes each segment of a relative path.
fn encode_path(rel: &str) -> String {
    rel.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Traefik dynamic configuration files (`*.yml`, `*.yaml`, `*.toml`) that
/// name one of the old containers (their routers point at it).
fn stale_traefik_files(dir: &Path, old: &[OldDeployment]) -> Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --traefik-dynamic-dir {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let is_config = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yml" | "yaml" | "toml"));
        if !is_config || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if old.iter().any(|o| names_container(&text, &o.container)) {
            stale.push(path);
        }
    }
    stale.sort();
    Ok(stale)
}

/// True when `text` mentions `name` as a whole word (not as part of a
/// longer container name).
fn names_container(text: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

/// The plan or result, for people.
pub fn render(report: &MigrateReport) -> String {
    let mut out = String::new();
    if !report.applied {
        out.push_str("dry run (nothing changed; add --apply to do it):\n");
    }
    for step in &report.plan {
        out.push_str(&format!("  {step}\n"));
    }
    if report.applied {
        for (service, n) in &report.verified {
            out.push_str(&format!(
                "verified {service}: {n} files served with the same bytes\n"
            ));
        }
        for c in &report.removed_containers {
            out.push_str(&format!("removed container {c}\n"));
        }
        for f in &report.removed_files {
            out.push_str(&format!("removed {}\n", f.display()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_match_whole_words() {
        let yaml = "http:\n  services:\n    web-v1:\n      loadBalancer:\n        servers:\n          - url: http://nginx-web-v1:80\n";
        assert!(names_container(yaml, "nginx-web-v1"));
        assert!(!names_container(yaml, "nginx-web-v"));
        assert!(!names_container(yaml, "web-v1-old"));
        assert!(!names_container(
            "url: http://nginx-web-v10:80",
            "nginx-web-v1"
        ));
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(encode_path("a b/ü.txt"), "a%20b/%C3%BC.txt");
        assert_eq!(encode_path("css/site-1.2.css"), "css/site-1.2.css");
    }
}
