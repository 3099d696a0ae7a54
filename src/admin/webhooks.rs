//! Webhooks: every event of the event stream ([`super::events`]) POSTed as
//! JSON to each configured URL, signed, retried, never in a deploy's way.
//!
//! Body: `{"id": <sequence>, "event": "<kind>", "data": {…}}`. Header
//! `X-Project-Http-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>`
//! (RFC 2104; the same scheme as GitHub's `X-Hub-Signature-256`), and
//! `X-Project-Http-Event: <kind>`. A delivery that fails (connection error,
//! timeout, any answer but 2xx, redirects included: they are never
//! followed) is retried after 0.5 s, 1 s, 2 s, then given up and counted.
//!
//! One dispatcher reads the event broadcast like any `/events` subscriber
//! (emitting never waits for it) and hands each event to every receiver's
//! own queue of at most [`QUEUE`] events, drained by that receiver's own
//! worker: a receiver that hangs or fails delays only its own events. When
//! a receiver's queue is full its newer events are dropped, counted and
//! logged for that receiver alone. Logs name a receiver by its position in
//! `webhooks` and its [`redact`]ed URL, never with credentials.

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
/// Events waiting for one receiver (beside the one being delivered); newer
/// events for a receiver whose queue is full are dropped.
pub const QUEUE: usize = 256;

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

