//! `project-http status`: the project container (or Swarm service and its
//! tasks) and what it serves: the routers' URLs as Traefik serves them
//! (read back from the labels `ensure` wrote), the engine's resource
//! figures (one `GET /containers/{id}/stats?stream=false` sample: CPU %,
//! memory against the limit, network I/O), the log settings and the
//! volume's free space (the server's `project_http_volume_free_bytes`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use bollard::models::ContainerInspectResponse;
use bollard::Docker;
use serde::Serialize;

use super::labels::{routers_from_labels, RouterView};
use super::logs::AccessLog;

use super::{admin_endpoint, find_container, first_network, ip_on, Project};
use crate::client::AdminClient;

#[derive(Debug, Serialize)]
pub struct Status {
    pub container: String,
    pub id: String,
    pub state: String,
    pub health: String,
    pub image: String,
    pub volume: String,
    pub network: String,
    pub ip: String,
    pub services: Vec<ServiceStatus>,
    /// The project's Traefik routers and the URLs they serve.
    pub routers: Vec<RouterStatus>,
    /// The engine's figures for the container (not for a Swarm service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Why the resource figures could not be read, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_error: Option<String>,
    pub logs: LogStatus,
    /// Bytes free on the volume (statvfs `f_bavail`, from the server's metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_free_bytes: Option<u64>,
    /// Size of the volume (statvfs `f_blocks`, from the server's metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_total_bytes: Option<u64>,
    /// Set when the project runs as a Swarm service (`ensure --swarm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmStatus>,
    /// Why the services could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_error: Option<String>,
}

/// One Traefik router of the project, as its labels define it.
#[derive(Debug, Serialize)]
pub struct RouterStatus {
    #[serde(flatten)]
    pub router: RouterView,
    /// What a browser opens: one URL per service (`<service>` when the
    /// services are unknown), on the entry points' ports.
    pub urls: Vec<String>,
}

/// One sample of the engine's stats of the container.
#[derive(Debug, Serialize)]
pub struct Resources {
    /// Percent of one CPU (100 = one core busy), over the engine's ~1 s
    /// sampling interval, as `docker stats` computes it.
    pub cpu_percent: f64,
    /// Memory in use without the page cache (as `docker stats`), bytes.
    pub memory_bytes: u64,
    /// The container's memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// Bytes received on all networks since the start.
    pub network_rx_bytes: u64,
    /// Bytes sent on all networks since the start.
    pub network_tx_bytes: u64,
}

/// The log driver, its options and the server's access-log mode.
#[derive(Debug, Serialize, Default)]
pub struct LogStatus {
    /// Docker's log driver (`json-file` when `ensure` set it).
    pub driver: String,
    pub options: BTreeMap<String, String>,
    /// The most bytes the log files can hold (`max-size` × `max-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_bytes: Option<u64>,
    /// `on`, `off` or `sample=N (one request in N)`.
    pub access_log: String,
}

/// The Swarm service: replicas and the tasks this node runs.
#[derive(Debug, Serialize)]
pub struct SwarmStatus {
    pub running: u64,
    pub desired: u64,
    /// Swarm's `UpdateStatus.State` (`updating`, `completed`,
    /// `rollback_completed`, ...), empty when never updated.
    pub update: String,
    pub update_message: String,
    /// Tasks whose containers run on this engine's node.
    pub tasks: Vec<TaskStatus>,
}

/// One task (its container on this node).
#[derive(Debug, Serialize)]
pub struct TaskStatus {
    pub name: String,
    pub state: String,
    pub health: String,
    pub node: String,
    pub ip: String,
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub current: Option<String>,
    pub deployments: usize,
    pub disk_bytes: u64,
}

