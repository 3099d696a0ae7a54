//! Deployment events, fanned out to `GET /events` subscribers as
//! Server-Sent Events. Subscribers that fall behind skip events (and are
//! told so) rather than holding memory for them.

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
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(256).0,
        }
    }
}

impl Events {
    /// Publishes `kind` (e.g. `deployment.activated`) with a JSON payload,
    /// and logs it.
    pub fn emit(&self, kind: &str, data: Value) {
        tracing::info!(event = kind, data = %data, "event");
        let frame = format!("event: {kind}\ndata: {data}\n\n");
        // No subscriber is not an error.
        let _ = self.sender.send(Bytes::from(frame));
    }

    /// A `text/event-stream` body that follows the events from now on,
    /// with a comment line first (so a client knows it is subscribed) and
    /// a keep-alive comment every 15 s.
    pub fn subscribe(&self) -> Body {
        let receiver = self.sender.subscribe();
        let first = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b": subscribed\n\n")))
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
