//! `project-http status`: the project container and what it serves.

use anyhow::{Context, Result};
use bollard::Docker;
use serde::Serialize;

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
    /// Why the services could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_error: Option<String>,
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
        admin_error: None,
    };
    let endpoint = admin_endpoint(&found);
    let listed = match endpoint {
        Ok((url, token)) => tokio::task::spawn_blocking(move || services(&url, token))
            .await
            .context("status task panicked")?,
        Err(e) => Err(e),
    };
    match listed {
        Ok(services) => status.services = services,
        Err(e) => status.admin_error = Some(format!("{e:#}")),
    }
    Ok(status)
}

fn services(url: &str, token: Option<String>) -> Result<Vec<ServiceStatus>> {
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
    Ok(out)
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
