//! The access log: one line per public request on stdout, written in batches.
//!
//! Why not a `tracing` event per request, as before: formatting through the
//! subscriber's field visitors and one unbuffered `write(2)` per line cost
//! more than serving a small file (docs/BENCHMARKS.md, "Access log"). Here each
//! thread that answers requests appends its lines to its own buffer (a shard:
//! a mutex only that thread takes on the hot path, so it is never contended),
//! and a shard reaches stdout in one `write(2)` when it holds
//! [`FLUSH_BYTES`], when the once-a-second flusher ([`run_flusher`]) finds it
//! non-empty, and at shutdown ([`flush`], called after the drain). This is
//! nginx's `access_log … buffer=32k flush=1s`: a SIGTERM loses no line, a
//! SIGKILL loses at most the last [`FLUSH_INTERVAL`] of lines.
//!
//! Line formats (the same fields as before, so log shippers keep working):
//!
//! * text: `2026-11-30T01:52:00.123456Z method=GET path="/s/web/" status=200 bytes=10 duration_us=52 service="web" deployment="d1"`
//! * JSON: `{"timestamp":"2026-11-30T01:52:00.123456Z","level":"INFO","method":"GET","path":"/s/web/","status":200,"bytes":10,"duration_us":52,"service":"web","deployment":"d1","target":"access"}`
//!
//! Strings are escaped (quotes, backslashes, control bytes), so a request
//! path can never forge a line.
//!
//! Sampling (`access_log_sample` N, for operators who keep Traefik's access
//! log instead): each thread keeps 1 of every N requests it answered with
//! 1xx-3xx (the 1st, the N+1th, ...) and every 4xx and 5xx. The count is a
//! plain thread-local integer, so a skipped request costs one compare and
//! one add, and takes no lock.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

/// A shard is written out once it holds this many bytes (about 200 lines).
pub const FLUSH_BYTES: usize = 32 * 1024;

/// The longest a line waits in a shard before the flusher writes it out.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

const OFF: u8 = 0;
const TEXT: u8 = 1;
const JSON: u8 = 2;

static FORMAT: AtomicU8 = AtomicU8::new(OFF);
/// Keep 1 of every `SAMPLE` 1xx-3xx lines (1: all).
static SAMPLE: AtomicU64 = AtomicU64::new(1);
static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Shard>> = register();
    /// This thread's 1xx-3xx requests since its last kept one, modulo `SAMPLE`.
    static SKIPPED: Cell<u64> = const { Cell::new(0) };
}

/// One thread's pending lines, and its cached `YYYY-MM-DDTHH:MM:SS` prefix.
#[derive(Default)]
struct Shard {
    pending: Vec<u8>,
    second: u64,
    stamp: String,
}

fn register() -> Arc<Mutex<Shard>> {
    let shard = Arc::new(Mutex::new(Shard::default()));
    lock(&SHARDS).push(shard.clone());
    shard
}

/// A poisoned lock only means a panic elsewhere; the buffer is still bytes.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns the access log on in `format`, or off (`None`). Set once at startup
/// (`access_log`, `log_format` settings); lines recorded while off are
/// dropped without being formatted.
pub fn configure(format: Option<LogFormat>) {
    let value = match format {
        None => OFF,
        Some(LogFormat::Text) => TEXT,
        Some(LogFormat::Json) => JSON,
    };
    FORMAT.store(value, Ordering::Relaxed);
}

/// Keeps 1 of every `every` lines of requests answered 1xx-3xx, and every
/// 4xx/5xx line (`access_log_sample`; 0 is taken as 1: keep all).
pub fn configure_sample(every: u64) {
    SAMPLE.store(every.max(1), Ordering::Relaxed);
}

/// Whether this thread keeps the line of a request answered with
/// `status`: always for 4xx/5xx, else 1 in `SAMPLE` (the first of each run).
fn sampled_in(status: u16) -> bool {
    let every = SAMPLE.load(Ordering::Relaxed);
    if every <= 1 || status >= 400 {
        return true;
    }
    SKIPPED.with(|skipped| {
        let seen = skipped.get();
        skipped.set(if seen + 1 >= every { 0 } else { seen + 1 });
        seen == 0
    })
}

/// Whether lines are being recorded.
pub fn enabled() -> bool {
    FORMAT.load(Ordering::Relaxed) != OFF
}

/// One finished request, as it is logged.
pub struct Entry<'a> {
    /// The request method (RFC 9110 §9).
    pub method: &'a str,
    /// The request target's path, as received (still percent-encoded).
    pub path: &'a str,
    /// The response's status code.
    pub status: u16,
    /// Body bytes announced by `Content-Length` (0 for HEAD).
    pub bytes: u64,
    /// Time from the request's arrival to its response head, in µs.
    pub duration_us: u64,
    /// The service that answered, or `-`.
    pub service: &'a str,
    /// The deployment id that answered, or `-`.
    pub deployment: &'a str,
}

