//! Running project-http for a project on a Docker engine (bollard):
//! [`ensure`] creates or repairs the `project-http-<id>` container, its
//! volume and network; [`status`] reports on it; [`migrate`] moves the
//! sites of old per-deployment nginx containers into it. [`swarm`] runs the
//! project as a Docker Swarm service with replicas instead. [`labels`]
//! writes the Traefik routing both use; [`logs`] bounds the container's logs.
//!
//! Everything is named from the project id, and everything created carries
//! `deployer.managed=true` and `deployer.project=<id>`, so a container of
//! the same name that is not ours is never touched.

pub mod ensure;
pub mod hostname;
pub mod labels;
pub mod logs;
pub mod migrate;
pub mod seccomp;
pub mod status;
pub mod swarm;

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

    /// The container's labels, exactly: ownership, `traefik.enable`, the
    /// Docker provider's network and the routing ([`labels::Routing`]).
    pub fn container_labels(
        &self,
        routing: &labels::Routing,
        network: &str,
    ) -> HashMap<String, String> {
        let mut labels = self.ownership_labels();
        labels.extend([
            ("traefik.enable".to_string(), "true".to_string()),
            ("traefik.docker.network".to_string(), network.to_string()),
        ]);
        labels.extend(routing.router_labels(self, &[]));
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

/// Inspects `image` (Docker's `GET /images/{name}/json`) in this engine; a
/// missing image is an error that says how to build it, followed by `hint`
/// (what else the caller's mode needs, or nothing).
pub async fn local_image(
    docker: &Docker,
    image: &str,
    hint: &str,
) -> Result<bollard::models::ImageInspect> {
    match docker.inspect_image(image).await {
        Ok(found) => Ok(found),
        Err(e) if is_not_found(&e) => bail!(
            "image {image} is not in this Docker engine: build it with `scripts/build-image.sh {image}` (or pass --image){hint}"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot inspect image {image}")),
    }
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

/// Whether `ip` is on a network this process is directly attached to: a
/// route without a gateway (Linux `/proc/net/route`, IPv4) covers it. A
/// Swarm task's address on its overlay network passes only inside a
/// container attached to that network; on the host it would go to the
/// default route (somewhere else entirely), so callers never send to it.
pub fn on_link(ip: &str) -> bool {
    let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/net/route") else {
        return false;
    };
    routes_on_link(&table, ip)
}

/// [`on_link`] over the text of `/proc/net/route`: columns `Iface
/// Destination Gateway Flags RefCnt Use Metric Mask …`, addresses as
/// native-endian (little-endian on x86) hex.
fn routes_on_link(table: &str, ip: std::net::Ipv4Addr) -> bool {
    let ip = u32::from_le_bytes(ip.octets());
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok());
        match (hex(1), hex(2), hex(7)) {
            (Some(destination), Some(0), Some(mask)) if mask != 0 => ip & mask == destination,
            _ => false,
        }
    })
}

/// The project's server to talk to: the container `project-http-<id>`, or
/// for a Swarm service (`ensure --swarm`) a running task of it on this
/// node, which must be on a network this process is attached to (run the
/// command in a container on the service's overlay network).
pub async fn project_server(
    docker: &Docker,
    project: &Project,
) -> Result<ContainerInspectResponse> {
    let name = project.container();
    if let Some(found) = find_container(docker, &name).await? {
        return Ok(found);
    }
    let Some(service) = swarm::find_service(docker, &name).await? else {
        bail!(
            "no project container or service {name}: run `project-http ensure --project {} --host <HOST>` first",
            project.id
        );
    };
    let network = swarm::service_network(&service);
    for task in swarm::task_containers(docker, &name, false).await? {
        let healthy = task
            .state
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .is_some_and(|s| s == bollard::models::HealthStatusEnum::HEALTHY);
        let Some(ip) = ip_on(&task, &network) else {
            continue;
        };
        if !healthy {
            continue;
        }
        if !on_link(&ip) {
            let image = task
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_else(|| "<IMAGE>".to_string());
            let image = image.split('@').next().unwrap_or(&image).to_string();
            bail!(
                "{name} is a Swarm service: its tasks' ports are on the overlay network {network}, \
                 which this host cannot reach. Run the command from a container on that network, e.g. \
                 `docker run --rm --network {network} --user 0 -v /var/run/docker.sock:/var/run/docker.sock \
                 {image} <command> --project {}`",
                project.id
            );
        }
        let mut task = task;
        // Talk to it on the service's network (a task may have others).
        if let Some(settings) = task.network_settings.as_mut() {
            if let Some(networks) = settings.networks.as_mut() {
                networks.retain(|n, _| *n == network);
            }
        }
        return Ok(task);
    }
    bail!("no healthy task of the Swarm service {name} runs on this node (see `project-http status --project {}`)", project.id)
}

#[cfg(test)]
mod route_tests {
    use super::routes_on_link;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn only_addresses_of_a_gatewayless_route_are_on_link() {
        // 10.0.1.0/24 dev eth0; default via 10.0.1.1.
        assert!(routes_on_link(TABLE, "10.0.1.7".parse().unwrap()));
        assert!(!routes_on_link(TABLE, "10.0.2.7".parse().unwrap()));
        assert!(!routes_on_link(TABLE, "8.8.8.8".parse().unwrap()));
        assert!(!routes_on_link("", "10.0.1.7".parse().unwrap()));
    }
}
