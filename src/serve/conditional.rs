//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match`, `If-Modified-Since` and `If-Range`, evaluated in the order
//! §13.2.2 prescribes. Our ETags are strong and content-derived, so a 304
//! really means "same bytes", even across deployments.

use std::time::SystemTime;

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::HeaderMap;

/// The result of evaluating preconditions for a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// One entity tag from a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    /// Including the quotes.
    opaque: &'a str,
}

/// Parses `*` or a comma-separated list of entity tags. `None` means `*`;
/// malformed members end the list (what was parsed before them counts).
fn parse_tags(value: &str) -> Option<Vec<Tag<'_>>> {
    if value.trim() == "*" {
        return None;
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        if !after.starts_with('"') {
            break;
        }
        let Some(close) = after[1..].find('"') else {
            break;
        };
        let end = close + 2;
        tags.push(Tag {
            weak,
            opaque: &after[..end],
        });
        rest = &after[end..];
    }
    Some(tags)
}

/// Strong comparison: both strong and equal.
fn matches_strong(value: &str, etag: &str) -> bool {
    match parse_tags(value) {
        None => true,
        Some(tags) => tags.iter().any(|t| !t.weak && t.opaque == etag),
    }
}

/// Weak comparison: opaque parts equal, weakness ignored.
fn matches_weak(value: &str, etag: &str) -> bool {
    match parse_tags(value) {
        None => true,
        Some(tags) => tags.iter().any(|t| t.opaque == etag),
    }
}

/// Whether an `If-None-Match` value (one field line) matches `etag` by
/// weak comparison (RFC 9110 §13.1.2), as [`evaluate`] decides it.
pub fn none_match(value: &str, etag: &str) -> bool {
    matches_weak(value, etag)
}

/// A list header's values; several header lines are one list (RFC 9110 §5.3).
fn header_list(headers: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    let mut values = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    values.peek()?;
    Some(values.collect::<Vec<_>>().join(", "))
}

fn header_str(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    header_str(headers, name).and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

/// Evaluates the preconditions of a GET/HEAD against a representation with
/// the quoted strong `etag` and whole-second `modified` time.
///
/// `modified` must be no earlier than the last change of what the URL
/// answers (the server uses the time the deployment became current,
/// rounded up): then `If-Modified-Since: D` gives 304 and
/// `If-Unmodified-Since: D` lets the request proceed only when nothing
/// changed after `D`, across flips, rollbacks and deduplicated files.
pub fn evaluate(headers: &HeaderMap, etag: &str, modified: SystemTime) -> Precondition {
    if let Some(value) = header_list(headers, IF_MATCH) {
        if !matches_strong(&value, etag) {
            return Precondition::Failed;
        }
    } else if let Some(date) = header_date(headers, IF_UNMODIFIED_SINCE) {
        if modified > date {
            return Precondition::Failed;
        }
    }
    if let Some(value) = header_list(headers, IF_NONE_MATCH) {
        if matches_weak(&value, etag) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = header_date(headers, IF_MODIFIED_SINCE) {
        // A date later than the server's clock is invalid (RFC 9110
        // §13.1.3): it cannot come from a Last-Modified we sent.
        if modified <= date && date <= SystemTime::now() {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// `If-Range`: may the `Range` header be honoured? Absent → yes. An entity tag
/// must match strongly; a date must equal `Last-Modified` exactly.
pub fn if_range_allows(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    let Some(value) = headers.get(http::header::IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/") && value == etag;
    }
    httpdate::parse_http_date(value).is_ok_and(|date| date == modified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const ETAG: &str = "\"abc\"";

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn eval(pairs: &[(&str, &str)]) -> Precondition {
        evaluate(&headers(pairs), ETAG, t(1_000_000_000))
    }

    #[test]
    fn if_none_match() {
        assert_eq!(
            eval(&[("if-none-match", "\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "W/\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x\", \"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x,y\",W/\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"abd\"")]), Precondition::Proceed);
        assert_eq!(eval(&[("if-none-match", "abc")]), Precondition::Proceed);
        assert_eq!(
            eval(&[("if-none-match", "\"unterminated")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_modified_since_and_precedence() {
        let same = httpdate::fmt_http_date(t(1_000_000_000));
        let before = httpdate::fmt_http_date(t(999_999_999));
        assert_eq!(
            eval(&[("if-modified-since", &same)]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-modified-since", &before)]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[("if-modified-since", "garbage")]),
            Precondition::Proceed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            eval(&[("if-none-match", "\"other\""), ("if-modified-since", &same)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_and_unmodified_since() {
        let before = httpdate::fmt_http_date(t(999_999_999));
        let after = httpdate::fmt_http_date(t(1_000_000_001));
        assert_eq!(eval(&[("if-match", "\"abc\"")]), Precondition::Proceed);
        assert_eq!(eval(&[("if-match", "*")]), Precondition::Proceed);
        assert_eq!(
            eval(&[("if-match", "W/\"abc\"")]),
            Precondition::Failed,
            "weak never matches If-Match"
        );
        assert_eq!(eval(&[("if-match", "\"nope\"")]), Precondition::Failed);
        assert_eq!(
            eval(&[("if-unmodified-since", &before)]),
            Precondition::Failed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", &after)]),
            Precondition::Proceed
        );
        // If-Match present: If-Unmodified-Since is ignored.
        assert_eq!(
            eval(&[("if-match", "\"abc\""), ("if-unmodified-since", &before)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range() {
        let m = t(1_000_000_000);
        let same = httpdate::fmt_http_date(m);
        let other = httpdate::fmt_http_date(t(5));
        assert!(if_range_allows(&headers(&[]), ETAG, m));
        assert!(if_range_allows(
            &headers(&[("if-range", "\"abc\"")]),
            ETAG,
            m
        ));
        assert!(!if_range_allows(
            &headers(&[("if-range", "W/\"abc\"")]),
            ETAG,
            m
        ));
        assert!(!if_range_allows(
            &headers(&[("if-range", "\"old\"")]),
            ETAG,
            m
        ));
        assert!(if_range_allows(&headers(&[("if-range", &same)]), ETAG, m));
        assert!(!if_range_allows(&headers(&[("if-range", &other)]), ETAG, m));
        assert!(!if_range_allows(
            &headers(&[("if-range", "nonsense")]),
            ETAG,
            m
        ));
    }
}
