//! `project-http ensure`: make the project's container exist as specified.
//!
//! Idempotent: a second run finds nothing to change and says so. A
//! container whose image, labels, environment or settings drifted is
//! replaced **gaplessly**: the replacement starts beside the old one under
//! a temporary name (`project-http-<id>-next`) with the same volume and
//! Traefik labels, so Traefik's Docker provider load-balances over both;
//! once Docker reports it `healthy` and it answers `/health`, the old one
//! is stopped with a drain (SIGTERM starts its lame-duck period,
//! [`crate::serve::lameduck`]: its health check fails, Traefik drops it,
//! it keeps serving until then) and the replacement takes the canonical
//! name. A replacement that never becomes healthy is removed and the old
//! container is left serving, untouched. The volume (the deployments) is
//! never deleted. Every check that can refuse (engine, image, a foreign
//! container with our name) runs before anything is created.
//!
//! With `--swarm`, [`super::swarm`] makes a Docker Swarm service instead.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, RemoveContainerOptions, RenameContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::models::{
    ContainerInspectResponse, HealthConfig, HealthStatusEnum, HostConfig, Mount, MountTypeEnum,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::network::CreateNetworkOptions;
use bollard::volume::CreateVolumeOptions;
use bollard::Docker;
use serde::Serialize;

use super::{find_container, is_not_found, Project, STATIC_DIR, TOKEN_ENV};

pub const DEFAULT_IMAGE: &str = "project-http:latest";
pub const DEFAULT_NETWORK: &str = "web";
pub const DEFAULT_MEMORY: i64 = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct EnsureOptions {
    pub project: Project,
    /// `--host` and the Traefik routing flags ([`super::labels`]).
    pub routing: super::labels::Routing,
    pub network: String,
    pub image: String,
    /// `--admin-token`, given explicitly (an exported
    /// `PROJECT_HTTP_ADMIN_TOKEN` does not count: [`choose_token`]).
    /// `None`: keep the container's (or service's) token, or generate one.
    pub admin_token: Option<String>,
    pub memory_bytes: i64,
    /// Run with the seccomp profile that allows io_uring ([`super::seccomp`]).
    pub io_uring: bool,
    /// Run as a Docker Swarm service ([`super::swarm`]) instead of one container.
    pub swarm: bool,
    /// Replicas of the Swarm service (with `swarm`).
    pub replicas: u64,
    /// `docker volume create --opt` pairs for a volume ensure creates
    /// (e.g. `type=nfs`, `o=addr=10.0.0.5,nfsvers=4.2`, `device=:/export/p42`).
    pub volume_opts: Vec<(String, String)>,
    /// `PROJECT_HTTP_WATCH` for the server; `None` leaves its default (notify).
    pub watch: Option<crate::config::WatchMode>,
    /// `--log-opt` pairs over the `json-file` defaults ([`super::logs`]).
    pub log_opts: Vec<(String, String)>,
    /// `--access-log`: on, off, or one request in N.
    pub access_log: super::logs::AccessLog,
}

/// Seconds between health probes. Traefik's Docker provider routes to a
/// container only once Docker says `healthy`, and Docker Engine 20.10 (API
/// 1.41) runs the first probe one full interval after the start (it has no
/// `start_interval`, API 1.44+), so the interval is kept short.
pub const HEALTH_INTERVAL_SECS: i64 = 2;
/// Consecutive failed probes before Docker says `unhealthy`.
pub const HEALTH_RETRIES: i64 = 3;
/// Seconds Traefik may take to act on a health change (its default
/// `providersThrottleDuration` is 2 s), plus a margin.
const PROXY_REACTION_SECS: i64 = 4;
/// The server's own drain of in-flight requests after the grace (its
/// `drain_timeout` default).
const DRAIN_SECS: i64 = 10;

/// The lame-duck period the container gets (`PROJECT_HTTP_STOP_GRACE_SECS`):
/// long enough for its failing health check to turn it `unhealthy` and for
/// Traefik to drop it while it still serves.
pub fn stop_grace_secs() -> i64 {
    HEALTH_INTERVAL_SECS * HEALTH_RETRIES + PROXY_REACTION_SECS
}

/// How long Docker waits after SIGTERM before SIGKILL (`docker stop -t`,
/// a service's `stop_grace_period`): the lame duck plus the drain.
pub fn stop_timeout_secs() -> i64 {
    stop_grace_secs() + DRAIN_SECS + 5
}