pub async fn status(docker: &Docker, project: &Project) -> Result<Status> {
    let name = project.container();
    if let Some(service) = super::swarm::find_service(docker, &name).await? {
        return swarm_status(docker, project, service).await;
    }
    let found = find_container(docker, &name).await?.with_context(|| {
        format!(
            "no container {name}: create it with `project-http ensure --project {} --host <HOST>`",
            project.id
        )
    })?;
    let state = found.state.clone().unwrap_or_default();
    let network = first_network(&found).unwrap_or_default();
    let mut status = Status {
        container: name,
        id: found
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect(),
        state: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_string()),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".to_string()),
        image: found
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        volume: project.volume(),
        ip: ip_on(&found, &network).unwrap_or_default(),
        network,
        services: Vec::new(),
        routers: Vec::new(),
        resources: None,
        resources_error: None,
        logs: container_logs(&found),
        volume_free_bytes: None,
        volume_total_bytes: None,
        swarm: None,
        admin_error: None,
    };
    if state.running == Some(true) {
        match resources(docker, &status.container).await {
            Ok(figures) => status.resources = Some(figures),
            Err(e) => status.resources_error = Some(format!("{e:#}")),
        }
    } else {
        status.resources_error = Some("the container is not running".to_string());
    }
    let endpoint = admin_endpoint(&found);
    let listed = match endpoint {
        Ok((url, token)) => tokio::task::spawn_blocking(move || services(&url, token))
            .await
            .context("status task panicked")?,
        Err(e) => Err(e),
    };
    match listed {
        Ok((services, metrics)) => {
            status.services = services;
            status.volume_free_bytes = gauge(&metrics, "project_http_volume_free_bytes");
            status.volume_total_bytes = gauge(&metrics, "project_http_volume_total_bytes");
        }
        Err(e) => status.admin_error = Some(format!("{e:#}")),
    }
    let labels = found
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    status.routers = router_status(project, &labels, &status.services);
    Ok(status)
}

async fn swarm_status(
    docker: &Docker,
    project: &Project,
    service: bollard::models::Service,
) -> Result<Status> {
    let name = project.container();
    let spec = service.spec.clone().unwrap_or_default();
    let container_spec = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.clone())
        .unwrap_or_default();
    let network = super::swarm::service_network(&service);
    let listed = docker
        .list_services(Some(bollard::service::ListServicesOptions {
            filters: HashMap::from([("name".to_string(), vec![name.clone()])]),
            status: true,
        }))
        .await
        .context("cannot list services")?;
    let counts = listed
        .iter()
        .find(|s| s.id == service.id)
        .and_then(|s| s.service_status.clone())
        .unwrap_or_default();
    let update = service.update_status.clone().unwrap_or_default();
    let mut tasks = Vec::new();
    let mut first_running = None;
    for found in super::swarm::task_containers(docker, &name, true).await? {
        let id = found.id.clone().unwrap_or_default();
        let state = found.state.clone().unwrap_or_default();
        let labels = found
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let running = state.running == Some(true);
        if running && first_running.is_none() {
            first_running = Some(found.clone());
        }
        tasks.push(TaskStatus {
            name: labels
                .get("com.docker.swarm.task.name")
                .cloned()
                .unwrap_or_else(|| id.chars().take(12).collect()),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".to_string()),
            node: labels
                .get("com.docker.swarm.node.id")
                .cloned()
                .unwrap_or_default(),
            ip: ip_on(&found, &network).unwrap_or_default(),
        });
    }
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut status = Status {
        container: name,
        id: service
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect(),
        state: "swarm service".to_string(),
        health: format!(
            "{}/{} tasks running",
            counts.running_tasks.unwrap_or(0),
            counts.desired_tasks.unwrap_or(0)
        ),
        image: container_spec
            .image
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string(),
        volume: project.volume(),
        ip: String::new(),
        network,
        services: Vec::new(),
        routers: router_status(project, &spec.labels.clone().unwrap_or_default(), &[]),
        resources: None,
        resources_error: Some(
            "per task: `docker stats` on this node's tasks (a service has no single container)"
                .to_string(),
        ),
        logs: swarm_logs(&spec),
        volume_free_bytes: None,
        volume_total_bytes: None,
        swarm: Some(SwarmStatus {
            running: counts.running_tasks.unwrap_or(0),
            desired: counts.desired_tasks.unwrap_or(0),
            update: update.state.map(|s| s.to_string()).unwrap_or_default(),
            update_message: update.message.unwrap_or_default(),
            tasks,
        }),
        admin_error: None,
    };
    // Overlay addresses are reachable only from a container on the
    // overlay network; from anywhere else they would go to the default
    // route, so they are used only where they are on-link.
    let reachable = first_running.as_ref().and_then(|task| {
        let ip = ip_on(task, &status.network)?;
        super::on_link(&ip).then(|| {
            (
                format!("http://{ip}:{}", super::ADMIN_PORT),
                super::env_value(task, super::TOKEN_ENV),
            )
        })
    });
    if let Some((url, token)) = reachable {
        match tokio::task::spawn_blocking(move || services(&url, token)).await? {
            Ok((services, metrics)) => {
                status.services = services;
                status.volume_free_bytes = gauge(&metrics, "project_http_volume_free_bytes");
                status.volume_total_bytes = gauge(&metrics, "project_http_volume_total_bytes");
            }
            Err(e) => status.admin_error = Some(format!("{e:#}")),
        }
        let labels = spec.labels.clone().unwrap_or_default();
        status.routers = router_status(project, &labels, &status.services);
        return Ok(status);
    }
    status.admin_error = Some(match first_running.and_then(|c| c.name) {
        Some(task) => format!(
            "a task's admin API is reachable only on the overlay network {}: run `status` in a container \
             on it (`docker run --rm --network {} --user 0 -v /var/run/docker.sock:/var/run/docker.sock \
             <IMAGE> status --project {}`), or list the sites with \
             `docker exec {} /project-http list --admin http://127.0.0.1:9080 --token <TOKEN>`",
            status.network,
            status.network,
            project.id,
            task.trim_start_matches('/')
        ),
        None => "no task of the service runs on this node".to_string(),
    });
    Ok(status)
}

