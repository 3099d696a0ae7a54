//! `_headers`: response headers a site sets for its own paths.
//!
//! Format (Netlify, Cloudflare Pages, GitLab Pages): a line starting at
//! column 0 is a path pattern (see [`super::pattern`]); the indented lines
//! under it are `Name: value` (set) or `! Name` (remove); `#` starts a
//! comment line. Every block whose pattern matches the request path
//! applies, in file order: the first block that sets a name replaces the
//! server's value, later ones append theirs joined by `, ` (as Cloudflare
//! Pages does); `! Name` removes the header whatever set it. Names that
//! describe the message's framing or the connection (Content-Length,
//! Transfer-Encoding, Connection, …) are refused at upload: a site must
//! not be able to break HTTP framing.
//!
//! Two kinds of fields are exceptions (issue #21): `Set-Cookie` set by
//! several blocks (or twice in one) is sent as one field per cookie, never
//! joined (RFC 6265 §3, RFC 9110 §5.3: a cookie's `Expires` has a comma);
//! and on an answer that is not a success — a 3xx other than 304, a 4xx,
//! a 5xx — the caching fields ([`CACHING`]) stay the server's, so a
//! `/fonts/*` block's year-long `immutable` does not make a 404 or a
//! redirect a year-long cache entry (Cloudflare forces `no-store` on 404s).
//!
//! Header names and values are converted once, at deploy time.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::pattern::{Pattern, Subject};
use super::{Limits, RuleError};

/// The file's name at the top of a deployment.
pub const FILE: &str = "_headers";

/// Headers a rule may neither set nor remove: hop-by-hop (RFC 9110 §7.6.1)
/// and framing or representation fields the server computes.
const REFUSED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-range",
    "content-encoding",
    "host",
    "date",
];

/// Fields that tell caches how long to keep an answer, and how to
/// revalidate it: on an answer that is not a success (see
/// [`HeaderRules::apply_for`]) they stay what the server set.
pub const CACHING: &[&str] = &[
    "cache-control",
    "expires",
    "pragma",
    "age",
    "etag",
    "last-modified",
    "cdn-cache-control",
    "cloudflare-cdn-cache-control",
    "surrogate-control",
    "vercel-cdn-cache-control",
];