/// The health check `ensure` gives the container or the service's tasks.
/// `api_minor` is the negotiated Docker API 1.x version: from 1.44 on, the
/// probes run every second during the start period (`start_interval`).
pub fn health_config(api_minor: u64) -> HealthConfig {
    let seconds = |n: i64| n * 1_000_000_000;
    HealthConfig {
        test: Some(vec![
            "CMD".to_string(),
            "/project-http".to_string(),
            "healthcheck".to_string(),
        ]),
        interval: Some(seconds(HEALTH_INTERVAL_SECS)),
        timeout: Some(seconds(2)),
        retries: Some(HEALTH_RETRIES),
        start_period: Some(seconds(30)),
        start_interval: (api_minor >= 44).then(|| seconds(1)),
    }
}

/// The minor number of the negotiated API version (41 for 1.41).
pub fn api_minor(docker: &Docker) -> u64 {
    docker.client_version().minor_version as u64
}

/// What ensure did.
#[derive(Debug, Clone, Serialize)]
pub struct EnsureReport {
    pub container: String,
    pub container_id: String,
    /// "created", "recreated", "started" or "unchanged".
    pub action: String,
    /// Why the container was recreated.
    pub drift: Vec<String>,
    pub volume_created: bool,
    pub network_created: bool,
    /// For "recreated": whether the old container was serving and was
    /// replaced beside it (no gap), or was not running (the site was down).
    pub gapless: bool,
    /// The URL forms the routers serve ([`super::labels::Routing::site_urls`]).
    pub urls: Vec<String>,
    /// Set only when ensure generated a new token (print it once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_token: Option<String>,
    /// What became of the admin token ([`TokenChange`]).
    pub admin_token: TokenChange,
    /// The admin token the container runs with (never serialized).
    #[serde(skip)]
    pub token: String,
}

/// What `ensure` did with the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenChange {
    /// The container's (service's) token stays: deployers keep theirs.
    Kept,
    /// No token before (a new project, or its container was removed):
    /// generated, or the one given with `--admin-token`.
    New,
    /// `--admin-token` replaced a different token: deployers with the old
    /// one now get 401.
    Changed,
}

/// The token the container gets, what that means ([`TokenChange`]), and
/// the token again when it was generated (shown once). `given`: only an
/// explicit `--admin-token` (never an exported environment variable, which
/// may be another server's); `current`: the existing container's or
/// service's `PROJECT_HTTP_ADMIN_TOKEN`, kept unless `given` differs.
pub fn choose_token(
    given: Option<&str>,
    current: Option<String>,
) -> Result<(String, TokenChange, Option<String>)> {
    Ok(match (given, current) {
        (Some(given), Some(current)) if given == current => (current, TokenChange::Kept, None),
        (Some(given), Some(_)) => (given.to_string(), TokenChange::Changed, None),
        (Some(given), None) => (given.to_string(), TokenChange::New, None),
        (None, Some(current)) => (current, TokenChange::Kept, None),
        (None, None) => {
            let token = random_token()?;
            (token.clone(), TokenChange::New, Some(token))
        }
    })
}

