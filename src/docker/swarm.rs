//! `ensure --swarm [--replicas N]`: the project as a Docker Swarm service.
//!
//! The service `project-http-<id>` runs N replicas of the image, all
//! mounting the project's volume at `/srv/static` (they share the
//! deployments; a flip is seen by every replica through its watcher, and
//! deploy locks are `flock`s on that volume). Traefik's Swarm provider reads
//! the routing from the *service* labels ([`service_labels`]), including a
//! `retry` middleware so an idempotent GET that hits a dying task is sent
//! to another one. Updates roll one task at a time, `start-first`: the new
//! task must be `healthy` (Swarm waits for the health check) before the old
//! one gets SIGTERM, which starts its lame-duck period
//! ([`crate::serve::lameduck`]) while the Swarm provider drops it; a task
//! failing within the monitor window rolls the whole update back.
//!
//! Drift is detected from a digest of the desired spec and the image id,
//! kept in the service label `deployer.spec`: a second `ensure` with the
//! same flags and image changes nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::models::{
    Limit, Mount, MountTypeEnum, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkAttachmentConfig, Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateStatusStateEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::service::{InspectServiceOptions, ListServicesOptions, UpdateServiceOptions};
use bollard::Docker;
use sha2::{Digest, Sha256};

use super::ensure::{
    api_minor, desired_env, ensure_network, ensure_volume, health_config, stop_timeout_secs,
    EnsureOptions, EnsureReport,
};
use super::{find_container, is_not_found, Project, STATIC_DIR, TOKEN_ENV};

/// Service label holding the digest of the spec ensure last applied.
pub const SPEC_LABEL: &str = "deployer.spec";
/// Seconds Swarm watches each updated task for failure before going on.
pub const MONITOR_SECS: i64 = 10;

const NANOS: i64 = 1_000_000_000;

/// Service label naming the overlay network Traefik reaches the tasks on
/// (Traefik's Swarm provider reads it; `ensure --swarm` sets it).
pub const NETWORK_LABEL: &str = "traefik.swarm.network";

