//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Requests are counted per service and status by the public server; the
//! deploy path counts deploys, failures, prunes and the last success. Disk
//! use is measured when scraped.
//!
//! Per-request counters live in shards, one per worker thread (a thread picks
//! its shard once), so public workers never contend on one lock for every
//! response; a scrape sums the shards.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// More than the worker threads of any machine this runs on; threads beyond
/// it share shards, which stays correct.
const SHARDS: usize = 16;

/// What every public response updates.
#[derive(Default)]
struct RequestCounters {
    /// service → status → count (nested so a hit needs no allocation).
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    response_bytes: BTreeMap<String, u64>,
    skew_served: BTreeMap<String, u64>,
    /// Of `requests`, those the HTTP/1.1 fast path answered (`serve::fast`).
    fast_path: u64,
}

/// One shard on its own cache lines, so two workers' updates don't share one.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<RequestCounters>);

#[derive(Default)]
struct Counters {
    deploys: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    prunes: BTreeMap<String, u64>,
    activations: BTreeMap<String, u64>,
    last_deploy: BTreeMap<String, f64>,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    shards: [Shard; SHARDS],
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// This thread's shard number, given out round-robin on first use.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|index| *index)
}

/// Adds `n` under `service`, allocating the key only the first time.
fn add(map: &mut BTreeMap<String, u64>, service: &str, n: u64) {
    match map.get_mut(service) {
        Some(total) => *total += n,
        None => {
            map.insert(service.to_string(), n);
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn with_shard<T>(&self, f: impl FnOnce(&mut RequestCounters) -> T) -> T {
        let shard = &self.shards[shard_index()].0;
        f(&mut shard.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The request counters of every shard, summed.
    fn request_totals(&self) -> RequestCounters {
        let mut total = RequestCounters::default();
        for shard in &self.shards {
            let shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            for (service, statuses) in &shard.requests {
                let into = total.requests.entry(service.clone()).or_default();
                for (status, n) in statuses {
                    *into.entry(*status).or_default() += n;
                }
            }
            for (service, n) in &shard.response_bytes {
                add(&mut total.response_bytes, service, *n);
            }
            for (service, n) in &shard.skew_served {
                add(&mut total.skew_served, service, *n);
            }
            total.fast_path += shard.fast_path;
        }
        total
    }

    /// Running totals per service (not "-"): requests, 4xx and 5xx
    /// answers, for [`super::traffic`]. Sums the shards as a scrape does.
    pub fn request_classes(&self) -> BTreeMap<String, super::traffic::Sample> {
        self.request_totals()
            .requests
            .into_iter()
            .filter(|(service, _)| service != "-")
            .map(|(service, statuses)| {
                let mut sample = super::traffic::Sample::default();
                for (status, n) in statuses {
                    sample.requests += n;
                    match status {
                        400..=499 => sample.client_errors += n,
                        500..=599 => sample.server_errors += n,
                        _ => {}
                    }
                }
                (service, sample)
            })
            .collect()
    }

    /// One public request (`service` is "-" when none answered).
    pub fn record_request(&self, service: &str, status: u16, bytes: u64) {
        self.count_request(service, status, bytes, false);
    }

    /// [`Metrics::record_request`] for an answer of the fast path.
    pub fn record_fast_request(&self, service: &str, status: u16, bytes: u64) {
        self.count_request(service, status, bytes, true);
    }

    fn count_request(&self, service: &str, status: u16, bytes: u64, fast: bool) {
        self.with_shard(|c| {
            c.fast_path += u64::from(fast);
            match c.requests.get_mut(service) {
                Some(statuses) => *statuses.entry(status).or_default() += 1,
                None => {
                    c.requests
                        .insert(service.to_string(), BTreeMap::from([(status, 1)]));
                }
            }
            add(&mut c.response_bytes, service, bytes);
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
        self.with_shard(|c| add(&mut c.skew_served, service, 1));
    }

    pub fn record_activation(&self, service: &str) {
        self.with(|c| *c.activations.entry(service.to_string()).or_default() += 1);
    }

    /// Renders every metric; `disk` is (service, bytes on disk).
    pub fn render(&self, disk: &[(String, u64)]) -> String {
        let mut out = String::new();
        let r = self.request_totals();
        self.with(|c| {
            family(
                &mut out,
                "project_http_requests_total",
                "counter",
                "Public requests by service and status.",
            );
            for (service, statuses) in &r.requests {
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
                &r.response_bytes,
            );
            family(
                &mut out,
                "project_http_fast_path_responses_total",
                "counter",
                "Of the public requests, those answered by the HTTP/1.1 fast path.",
            );
            let _ = writeln!(out, "project_http_fast_path_responses_total {}", r.fast_path);
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
                &r.skew_served,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests counted on many threads (many shards, some shared) add up.
    #[test]
    fn counts_from_every_thread_are_summed() {
        let metrics = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..SHARDS + 4)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        metrics.record_request("web", 200, 10);
                    }
                    metrics.record_request("web", 404, 1);
                    metrics.record_skew("web");
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let text = metrics.render(&[]);
        let n = SHARDS + 4;
        for line in [
            format!(
                "project_http_requests_total{{service=\"web\",status=\"200\"}} {}",
                n * 100
            ),
            format!("project_http_requests_total{{service=\"web\",status=\"404\"}} {n}"),
            format!(
                "project_http_response_bytes_total{{service=\"web\"}} {}",
                n * 1001
            ),
            format!("project_http_skew_served_total{{service=\"web\"}} {n}"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