pub async fn ensure(docker: &Docker, options: &EnsureOptions) -> Result<EnsureReport> {
    let project = &options.project;
    options.routing.validate()?;
    let others = others_on_host(docker, project, &options.routing.host).await;
    if !others.is_empty() {
        eprintln!(
            "warning: {} is already routed by {}: Traefik sends a host's requests to one of \
             its routers only, so one project's sites will not be reachable; give each project \
             its own --host (or move the other: `project-http ensure --project <ID> --host <OTHER>`)",
            options.routing.host,
            others.join(", ")
        );
    }
    if options.swarm {
        return super::swarm::ensure_service(docker, options).await;
    }
    if super::swarm::find_service(docker, &project.container())
        .await?
        .is_some()
    {
        bail!(
            "project {} runs as the Swarm service {}: pass --swarm (or remove the service with `docker service rm {}` first)",
            project.id,
            project.container(),
            project.container()
        );
    }
    // Checks first: nothing is created if any of them fails.
    let image = super::local_image(docker, &options.image, "").await?;
    let name = project.container();
    let existing = find_container(docker, &name).await?;
    if let Some(found) = &existing {
        let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
        if !project.owns(labels) {
            bail!(
                "a container named {name} exists but is not managed by project-http \
                 (no deployer.managed=true, deployer.project={} labels): rename or remove it first",
                project.id
            );
        }
    }

    // One ensure per project at a time on this host (two would race on the
    // same containers): an flock on a file named after the project.
    let _lock = lock_project(project)?;
    let existing = settle_interrupted_replacement(docker, project, existing).await?;

    let (token, token_change, generated_token) = choose_token(
        options.admin_token.as_deref(),
        existing
            .as_ref()
            .and_then(|c| super::env_value(c, TOKEN_ENV)),
    )?;

    let volume_created = ensure_volume(docker, project, &options.volume_opts).await?;
    let network_created = ensure_network(docker, project, &options.network, false).await?;

    let image_id = image.id.clone().unwrap_or_default();
    let image_env: Vec<String> = image
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let desired = desired_config(options, &token, api_minor(docker));

    let mut gapless = false;
    let (action, drift) = match &existing {
        Some(found) => {
            let drift = drift(found, options, &desired, &image_id, &image_env);
            if drift.is_empty() {
                let running = found
                    .state
                    .as_ref()
                    .and_then(|s| s.running)
                    .unwrap_or(false);
                if !running {
                    docker
                        .start_container(&name, None::<StartContainerOptions<String>>)
                        .await
                        .with_context(|| format!("cannot start {name}"))?;
                    ("started", drift)
                } else {
                    ("unchanged", drift)
                }
            } else {
                let running = found
                    .state
                    .as_ref()
                    .and_then(|s| s.running)
                    .unwrap_or(false);
                if running {
                    let have = found
                        .config
                        .as_ref()
                        .and_then(|c| c.labels.clone())
                        .unwrap_or_default();
                    let wanted = desired.labels.clone().unwrap_or_default();
                    if routing_changed(&have, &wanted) {
                        // Two containers defining one router name with
                        // different settings make Traefik drop that router
                        // (a gap of seconds): first hop to the new routing
                        // under other names, then back to the usual ones.
                        let mut interim = desired.clone();
                        interim.labels = Some(renamed_routing(&wanted, project, INTERIM_SUFFIX));
                        replace_gaplessly(docker, project, &name, &options.network, interim)
                            .await?;
                    }
                    replace_gaplessly(docker, project, &name, &options.network, desired).await?;
                    gapless = true;
                } else {
                    remove(docker, &name).await?;
                    create_and_start(docker, &name, desired).await?;
                }
                ("recreated", drift)
            }
        }
        None => {
            create_and_start(docker, &name, desired).await?;
            ("created", Vec::new())
        }
    };
    let container_id = find_container(docker, &name)
        .await?
        .and_then(|c| c.id)
        .unwrap_or_default();
    Ok(EnsureReport {
        container: name,
        container_id,
        action: action.to_string(),
        drift,
        gapless,
        volume_created,
        network_created,
        urls: options.routing.site_urls(),
        generated_token,
        admin_token: token_change,
        token,
    })
}

pub(crate) fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to generate an admin token")?;
    Ok(hex::encode(bytes))
}

/// Creates the project's volume unless it exists; `opts` are the local
/// driver's options (`docker volume create --opt`). An existing volume
/// whose options differ is refused: Docker cannot change them in place.
pub(crate) async fn ensure_volume(
    docker: &Docker,
    project: &Project,
    opts: &[(String, String)],
) -> Result<bool> {
    let name = project.volume();
    let wanted: HashMap<String, String> = opts.iter().cloned().collect();
    match docker.inspect_volume(&name).await {
        Ok(found) => {
            let have = found.options;
            if !wanted.is_empty() && have != wanted {
                bail!(
                    "volume {name} exists with other options ({have:?}) than --volume-opt asks ({wanted:?}): \
                     Docker cannot change a volume's options; move the deployments and remove it first"
                );
            }
            Ok(false)
        }
        Err(e) if is_not_found(&e) => {
            docker
                .create_volume(CreateVolumeOptions {
                    name: name.clone(),
                    driver: "local".to_string(),
                    driver_opts: wanted,
                    labels: project.ownership_labels(),
                })
                .await
                .with_context(|| format!("cannot create volume {name}"))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("cannot inspect volume {name}")),
    }
}