/// One block: a pattern and what it does.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the pattern.
    pub line: usize,
    pub pattern: Pattern,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// The compiled `_headers` of a deployment.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    blocks: Vec<Block>,
    statics: HashMap<Box<str>, Vec<usize>>,
    dynamic: Vec<usize>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Applies every block matching `path` (a site path starting with `/`)
    /// to `headers`, those of a successful answer.
    pub fn apply(&self, path: &str, headers: &mut HeaderMap) {
        self.apply_subject(&Subject::new(path), headers);
    }

    /// [`Self::apply`] to the headers of an answer with `status`: on one
    /// that is not a success (3xx but 304, 4xx, 5xx) the [`CACHING`] fields
    /// are left as the server set them (a rule's value is not added, a
    /// rule's `! Name` does not remove the server's).
    pub fn apply_for(&self, path: &str, status: StatusCode, headers: &mut HeaderMap) {
        let success =
            status.is_success() || status.is_informational() || status == StatusCode::NOT_MODIFIED;
        if success {
            return self.apply(path, headers);
        }
        let server: Vec<(&str, Vec<HeaderValue>)> = CACHING
            .iter()
            .map(|&name| (name, headers.get_all(name).iter().cloned().collect()))
            .collect();
        self.apply(path, headers);
        for (name, values) in server {
            headers.remove(name);
            for value in values {
                headers.append(HeaderName::from_static(name), value);
            }
        }
    }

    /// [`Self::apply`] on a prepared path, whose [`Subject::steps`] then
    /// count the matching work: linear in the path's length whatever the
    /// blocks.
    pub fn apply_subject(&self, subject: &Subject<'_>, headers: &mut HeaderMap) {
        if self.blocks.is_empty() {
            return;
        }
        let mut matched: Vec<usize> = self
            .statics
            .get(subject.path())
            .cloned()
            .unwrap_or_default();
        matched.extend(
            self.dynamic
                .iter()
                .copied()
                .filter(|&i| self.blocks[i].pattern.is_match(subject)),
        );
        if matched.is_empty() {
            return;
        }
        matched.sort_unstable();
        // The server's own Vary (a negotiated response: Accept-Encoding)
        // must survive: a rule replacing or removing it would let a shared
        // cache hand a compressed body to a client that never asked for one.
        let server_vary = headers.get(http::header::VARY).cloned();
        let mut seen: Vec<&HeaderName> = Vec::new();
        for &i in &matched {
            for (name, value) in &self.blocks[i].set {
                if name == http::header::SET_COOKIE && seen.contains(&name) {
                    // One field per cookie: never joined (RFC 6265 §3).
                    headers.append(name.clone(), value.clone());
                } else if seen.contains(&name) {
                    let joined = headers.get(name).map(|old| {
                        let mut v = old.as_bytes().to_vec();
                        v.extend_from_slice(b", ");
                        v.extend_from_slice(value.as_bytes());
                        v
                    });
                    if let Some(Ok(v)) = joined.map(|v| HeaderValue::from_bytes(&v)) {
                        headers.insert(name.clone(), v);
                    }
                } else {
                    seen.push(name);
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        for &i in &matched {
            for name in &self.blocks[i].remove {
                headers.remove(name);
            }
        }
        if let Some(server_vary) = server_vary {
            keep_vary(headers, &server_vary);
        }
    }

    /// Parses and validates the text of a `_headers` file.
    pub fn parse(text: &str, limits: &Limits) -> Result<HeaderRules, RuleError> {
        let mut out = HeaderRules::default();
        for item in super::numbered_lines(text, FILE, limits) {
            let (number, line) = item?;
            let error = |message: String| RuleError {
                file: FILE,
                line: number,
                message,
            };
            let trimmed = line.trim();
            let indented = line.starts_with(' ') || line.starts_with('\t');
            if !indented {
                let pattern = Pattern::parse(trimmed).map_err(error)?;
                if out.blocks.len()
                    >= limits
                        .max_static_redirects
                        .saturating_add(limits.max_dynamic_redirects)
                {
                    return Err(error(format!(
                        "more than {} path blocks",
                        limits
                            .max_static_redirects
                            .saturating_add(limits.max_dynamic_redirects)
                    )));
                }
                let index = out.blocks.len();
                if pattern.is_static() {
                    out.statics
                        .entry(pattern.text().into())
                        .or_default()
                        .push(index);
                } else {
                    out.dynamic.push(index);
                }
                out.blocks.push(Block {
                    line: number,
                    pattern,
                    set: Vec::new(),
                    remove: Vec::new(),
                });
                continue;
            }
            let Some(block) = out.blocks.last_mut() else {
                return Err(error(
                    "an indented header line must follow a path line (a path starts at column 0)"
                        .to_string(),
                ));
            };
            if let Some(name) = trimmed.strip_prefix('!') {
                let name = checked_name(name.trim()).map_err(error)?;
                block.remove.push(name);
                continue;
            }
            let Some((name, value)) = trimmed.split_once(':') else {
                return Err(error(format!(
                    "expected `Name: value` or `! Name`, found {trimmed:?}"
                )));
            };
            let name = checked_name(name.trim()).map_err(error)?;
            let value = value.trim();
            if !value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
            {
                return Err(error(format!(
                    "the value of {name} is not a valid header value (visible ASCII only)"
                )));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                error(format!(
                    "the value of {name} is not a valid header value (visible ASCII only)"
                ))
            })?;
            block.set.push((name, value));
        }
        Ok(out)
    }
}

fn checked_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    if REFUSED.contains(&parsed.as_str()) {
        return Err(format!(
            "{name} describes the connection or the message framing: the server sets it, a site cannot"
        ));
    }
    Ok(parsed)
}

