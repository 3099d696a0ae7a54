//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Requests are counted per service and status by the public server; the
//! deploy path counts deploys, failures, prunes and the last success. Disk
//! use is measured when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Counters {
    /// service → status → count (nested so a hit needs no allocation).
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    response_bytes: BTreeMap<String, u64>,
    deploys: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    prunes: BTreeMap<String, u64>,
    activations: BTreeMap<String, u64>,
    last_deploy: BTreeMap<String, f64>,
    skew_served: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One public request (`service` is "-" when none answered).
    pub fn record_request(&self, service: &str, status: u16, bytes: u64) {
        self.with(|c| {
            match c.requests.get_mut(service) {
                Some(statuses) => *statuses.entry(status).or_default() += 1,
                None => {
                    c.requests
                        .insert(service.to_string(), BTreeMap::from([(status, 1)]));
                }
            }
            match c.response_bytes.get_mut(service) {
                Some(total) => *total += bytes,
                None => {
                    c.response_bytes.insert(service.to_string(), bytes);
                }
            }
        });
    }

    pub fn record_deploy(&self, service: &str) {
        self.with(|c| {
            *c.deploys.entry(service.to_string()).or_default() += 1;
            c.last_deploy.insert(service.to_string(), now_secs());
        });
    }

    pub fn record_failure(&self, service: &str) {
        self.with(|c| *c.failures.entry(service.to_string()).or_default() += 1);
    }

    pub fn record_prunes(&self, service: &str, n: u64) {
        self.with(|c| *c.prunes.entry(service.to_string()).or_default() += n);
    }

    /// A file answered from an older deployment by skew protection.
    pub fn record_skew(&self, service: &str) {
        self.with(|c| *c.skew_served.entry(service.to_string()).or_default() += 1);
    }

    pub fn record_activation(&self, service: &str) {
        self.with(|c| *c.activations.entry(service.to_string()).or_default() += 1);
    }

    /// Renders every metric; `disk` is (service, bytes on disk).
    pub fn render(&self, disk: &[(String, u64)]) -> String {
        let mut out = String::new();
        self.with(|c| {
            family(
                &mut out,
                "project_http_requests_total",
                "counter",
                "Public requests by service and status.",
            );
            for (service, statuses) in &c.requests {
                for (status, n) in statuses {
                    let _ = writeln!(
                        out,
                        "project_http_requests_total{{service=\"{service}\",status=\"{status}\"}} {n}"
                    );
                }
            }
            per_service(
                &mut out,
                "project_http_response_bytes_total",
                "counter",
                "Response body bytes sent.",
                &c.response_bytes,
            );
            per_service(
                &mut out,
                "project_http_deploys_total",
                "counter",
                "Successful deploys.",
                &c.deploys,
            );
            per_service(
                &mut out,
                "project_http_deploy_failures_total",
                "counter",
                "Failed deploys.",
                &c.failures,
            );
            per_service(
                &mut out,
                "project_http_pruned_total",
                "counter",
                "Deployments removed by retention.",
                &c.prunes,
            );
            per_service(
                &mut out,
                "project_http_activations_total",
                "counter",
                "Flips of current (deploys, activations, rollbacks).",
                &c.activations,
            );
            per_service(
                &mut out,
                "project_http_skew_served_total",
                "counter",
                "Files answered from an older retained deployment (skew protection).",
                &c.skew_served,
            );
            family(
                &mut out,
                "project_http_last_deploy_timestamp_seconds",
                "gauge",
                "Unix time of the last successful deploy.",
            );
            for (service, t) in &c.last_deploy {
                let _ = writeln!(
                    out,
                    "project_http_last_deploy_timestamp_seconds{{service=\"{service}\"}} {t:.3}"
                );
            }
        });
        family(
            &mut out,
            "project_http_disk_bytes",
            "gauge",
            "Bytes on disk per service (all retained deployments).",
        );
        for (service, bytes) in disk {
            let _ = writeln!(
                out,
                "project_http_disk_bytes{{service=\"{service}\"}} {bytes}"
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn per_service(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    values: &BTreeMap<String, u64>,
) {
    family(out, name, kind, help);
    for (service, n) in values {
        let _ = writeln!(out, "{name}{{service=\"{service}\"}} {n}");
    }
}