/// Creates `network` unless it exists: a bridge network for a container,
/// an attachable overlay network for a Swarm service (Traefik, run as a
/// container or a service, attaches to it). An existing network of the
/// wrong kind for a service is refused.
pub(crate) async fn ensure_network(
    docker: &Docker,
    project: &Project,
    network: &str,
    swarm: bool,
) -> Result<bool> {
    match docker
        .inspect_network(
            network,
            None::<bollard::network::InspectNetworkOptions<String>>,
        )
        .await
    {
        Ok(found) => {
            if swarm && found.scope.as_deref() != Some("swarm") {
                bail!(
                    "network {network} is a {} network of scope {}: a Swarm service needs an overlay network \
                     (pick another --network and ensure creates one, attachable for Traefik)",
                    found.driver.unwrap_or_default(),
                    found.scope.unwrap_or_default()
                );
            }
            Ok(false)
        }
        Err(e) if is_not_found(&e) => {
            docker
                .create_network(CreateNetworkOptions {
                    name: network.to_string(),
                    driver: if swarm { "overlay" } else { "bridge" }.to_string(),
                    attachable: swarm,
                    labels: project.ownership_labels(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("cannot create network {network}"))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("cannot inspect network {network}")),
    }
}

/// The environment ensure gives the server: the admin token, the stop
/// grace and, when asked, the watch mode, the host suffix of
/// `--subdomains` (`PROJECT_HTTP_HOST_SUFFIX=<HOST>`, the config file's
/// `host_suffix`) and the access-log mode.
pub fn desired_env(token: &str, options: &EnsureOptions) -> Vec<String> {
    use crate::config::WatchMode;
    let mut env = vec![
        format!("{TOKEN_ENV}={token}"),
        format!("{STOP_GRACE_ENV}={}", stop_grace_secs()),
    ];
    if let Some(mode) = options.watch {
        let name = match mode {
            WatchMode::Notify => "notify",
            WatchMode::Poll => "poll",
            WatchMode::Off => "off",
        };
        env.push(format!("PROJECT_HTTP_WATCH={name}"));
    }
    if options.routing.subdomains {
        env.push(format!(
            "{HOST_SUFFIX_ENV}={}",
            options.routing.host.to_ascii_lowercase()
        ));
    }
    env.extend(options.access_log.env());
    env
}

/// The server's setting for host routing (`serve`'s `host_suffix`):
/// `Host: <service>.<suffix>` serves `<service>` at `/`.
pub const HOST_SUFFIX_ENV: &str = "PROJECT_HTTP_HOST_SUFFIX";

/// The serve setting for the lame-duck period (`serve --stop-grace-secs`).
pub const STOP_GRACE_ENV: &str = "PROJECT_HTTP_STOP_GRACE_SECS";

fn desired_config(options: &EnsureOptions, token: &str, api_minor: u64) -> Config<String> {
    let project = &options.project;
    Config {
        image: Some(options.image.clone()),
        labels: Some(project.container_labels(&options.routing, &options.network)),
        env: Some(desired_env(token, options)),
        healthcheck: Some(health_config(api_minor)),
        stop_timeout: Some(stop_timeout_secs()),
        user: Some("101:101".to_string()),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(STATIC_DIR.to_string()),
                source: Some(project.volume()),
                typ: Some(MountTypeEnum::VOLUME),
                ..Default::default()
            }]),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: Some(options.memory_bytes),
            network_mode: Some(options.network.clone()),
            log_config: Some(super::logs::host_log_config(&options.log_opts)),
            security_opt: options
                .io_uring
                .then(|| vec![super::seccomp::security_opt()]),
            // No port bindings: 8080 is reached by Traefik on the network,
            // 9080 by deployers on the network; neither on the host.
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What differs between the running container and the desired one.
fn drift(
    found: &ContainerInspectResponse,
    options: &EnsureOptions,
    desired: &Config<String>,
    image_id: &str,
    image_env: &[String],
) -> Vec<String> {
    let mut reasons = Vec::new();
    let config = found.config.clone().unwrap_or_default();
    if config.image.as_deref() != Some(options.image.as_str()) {
        reasons.push(format!(
            "image name {:?} → {:?}",
            config.image.unwrap_or_default(),
            options.image
        ));
    } else if found.image.as_deref() != Some(image_id) {
        reasons.push(format!("image {} was rebuilt", options.image));
    }
    let labels: HashMap<String, String> = config.labels.clone().unwrap_or_default();
    if let Some(wanted) = desired.labels.as_ref() {
        if &labels != wanted {
            reasons.push(format!("labels differ ({})", label_diff(&labels, wanted)));
        }
    }
    let mut ours: Vec<String> = config
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(e))
        .collect();
    ours.sort();
    let mut wanted = desired.env.clone().unwrap_or_default();
    wanted.sort();
    if ours != wanted {
        reasons.push("environment differs".to_string());
    }
    let host = found.host_config.clone().unwrap_or_default();
    let log_config = |c: Option<&bollard::models::HostConfigLogConfig>| {
        c.map(|c| {
            (
                c.typ.clone().unwrap_or_default(),
                c.config
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        })
    };
    let wanted_log = log_config(
        desired
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref()),
    );
    if log_config(host.log_config.as_ref()) != wanted_log {
        reasons.push("log options differ (--log-opt)".to_string());
    }
    if host.memory != Some(options.memory_bytes) {
        reasons.push("memory limit differs".to_string());
    }
    let seccomp = |opts: &Option<Vec<String>>| -> Vec<String> {
        opts.iter()
            .flatten()
            .filter(|o| o.starts_with("seccomp="))
            .cloned()
            .collect()
    };
    let wanted_seccomp = desired
        .host_config
        .as_ref()
        .map(|h| seccomp(&h.security_opt))
        .unwrap_or_default();
    if seccomp(&host.security_opt) != wanted_seccomp {
        reasons.push(if options.io_uring {
            "seccomp profile differs (--io-uring)".to_string()
        } else {
            "seccomp profile differs (io_uring profile without --io-uring)".to_string()
        });
    }
    let probe = |h: Option<&HealthConfig>| h.map(|h| (h.interval, h.retries, h.start_period));
    if probe(config.healthcheck.as_ref()) != probe(desired.healthcheck.as_ref()) {
        reasons.push("health check differs".to_string());
    }
    if host.restart_policy.and_then(|r| r.name) != Some(RestartPolicyNameEnum::UNLESS_STOPPED) {
        reasons.push("restart policy differs".to_string());
    }
    if super::ip_on(found, &options.network).is_none()
        && host.network_mode.as_deref() != Some(options.network.as_str())
    {
        reasons.push(format!("not on network {}", options.network));
    }
    let mounted = found.mounts.as_ref().is_some_and(|m| {
        m.iter().any(|m| {
            m.name.as_deref() == Some(options.project.volume().as_str())
                && m.destination.as_deref() == Some(STATIC_DIR)
        })
    });
    if !mounted {
        reasons.push(format!(
            "volume {} not mounted at {STATIC_DIR}",
            options.project.volume()
        ));
    }
    reasons
}

