//! Parses an RFC 3339 `date-time` (RFC 3339 §5.6, which OpenAPI's
//! `format: date-time` names): any offset (`Z`, `+02:00`, `-05:30`),
//! lowercase `t`/`z`, fractional seconds, a leap second, and any year
//! 0000–9999. The admin API's `?at=` takes it; humantime alone accepts only
//! UTC from 1970 on. An instant that normalises to UTC past
//! 9999-12-31T23:59:59.999999999Z (a leap second or a negative offset on the
//! last day) is refused: RFC 3339 cannot write it, and nothing on this
//! server formats it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::deployments::MAX_RFC3339_UNIX_SECS as MAX_UNIX_SECS;

/// The instant `text` names, clamped to the Unix epoch (nothing on this
/// server happened before it). `Err` says what is malformed, or that the
/// instant lies past year 9999 in UTC.
pub fn parse(text: &str) -> Result<SystemTime, String> {
    let nanos = parse_nanos(text.trim()).ok_or_else(|| {
        let hint = if text.trim().contains(' ') {
            " (a `+` in a query string decodes as a space: write a +hh:mm offset as %2Bhh:mm)"
        } else {
            ""
        };
        format!("{text:?} is not an RFC 3339 date-time like 2026-01-31T14:05:00Z{hint}")
    })?;
    if nanos >= (i128::from(MAX_UNIX_SECS) + 1) * 1_000_000_000 {
        return Err(format!(
            "{text:?} is out of range: in UTC it falls after 9999-12-31T23:59:59Z, \
             the last instant RFC 3339 can write"
        ));
    }
    Ok(if nanos <= 0 {
        UNIX_EPOCH
    } else {
        let nanos = u128::try_from(nanos).unwrap_or(0);
        UNIX_EPOCH
            + Duration::from_secs(u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX))
            + Duration::from_nanos((nanos % 1_000_000_000) as u64)
    })
}

fn digits(bytes: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = bytes.get(at..at + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(part).ok()?.parse().ok()
}

/// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Nanoseconds since the epoch (negative before it).
fn parse_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let (year, month, day) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't'))
    {
        return None;
    }
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut fraction: i128 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
        // Nanosecond precision; further digits are dropped.
        let mut scale = 100_000_000i128;
        for d in &b[start..at] {
            fraction += i128::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_secs = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let (h, m) = (digits(b, at + 1, 2)?, digits(b, at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse(text)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn offsets_fractions_and_clamping() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2026-01-31T14:05:00Z"), 1_769_868_300);
        assert_eq!(secs("2026-01-31T16:05:00+02:00"), 1_769_868_300);
        assert_eq!(secs("2026-01-31t08:35:00-05:30"), 1_769_868_300);
        let t = parse("2026-01-31T14:05:00.25Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 250);
        assert_eq!(secs("0001-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2024-02-29T00:00:00Z"), 1_709_164_800);
        for bad in [
            "",
            "2026-01-31",
            "2026-01-31T14:05:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-31T24:00:00Z",
            "2026-01-31T14:05:00+2:00",
            "2026-01-31T14:05:00.Z",
            "2026-01-31T14:05:00Zx",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn refuses_instants_past_year_9999_and_explains_a_decoded_plus() {
        assert_eq!(secs("9999-12-31T23:59:59.999Z"), MAX_UNIX_SECS);
        assert_eq!(secs("9999-12-31T23:59:59+01:00"), MAX_UNIX_SECS - 3600);
        for bad in [
            "9999-12-31T23:59:60Z",
            "9999-12-31T23:30:00-01:00",
            "9999-12-31T23:59:59-23:59",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains("out of range") && e.contains("9999"),
                "{bad}: {e}"
            );
        }
        let e = parse("2026-01-31T16:05:00 02:00").unwrap_err();
        assert!(e.contains("%2B"), "{e}");
        assert!(!parse("2026-01-31").unwrap_err().contains("%2B"));
    }
}