/// Appends `entry` to this thread's shard, writing the shard out when full.
pub fn record(entry: &Entry<'_>) {
    record_at(entry, SystemTime::now());
}

/// [`record`] with the time of the line given (a caller that has just read
/// the clock saves reading it again).
pub fn record_at(entry: &Entry<'_>, now: SystemTime) {
    let format = FORMAT.load(Ordering::Relaxed);
    if format == OFF || !sampled_in(entry.status) {
        return;
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    LOCAL.with(|shard| {
        let mut shard = lock(shard);
        let shard = &mut *shard;
        if shard.stamp.is_empty() || shard.second != now.as_secs() {
            shard.second = now.as_secs();
            // "2026-11-30T01:52:00Z" without the zone letter.
            let full =
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(now.as_secs()))
                    .to_string();
            shard.stamp = full.trim_end_matches('Z').to_string();
        }
        let out = &mut shard.pending;
        let mut numbers = itoa::Buffer::new();
        let json = format == JSON;
        if json {
            out.extend_from_slice(b"{\"timestamp\":\"");
        }
        out.extend_from_slice(shard.stamp.as_bytes());
        // ".123456Z": the microseconds, zero-padded to six digits.
        let micros = numbers.format(1_000_000 + now.subsec_micros());
        out.push(b'.');
        out.extend_from_slice(&micros.as_bytes()[1..]);
        out.push(b'Z');
        let (open, sep, eq, close): (&[u8], &[u8], &[u8], &[u8]) = if json {
            (
                b"\",\"level\":\"INFO\",\"",
                b",\"",
                b"\":",
                b",\"target\":\"access\"}\n",
            )
        } else {
            (b" ", b" ", b"=", b"\n")
        };
        out.extend_from_slice(open);
        out.extend_from_slice(b"method");
        out.extend_from_slice(eq);
        if json {
            quoted(out, entry.method);
        } else {
            out.extend_from_slice(entry.method.as_bytes());
        }
        let strings = [("path", entry.path)];
        let integers = [
            ("status", u64::from(entry.status)),
            ("bytes", entry.bytes),
            ("duration_us", entry.duration_us),
        ];
        for (name, value) in strings {
            out.extend_from_slice(sep);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(eq);
            quoted(out, value);
        }
        for (name, value) in integers {
            out.extend_from_slice(sep);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(eq);
            out.extend_from_slice(numbers.format(value).as_bytes());
        }
        for (name, value) in [("service", entry.service), ("deployment", entry.deployment)] {
            out.extend_from_slice(sep);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(eq);
            quoted(out, value);
        }
        out.extend_from_slice(close);
        if out.len() >= FLUSH_BYTES {
            write_out(out);
        }
    });
}

/// Writes every shard's pending lines to stdout. Called by the flusher each
/// [`FLUSH_INTERVAL`] and once after the shutdown drain.
pub fn flush() {
    let shards: Vec<_> = lock(&SHARDS).clone();
    for shard in shards {
        let mut shard = lock(&shard);
        if !shard.pending.is_empty() {
            write_out(&mut shard.pending);
        }
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until the future is dropped (run as a
/// task on the main runtime; the final flush is the caller's, after the
/// drain).
pub async fn run_flusher() {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush();
    }
}

/// One `write_all` of whole lines to stdout; the buffer is emptied even if
/// stdout is gone (a closed pipe must not grow memory without bound).
fn write_out(pending: &mut Vec<u8>) {
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let _ = stdout.write_all(pending);
    let _ = stdout.flush();
    pending.clear();
}

/// Appends `value` as a JSON string literal (also valid for the text
/// format's quoted values): `"` `\` and control bytes escaped.
fn quoted(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    // The common value (a path, a service, an id) has nothing to escape:
    // one table lookup per byte, then one copy.
    if !bytes.iter().any(|&b| ESCAPED[usize::from(b)]) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Bytes [`quoted`] escapes: `"`, `\\`, C0 controls and DEL.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == 0x7f || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_keeps_one_in_n_successes_and_every_error() {
        // The counter is per thread: a thread of its own sees exact counts.
        std::thread::spawn(|| {
            configure_sample(10);
            let kept = (0..200).filter(|_| sampled_in(200)).count();
            assert_eq!(kept, 20);
            assert_eq!((0..7).filter(|_| sampled_in(404)).count(), 7);
            assert_eq!((0..7).filter(|_| sampled_in(503)).count(), 7);
            // 1xx and 3xx share the 2xx count: 20 more → 2 more kept.
            let mixed = (0..20)
                .filter(|i| sampled_in(if i % 2 == 0 { 304 } else { 101 }))
                .count();
            assert_eq!(mixed, 2);
            configure_sample(1);
            assert!((0..5).all(|_| sampled_in(200)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn quoting_escapes_what_could_forge_a_line() {
        let mut out = Vec::new();
        quoted(&mut out, "/a\"b\\c\nd\x01é");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#""/a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, "/a\"b\\c\nd\x01é");
    }
}