/// The differing keys of two label sets, `key: "old" → "new"`, sorted,
/// the first four (and how many more).
pub fn label_diff(have: &HashMap<String, String>, wanted: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = have.keys().chain(wanted.keys()).collect();
    keys.sort();
    keys.dedup();
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|k| have.get(*k) != wanted.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("(none)".to_string(), |v| format!("{v:?}"));
            format!("{k}: {} → {}", show(have.get(k)), show(wanted.get(k)))
        })
        .collect();
    let mut text = changes
        .iter()
        .take(4)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changes.len() > 4 {
        text.push_str(&format!(", and {} more", changes.len() - 4));
    }
    text
}

/// Takes the per-project ensure lock: an exclusive `flock(2)` on
/// `$XDG_RUNTIME_DIR` (or the temp dir) `/project-http-ensure-<ID>.lock`,
/// without waiting; another `ensure` of the project on this host holds it.
fn lock_project(project: &Project) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("project-http-ensure-{}.lock", project.id));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the ensure lock {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "another `project-http ensure` of project {} is running on this host (it holds {}): wait for it, then run this one again",
            project.id,
            path.display()
        );
    }
    Ok(file)
}

/// An `ensure` interrupted during a replacement leaves `<name>-next`: when
/// the canonical container is gone too (stopped and removed, not yet
/// renamed), the replacement is the one serving and gets the name; when
/// both exist, the leftover is drain-stopped and removed, so no stale
/// router (an interim one, or old settings) keeps serving beside them.
async fn settle_interrupted_replacement(
    docker: &Docker,
    project: &Project,
    existing: Option<ContainerInspectResponse>,
) -> Result<Option<ContainerInspectResponse>> {
    let name = project.container();
    let temp = replacement_name(&name);
    let Some(left) = find_container(docker, &temp).await? else {
        return Ok(existing);
    };
    if !project.owns(left.config.as_ref().and_then(|c| c.labels.as_ref())) {
        return Ok(existing);
    }
    if existing.is_some() {
        eprintln!("{temp}: left by an interrupted ensure; stopping it (drain) and removing it");
        remove(docker, &temp).await?;
        return Ok(existing);
    }
    eprintln!("{temp}: left by an interrupted ensure and {name} is gone; it becomes {name}");
    docker
        .rename_container(
            &temp,
            RenameContainerOptions {
                name: name.as_str(),
            },
        )
        .await
        .with_context(|| format!("cannot rename {temp} to {name}"))?;
    find_container(docker, &name).await
}

