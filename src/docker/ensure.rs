//! `project-http ensure`: make the project's container exist as specified.
//!
//! Idempotent: a second run finds nothing to change and says so. A
//! container whose image, labels, environment or settings drifted is
//! recreated; the volume (the deployments) is never deleted, so the files
//! are served again as soon as the new container starts. Every check that
//! can refuse (engine, image, a foreign container with our name) runs
//! before anything is created.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::container::{
    Config, CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard::models::{
    ContainerInspectResponse, HealthConfig, HostConfig, Mount, MountTypeEnum, RestartPolicy,
    RestartPolicyNameEnum,
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
    pub host: String,
    pub network: String,
    pub image: String,
    /// `None`: keep the running container's token, or generate one.
    pub admin_token: Option<String>,
    pub memory_bytes: i64,
    /// Run with the seccomp profile that allows io_uring ([`super::seccomp`]).
    pub io_uring: bool,
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
    /// Set only when ensure generated a new token (print it once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_token: Option<String>,
}

pub async fn ensure(docker: &Docker, options: &EnsureOptions) -> Result<EnsureReport> {
    let project = &options.project;
    if options.host.is_empty() || options.host.contains(['`', ' ', '/']) {
        bail!(
            "invalid --host {:?}: give a bare host name like p42.example.com",
            options.host
        );
    }
    // Checks first: nothing is created if any of them fails.
    let image = match docker.inspect_image(&options.image).await {
        Ok(image) => image,
        Err(e) if is_not_found(&e) => bail!(
            "image {} is not in this Docker engine: build it with `scripts/build-image.sh {}` (or pass --image)",
            options.image,
            options.image
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect image {}", options.image)),
    };
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

    let (token, generated_token) = match (
        &options.admin_token,
        existing
            .as_ref()
            .and_then(|c| super::env_value(c, TOKEN_ENV)),
    ) {
        (Some(token), _) => (token.clone(), None),
        (None, Some(token)) => (token, None),
        (None, None) => {
            let token = random_token()?;
            (token.clone(), Some(token))
        }
    };

    let volume_created = ensure_volume(docker, project).await?;
    let network_created = ensure_network(docker, project, &options.network).await?;

    let image_id = image.id.clone().unwrap_or_default();
    let image_env: Vec<String> = image
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let desired = desired_config(options, &token);

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
                remove(docker, &name).await?;
                create_and_start(docker, &name, desired).await?;
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
        volume_created,
        network_created,
        generated_token,
    })
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to generate an admin token")?;
    Ok(hex::encode(bytes))
}

async fn ensure_volume(docker: &Docker, project: &Project) -> Result<bool> {
    let name = project.volume();
    match docker.inspect_volume(&name).await {
        Ok(_) => Ok(false),
        Err(e) if is_not_found(&e) => {
            docker
                .create_volume(CreateVolumeOptions {
                    name: name.clone(),
                    labels: project.ownership_labels(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("cannot create volume {name}"))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("cannot inspect volume {name}")),
    }
}

async fn ensure_network(docker: &Docker, project: &Project, network: &str) -> Result<bool> {
    match docker
        .inspect_network(
            network,
            None::<bollard::network::InspectNetworkOptions<String>>,
        )
        .await
    {
        Ok(_) => Ok(false),
        Err(e) if is_not_found(&e) => {
            docker
                .create_network(CreateNetworkOptions {
                    name: network.to_string(),
                    driver: "bridge".to_string(),
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

fn desired_config(options: &EnsureOptions, token: &str) -> Config<String> {
    let project = &options.project;
    let seconds = |n: i64| n * 1_000_000_000;
    Config {
        image: Some(options.image.clone()),
        labels: Some(project.container_labels(&options.host, &options.network)),
        env: Some(vec![format!("{TOKEN_ENV}={token}")]),
        healthcheck: Some(HealthConfig {
            test: Some(vec![
                "CMD".to_string(),
                "/project-http".to_string(),
                "healthcheck".to_string(),
            ]),
            interval: Some(seconds(5)),
            timeout: Some(seconds(3)),
            retries: Some(3),
            start_period: Some(seconds(5)),
            start_interval: None,
        }),
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
    if Some(&labels) != desired.labels.as_ref() {
        reasons.push("labels differ".to_string());
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

async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let _ = docker
        .stop_container(name, Some(StopContainerOptions { t: 10 }))
        .await;
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: false,
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
        let _ = docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        return Err(e).with_context(|| format!("cannot start container {name}"));
    }
    Ok(())
}
