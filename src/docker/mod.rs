//! Running project-http for a project on a Docker engine (bollard):
//! [`ensure`] creates or repairs the `project-http-<id>` container, its
//! volume and network; [`status`] reports on it; [`migrate`] moves the
//! sites of old per-deployment nginx containers into it.
//!
//! Everything is named from the project id, and everything created carries
//! `deployer.managed=true` and `deployer.project=<id>`, so a container of
//! the same name that is not ours is never touched.

pub mod ensure;
pub mod migrate;
pub mod seccomp;
pub mod status;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::container::InspectContainerOptions;
use bollard::models::ContainerInspectResponse;
use bollard::Docker;

pub const MANAGED_LABEL: &str = "deployer.managed";
pub const PROJECT_LABEL: &str = "deployer.project";
/// Where the image keeps deployments (the volume's mount point).
pub const STATIC_DIR: &str = "/srv/static";
pub const PUBLIC_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9080;
pub const TOKEN_ENV: &str = "PROJECT_HTTP_ADMIN_TOKEN";

/// The names of a project's Docker objects.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
}

impl Project {
    pub fn new(id: &str) -> Result<Project> {
        if !crate::store::is_valid_name(id) {
            bail!("invalid project id {id:?}: use 1-64 of A-Z a-z 0-9 _ -");
        }
        Ok(Project { id: id.to_string() })
    }

    pub fn container(&self) -> String {
        format!("project-http-{}", self.id)
    }

    pub fn volume(&self) -> String {
        format!("project-{}-static", self.id)
    }

    pub fn router(&self) -> String {
        format!("project-{}", self.id)
    }

    /// Labels on everything ensure creates.
    pub fn ownership_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (PROJECT_LABEL.to_string(), self.id.clone()),
        ])
    }

    /// The container's labels, exactly: Traefik routing plus ownership.
    pub fn container_labels(&self, host: &str, network: &str) -> HashMap<String, String> {
        let router = self.router();
        let mut labels = self.ownership_labels();
        labels.extend([
            ("traefik.enable".to_string(), "true".to_string()),
            ("traefik.docker.network".to_string(), network.to_string()),
            (
                format!("traefik.http.routers.{router}.entrypoints"),
                "web".to_string(),
            ),
            (
                format!("traefik.http.routers.{router}.rule"),
                format!("Host(`{host}`)"),
            ),
            (
                format!("traefik.http.services.{router}.loadbalancer.server.port"),
                PUBLIC_PORT.to_string(),
            ),
        ]);
        labels
    }

    /// True when `labels` say the object belongs to this project.
    pub fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels.is_some_and(|l| {
            l.get(MANAGED_LABEL).map(String::as_str) == Some("true")
                && l.get(PROJECT_LABEL) == Some(&self.id)
        })
    }
}

/// Connects to the engine (DOCKER_HOST or the local socket) and agrees on
/// an API version, with an error that says what to check.
pub async fn connect() -> Result<Docker> {
    let where_ =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
    let docker = Docker::connect_with_local_defaults()
        .with_context(|| format!("cannot connect to the Docker engine at {where_}"))?;
    let docker = docker.negotiate_version().await.with_context(|| {
        format!("cannot reach the Docker engine at {where_}: is it running, and may this user use it? (set DOCKER_HOST to use another engine)")
    })?;
    docker
        .ping()
        .await
        .with_context(|| format!("the Docker engine at {where_} does not answer"))?;
    Ok(docker)
}

/// True when bollard's error is the engine's 404.
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Inspects a container by name; `Ok(None)` when there is none.
pub async fn find_container(
    docker: &Docker,
    name: &str,
) -> Result<Option<ContainerInspectResponse>> {
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(found) => Ok(Some(found)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect container {name}")),
    }
}

/// The value of `KEY` in a container's environment.
pub fn env_value(container: &ContainerInspectResponse, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    container
        .config
        .as_ref()?
        .env
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix(&prefix).map(str::to_string))
}

/// The container's IP address on `network`.
pub fn ip_on(container: &ContainerInspectResponse, network: &str) -> Option<String> {
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let ip = networks.get(network)?.ip_address.clone()?;
    (!ip.is_empty()).then_some(ip)
}

/// The network the container is attached to (the first one, by name).
pub fn first_network(container: &ContainerInspectResponse) -> Option<String> {
    let networks = container.network_settings.as_ref()?.networks.as_ref()?;
    let mut names: Vec<&String> = networks.keys().collect();
    names.sort();
    names.first().map(|n| n.to_string())
}

/// Admin URL and token of a running project container, reached by its IP
/// on its network (the admin port is never published on the host).
pub fn admin_endpoint(container: &ContainerInspectResponse) -> Result<(String, Option<String>)> {
    let ip = container_ip(container)?;
    Ok((
        format!("http://{ip}:{ADMIN_PORT}"),
        env_value(container, TOKEN_ENV),
    ))
}

/// The public URL of a running project container.
pub fn public_endpoint(container: &ContainerInspectResponse) -> Result<String> {
    Ok(format!("http://{}:{PUBLIC_PORT}", container_ip(container)?))
}

/// The container's address on its (first) network.
fn container_ip(container: &ContainerInspectResponse) -> Result<String> {
    let network = first_network(container).context("the project container is on no network")?;
    ip_on(container, &network).context("the project container has no IP address: is it running?")
}