/// The overlay network of a service `ensure` made ([`NETWORK_LABEL`]);
/// empty when the label is missing.
pub fn service_network(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(NETWORK_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// The containers of service `name`'s tasks on this node, inspected (the
/// engine's `com.docker.swarm.service.name` label); with `all`, stopped
/// ones too.
pub async fn task_containers(
    docker: &Docker,
    name: &str,
    all: bool,
) -> Result<Vec<bollard::models::ContainerInspectResponse>> {
    let listed = docker
        .list_containers(Some(bollard::container::ListContainersOptions::<String> {
            all,
            filters: HashMap::from([(
                "label".to_string(),
                vec![format!("com.docker.swarm.service.name={name}")],
            )]),
            ..Default::default()
        }))
        .await
        .with_context(|| format!("cannot list the tasks of service {name}"))?;
    let mut tasks = Vec::new();
    for summary in listed {
        let Some(id) = summary.id else { continue };
        if let Some(task) = find_container(docker, &id).await? {
            tasks.push(task);
        }
    }
    Ok(tasks)
}

/// Inspects a service by name; `Ok(None)` when there is none (or the
/// engine is not in a swarm).
pub async fn find_service(docker: &Docker, name: &str) -> Result<Option<Service>> {
    match docker
        .inspect_service(name, None::<InspectServiceOptions>)
        .await
    {
        Ok(found) => Ok(Some(found)),
        Err(e) if is_not_found(&e) => Ok(None),
        // 503 "This node is not a swarm manager": no services here.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 503, ..
        }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect service {name}")),
    }
}

/// The service's labels: ownership, Traefik's Swarm-provider network, the
/// routing shared with the single container ([`super::labels::Routing`]),
/// the `retry` middleware (3 attempts, 50 ms initial back-off, idempotent
/// requests answered 502/504 retried too), attached after the operator's
/// middlewares, and Traefik's passive health check on the service.
pub fn service_labels(
    project: &Project,
    routing: &super::labels::Routing,
    network: &str,
) -> HashMap<String, String> {
    let router = project.router();
    let retry = format!("{router}-retry");
    let mut labels = project.ownership_labels();
    labels.extend(routing.router_labels(project, std::slice::from_ref(&retry)));
    labels.extend([
        ("traefik.enable".to_string(), "true".to_string()),
        (NETWORK_LABEL.to_string(), network.to_string()),
        (
            format!("traefik.http.middlewares.{retry}.retry.attempts"),
            "3".to_string(),
        ),
        (
            format!("traefik.http.middlewares.{retry}.retry.initialinterval"),
            "50ms".to_string(),
        ),
        // Traefik retries a network error only before the request was
        // written; a GET in flight to a task that is killed gets Traefik's
        // own 502 (connection reset) or 504. With `status`, those answers
        // to idempotent methods are retried too (the retry
        // middleware's `status` option, in 3.7), so the client never sees them.
        (
            format!("traefik.http.middlewares.{retry}.retry.status"),
            "502,504".to_string(),
        ),
        // Traefik's passive health check: a task that failed one request
        // (its connection refused as it died) is left out of the load
        // balancer for 10 s, so the retry goes to another task instead of
        // dialling the dead address again, which hangs once the task's
        // network namespace is gone; by then the Swarm provider has
        // dropped it.
        (
            format!(
                "traefik.http.services.{router}.loadbalancer.passivehealthcheck.maxfailedattempts"
            ),
            "1".to_string(),
        ),
        (
            format!("traefik.http.services.{router}.loadbalancer.passivehealthcheck.failurewindow"),
            "10s".to_string(),
        ),
    ]);
    labels
}

/// The desired service spec (without the [`SPEC_LABEL`]).
fn desired_spec(options: &EnsureOptions, token: &str, api_minor: u64) -> ServiceSpec {
    let project = &options.project;
    let volume_options = (!options.volume_opts.is_empty()).then(|| MountVolumeOptions {
        labels: Some(project.ownership_labels()),
        driver_config: Some(MountVolumeOptionsDriverConfig {
            name: Some("local".to_string()),
            options: Some(options.volume_opts.iter().cloned().collect()),
        }),
        ..Default::default()
    });
    ServiceSpec {
        name: Some(project.container()),
        labels: Some(service_labels(project, &options.routing, &options.network)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(options.image.clone()),
                labels: Some(project.ownership_labels()),
                env: Some(desired_env(token, options)),
                user: Some("101:101".to_string()),
                mounts: Some(vec![Mount {
                    target: Some(STATIC_DIR.to_string()),
                    source: Some(project.volume()),
                    typ: Some(MountTypeEnum::VOLUME),
                    volume_options,
                    ..Default::default()
                }]),
                health_check: Some(health_config(api_minor)),
                stop_grace_period: Some(stop_timeout_secs() * NANOS),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    memory_bytes: Some(options.memory_bytes),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(NANOS),
                max_attempts: None,
                window: None,
            }),
            log_driver: Some(super::logs::task_log_driver(&options.log_opts)),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(options.network.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(options.replicas as i64),
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(MONITOR_SECS * NANOS),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        }),
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(MONITOR_SECS * NANOS),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
        }),
        ..Default::default()
    }
}

/// Hex SHA-256 (first 16 bytes) of the spec as canonical JSON (through
/// `serde_json::Value`, whose maps are sorted: the spec's label and option
/// `HashMap`s would serialize in random order) and the image id.
fn spec_digest(spec: &ServiceSpec, image_id: &str) -> Result<String> {
    let canonical = serde_json::to_value(spec).context("cannot serialize the service spec")?;
    let mut hasher = Sha256::new();
    hasher.update(canonical.to_string().as_bytes());
    hasher.update(image_id.as_bytes());
    Ok(hex::encode(&hasher.finalize()[..16]))
}