/// Suffix of the project's Traefik router, middleware and service names in
/// the interim container of a routing change ([`renamed_routing`]).
pub const INTERIM_SUFFIX: &str = "-interim";

/// Whether the Traefik routing labels (`traefik.http.*`) differ: replacing
/// the container then needs the interim hop (Traefik refuses a router that
/// two containers define differently, until one of them is gone).
pub fn routing_changed(have: &HashMap<String, String>, wanted: &HashMap<String, String>) -> bool {
    let routing = |labels: &HashMap<String, String>| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = labels
            .iter()
            .filter(|(k, _)| k.starts_with("traefik.http."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    };
    routing(have) != routing(wanted)
}

/// `labels` with the project's own router, middleware and service names
/// (`project-<ID>` and `project-<ID>-…`) given `suffix` after the
/// `project-<ID>` part, in the label keys and in the routers' middleware
/// lists; everything else (`name@file` middlewares, other labels) as is.
pub fn renamed_routing(
    labels: &HashMap<String, String>,
    project: &Project,
    suffix: &str,
) -> HashMap<String, String> {
    let base = project.router();
    let rename = |name: &str| -> String {
        match name.strip_prefix(base.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('-') => {
                format!("{base}{suffix}{rest}")
            }
            _ => name.to_string(),
        }
    };
    labels
        .iter()
        .map(|(key, value)| {
            let parts: Vec<&str> = key.splitn(5, '.').collect();
            match parts.as_slice() {
                ["traefik", "http", kind @ ("routers" | "middlewares" | "services"), name, rest] => {
                    let value = if *kind == "routers" && *rest == "middlewares" {
                        value
                            .split(',')
                            .map(|m| rename(m.trim()))
                            .collect::<Vec<_>>()
                            .join(",")
                    } else {
                        value.clone()
                    };
                    (format!("traefik.http.{kind}.{}.{rest}", rename(name)), value)
                }
                _ => (key.clone(), value.clone()),
            }
        })
        .collect()
}

/// The temporary name of a replacement while it starts beside the old one.
pub fn replacement_name(name: &str) -> String {
    format!("{name}-next")
}

/// Starts `desired` beside the running container `name`, waits until it
/// is healthy and answers `/health`, then drain-stops the old one and
/// renames the replacement to `name`. On any failure before the old one
/// is stopped, the replacement is removed and the old one is untouched.
async fn replace_gaplessly(
    docker: &Docker,
    project: &Project,
    name: &str,
    network: &str,
    desired: Config<String>,
) -> Result<()> {
    let temp = replacement_name(name);
    if let Some(left) = find_container(docker, &temp).await? {
        let labels = left.config.as_ref().and_then(|c| c.labels.as_ref());
        if !project.owns(labels) {
            bail!("a container named {temp} exists but is not managed by project-http: rename or remove it first");
        }
        // A replacement left over by an interrupted ensure.
        force_remove(docker, &temp).await?;
    }
    create_and_start(docker, &temp, desired).await?;
    if let Err(e) = wait_ready(docker, &temp, network).await {
        let _ = force_remove(docker, &temp).await;
        return Err(e.context(format!(
            "the replacement container did not become healthy; {name} was left serving, untouched"
        )));
    }
    remove(docker, name).await?;
    docker
        .rename_container(&temp, RenameContainerOptions { name })
        .await
        .with_context(|| {
            format!("cannot rename {temp} to {name} (it is serving; rename it by hand)")
        })
}

/// Waits until the container is `healthy` in Docker and answers `GET /health`
/// on its address; fails at once if it exits or turns `unhealthy`.
pub(crate) async fn wait_ready(docker: &Docker, name: &str, network: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let found = find_container(docker, name)
            .await?
            .with_context(|| format!("{name} disappeared while starting"))?;
        let state = found.state.clone().unwrap_or_default();
        if state.restarting == Some(true) || found.restart_count.unwrap_or(0) > 0 {
            bail!(
                "{name} exited while starting (exit code {}) and is being restarted: see `docker logs {name}`",
                state.exit_code.unwrap_or(-1)
            );
        }
        if state.running != Some(true) {
            bail!(
                "{name} exited while starting (exit code {}): see `docker logs {name}`",
                state.exit_code.unwrap_or(-1)
            );
        }
        let health = state.health.clone().unwrap_or_default();
        let last = health
            .log
            .as_ref()
            .and_then(|l| l.last())
            .and_then(|l| l.output.clone())
            .unwrap_or_default();
        match health.status {
            Some(HealthStatusEnum::HEALTHY) => {
                let ip = super::ip_on(&found, network)
                    .with_context(|| format!("{name} has no address on network {network}"))?;
                let url = format!("http://{ip}:{}/health", super::PUBLIC_PORT);
                let probe = url.clone();
                let answered = tokio::task::spawn_blocking(move || {
                    crate::client::healthcheck(&probe, std::time::Duration::from_secs(2))
                })
                .await
                .context("health probe task panicked")?;
                match answered {
                    Ok(()) => return Ok(()),
                    Err(e) if std::time::Instant::now() > deadline => {
                        bail!("{name} is healthy in Docker but {url} fails: {e:#}")
                    }
                    Err(_) => {}
                }
            }
            Some(HealthStatusEnum::UNHEALTHY) => {
                bail!("{name} is unhealthy: {}", last.trim())
            }
            _ if std::time::Instant::now() > deadline => {
                bail!("{name} was not healthy after 90 s: {}", last.trim())
            }
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether `labels` define a Traefik router whose rule is exactly
/// `Host(`host`)` (what `ensure --host` writes).
pub(crate) fn routes_host(labels: &HashMap<String, String>, host: &str) -> bool {
    let rule = format!("Host(`{host}`)");
    labels.iter().any(|(key, value)| {
        key.starts_with("traefik.http.routers.") && key.ends_with(".rule") && *value == rule
    })
}

/// Containers and Swarm services of other projects (managed by
/// project-http) whose routers match `Host(host)`, as "container NAME
/// (project ID)". A listing the engine refuses (a node outside a swarm has
/// no services) counts as none: this only feeds a warning.
async fn others_on_host(docker: &Docker, project: &Project, host: &str) -> Vec<String> {
    let managed = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=true", super::MANAGED_LABEL)],
    )]);
    let other = |labels: &HashMap<String, String>| {
        let id = labels.get(super::PROJECT_LABEL).map(String::as_str);
        (id != Some(project.id.as_str()) && routes_host(labels, host))
            .then(|| id.unwrap_or("?").to_string())
    };
    let mut found = Vec::new();
    let containers = docker
        .list_containers(Some(bollard::container::ListContainersOptions::<String> {
            all: true,
            filters: managed.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for c in containers {
        let Some(id) = c.labels.as_ref().and_then(&other) else {
            continue;
        };
        // A Swarm task's container carries no router labels (they are on
        // the service), so what is found here is a container.
        let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
        found.push(format!(
            "container {} (project {id})",
            name.trim_start_matches('/')
        ));
    }
    let services = docker
        .list_services(Some(bollard::service::ListServicesOptions::<String> {
            filters: managed,
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for s in services {
        let Some(spec) = s.spec else { continue };
        let Some(id) = spec.labels.as_ref().and_then(&other) else {
            continue;
        };
        found.push(format!(
            "Swarm service {} (project {id})",
            spec.name.unwrap_or_default()
        ));
    }
    found
}

/// Removes `name` at once, with its anonymous volumes (`v`, as `docker rm
/// -f -v`): the project's named volume is never removed by it, and an
/// anonymous one (the image's `VOLUME /srv/static` when a container was
/// made without the project's mount) would be left dangling.
async fn force_remove(docker: &Docker, name: &str) -> Result<()> {
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .with_context(|| format!("cannot remove container {name}"))
}

/// Stops `name` with its lame-duck period and drain, then removes it with
/// its anonymous volumes (as [`force_remove`]; the named volume stays).
pub(crate) async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let _ = docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: stop_timeout_secs(),
            }),
        )
        .await;
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .with_context(|| format!("cannot remove the drifted container {name}"))
}

async fn create_and_start(docker: &Docker, name: &str, config: Config<String>) -> Result<()> {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.to_string(),
                platform: None,
            }),
            config,
        )
        .await
        .with_context(|| format!("cannot create container {name}"))?;
    if let Err(e) = docker
        .start_container(name, None::<StartContainerOptions<String>>)
        .await
    {
        // Leave nothing half-created.
        let _ = force_remove(docker, name).await;
        return Err(e).with_context(|| format!("cannot start container {name}"));
    }
    Ok(())
}

