//! `_redirects`: the redirect and rewrite rules a site ships with itself.
//!
//! Format (Netlify, Cloudflare Pages, GitLab Pages): one rule per line,
//! `source destination [status][!]`, fields separated by spaces or tabs;
//! `#` starts a comment line; blank lines are ignored. The status is 301,
//! 302 (the default), 303, 307, 308 (redirects), 200 (an internal rewrite:
//! the destination's file answers, the URL stays) or 404 (the destination's
//! file answers with 404). A trailing `!` forces the rule over an existing
//! file ("shadowing" on Netlify); without it a file at the requested path
//! wins. The first matching rule wins. Destinations are site paths (`/…`)
//! or, for redirects only, absolute `http(s)://` URLs: this server never
//! proxies. `:placeholders` and `:splat` of the source are substituted in
//! the destination.
//!
//! Rules are compiled once per deployment: static sources go into a hash
//! map, dynamic ones into a short list scanned in order.

use std::collections::HashMap;

use super::pattern::{is_name, normalize, Captures, Pattern, Subject};
use super::{Limits, RuleError};

/// The file's name at the top of a deployment.
pub const FILE: &str = "_redirects";

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 301, 302, 303, 307 or 308 with `Location`.
    Redirect(u16),
    /// 200: answer with the destination's file.
    Rewrite,
    /// 404: answer with the destination's file and status 404.
    NotFound,
}

/// A piece of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A `:name`; `true` when it stands in the host part of an external
    /// destination (`https://:sub.example.com/`), where its value is
    /// encoded down to a DNS label's characters so a visitor cannot pick
    /// another host (`@`, `/`, `:`, `?`, `#`, `\` would).
    Capture(String, bool),
}

/// One rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based line number in `_redirects`.
    pub line: usize,
    pub from: Pattern,
    /// The destination as written.
    pub to: String,
    pub action: Action,
    /// `!`: applies even when a file exists at the requested path.
    pub force: bool,
    /// The destination is an `http(s)://` URL.
    pub external: bool,
    parts: Vec<Part>,
}

impl Rule {
    /// The numeric status as written (200 for rewrites).
    pub fn status(&self) -> u16 {
        match self.action {
            Action::Redirect(s) => s,
            Action::Rewrite => 200,
            Action::NotFound => 404,
        }
    }