/// Creates or updates the project's Swarm service and waits until it has
/// converged (every replica running and healthy, or the update rolled back:
/// an error). A single container of the project is drain-stopped and
/// removed once the service serves.
pub async fn ensure_service(docker: &Docker, options: &EnsureOptions) -> Result<EnsureReport> {
    let project = &options.project;
    if options.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let info = docker
        .info()
        .await
        .context("cannot read the engine's info")?;
    let state = info.swarm.and_then(|s| s.local_node_state);
    if state != Some(bollard::models::LocalNodeState::ACTIVE) {
        bail!(
            "this Docker engine is not part of a swarm (state {}): run `docker swarm init` \
             (a single node is enough), or leave out --swarm for one container",
            state.map(|s| s.to_string()).unwrap_or_default()
        );
    }
    let image = super::local_image(
        docker,
        &options.image,
        "; on a multi-node swarm every node needs it (push it to a registry)",
    )
    .await?;
    let name = project.container();
    let existing = find_service(docker, &name).await?;
    if let Some(found) = &existing {
        let labels = found.spec.as_ref().and_then(|s| s.labels.as_ref());
        if !project.owns(labels) {
            bail!(
                "a service named {name} exists but is not managed by project-http: rename or remove it first"
            );
        }
    }
    let container = find_container(docker, &name).await?;
    if let Some(found) = &container {
        let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
        if !project.owns(labels) {
            bail!("a container named {name} exists but is not managed by project-http: rename or remove it first");
        }
    }
    let current_token = existing
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| {
            let prefix = format!("{TOKEN_ENV}=");
            env.iter()
                .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
        })
        .or_else(|| {
            container
                .as_ref()
                .and_then(|c| super::env_value(c, TOKEN_ENV))
        });
    let (token, token_change, generated_token) =
        super::ensure::choose_token(options.admin_token.as_deref(), current_token)?;

    let volume_created = ensure_volume(docker, project, &options.volume_opts).await?;
    let network_created = ensure_network(docker, project, &options.network, true).await?;

    let mut spec = desired_spec(options, &token, api_minor(docker));
    let digest = spec_digest(&spec, image.id.as_deref().unwrap_or_default())?;
    if let Some(labels) = spec.labels.as_mut() {
        labels.insert(SPEC_LABEL.to_string(), digest.clone());
    }

    let (action, drift) = match &existing {
        None => {
            docker
                .create_service(spec, None)
                .await
                .with_context(|| format!("cannot create service {name}"))?;
            ("created", Vec::new())
        }
        Some(found) => {
            let current = found
                .spec
                .as_ref()
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get(SPEC_LABEL))
                .cloned();
            if current.as_deref() == Some(digest.as_str()) {
                ("unchanged", Vec::new())
            } else {
                let version = found
                    .version
                    .as_ref()
                    .and_then(|v| v.index)
                    .context("the service has no version")?;
                let drift = describe_drift(found, &spec, &image);
                docker
                    .update_service(
                        &name,
                        spec,
                        UpdateServiceOptions {
                            version,
                            ..Default::default()
                        },
                        None,
                    )
                    .await
                    .with_context(|| format!("cannot update service {name}"))?;
                ("updated", drift)
            }
        }
    };
    wait_converged(docker, &name, options.replicas, action == "updated").await?;
    let mut drift = drift;
    if container.is_some() {
        // The service serves now: the single container goes, drained.
        super::ensure::remove(docker, &name).await?;
        drift.push(format!("container {name} replaced by the service"));
    }
    let id = find_service(docker, &name)
        .await?
        .and_then(|s| s.id)
        .unwrap_or_default();
    Ok(EnsureReport {
        container: name,
        container_id: id,
        gapless: action == "updated",
        action: action.to_string(),
        drift,
        volume_created,
        network_created,
        urls: options.routing.site_urls(),
        generated_token,
        admin_token: token_change,
        token,
    })
}