#[cfg(test)]
mod routing_change_tests {
    use super::*;

    #[test]
    fn a_router_for_the_host_is_found_by_its_exact_rule() {
        let routing = super::super::labels::Routing::new("p.example.com");
        let labels = routing.router_labels(&Project::new("41").unwrap(), &[]);
        assert!(routes_host(&labels, "p.example.com"));
        assert!(!routes_host(&labels, "q.example.com"));
        assert!(!routes_host(&labels, "example.com"));
        let hand_made = HashMap::from([(
            "traefik.http.services.x.loadbalancer.server.port".to_string(),
            "Host(`p.example.com`)".to_string(),
        )]);
        assert!(
            !routes_host(&hand_made, "p.example.com"),
            "not a router rule"
        );
    }

    #[test]
    fn the_interim_routing_renames_only_the_projects_own_names() {
        let project = Project::new("42").unwrap();
        let labels: HashMap<String, String> = [
            ("traefik.enable", "true"),
            ("traefik.http.routers.project-42.rule", "Host(`a`)"),
            (
                "traefik.http.routers.project-42.middlewares",
                "project-42-ratelimit,gzip@file",
            ),
            (
                "traefik.http.routers.project-42-sub.rule",
                "HostRegexp(`x`)",
            ),
            (
                "traefik.http.middlewares.project-42-ratelimit.ratelimit.average",
                "5",
            ),
            (
                "traefik.http.services.project-42.loadbalancer.server.port",
                "8080",
            ),
            ("traefik.http.routers.project-420.rule", "Host(`other`)"),
            ("deployer.project", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let renamed = renamed_routing(&labels, &project, INTERIM_SUFFIX);
        let get = |k: &str| renamed.get(k).map(String::as_str);
        assert_eq!(
            get("traefik.http.routers.project-42-interim.rule"),
            Some("Host(`a`)")
        );
        assert_eq!(
            get("traefik.http.routers.project-42-interim.middlewares"),
            Some("project-42-interim-ratelimit,gzip@file")
        );
        assert_eq!(
            get("traefik.http.routers.project-42-interim-sub.rule"),
            Some("HostRegexp(`x`)")
        );
        assert_eq!(
            get("traefik.http.middlewares.project-42-interim-ratelimit.ratelimit.average"),
            Some("5")
        );
        assert_eq!(
            get("traefik.http.services.project-42-interim.loadbalancer.server.port"),
            Some("8080")
        );
        assert_eq!(
            get("traefik.http.routers.project-420.rule"),
            Some("Host(`other`)")
        );
        assert_eq!(get("traefik.enable"), Some("true"));
        assert_eq!(get("deployer.project"), Some("42"));
        assert_eq!(renamed.len(), labels.len());
        assert!(routing_changed(&labels, &renamed));
        let mut other = labels.clone();
        other.insert("deployer.spec".to_string(), "x".to_string());
        assert!(!routing_changed(&labels, &other));
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn an_existing_token_is_kept_unless_another_is_given() {
        let kept = choose_token(None, Some("old".into())).unwrap();
        assert_eq!(kept, ("old".to_string(), TokenChange::Kept, None));
        let same = choose_token(Some("old"), Some("old".into())).unwrap();
        assert_eq!(same, ("old".to_string(), TokenChange::Kept, None));
        let changed = choose_token(Some("new"), Some("old".into())).unwrap();
        assert_eq!(changed, ("new".to_string(), TokenChange::Changed, None));
        let given = choose_token(Some("new"), None).unwrap();
        assert_eq!(given, ("new".to_string(), TokenChange::New, None));
        let (token, change, shown) = choose_token(None, None).unwrap();
        assert_eq!(
            (change, shown.as_deref()),
            (TokenChange::New, Some(&*token))
        );
        assert_eq!(token.len(), 48);
    }
}