/// One sample of the engine's stats (`stream=false`: the engine waits for
/// a second reading, so the CPU figure covers about one second).
async fn resources(docker: &Docker, name: &str) -> Result<Resources> {
    use futures_util::StreamExt;
    let mut stream = docker.stats(
        name,
        Some(bollard::container::StatsOptions {
            stream: false,
            one_shot: false,
        }),
    );
    let stats = stream
        .next()
        .await
        .context("the engine sent no stats")?
        .context("cannot read the engine's stats for the container")?;
    let cpu_delta = stats
        .cpu_stats
        .cpu_usage
        .total_usage
        .saturating_sub(stats.precpu_stats.cpu_usage.total_usage);
    let system_delta = stats
        .cpu_stats
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(stats.precpu_stats.system_cpu_usage.unwrap_or(0));
    let cpus = stats.cpu_stats.online_cpus.unwrap_or_else(|| {
        stats
            .cpu_stats
            .cpu_usage
            .percpu_usage
            .as_ref()
            .map_or(1, |p| p.len() as u64)
    });
    let cpu_percent = if system_delta > 0 {
        cpu_delta as f64 / system_delta as f64 * cpus as f64 * 100.0
    } else {
        0.0
    };
    let memory = stats.memory_stats;
    let cache = match memory.stats {
        Some(bollard::container::MemoryStatsStats::V1(v1)) => v1.total_inactive_file,
        Some(bollard::container::MemoryStatsStats::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    let (rx, tx) = stats
        .networks
        .iter()
        .flat_map(|n| n.values())
        .fold((0, 0), |(rx, tx), n| (rx + n.rx_bytes, tx + n.tx_bytes));
    Ok(Resources {
        cpu_percent: (cpu_percent * 10.0).round() / 10.0,
        memory_bytes: memory.usage.unwrap_or(0).saturating_sub(cache),
        memory_limit_bytes: memory.limit.unwrap_or(0),
        network_rx_bytes: rx,
        network_tx_bytes: tx,
    })
}

/// The container's log driver and options, and the access-log mode from
/// its environment.
fn container_logs(found: &ContainerInspectResponse) -> LogStatus {
    let config = found
        .host_config
        .as_ref()
        .and_then(|h| h.log_config.clone())
        .unwrap_or_default();
    let env = found
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    log_status(
        config.typ.unwrap_or_default(),
        config.config.unwrap_or_default(),
        &env,
    )
}

/// The service's task log driver and access-log mode.
fn swarm_logs(spec: &bollard::models::ServiceSpec) -> LogStatus {
    let task = spec.task_template.clone().unwrap_or_default();
    let driver = task.log_driver.unwrap_or_default();
    let env = task.container_spec.and_then(|c| c.env).unwrap_or_default();
    log_status(
        driver.name.unwrap_or_else(|| "engine default".to_string()),
        driver.options.unwrap_or_default(),
        &env,
    )
}

fn log_status(driver: String, options: HashMap<String, String>, env: &[String]) -> LogStatus {
    let options: BTreeMap<String, String> = options.into_iter().collect();
    LogStatus {
        bound_bytes: (driver == super::logs::LOG_DRIVER)
            .then(|| super::logs::log_bound_bytes(&options))
            .flatten(),
        driver,
        options,
        access_log: AccessLog::from_env(env.iter().map(String::as_str)).to_string(),
    }
}

/// The routers with the URLs they serve for `services`.
fn router_status(
    project: &Project,
    labels: &HashMap<String, String>,
    services: &[ServiceStatus],
) -> Vec<RouterStatus> {
    let routers = routers_from_labels(project, labels);
    let host = routers
        .iter()
        .find_map(|r| {
            r.rule
                .strip_prefix("Host(`")
                .and_then(|h| h.strip_suffix("`)"))
        })
        .map(super::hostname::url_host)
        .unwrap_or_else(|| "<HOST>".to_string());
    let mut names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    if names.is_empty() {
        names.push("<service>".to_string());
    }
    routers
        .into_iter()
        .map(|router| {
            let scheme = &router.scheme;
            let urls = if router.name == project.router() {
                names
                    .iter()
                    .map(|n| format!("{scheme}://{host}/s/{n}/"))
                    .collect()
            } else {
                // Only names a host label can carry (the server matches
                // labels lowercased, RFC 1035 §2.3.4: at most 63 octets).
                names
                    .iter()
                    .filter(|n| {
                        n.as_str() == "<service>"
                            || (n.len() <= 63 && !n.chars().any(|c| c.is_ascii_uppercase()))
                    })
                    .map(|n| format!("{scheme}://{n}.{host}/"))
                    .chain([format!("{scheme}://<id>--<service>.{host}/ (previews)")])
                    .collect()
            };
            RouterStatus { router, urls }
        })
        .collect()
}

/// A gauge without labels from the metrics text.
fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn services(url: &str, token: Option<String>) -> Result<(Vec<ServiceStatus>, String)> {
    let client = AdminClient::new(url, token);
    let listing = client.services()?;
    let metrics = client.metrics()?;
    let mut out = Vec::new();
    for service in listing["services"].as_array().into_iter().flatten() {
        let name = service["name"].as_str().unwrap_or_default().to_string();
        let deployments = client
            .deployments(&name)
            .ok()
            .and_then(|d| d["deployments"].as_array().map(Vec::len))
            .unwrap_or(0);
        out.push(ServiceStatus {
            disk_bytes: disk_bytes(&metrics, &name),
            current: service["current"].as_str().map(str::to_string),
            deployments,
            name,
        });
    }
    Ok((out, metrics))
}

/// `project_http_disk_bytes{service="<name>"} N` from the metrics text.
fn disk_bytes(metrics: &str, service: &str) -> u64 {
    let prefix = format!("project_http_disk_bytes{{service=\"{service}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The human table.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "container  {} ({})\nstate      {} (health: {})\nimage      {}\nvolume     {}\nnetwork    {} ({})\n",
        status.container, status.id, status.state, status.health, status.image, status.volume, status.network, status.ip
    );
    if let (Some(free), Some(total)) = (status.volume_free_bytes, status.volume_total_bytes) {
        out.push_str(&format!(
            "disk       {} free of {}\n",
            human_bytes(free),
            human_bytes(total)
        ));
    }
    match (&status.resources, &status.resources_error) {
        (Some(r), _) => out.push_str(&format!(
            "cpu        {:.1} %\nmemory     {} of {} ({:.0} %)\nnet i/o    {} received, {} sent\n",
            r.cpu_percent,
            human_bytes(r.memory_bytes),
            human_bytes(r.memory_limit_bytes),
            if r.memory_limit_bytes > 0 {
                r.memory_bytes as f64 * 100.0 / r.memory_limit_bytes as f64
            } else {
                0.0
            },
            human_bytes(r.network_rx_bytes),
            human_bytes(r.network_tx_bytes)
        )),
        (None, Some(error)) => out.push_str(&format!("resources  unknown: {error}\n")),
        (None, None) => {}
    }
    let options: Vec<String> = status
        .logs
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    out.push_str(&format!(
        "logs       {} {}{}; access log {}\n",
        if status.logs.driver.is_empty() {
            "engine default"
        } else {
            &status.logs.driver
        },
        options.join(","),
        status
            .logs
            .bound_bytes
            .map(|b| format!(" (at most {})", human_bytes(b)))
            .unwrap_or_default(),
        status.logs.access_log
    ));
    for router in &status.routers {
        out.push_str(&format!(
            "router     {} on {}{}{}\n",
            router.router.name,
            router.router.entrypoints.join(","),
            if router.router.tls { " (TLS)" } else { "" },
            if router.router.middlewares.is_empty() {
                String::new()
            } else {
                format!(", middlewares {}", router.router.middlewares.join(","))
            }
        ));
        for url in &router.urls {
            out.push_str(&format!("           {url}\n"));
        }
    }
    if let Some(swarm) = &status.swarm {
        out.push_str(&format!(
            "replicas   {}/{} running; last update: {} {}\n\n{:<40} {:<10} {:<10} {:<16} {}\n",
            swarm.running,
            swarm.desired,
            if swarm.update.is_empty() {
                "none"
            } else {
                &swarm.update
            },
            swarm.update_message,
            "TASK",
            "STATE",
            "HEALTH",
            "IP",
            "NODE"
        ));
        for t in &swarm.tasks {
            out.push_str(&format!(
                "{:<40} {:<10} {:<10} {:<16} {}\n",
                t.name, t.state, t.health, t.ip, t.node
            ));
        }
        out.push('\n');
    }
    if let Some(error) = &status.admin_error {
        out.push_str(&format!("services   unknown: {error}\n"));
        return out;
    }
    out.push_str(&format!(
        "\n{:<24} {:<20} {:>11} {:>14}\n",
        "SERVICE", "CURRENT", "DEPLOYMENTS", "DISK"
    ));
    for s in &status.services {
        out.push_str(&format!(
            "{:<24} {:<20} {:>11} {:>14}\n",
            s.name,
            s.current.as_deref().unwrap_or("-"),
            s.deployments,
            human_bytes(s.disk_bytes)
        ));
    }
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::labels::Routing;

    fn service(name: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.to_string(),
            current: None,
            deployments: 1,
            disk_bytes: 0,
        }
    }

    #[test]
    fn urls_follow_tls_and_subdomains() {
        let project = Project::new("42").unwrap();
        let routing = Routing {
            entrypoints: vec!["websecure".into()],
            tls: true,
            subdomains: true,
            ..Routing::new("p42.example.com")
        };
        let labels = project.container_labels(&routing, "web");
        let routers = router_status(&project, &labels, &[service("docs"), service("web")]);
        assert_eq!(routers.len(), 2);
        assert_eq!(
            routers[0].urls,
            [
                "https://p42.example.com/s/docs/",
                "https://p42.example.com/s/web/"
            ]
        );
        assert_eq!(routers[1].urls[0], "https://docs.p42.example.com/");
        assert!(routers[1].urls[2].contains("<id>--<service>.p42.example.com"));
        let plain = project.container_labels(&Routing::new("p42.example.com"), "web");
        let routers = router_status(&project, &plain, &[]);
        assert_eq!(routers.len(), 1);
        assert_eq!(routers[0].urls, ["http://p42.example.com/s/<service>/"]);
    }

    #[test]
    fn gauges_are_read_from_the_metrics_text() {
        let metrics = "# HELP x\nproject_http_volume_free_bytes 1234\nproject_http_volume_free_bytes_total 9\nproject_http_volume_total_bytes 5e3\n";
        assert_eq!(gauge(metrics, "project_http_volume_free_bytes"), Some(1234));
        assert_eq!(
            gauge(metrics, "project_http_volume_total_bytes"),
            Some(5000)
        );
        assert_eq!(gauge(metrics, "project_http_missing"), None);
    }
}