/// A receiver URL fit for a log line: `scheme://host[:port]` kept, the
/// userinfo, path, query and fragment each replaced by `***` when present
/// (`https://u:p@hooks.example/T1/B2/x?token=t` →
/// `https://***@hooks.example/***?***`): credentials ride in any of them
/// (RFC 3986 §3.2.1 userinfo, `?token=`, Slack's and Discord's path
/// tokens). A URL without `scheme://` is `***` whole.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_string();
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return "***".to_string();
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut out = format!("{scheme}://");
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str("***@");
            host
        }
        None => authority,
    };
    out.push_str(host);
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((before, _)) => (before, true),
        None => (tail, false),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((path, _)) => (path, true),
        None => (before_fragment, false),
    };
    if !path.is_empty() && path != "/" {
        out.push_str("/***");
    } else {
        out.push_str(path);
    }
    if query {
        out.push_str("?***");
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

/// The parts of `url` that [`redact`] hides, longest first (to scrub them
/// out of an error message).
fn secret_parts(url: &str) -> Vec<String> {
    let mut parts = vec![url.to_string()];
    if let Some((_, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            parts.push(userinfo.to_string());
            parts.extend(userinfo.split(':').map(str::to_string));
        }
        if tail.len() > 1 {
            parts.push(tail.to_string());
            parts.extend(tail.split(['/', '?', '#', '&', '=']).map(str::to_string));
        }
    }
    parts.retain(|p| p.len() >= 3);
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts
}

/// Why an attempt failed, in words that never hold the URL's secrets: ureq's
/// own `Display` starts with the full URL.
fn describe(error: &ureq::Error, url: &str) -> String {
    let text = match error {
        ureq::Error::Status(code, _) => format!("answered {code}"),
        ureq::Error::Transport(transport) => {
            let mut text = transport.kind().to_string();
            if let Some(message) = transport.message() {
                text.push_str(": ");
                text.push_str(message);
            }
            if let Some(source) = std::error::Error::source(transport) {
                text.push_str(&format!(": {source}"));
            }
            text
        }
    };
    secret_parts(url)
        .iter()
        .fold(text, |text, part| text.replace(part.as_str(), "***"))
}

/// One event, as every receiver gets it.
struct Delivery {
    kind: String,
    body: String,
    signature: String,
}

/// Runs until `shutdown`: reads the events, and hands each one to every
/// URL's own queue and worker (see the module doc).
pub async fn run(
    urls: Vec<String>,
    secret: String,
    mut events: broadcast::Receiver<bytes::Bytes>,
    stats: Arc<WebhookStats>,
    shutdown: CancellationToken,
) {
    // Redirects are never followed: a 3xx is a failed attempt (ureq would
    // follow one as a bodiless GET that still carries the signature).
    let agent = ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        .build();
    let mut workers = tokio::task::JoinSet::new();
    // Per receiver: its queue, its log name, and how many events it has
    // dropped since its queue last had room.
    let mut queues = Vec::with_capacity(urls.len());
    for (index, url) in urls.into_iter().enumerate() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Arc<Delivery>>(QUEUE);
        let name = Receiver {
            number: index + 1,
            redacted: redact(&url),
        };
        queues.push((sender, name.clone(), 0u64));
        workers.spawn(deliver_each(
            agent.clone(),
            url,
            name,
            receiver,
            stats.clone(),
            shutdown.clone(),
        ));
    }
    let mut sequence: u64 = 0;
    loop {
        let frame = tokio::select! {
            frame = events.recv() => frame,
            _ = shutdown.cancelled() => break,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                stats
                    .dropped
                    .fetch_add(n * queues.len() as u64, Ordering::Relaxed);
                tracing::warn!(skipped = n, "webhooks fell behind: events dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let Some((kind, data)) = parse_frame(&frame) else {
            continue;
        };
        sequence += 1;
        let body = json!({"id": sequence, "event": kind, "data": data}).to_string();
        let signature = signature(secret.as_bytes(), body.as_bytes());
        let delivery = Arc::new(Delivery {
            kind,
            body,
            signature,
        });
        for (queue, name, dropping) in &mut queues {
            match queue.try_send(delivery.clone()) {
                Ok(()) => {
                    if *dropping > 0 {
                        tracing::warn!(
                            receiver = name.number,
                            url = %name.redacted,
                            dropped = *dropping,
                            "webhook receiver's queue has room again"
                        );
                        *dropping = 0;
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if *dropping == 0 {
                        tracing::warn!(
                            receiver = name.number,
                            url = %name.redacted,
                            queue = QUEUE,
                            id = sequence,
                            "webhook receiver's queue is full: dropping its events"
                        );
                    }
                    *dropping += 1;
                }
                // Its worker stopped (shutdown).
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
    drop(queues);
    while workers.join_next().await.is_some() {}
}

/// How a log line names a receiver: its 1-based position in `webhooks` and
/// its [`redact`]ed URL.
#[derive(Clone)]
struct Receiver {
    number: usize,
    redacted: String,
}

/// One receiver's worker: delivers its queue in order, each event with up
/// to [`ATTEMPTS`] attempts, until `shutdown` or the queue closes.
async fn deliver_each(
    agent: ureq::Agent,
    url: String,
    name: Receiver,
    mut queue: tokio::sync::mpsc::Receiver<Arc<Delivery>>,
    stats: Arc<WebhookStats>,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            delivery = queue.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let (agent, url_owned, delivery_owned) = (agent.clone(), url.clone(), delivery.clone());
            let attempt_task = tokio::task::spawn_blocking(move || {
                let answer = agent
                    .post(&url_owned)
                    .set("Content-Type", "application/json")
                    .set("X-Project-Http-Event", &delivery_owned.kind)
                    .set("X-Project-Http-Signature", &delivery_owned.signature)
                    .send_string(&delivery_owned.body);
                match answer {
                    Ok(response) if (200..300).contains(&response.status()) => Ok(()),
                    Ok(response) => Err(format!(
                        "answered {} (only 2xx counts; redirects are not followed)",
                        response.status()
                    )),
                    Err(e) => Err(describe(&e, &url_owned)),
                }
            });
            let result = tokio::select! {
                result = attempt_task => result.unwrap_or_else(|e| Err(format!("delivery task failed: {e}"))),
                _ = shutdown.cancelled() => return,
            };
            match result {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(
                        receiver = name.number,
                        url = %name.redacted,
                        attempt,
                        error,
                        "webhook delivery failed"
                    );
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

    #[test]
    fn redaction_hides_userinfo_path_query_and_fragment() {
        for (url, shown) in [
            (
                "https://user:hunter2@hooks.example/x?token=s3cret",
                "https://***@hooks.example/***?***",
            ),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            (
                "https://hooks.slack.com/services/T0/B0/abc",
                "https://hooks.slack.com/***",
            ),
            ("https://h.example?k=v#frag", "https://h.example?***#***"),
            (
                "https://a@b@h.example:8443/p",
                "https://***@h.example:8443/***",
            ),
            ("user:pw@h.example/x", "***"),
            ("", "***"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        let url = "http://user:hunter2@h.example/deep/path?token=s3cret";
        let scrubbed = secret_parts(url).iter().fold(
            format!("{url}: Dns Failed: user hunter2 s3cret /deep/path"),
            |t, p| t.replace(p.as_str(), "***"),
        );
        assert!(
            !scrubbed.contains("hunter2")
                && !scrubbed.contains("s3cret")
                && !scrubbed.contains("deep"),
            "{scrubbed}"
        );
    }
}