    /// The destination with the captures substituted. Captured values are
    /// percent-encoded when `encode` (they come from a decoded request
    /// path and go into a `Location` header).
    pub fn destination(&self, captures: &Captures<'_>, encode: bool) -> String {
        let mut out = String::with_capacity(self.to.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Capture(name, in_host) => {
                    let value = captures
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("", |(_, v)| v.as_str());
                    if *in_host {
                        percent_encode_label(value, &mut out);
                    } else if encode {
                        percent_encode_path(value, &mut out);
                    } else {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }
}

/// Percent-encodes what may not appear raw in a URL path (keeps `/`).
fn percent_encode_path(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Percent-encodes all but what a host name's label may hold
/// (`A-Za-z0-9-.`), for a capture in the host of an external destination.
fn percent_encode_label(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A path `Location` that a browser cannot read as another host (issue
/// #21, item 4). Browsers (the WHATWG URL standard) drop tabs and line
/// breaks anywhere in a URL and read `\` as `/`, so `//evil.example/`,
/// `/\evil.example/` or `/<TAB>/evil.example/` are *scheme-relative*:
/// another host. Such a path arises from a request path starting with `//`
/// (the directory and mount redirects repeat the raw path) or from a
/// `_redirects` substitution that leaves the destination's first segment
/// empty (`/:splat/x` with an empty splat). The leading run of `/` and
/// `\` (also percent-encoded, `%2F` and `%5C`, which some proxies decode)
/// becomes one `/`; tabs and line breaks are removed. Anything not
/// starting with `/` or `\` is returned as is.
pub fn on_this_host(location: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !location.starts_with(['/', '\\']) {
        return Cow::Borrowed(location);
    }
    let cleaned: Cow<'_, str> = if location.contains(['\t', '\n', '\r']) {
        Cow::Owned(location.replace(['\t', '\n', '\r'], ""))
    } else {
        Cow::Borrowed(location)
    };
    let mut rest = &cleaned[1..];
    loop {
        let bytes = rest.as_bytes();
        if bytes.first().is_some_and(|&b| b == b'/' || b == b'\\') {
            rest = &rest[1..];
        } else if bytes.len() >= 3
            && bytes[0] == b'%'
            && (bytes[1..3].eq_ignore_ascii_case(b"2f") || bytes[1..3].eq_ignore_ascii_case(b"5c"))
        {
            rest = &rest[3..];
        } else {
            break;
        }
    }
    if rest.len() + 1 == cleaned.len() && cleaned.starts_with('/') {
        return cleaned;
    }
    Cow::Owned(format!("/{rest}"))
}

/// The compiled `_redirects` of a deployment.
#[derive(Debug, Clone, Default)]
pub struct Redirects {
    rules: Vec<Rule>,
    /// Normalized path → index of the first static rule for it.
    statics: HashMap<Box<str>, usize>,
    /// Indexes of the dynamic rules, in file order.
    dynamic: Vec<usize>,
    any_forced: bool,
}

/// A rule that matched a request path.
#[derive(Debug)]
pub struct Matched<'r> {
    pub rule: &'r Rule,
    pub captures: Captures<'r>,
}

impl Redirects {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// True when some rule carries `!` (then rules are looked up before files).
    pub fn any_forced(&self) -> bool {
        self.any_forced
    }

    /// The first rule matching `path` (a site path starting with `/`).
    pub fn lookup(&self, path: &str) -> Option<Matched<'_>> {
        self.lookup_subject(&Subject::new(path))
    }

    /// [`Self::lookup`] on a prepared path, whose [`Subject::steps`] then
    /// count the work: linear in the path's length whatever the rules.
    pub fn lookup_subject(&self, subject: &Subject<'_>) -> Option<Matched<'_>> {
        if self.rules.is_empty() {
            return None;
        }
        let first_static = self.statics.get(subject.path()).copied();
        for &i in &self.dynamic {
            if first_static.is_some_and(|s| s < i) {
                break;
            }
            if let Some(captures) = self.rules[i].from.matches_subject(subject) {
                return Some(Matched {
                    rule: &self.rules[i],
                    captures,
                });
            }
        }
        first_static.map(|i| Matched {
            rule: &self.rules[i],
            captures: Vec::new(),
        })
    }

    /// Parses and validates the text of a `_redirects` file.
    pub fn parse(text: &str, limits: &Limits) -> Result<Redirects, RuleError> {
        let mut out = Redirects::default();
        let (mut statics, mut dynamics) = (0usize, 0usize);
        for item in super::numbered_lines(text, FILE, limits) {
            let (number, line) = item?;
            let error = |message: String| RuleError {
                file: FILE,
                line: number,
                message,
            };
            let trimmed = line.trim();
            let rule = parse_rule(trimmed, number, !limits.is_unlimited()).map_err(error)?;
            if rule.from.is_static() {
                statics += 1;
                if statics > limits.max_static_redirects {
                    return Err(error(format!(
                        "more than {} static rules (max_static_redirects)",
                        limits.max_static_redirects
                    )));
                }
                out.statics
                    .entry(rule.from.text().into())
                    .or_insert(out.rules.len());
            } else {
                dynamics += 1;
                if dynamics > limits.max_dynamic_redirects {
                    return Err(error(format!(
                        "more than {} dynamic rules with * or :placeholders (max_dynamic_redirects)",
                        limits.max_dynamic_redirects
                    )));
                }
                out.dynamic.push(out.rules.len());
            }
            out.any_forced |= rule.force;
            out.rules.push(rule);
        }
        Ok(out)
    }
}

/// One rule; `upload`: also refuse the destinations an upload may not
/// bring ([`check_site_destination`]); off when indexing a deployment
/// accepted before those checks existed, which keeps its rules (the
/// server's `Location`s stay on the host whatever they say).
fn parse_rule(line: &str, number: usize, upload: bool) -> Result<Rule, String> {
    // A field starting with `#` starts a comment to the end of the line.
    let fields: Vec<&str> = line
        .split_whitespace()
        .take_while(|f| !f.starts_with('#'))
        .collect();
    let (from, to, status) = match fields.as_slice() {
        [from, to] => (*from, *to, None),
        [from, to, status] => (*from, *to, Some(*status)),
        [_] => return Err("a rule needs a source and a destination".to_string()),
        _ => {
            return Err(format!(
                "expected `source destination [status][!]`, found {} fields (query-parameter and country/language conditions are not supported)",
                fields.len()
            ))
        }
    };
    let from = Pattern::parse(from)?;
    let (status, force) = match status {
        None => (302, false),
        Some(text) => {
            let (digits, force) = match text.strip_suffix('!') {
                Some(d) => (d, true),
                None => (text, false),
            };
            let status = digits.parse::<u16>().map_err(|_| {
                format!("status {text:?} is not a number (301, 302, 303, 307, 308, 200 or 404, optionally followed by !)")
            })?;
            (status, force)
        }
    };
    let action = match status {
        301 | 302 | 303 | 307 | 308 => Action::Redirect(status),
        200 => Action::Rewrite,
        404 => Action::NotFound,
        other => {
            return Err(format!(
                "status {other} is not supported (301, 302, 303, 307, 308, 200 or 404)"
            ))
        }
    };
    let external = to.starts_with("http://") || to.starts_with("https://");
    if !external && !to.starts_with('/') {
        return Err(format!(
            "destination {to:?} must be a site path starting with / or an http(s):// URL"
        ));
    }
    if external && !matches!(action, Action::Redirect(_)) {
        return Err(format!(
            "destination {to:?} is on another host: only redirects (301, 302, 303, 307, 308) may leave the site; this server does not proxy"
        ));
    }
    if to.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!(
            "destination {to:?} has spaces, control or non-ASCII characters: percent-encode them"
        ));
    }
    if !external && upload {
        check_site_destination(to, &from, action, force)?;
    }
    let parts = parse_destination(to, &from, external)?;
    Ok(Rule {
        line: number,
        from,
        to: to.to_string(),
        action,
        force,
        external,
        parts,
    })
}

/// What a site destination (`/…`) may not be, checked at upload:
/// * a path starting with `//` or `/\` (also `%2F`, `%5C`): browsers read
///   it as another host (GitLab Pages refuses both); another site is
///   written `https://host/…`;
/// * a path with a `..` segment (also `%2E`-encoded), which browsers
///   resolve out of the site's root (`/s/<service>/`);
/// * a redirect to itself (issue #21): a static source whose destination
///   is the same path (trailing `/` and query aside, as in matching), e.g.
///   `/app/ /app 301`, redirects forever wherever it applies; so does a
///   dynamic one whose destination gives back the path it matched
///   (`/blog/:slug /blog/:slug/`), or, when forced, one whose literal
///   destination it matches itself (`/a/* /a/x 301!`).
fn check_site_destination(
    to: &str,
    from: &Pattern,
    action: Action,
    force: bool,
) -> Result<(), String> {
    let path = to.split(['?', '#']).next().unwrap_or("");
    if on_this_host(path) != path {
        return Err(format!(
            "destination {to:?} starts with // or /\\, which browsers read as another host: write https://host/… for another site"
        ));
    }
    let dot_dot = path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == ".."
    });
    if dot_dot {
        return Err(format!(
            "destination {to:?} has a .. segment, which leaves the site's root"
        ));
    }
    let Action::Redirect(_) = action else {
        return Ok(());
    };
    let loops = if from.is_static() {
        normalize(path) == from.text()
    } else {
        let probe = from.probe();
        let parts = parse_destination(path, from, false)?;
        let rule = Rule {
            line: 0,
            from: from.clone(),
            to: path.to_string(),
            action,
            force,
            external: false,
            parts,
        };
        let captures = from.matches(&probe).unwrap_or_default();
        let again = rule.destination(&captures, false);
        normalize(&again) == normalize(&probe)
            || (force && !path.contains(':') && from.matches(path).is_some())
    };
    if loops {
        return Err(format!(
            "{:?} redirects to itself ({to:?}): a browser would follow it forever (a trailing / is not significant)",
            from.text()
        ));
    }
    Ok(())
}

