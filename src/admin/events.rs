//! Deployment events, fanned out to `GET /events` subscribers as
//! Server-Sent Events. Subscribers that fall behind skip events (and are
//! told so) rather than holding memory for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::serve::body::Body;

#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<Bytes>,
    /// How many events were emitted so far.
    emitted: Arc<AtomicU64>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(256).0,
            emitted: Arc::default(),
        }
    }
}

impl Events {
    /// Publishes `kind` (e.g. `deployment.activated`) with a JSON payload,
    /// and logs it.
    pub fn emit(&self, kind: &str, data: Value) {
        tracing::info!(event = kind, data = %data, "event");
        let frame = format!("event: {kind}\ndata: {data}\n\n");
        // Counted before it is sent: a subscriber that checks the count
        // after subscribing misses no event (see `subscribe`).
        self.emitted.fetch_add(1, Ordering::SeqCst);
        // No subscriber is not an error.
        let _ = self.sender.send(Bytes::from(frame));
    }

    /// The raw frames from now on (for webhooks): bounded, never blocking [`Events::emit`].
    pub fn receiver(&self) -> broadcast::Receiver<Bytes> {
        self.sender.subscribe()
    }

    /// How many events were emitted so far (the dashboard renders a page
    /// as of this count, and subscribes with it: [`Events::subscribe`]).
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::SeqCst)
    }

    /// A `text/event-stream` body that follows the events from now on,
    /// with a comment line first (so a client knows it is subscribed) and
    /// a keep-alive comment every 15 s.
    ///
    /// `after`: the [`Events::emitted`] count the client is up to date
    /// with. When more events were emitted before this subscription began
    /// (a page rendered, then a deploy, then the page's event stream
    /// connected), an `events.missed` event says so first.
    pub fn subscribe(&self, after: Option<u64>) -> Body {
        let receiver = self.sender.subscribe();
        // After subscribing: an event counted later is received.
        let emitted = self.emitted();
        let mut first = b": subscribed\n\n".to_vec();
        if let Some(after) = after.filter(|&after| emitted > after) {
            first.extend_from_slice(
                format!(
                    "event: events.missed\ndata: {{\"after\":{after},\"emitted\":{emitted}}}\n\n"
                )
                .as_bytes(),
            );
        }
        let first = futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(first)))
        });
        let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let frame = tokio::select! {
                message = receiver.recv() => match message {
                    Ok(bytes) => bytes,
                    Err(broadcast::error::RecvError::Lagged(n)) => Bytes::from(format!(": {n} events skipped\n\n")),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(Duration::from_secs(15)) => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok(Frame::data(frame)), receiver))
        });
        StreamBody::new(first.chain(rest)).boxed_unsync()
    }
}
