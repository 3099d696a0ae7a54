//! `Range` header evaluation (RFC 9110 §14), single byte ranges only.
//!
//! A request for several ranges is answered with the whole body (the SPEC
//! allows it, and it avoids multipart amplification attacks). Syntax the
//! parser does not understand is ignored, as the RFC asks, so the answer is
//! a plain 200. All arithmetic is checked: no input can overflow or panic.

/// What to send for a representation of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Evaluates a `Range` header value against a representation size.
pub fn evaluate(header: &[u8], size: u64) -> RangeOutcome {
    let Ok(text) = std::str::from_utf8(header) else {
        return RangeOutcome::Full;
    };
    let text = text.trim();
    let Some((unit, set)) = text.split_once('=') else {
        return RangeOutcome::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeOutcome::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeOutcome::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = parse_u64(last) else {
            return RangeOutcome::Full;
        };
        if n == 0 || size == 0 {
            return RangeOutcome::Unsatisfiable;
        }
        let n = n.min(size);
        return RangeOutcome::Partial {
            start: size - n,
            end: size - 1,
        };
    }
    let Some(start) = parse_u64(first) else {
        return RangeOutcome::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match parse_u64(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeOutcome::Full,
        }
    };
    if start >= size {
        return RangeOutcome::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    RangeOutcome::Partial { start, end }
}

/// Digits only (no sign, no spaces), without overflow.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    #[test]
    fn single_ranges() {
        assert_eq!(evaluate(b"bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(evaluate(b"bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(
            evaluate(b"bytes=90-1000", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(evaluate(b"bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(evaluate(b"bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(evaluate(b"BYTES = 5-5", 100), Partial { start: 5, end: 5 });
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(evaluate(b"bytes=100-", 100), Unsatisfiable);
        assert_eq!(evaluate(b"bytes=100-200", 100), Unsatisfiable);
        assert_eq!(evaluate(b"bytes=-0", 100), Unsatisfiable);
        assert_eq!(evaluate(b"bytes=0-", 0), Unsatisfiable);
        assert_eq!(evaluate(b"bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_syntax_gives_full() {
        for h in [
            &b""[..],
            b"bytes",
            b"bytes=",
            b"items=0-1",
            b"bytes=a-b",
            b"bytes=5-1",
            b"bytes=+1-2",
            b"bytes=--1",
            b"bytes=1-2-3",
            b"bytes=99999999999999999999999-",
            b"bytes=-99999999999999999999999",
            b"bytes=\xff-1",
        ] {
            assert_eq!(evaluate(h, 100), Full, "{:?}", String::from_utf8_lossy(h));
        }
    }

    #[test]
    fn multiple_ranges_give_full() {
        assert_eq!(evaluate(b"bytes=0-1,5-6", 100), Full);
        assert_eq!(evaluate(b"bytes=-5,-9223372036854775808", 100), Full);
        let many = (0..200)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(evaluate(format!("bytes={many}").as_bytes(), 1000), Full);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(
            evaluate(b"bytes=18446744073709551615-", u64::MAX),
            Unsatisfiable
        );
        assert_eq!(
            evaluate(b"bytes=-18446744073709551615", u64::MAX),
            Partial {
                start: 0,
                end: u64::MAX - 1
            }
        );
        assert_eq!(
            evaluate(b"bytes=-9223372036854775808", 10),
            Partial { start: 0, end: 9 }
        );
    }
}