/// Splits a destination into literals and `:name` captures; a name the
/// source does not capture is an error (a typo would otherwise redirect
/// to a literal `:slug`). `external`: the destination is an `http(s)://`
/// URL, whose captures before the path are in its host.
fn parse_destination(to: &str, from: &Pattern, external: bool) -> Result<Vec<Part>, String> {
    // Where the host part ends in an external destination.
    let host_end = if external {
        let after = to.find("://").map_or(0, |i| i + 3);
        to[after..]
            .find(['/', '?', '#'])
            .map_or(to.len(), |i| after + i)
    } else {
        0
    };
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = to;
    while let Some(i) = rest.find(':') {
        let at = to.len() - rest.len() + i;
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        if is_name(name) {
            if !from.captures_name(name) {
                return Err(format!(
                    "destination uses :{name}, which the source {:?} does not capture",
                    from.text()
                ));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Capture(name.to_string(), at < host_end));
        } else {
            literal.push(':');
            literal.push_str(name);
        }
        rest = &after[len..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Redirects, RuleError> {
        Redirects::parse(text, &Limits::default())
    }

    fn to(r: &Redirects, path: &str) -> Option<(String, u16, bool)> {
        r.lookup(path).map(|m| {
            (
                m.rule.destination(&m.captures, true),
                m.rule.status(),
                m.rule.force,
            )
        })
    }

    /// A file saved with a byte order mark (Notepad, some CI templating)
    /// reads as without it, as on Netlify: the first rule is a rule.
    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_rule() {
        let r = parse("\u{feff}/old /new 301\n/a /b\n").unwrap();
        assert_eq!(to(&r, "/old"), Some(("/new".into(), 301, false)));
        assert_eq!(to(&r, "/a"), Some(("/b".into(), 302, false)));
        let r = parse("\u{feff}# comment first\n/old /new 301\n").unwrap();
        assert_eq!(to(&r, "/old"), Some(("/new".into(), 301, false)));
    }

    #[test]
    fn every_form_and_status() {
        let r = parse(
            "# comment\n\n/old /new 301\n/temp /t\n/see /x 303\n/t7 /y 307\n/t8 /z 308!\n\
             /blog/:year/:slug /posts/:year-:slug 301\n/news/* /n/:splat 301\n\
             /app/* /app/index.html 200 # the shell\n/gone /404.html#top 404\n/ext/* https://example.com/:splat?x=1 302\n\
             /docs/* https://docs.example.com/:splat 301\n",
        )
        .unwrap();
        assert_eq!(to(&r, "/old"), Some(("/new".into(), 301, false)));
        assert_eq!(to(&r, "/old/"), Some(("/new".into(), 301, false)));
        assert_eq!(to(&r, "/temp"), Some(("/t".into(), 302, false)));
        assert_eq!(to(&r, "/see").unwrap().1, 303);
        assert_eq!(to(&r, "/t7").unwrap().1, 307);
        assert_eq!(to(&r, "/t8"), Some(("/z".into(), 308, true)));
        assert_eq!(
            to(&r, "/blog/2024/hi"),
            Some(("/posts/2024-hi".into(), 301, false))
        );
        assert_eq!(to(&r, "/news/a b/c").unwrap().0, "/n/a%20b/c");
        assert_eq!(to(&r, "/app/deep/link").unwrap().1, 200);
        assert_eq!(to(&r, "/gone").unwrap().1, 404);
        assert_eq!(
            to(&r, "/docs/x/y").unwrap().0,
            "https://docs.example.com/x/y"
        );
        assert_eq!(to(&r, "/ext/a").unwrap().0, "https://example.com/a?x=1");
        assert_eq!(to(&r, "/elsewhere"), None);
        assert!(r.any_forced());
    }

    #[test]
    fn first_match_wins_across_static_and_dynamic() {
        let r = parse("/a/* /first\n/a/b /second\n/c /third\n/* /catchall\n").unwrap();
        assert_eq!(to(&r, "/a/b").unwrap().0, "/first");
        assert_eq!(to(&r, "/c").unwrap().0, "/third");
        assert_eq!(to(&r, "/zzz").unwrap().0, "/catchall");
        let r = parse("/x /one\n/x /two\n").unwrap();
        assert_eq!(to(&r, "/x").unwrap().0, "/one");
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("/a /b\nnot-a-path /x\n", 2, "must start with /"),
            ("\n\n/a /b 418\n", 3, "418"),
            ("/a\n", 1, "destination"),
            ("/a https://evil.example/ 200\n", 1, "does not proxy"),
            ("/a /b 301 Country=us\n", 1, "fields"),
            ("/a /b/:slug\n", 1, ":slug"),
            ("/a /b 30x\n", 1, "not a number"),
            ("/a relative\n", 1, "must be a site path"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("_redirects, line {line}: ")),
                "{e}"
            );
        }
    }

    /// Issue #21, item 4: no path `Location` can name another host.
    #[test]
    fn a_path_location_stays_on_this_host() {
        for (raw, safe) in [
            ("//evil.example/x", "/evil.example/x"),
            ("/\\evil.example", "/evil.example"),
            ("/\\/\\//evil.example", "/evil.example"),
            ("/%2F/evil.example", "/evil.example"),
            ("/%5c%5Cevil.example", "/evil.example"),
            ("/\t/evil.example", "/evil.example"),
            ("/s/web//x", "/s/web//x"),
            ("/docs/", "/docs/"),
            ("/", "/"),
            ("https://example.com/x", "https://example.com/x"),
        ] {
            assert_eq!(on_this_host(raw), safe, "{raw:?}");
        }
        // The substitutions: an empty splat leaves the first
        // segment empty; the server's Location is built through on_this_host.
        let r = parse("/r/:a/* /:splat/:a 302\n/splat/* /:splat/new-splat 302\n").unwrap();
        assert_eq!(to(&r, "/r/evil.com").unwrap().0, "//evil.com");
        assert_eq!(on_this_host("//evil.com"), "/evil.com");
        assert_eq!(to(&r, "/splat").unwrap().0, "//new-splat");
        // A capture in an external destination's host cannot change the host.
        let r = parse("/u/:name https://:name.example.com/:splat 302\n/v/:name/* https://:name.example.com/:splat 302\n")
            .map(|_| ())
            .unwrap_err();
        assert!(r.message.contains(":splat"), "{r}");
        let r = parse("/u/:name/* https://:name.example.com/:splat 302\n").unwrap();
        assert_eq!(
            to(&r, "/u/evil.com@x/a:b@c").unwrap().0,
            "https://evil.com%40x.example.com/a:b@c"
        );
        assert_eq!(
            to(&r, "/u/evil.com%2Fx#/y").unwrap().0,
            "https://evil.com%252Fx%23.example.com/y"
        );
    }

    /// Issue #21, items 4 and low: destinations that leave the site or
    /// redirect to themselves are refused at upload; the rules that look
    /// like them but do not are kept.
    #[test]
    fn destinations_that_leave_the_site_or_loop_are_refused() {
        for (text, needle) in [
            ("/a //evil.example/ 301\n", "another host"),
            ("/a /\\evil.example 301\n", "another host"),
            ("/a /%2F%2Fevil.example 301\n", "another host"),
            ("/a /%5cevil.example 200\n", "another host"),
            ("/a/* //:splat 302\n", "another host"),
            ("/a /../other/ 301\n", ".. segment"),
            ("/a /b/%2e%2E/c 200\n", ".. segment"),
            ("/app/ /app 301\n", "itself"),
            ("/app /app/ 308\n", "itself"),
            ("/search /search?q=1 301\n", "itself"),
            ("/blog/:slug /blog/:slug/ 301\n", "itself"),
            ("/docs/* /docs/:splat/ 302\n", "itself"),
            ("/a/* /a/x 301!\n", "itself"),
            ("/* /index.html 302!\n", "itself"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        // A deployment accepted before these checks keeps its rules when it
        // is indexed again (its Locations are made safe when served).
        let old = Redirects::parse(
            "/a //evil.example/ 301\n/app/ /app 301\n",
            &Limits::unlimited(),
        );
        assert_eq!(old.map(|r| r.rules().len()).ok(), Some(2));
        for text in [
            "/a/* /a/x 301\n",
            "/app/* /app/index.html 200\n",
            "/index.html / 301!\n",
            "/:lang/* /en/:splat 302\n",
            "/old/* /new/:splat 301\n",
            "/a /b/./c 301\n",
            "/a /b..c 301\n",
            "/x https://example.com//y 302\n",
            "/app/ /app 200\n",
        ] {
            assert!(parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_static_redirects: 2,
            max_dynamic_redirects: 1,
            max_rule_chars: 20,
        };
        assert!(Redirects::parse("/a /b\n/c /d\n", &limits).is_ok());
        assert_eq!(
            Redirects::parse("/a /b\n/c /d\n/e /f\n", &limits)
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(
            Redirects::parse("/a/* /b\n/c/* /d\n", &limits)
                .unwrap_err()
                .line,
            2
        );
        let long = format!("/a /{}\n", "x".repeat(30));
        assert!(Redirects::parse(&long, &limits)
            .unwrap_err()
            .message
            .contains("20 characters"));
        let defaults = Limits::default();
        let many: String = (0..2000).map(|i| format!("/p{i} /q{i} 301\n")).collect();
        let r = Redirects::parse(&many, &defaults).unwrap();
        assert_eq!(to(&r, "/p1999").unwrap().0, "/q1999");
        let too_many = format!("{many}/one-more /x\n");
        assert_eq!(
            Redirects::parse(&too_many, &defaults).unwrap_err().line,
            2001
        );
    }
}
