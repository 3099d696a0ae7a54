//! Webhooks: every event of the event stream ([`super::events`]) POSTed as
//! JSON to each configured URL, signed, retried, never in a deploy's way.
//!
//! Body: `{"id": <sequence>, "event": "<kind>", "data": {…}}`. Header
//! `X-Project-Http-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>`
//! (RFC 2104; the same scheme as GitHub's `X-Hub-Signature-256`), and
//! `X-Project-Http-Event: <kind>`. A delivery that fails (connection error,
//! timeout, non-2xx) is retried after 0.5 s, 1 s, 2 s, then given up and
//! counted. The task reads the event broadcast like any `/events`
//! subscriber: emitting never waits for it, and when it falls more than
//! 256 events behind the skipped ones are counted as dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Attempts per delivery.
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Per attempt: connect, send, answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Delivery counters, rendered into `/metrics`.
#[derive(Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl WebhookStats {
    /// Prometheus text for the counters.
    pub fn render(&self) -> String {
        format!(
            "# HELP project_http_webhook_deliveries_total Webhook deliveries by outcome (failed: after every retry; dropped: the queue overflowed).\n\
             # TYPE project_http_webhook_deliveries_total counter\n\
             project_http_webhook_deliveries_total{{outcome=\"delivered\"}} {}\n\
             project_http_webhook_deliveries_total{{outcome=\"failed\"}} {}\n\
             project_http_webhook_deliveries_total{{outcome=\"dropped\"}} {}\n",
            self.delivered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed)
        )
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Parses one SSE frame (`event: k\ndata: json\n\n`) back into (kind, data).
fn parse_frame(frame: &[u8]) -> Option<(String, Value)> {
    let text = std::str::from_utf8(frame).ok()?;
    let kind = text.lines().find_map(|l| l.strip_prefix("event: "))?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    Some((kind.to_string(), serde_json::from_str(data).ok()?))
}

/// Runs until `shutdown`, delivering every event to every URL in turn.
pub async fn run(
    urls: Vec<String>,
    secret: String,
    mut events: broadcast::Receiver<bytes::Bytes>,
    stats: Arc<WebhookStats>,
    shutdown: CancellationToken,
) {
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let mut sequence: u64 = 0;
    loop {
        let frame = tokio::select! {
            frame = events.recv() => frame,
            _ = shutdown.cancelled() => return,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                stats
                    .dropped
                    .fetch_add(n * urls.len() as u64, Ordering::Relaxed);
                tracing::warn!(skipped = n, "webhooks fell behind: events dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some((kind, data)) = parse_frame(&frame) else {
            continue;
        };
        sequence += 1;
        let body = json!({"id": sequence, "event": kind, "data": data}).to_string();
        let signed = signature(secret.as_bytes(), body.as_bytes());
        for url in &urls {
            let mut backoff = FIRST_BACKOFF;
            let mut delivered = false;
            for attempt in 1..=ATTEMPTS {
                let (agent, url_owned, body, signed, kind) = (
                    agent.clone(),
                    url.clone(),
                    body.clone(),
                    signed.clone(),
                    kind.clone(),
                );
                let result = tokio::task::spawn_blocking(move || {
                    agent
                        .post(&url_owned)
                        .set("Content-Type", "application/json")
                        .set("X-Project-Http-Event", &kind)
                        .set("X-Project-Http-Signature", &signed)
                        .send_string(&body)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                match result {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(url, attempt, error = e, "webhook delivery failed");
                        if attempt < ATTEMPTS {
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = shutdown.cancelled() => return,
                            }
                            backoff *= 2;
                        }
                    }
                }
            }
            let counter = if delivered {
                &stats.delivered
            } else {
                &stats.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_signatures() {
        let (kind, data) =
            parse_frame(b"event: deployment.deployed\ndata: {\"id\":\"x\"}\n\n").unwrap();
        assert_eq!(
            (kind.as_str(), data["id"].as_str()),
            ("deployment.deployed", Some("x"))
        );
        assert!(parse_frame(b": keep-alive\n\n").is_none());
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
