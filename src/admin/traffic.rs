//! Per-service traffic over the last hour, for the dashboard's charts:
//! requests per interval and how many were 4xx and 5xx.
//!
//! Sampled from the server's own request counters ([`super::metrics`]) by
//! one task, once per interval (a minute; `PROJECT_HTTP_CHART_INTERVAL_MS`
//! changes it, for tests), into a ring of [`SAMPLES`] per service. The
//! public request path is untouched: a sample sums the counter shards as a
//! scrape does, and diffs the totals against the previous sample's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::metrics::Metrics;

/// Samples kept per service: an hour at the default interval.
pub const SAMPLES: usize = 60;
/// The default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The environment variable that overrides the interval (milliseconds).
pub const INTERVAL_ENV: &str = "PROJECT_HTTP_CHART_INTERVAL_MS";

/// Requests answered in one interval (or, as a running total, ever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub requests: u64,
    /// Answers with a 4xx status.
    pub client_errors: u64,
    /// Answers with a 5xx status.
    pub server_errors: u64,
}

impl Sample {
    fn minus(self, earlier: Sample) -> Sample {
        Sample {
            requests: self.requests.saturating_sub(earlier.requests),
            client_errors: self.client_errors.saturating_sub(earlier.client_errors),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
        }
    }

    fn plus(self, other: Sample) -> Sample {
        Sample {
            requests: self.requests + other.requests,
            client_errors: self.client_errors + other.client_errors,
            server_errors: self.server_errors + other.server_errors,
        }
    }
}

#[derive(Default)]
struct Rings {
    /// Running totals at the last sample.
    last: BTreeMap<String, Sample>,
    /// Per service, oldest first, at most [`SAMPLES`].
    rings: BTreeMap<String, VecDeque<Sample>>,
}

/// The rings of every service, and the interval they were sampled at.
pub struct Traffic {
    interval: Duration,
    rings: Mutex<Rings>,
}

/// Milliseconds (10 to 3 600 000) as the sampling interval; `Err` says
/// what is wrong and which variable to fix.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(ms) if (10..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "{INTERVAL_ENV}={text:?}: expected whole milliseconds from 10 to 3600000 \
             (like 500), or unset it for one minute"
        )),
    }
}

impl Traffic {
    pub fn new(interval: Duration) -> Traffic {
        Traffic {
            interval,
            rings: Mutex::new(Rings::default()),
        }
    }

    /// The interval from [`INTERVAL_ENV`], else [`DEFAULT_INTERVAL`].
    /// `Err` (the server refuses to start) when it is set but not a whole
    /// number of milliseconds from 10 to 3 600 000 (an hour).
    pub fn interval_from_env() -> Result<Duration, String> {
        match std::env::var(INTERVAL_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(DEFAULT_INTERVAL),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "{INTERVAL_ENV} is not UTF-8: set milliseconds like 500"
            )),
            Ok(text) => parse_interval(&text),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes one sample from `totals` (service → running totals).
    pub fn record(&self, totals: BTreeMap<String, Sample>) {
        let mut guard = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let rings = &mut *guard;
        for (service, total) in &totals {
            let before = rings.last.get(service).copied().unwrap_or_default();
            let ring = rings.rings.entry(service.clone()).or_default();
            if ring.len() == SAMPLES {
                ring.pop_front();
            }
            ring.push_back(total.minus(before));
        }
        rings.last = totals;
    }

    /// `service`'s samples, oldest first (empty before its first request
    /// has been sampled).
    pub fn of(&self, service: &str) -> Vec<Sample> {
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings
            .rings
            .get(service)
            .map(|ring| ring.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Samples every interval until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                _ = ticks.tick() => self.record(metrics.request_classes()),
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The sum of `samples`.
pub fn total(samples: &[Sample]) -> Sample {
    samples.iter().fold(Sample::default(), |a, s| a.plus(*s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_refuses_non_numbers_zero_and_overflow() {
        assert_eq!(parse_interval("500"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval(" 10 "), Ok(Duration::from_millis(10)));
        for bad in [
            "",
            "fast",
            "0",
            "9",
            "-5",
            "1.5",
            "99999999999999999999999",
            "3600001",
        ] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.contains(INTERVAL_ENV), "{bad}: {e}");
        }
    }

    fn totals(requests: u64, c4: u64, c5: u64) -> BTreeMap<String, Sample> {
        BTreeMap::from([(
            "web".to_string(),
            Sample {
                requests,
                client_errors: c4,
                server_errors: c5,
            },
        )])
    }

    #[test]
    fn samples_are_differences_and_the_ring_is_bounded() {
        let traffic = Traffic::new(DEFAULT_INTERVAL);
        traffic.record(totals(10, 2, 1));
        traffic.record(totals(15, 2, 1));
        traffic.record(totals(15, 2, 1));
        let samples = traffic.of("web");
        assert_eq!(
            samples.iter().map(|s| s.requests).collect::<Vec<_>>(),
            [10, 5, 0]
        );
        assert_eq!(total(&samples).client_errors, 2);
        for i in 0..100 {
            traffic.record(totals(16 + i, 2, 1));
        }
        let samples = traffic.of("web");
        assert_eq!(samples.len(), SAMPLES);
        assert!(samples.iter().all(|s| s.requests == 1));
        assert!(traffic.of("other").is_empty());
    }
}
