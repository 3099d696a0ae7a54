//! Async byte streams → blocking `std::io::Read`, with backpressure.
//!
//! Tar parsing, hashing and file writes are blocking work; bodies arrive as
//! async streams (an upload, a Docker archive). A bounded channel between
//! the two keeps at most a few chunks in memory whatever the stream's size.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

/// The blocking end: reads chunks as they arrive; an `Err` chunk is
/// returned as the read error, the channel's end is EOF.
pub struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

/// A bounded channel of `capacity` chunks and its reading end.
pub fn channel(capacity: usize) -> (mpsc::Sender<io::Result<Bytes>>, ChannelReader) {
    let (sender, receiver) = mpsc::channel(capacity);
    (
        sender,
        ChannelReader {
            receiver,
            current: Bytes::new(),
        },
    )
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