/// Human reasons for an update (what an operator would want to read).
fn describe_drift(
    found: &Service,
    spec: &ServiceSpec,
    image: &bollard::models::ImageInspect,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let have = found.spec.clone().unwrap_or_default();
    let container = |s: &ServiceSpec| {
        s.task_template
            .as_ref()
            .and_then(|t| t.container_spec.clone())
            .unwrap_or_default()
    };
    let (old, new) = (container(&have), container(spec));
    let strip = |i: Option<String>| {
        i.unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (old_image, new_image) = (strip(old.image.clone()), strip(new.image.clone()));
    if old_image != new_image {
        reasons.push(format!("image {old_image:?} → {new_image:?}"));
    }
    let replicas = |s: &ServiceSpec| {
        s.mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
    };
    if replicas(&have) != replicas(spec) {
        reasons.push(format!(
            "replicas {} → {}",
            replicas(&have).unwrap_or(0),
            replicas(spec).unwrap_or(0)
        ));
    }
    let mut labels = have.labels.clone().unwrap_or_default();
    labels.remove(SPEC_LABEL);
    let mut wanted = spec.labels.clone().unwrap_or_default();
    wanted.remove(SPEC_LABEL);
    if labels != wanted {
        reasons.push("labels differ".to_string());
    }
    if old.env != new.env {
        reasons.push("environment differs".to_string());
    }
    let memory = |s: &ServiceSpec| {
        s.task_template
            .as_ref()
            .and_then(|t| t.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.memory_bytes)
    };
    if memory(&have) != memory(spec) {
        reasons.push("memory limit differs".to_string());
    }
    if reasons.is_empty() {
        reasons.push(format!(
            "spec or image {} changed",
            image.id.as_deref().unwrap_or_default()
        ));
    }
    reasons
}

/// Waits until the service runs `replicas` tasks and, after an `updated`,
/// its update completed; an update Swarm paused or rolled back is an error
/// that says so.
async fn wait_converged(docker: &Docker, name: &str, replicas: u64, updated: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    // The update status appears a moment after the update call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let listed = docker
            .list_services(Some(ListServicesOptions {
                filters: HashMap::from([("name".to_string(), vec![name.to_string()])]),
                status: true,
            }))
            .await
            .with_context(|| format!("cannot list service {name}"))?;
        let service = listed
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
            .with_context(|| format!("service {name} disappeared"))?;
        let running = service
            .service_status
            .as_ref()
            .and_then(|s| s.running_tasks)
            .unwrap_or(0);
        let update = if updated {
            service.update_status.clone().unwrap_or_default()
        } else {
            Default::default()
        };
        let message = update.message.clone().unwrap_or_default();
        match update.state {
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED)
            | Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => bail!(
                "the update of {name} failed and Swarm rolled it back ({message}): \
                 the previous spec is serving; see `docker service ps {name} --no-trunc`"
            ),
            Some(ServiceUpdateStatusStateEnum::PAUSED) => bail!(
                "the update of {name} is paused ({message}): see `docker service ps {name} --no-trunc`"
            ),
            Some(ServiceUpdateStatusStateEnum::UPDATING)
            | Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => {}
            _ if running >= replicas => return Ok(()),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!(
                "service {name} did not converge in 300 s ({running}/{replicas} tasks running, update {}): \
                 see `docker service ps {name} --no-trunc`",
                update.state.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> EnsureOptions {
        EnsureOptions {
            project: Project::new("p1").unwrap(),
            routing: crate::docker::labels::Routing::new("p1.example.com"),
            network: "web".to_string(),
            image: "project-http:1".to_string(),
            admin_token: None,
            memory_bytes: 1 << 28,
            io_uring: false,
            swarm: true,
            replicas: 3,
            volume_opts: vec![("type".to_string(), "nfs".to_string())],
            watch: None,
            log_opts: Vec::new(),
            access_log: Default::default(),
        }
    }

    #[test]
    fn the_spec_digest_is_stable_and_follows_the_spec() {
        // HashMaps iterate in a per-instance random order: build many.
        let digests: std::collections::HashSet<String> = (0..20)
            .map(|_| spec_digest(&desired_spec(&options(), "t", 41), "sha256:1").unwrap())
            .collect();
        assert_eq!(digests.len(), 1);
        let one = digests.into_iter().next().unwrap();
        let mut other = options();
        other.replicas = 2;
        assert_ne!(
            spec_digest(&desired_spec(&other, "t", 41), "sha256:1").unwrap(),
            one
        );
        assert_ne!(
            spec_digest(&desired_spec(&options(), "t", 41), "sha256:2").unwrap(),
            one
        );
    }

    #[test]
    fn watch_poll_reaches_the_tasks_environment() {
        let mut poll = options();
        poll.watch = Some(crate::config::WatchMode::Poll);
        let env = |o: &EnsureOptions| {
            desired_spec(o, "t", 41)
                .task_template
                .unwrap()
                .container_spec
                .unwrap()
                .env
                .unwrap()
        };
        assert!(env(&poll).contains(&"PROJECT_HTTP_WATCH=poll".to_string()));
        assert!(!env(&options())
            .iter()
            .any(|e| e.starts_with("PROJECT_HTTP_WATCH=")));
        assert!(env(&options()).contains(&"PROJECT_HTTP_STOP_GRACE_SECS=10".to_string()));
    }

    #[test]
    fn the_routing_flags_and_bounded_logs_reach_the_service() {
        let mut o = options();
        o.routing.entrypoints = vec!["websecure".to_string()];
        o.routing.tls = true;
        o.routing.subdomains = true;
        o.routing.middlewares = vec!["compress@file".to_string()];
        let spec = desired_spec(&o, "t", 41);
        let labels = spec.labels.unwrap();
        for router in ["project-p1", "project-p1-sub"] {
            let get = |k: &str| labels[&format!("traefik.http.routers.{router}.{k}")].clone();
            assert_eq!(get("entrypoints"), "websecure");
            assert_eq!(get("tls"), "true");
            assert_eq!(get("middlewares"), "compress@file,project-p1-retry");
        }
        let task = spec.task_template.unwrap();
        let driver = task.log_driver.unwrap();
        assert_eq!(driver.name.as_deref(), Some("json-file"));
        assert_eq!(driver.options.unwrap()["max-size"], "10m");
        let env = task.container_spec.unwrap().env.unwrap();
        assert!(env.contains(&"PROJECT_HTTP_HOST_SUFFIX=p1.example.com".to_string()));
    }
}