/// Makes sure every field name of `server` (the server's own `Vary`) is
/// still listed in the response's `Vary` after the site's rules ran.
fn keep_vary(headers: &mut HeaderMap, server: &HeaderValue) {
    let current = headers
        .get(http::header::VARY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let listed: Vec<String> = current
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if listed.iter().any(|t| t == "*") {
        return;
    }
    let mut out = current.trim().to_string();
    for token in server.to_str().unwrap_or("").split(',') {
        let token = token.trim();
        if token.is_empty() || listed.contains(&token.to_ascii_lowercase()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(token);
    }
    if let Ok(value) = HeaderValue::from_str(&out) {
        headers.insert(http::header::VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> HeaderRules {
        HeaderRules::parse(text, &Limits::default()).unwrap()
    }

    /// A byte order mark before the first path pattern is not part of it.
    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_pattern() {
        let r = rules("\u{feff}/*\n  X-Frame-Options: DENY\n");
        let mut h = HeaderMap::new();
        r.apply("/index.html", &mut h);
        assert_eq!(h["x-frame-options"], "DENY");
    }

    #[test]
    fn blocks_combine_replace_and_remove() {
        let r = rules(
            "# site headers\n/*\n  X-Frame-Options: DENY\n  Content-Security-Policy: default-src 'self'\n  X-Robots-Tag: noindex\n\
             /fonts/*\n  Access-Control-Allow-Origin: *\n  Cache-Control: public, max-age=86400\n\
             /index.html\n  Link: </app.css>; rel=preload; as=style\n  ! X-Robots-Tag\n\
             /:page\n  Link: </font.woff2>; rel=preload; as=font\n",
        );
        let mut h = HeaderMap::new();
        h.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=300"),
        );
        r.apply("/fonts/a.woff2", &mut h);
        assert_eq!(
            h["cache-control"], "public, max-age=86400",
            "replaces the server's"
        );
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-robots-tag"], "noindex");

        let mut h = HeaderMap::new();
        r.apply("/index.html", &mut h);
        assert_eq!(
            h["link"], "</app.css>; rel=preload; as=style, </font.woff2>; rel=preload; as=font",
            "two blocks setting one name join"
        );
        assert!(h.get("x-robots-tag").is_none(), "removed by ! X-Robots-Tag");
        assert_eq!(h["content-security-policy"], "default-src 'self'");
    }

    /// Issue #21, item 5: cookies from two blocks (or two lines of one)
    /// are two fields, never one joined by `, `.
    #[test]
    fn each_cookie_is_its_own_field() {
        let r = rules(
            "/*\n  Set-Cookie: a=1; Path=/\n  Set-Cookie: c=3; Expires=Wed, 09 Jun 2027 10:18:14 GMT\n\
             /page\n  Set-Cookie: b=2; Path=/\n",
        );
        let mut h = HeaderMap::new();
        r.apply("/page", &mut h);
        let cookies: Vec<&str> = h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            cookies,
            [
                "a=1; Path=/",
                "c=3; Expires=Wed, 09 Jun 2027 10:18:14 GMT",
                "b=2; Path=/"
            ]
        );
    }

    /// Issue #21, item 5: a rule's caching fields apply to successes, not to
    /// a 404 or a redirect, which keep the server's policy.
    #[test]
    fn errors_and_redirects_keep_the_servers_caching_fields() {
        let r = rules(
            "/fonts/*\n  Cache-Control: public, max-age=31536000, immutable\n  Expires: Thu, 01 Dec 2099 16:00:00 GMT\n  \
             CDN-Cache-Control: max-age=31536000\n  ETag: \"fixed\"\n  X-Font: yes\n\
             /gone/*\n  ! Cache-Control\n",
        );
        for status in [200, 206, 304] {
            let mut h = HeaderMap::new();
            h.insert(
                "cache-control",
                HeaderValue::from_static("public, max-age=300"),
            );
            r.apply_for(
                "/fonts/a.woff2",
                StatusCode::from_u16(status).unwrap(),
                &mut h,
            );
            assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
            assert_eq!(h["cdn-cache-control"], "max-age=31536000");
        }
        for status in [301, 302, 308, 404, 410, 416, 500] {
            let mut h = HeaderMap::new();
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            r.apply_for(
                "/fonts/missing.woff2",
                StatusCode::from_u16(status).unwrap(),
                &mut h,
            );
            assert_eq!(h["cache-control"], "no-cache", "{status}");
            for name in ["expires", "cdn-cache-control", "etag"] {
                assert!(h.get(name).is_none(), "{status}: {name}");
            }
            assert_eq!(h["x-font"], "yes", "other fields still apply");
            let mut h = HeaderMap::new();
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            r.apply_for("/gone/x", StatusCode::from_u16(status).unwrap(), &mut h);
            assert_eq!(h["cache-control"], "no-cache", "{status}: not removed");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("  X-A: b\n", 1, "must follow a path"),
            ("/a\n  X-A: b\n  Content-Length: 3\n", 3, "framing"),
            ("/a\n  Transfer-Encoding: chunked\n", 2, "framing"),
            ("/a\n  ! Connection\n", 2, "framing"),
            ("/a\n  no colon here\n", 2, "Name: value"),
            ("/a\n  Bad Name: x\n", 2, "not a valid header name"),
            (
                "\nhttps://example.com/*\n  X-A: b\n",
                2,
                "must start with /",
            ),
            ("/a\n  X-A: caf\u{e9}\n", 2, "not a valid header value"),
        ];
        for (text, line, needle) in cases {
            let e = HeaderRules::parse(text, &Limits::default()).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with("_headers, line "), "{e}");
        }
    }
}
