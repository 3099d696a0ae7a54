//! Path patterns shared by `_redirects` and `_headers`.
//!
//! The syntax is the one Netlify, Cloudflare Pages and GitLab Pages share:
//! a path starting with `/`, where a segment `:name` matches one whole
//! segment and one `*` matches any rest (including `/`), available to the
//! destination as `:splat`. A trailing `/` is not significant (`/a/` and
//! `/a` are the same pattern, as on those platforms). Patterns are parsed
//! once, at deploy time; matching is a walk over a few tokens, with no
//! regular expressions.
//!
//! **Matching is linear, never backtracking** (issue #21: one long URL
//! against a splat followed by a literal used to try every split point,
//! copying the candidate each time: quadratic, 3.9 s a request for 100
//! rules and a 60 000-byte path). A pattern has at most one `*`; the
//! tokens before it are matched forward from the start of the path, the
//! tokens after it backward from the end, and the splat is what lies
//! between. Both walks are deterministic: a `:placeholder` is always a
//! whole segment (the literal before it ends in `/`, the one after it
//! starts with `/`), so it is exactly the run between two `/`, found in
//! the path's slash index ([`Subject`], built once per request and only
//! when a placeholder needs it) by binary search. So one pattern costs
//! O(pattern length × log(path length)) and a lookup O(path length + rules
//! × pattern length × log(path length)), whatever the patterns; the
//! captured values are copied once, for the rule that matched.
//! [`Subject::steps`] counts the work, for the tests that bound it.

use std::cell::{Cell, OnceCell};
use std::ops::Range;

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Text that must appear as is.
    Literal(String),
    /// `:name`: one whole segment (no `/`), at least one byte.
    Placeholder(String),
    /// `*`: any text, possibly empty, `/` included.
    Splat,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// The pattern as written, normalized (no trailing `/`).
    text: String,
    /// Index of the `*` token, if any: tokens before it are matched
    /// forward, tokens after it backward.
    splat: Option<usize>,
    /// For a pattern ending in `/*`: the tokens before the `*` without
    /// that final `/`, which must match a whole path for `/app/*` to cover
    /// `/app` (with an empty splat).
    bare: Option<Vec<Token>>,
}

/// Values captured by a match: `(name, value)`, `splat` for `*`.
pub type Captures<'p> = Vec<(&'p str, String)>;

/// Strips the trailing `/` a path or pattern may carry (never from `/`).
pub fn normalize(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// True for a placeholder name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A request's site path, prepared once for matching against every rule:
/// normalized (see [`normalize`]), with the byte offsets of its `/` built
/// on first need (O(path length), once per request), and a count of the
/// matching work done on it.
#[derive(Debug)]
pub struct Subject<'s> {
    path: &'s str,
    slashes: OnceCell<Vec<usize>>,
    steps: Cell<u64>,
}

impl<'s> Subject<'s> {
    /// `path`: a site path starting with `/`; a trailing `/` is dropped.
    pub fn new(path: &'s str) -> Subject<'s> {
        Subject {
            path: normalize(path),
            slashes: OnceCell::new(),
            steps: Cell::new(0),
        }
    }

    /// The normalized path.
    pub fn path(&self) -> &'s str {
        self.path
    }

    /// The matching work done on this path so far, in steps: one per byte
    /// of the path when its slash index is built, one per token tried, one
    /// per byte of a literal compared, one per halving of a binary search
    /// in the slash index, one per byte of a captured value copied. Linear
    /// in the path's length for any number and shape of patterns (the unit
    /// tests bound it).
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    fn step(&self, n: usize) {
        self.steps.set(self.steps.get().saturating_add(n as u64));
    }

    fn slashes(&self) -> &[usize] {
        self.slashes.get_or_init(|| {
            self.step(self.path.len());
            self.path
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'/')
                .map(|(i, _)| i)
                .collect()
        })
    }

    /// A binary search in the slash index: the number of slashes before `at`.
    fn slashes_before(&self, at: usize) -> (usize, &[usize]) {
        let slashes = self.slashes();
        self.step((usize::BITS - slashes.len().leading_zeros()) as usize + 1);
        (slashes.partition_point(|&s| s < at), slashes)
    }

    /// The end of the segment starting at `from`: the first `/` at or
    /// after it, or the path's end.
    fn segment_end(&self, from: usize) -> usize {
        let (k, slashes) = self.slashes_before(from);
        slashes.get(k).copied().unwrap_or(self.path.len())
    }

    /// The start of the segment ending at `to`: just after the last `/`
    /// before it, or 0.
    fn segment_start(&self, to: usize) -> usize {
        let (k, slashes) = self.slashes_before(to);
        k.checked_sub(1).map_or(0, |k| slashes[k] + 1)
    }

    /// Matches `tokens` (literals and placeholders) forward from `pos`;
    /// the position after them.
    fn forward<'p>(
        &self,
        tokens: &'p [Token],
        mut pos: usize,
        capture: &mut impl FnMut(&'p str, Range<usize>),
    ) -> Option<usize> {
        for token in tokens {
            self.step(1);
            match token {
                Token::Literal(text) => {
                    self.step(text.len());
                    if !self.path.get(pos..)?.starts_with(text.as_str()) {
                        return None;
                    }
                    pos += text.len();
                }
                Token::Placeholder(name) => {
                    let end = self.segment_end(pos);
                    if end <= pos {
                        return None;
                    }
                    capture(name, pos..end);
                    pos = end;
                }
                Token::Splat => return None,
            }
        }
        Some(pos)
    }

    /// Matches `tokens` (literals and placeholders) backward, ending at
    /// `end`; the position where they start.
    fn backward<'p>(
        &self,
        tokens: &'p [Token],
        mut end: usize,
        capture: &mut impl FnMut(&'p str, Range<usize>),
    ) -> Option<usize> {
        for token in tokens.iter().rev() {
            self.step(1);
            match token {
                Token::Literal(text) => {
                    self.step(text.len());
                    if !self.path.get(..end)?.ends_with(text.as_str()) {
                        return None;
                    }
                    end -= text.len();
                }
                Token::Placeholder(name) => {
                    let start = self.segment_start(end);
                    if start >= end {
                        return None;
                    }
                    capture(name, start..end);
                    end = start;
                }
                Token::Splat => return None,
            }
        }
        Some(end)
    }
}

impl Pattern {
    /// Parses a pattern; errors say what is wrong, for the rule file's
    /// line-numbered message.
    pub fn parse(raw: &str) -> Result<Pattern, String> {
        if !raw.starts_with('/') {
            return Err(format!(
                "path {raw:?} must start with / (absolute URLs and host matching are not supported)"
            ));
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err(format!(
                "path {raw:?} contains a control character or backslash"
            ));
        }
        if raw.contains('?') {
            return Err(format!(
                "path {raw:?} contains a query string; matching on query parameters is not supported"
            ));
        }
        let text = normalize(raw).to_string();
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut splats = 0;
        for (i, segment) in text.split('/').enumerate() {
            if i > 0 {
                literal.push('/');
            }
            if let Some(name) = segment.strip_prefix(':') {
                if !is_name(name) {
                    return Err(format!(
                        "placeholder {segment:?} in {raw:?} is not a name (letters, digits, _)"
                    ));
                }
                if name == "splat" {
                    return Err(format!(
                        "{raw:?}: :splat is the name of *, not a placeholder"
                    ));
                }
                if tokens
                    .iter()
                    .any(|t| matches!(t, Token::Placeholder(n) if n == name))
                {
                    return Err(format!("placeholder :{name} appears twice in {raw:?}"));
                }
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(Token::Placeholder(name.to_string()));
                continue;
            }
            for (j, piece) in segment.split('*').enumerate() {
                if j > 0 {
                    splats += 1;
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal)));
                    }
                    tokens.push(Token::Splat);
                }
                literal.push_str(piece);
            }
        }
        if splats > 1 {
            return Err(format!("{raw:?} has more than one * (one splat per rule)"));
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        let splat = tokens.iter().position(|t| *t == Token::Splat);
        let bare = match (splat, text.ends_with("/*")) {
            (Some(k), true) => {
                let mut prefix = tokens[..k].to_vec();
                if let Some(Token::Literal(last)) = prefix.last_mut() {
                    last.pop();
                    if last.is_empty() {
                        prefix.pop();
                    }
                }
                Some(prefix)
            }
            _ => None,
        };
        Ok(Pattern {
            tokens,
            text,
            splat,
            bare,
        })
    }

    /// True when the pattern has no placeholder and no splat: it matches
    /// exactly one path, found by hash lookup.
    pub fn is_static(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The normalized pattern text (for static patterns: the one path).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the pattern captures `name` (`splat` for `*`).
    pub fn captures_name(&self, name: &str) -> bool {
        self.tokens.iter().any(|t| match t {
            Token::Placeholder(n) => n == name,
            Token::Splat => name == "splat",
            Token::Literal(_) => false,
        })
    }

    /// A path this pattern matches, with `p0`, `p1`, … for its
    /// placeholders and `s` for its splat: to see at upload where a rule
    /// sends the paths it matches.
    pub fn probe(&self) -> String {
        let mut out = String::new();
        let mut names = 0;
        for token in &self.tokens {
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Placeholder(_) => {
                    out.push_str(&format!("p{names}"));
                    names += 1;
                }
                Token::Splat => out.push('s'),
            }
        }
        out
    }

    /// Matches a path (normalized here, see [`normalize`]); the captures
    /// on success. A pattern ending in `/*` also matches the path without
    /// that `/` (`/app/*` matches `/app` and `/app/`), as on Netlify.
    pub fn matches(&self, path: &str) -> Option<Captures<'_>> {
        self.matches_subject(&Subject::new(path))
    }

    /// [`Self::matches`] on a prepared path (one [`Subject`] serves every
    /// rule of a lookup).
    pub fn matches_subject(&self, subject: &Subject<'_>) -> Option<Captures<'_>> {
        // First without recording anything; the values are copied only
        // once the match is known, in path order.
        let way = self.which(subject)?;
        let mut found: Vec<(&str, Range<usize>)> = Vec::new();
        self.walk(way, subject, &mut |name, range| found.push((name, range)))?;
        found.sort_by_key(|(_, range)| range.start);
        Some(
            found
                .into_iter()
                .map(|(name, range)| {
                    subject.step(range.len());
                    (name, subject.path[range].to_string())
                })
                .collect(),
        )
    }

    /// True when the pattern matches the prepared path (no captures built).
    pub fn is_match(&self, subject: &Subject<'_>) -> bool {
        self.which(subject).is_some()
    }

    /// The way the pattern matches the path, if it does.
    fn which(&self, subject: &Subject<'_>) -> Option<Way> {
        [Way::Straight, Way::Bare]
            .into_iter()
            .find(|&way| self.walk(way, subject, &mut |_, _| {}).is_some())
    }

    /// One deterministic match attempt: `capture` is called with each
    /// value's name and byte range in the path.
    fn walk<'p>(
        &'p self,
        way: Way,
        subject: &Subject<'_>,
        capture: &mut impl FnMut(&'p str, Range<usize>),
    ) -> Option<()> {
        let len = subject.path.len();
        match (way, self.splat) {
            (Way::Straight, None) => {
                (subject.forward(&self.tokens, 0, capture)? == len).then_some(())
            }
            (Way::Straight, Some(k)) => {
                let start = subject.forward(&self.tokens[..k], 0, capture)?;
                let end = subject.backward(&self.tokens[k + 1..], len, capture)?;
                if start > end {
                    return None;
                }
                capture("splat", start..end);
                Some(())
            }
            // `/app/*` covers `/app`: the tokens before `/*` are the whole path.
            (Way::Bare, _) => {
                let bare = self.bare.as_ref()?;
                if subject.path.ends_with('/') || subject.forward(bare, 0, capture)? != len {
                    return None;
                }
                capture("splat", len..len);
                Some(())
            }
        }
    }
}

/// How a pattern is matched: its tokens as they are, or (for a pattern
/// ending in `/*`) the tokens before `/*` against the whole path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Straight,
    Bare,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(p: &str, path: &str) -> Option<Vec<(String, String)>> {
        Pattern::parse(p)
            .unwrap()
            .matches(path)
            .map(|c| c.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
    }

    #[test]
    fn literals_placeholders_and_splats() {
        assert_eq!(caps("/old/", "/old"), Some(vec![]));
        assert_eq!(caps("/old", "/older"), None);
        assert_eq!(
            caps("/blog/:year/:slug", "/blog/2024/hello"),
            Some(vec![
                ("year".into(), "2024".into()),
                ("slug".into(), "hello".into())
            ])
        );
        assert_eq!(caps("/blog/:year/:slug", "/blog/2024"), None);
        assert_eq!(caps("/blog/:year/:slug", "/blog/2024/a/b"), None);
        assert_eq!(
            caps("/news/*", "/news/a/b.html"),
            Some(vec![("splat".into(), "a/b.html".into())])
        );
        assert_eq!(
            caps("/news/*", "/news"),
            Some(vec![("splat".into(), String::new())]),
            "/x/* covers /x"
        );
        assert_eq!(caps("/news/*", "/newsy"), None);
        assert_eq!(caps("/*", "/"), Some(vec![("splat".into(), String::new())]));
        assert_eq!(
            caps("/a/*.png", "/a/x/y.png"),
            Some(vec![("splat".into(), "x/y".into())])
        );
        assert_eq!(
            caps("/:lang/*", "/fr/docs/x"),
            Some(vec![
                ("lang".into(), "fr".into()),
                ("splat".into(), "docs/x".into())
            ])
        );
        assert_eq!(
            caps("/a/*/:b", "/a/x/y/z"),
            Some(vec![
                ("splat".into(), "x/y".into()),
                ("b".into(), "z".into())
            ])
        );
        assert_eq!(
            caps("/a/*/:b", "/a/z"),
            None,
            "the splat cannot overlap /a/"
        );
        assert_eq!(
            caps("/:a/*", "/foo"),
            Some(vec![
                ("a".into(), "foo".into()),
                ("splat".into(), String::new())
            ])
        );
        assert_eq!(
            caps("/*.js", "/a.js/b.js"),
            Some(vec![("splat".into(), "a.js/b".into())])
        );
        assert!(Pattern::parse("/a/b").unwrap().is_static());
        assert!(!Pattern::parse("/a/*").unwrap().is_static());
    }

    /// The matcher before issue #21 (greedy backtracking over the splat's
    /// end), kept as the reference the linear one must agree with.
    fn reference<'p>(tokens: &'p [Token], path: &str, captures: &mut Captures<'p>) -> bool {
        let Some((first, rest)) = tokens.split_first() else {
            return path.is_empty();
        };
        match first {
            Token::Literal(text) => match path.strip_prefix(text.as_str()) {
                Some(remaining) => reference(rest, remaining, captures),
                None => false,
            },
            Token::Placeholder(name) => {
                let end = path.find('/').unwrap_or(path.len());
                if end == 0 {
                    return false;
                }
                captures.push((name.as_str(), path[..end].to_string()));
                if reference(rest, &path[end..], captures) {
                    return true;
                }
                captures.pop();
                false
            }
            Token::Splat => {
                let mut ends: Vec<usize> = path.char_indices().map(|(i, _)| i).collect();
                ends.push(path.len());
                for end in ends.into_iter().rev() {
                    let mark = captures.len();
                    captures.push(("splat", path[..end].to_string()));
                    if reference(rest, &path[end..], captures) {
                        return true;
                    }
                    captures.truncate(mark);
                }
                false
            }
        }
    }

    fn reference_matches<'p>(pattern: &'p Pattern, path: &str) -> Option<Captures<'p>> {
        let path = normalize(path);
        let mut captures = Vec::new();
        if reference(&pattern.tokens, path, &mut captures) {
            return Some(captures);
        }
        if pattern.text.ends_with("/*") && !path.ends_with('/') {
            captures.clear();
            if reference(&pattern.tokens, &format!("{path}/"), &mut captures) {
                return Some(captures);
            }
        }
        None
    }

    proptest::proptest! {
        /// The linear matcher captures exactly what the backtracking one did.
        #[test]
        fn linear_matching_agrees_with_backtracking(
            pattern in r"(/(:[ab]|[xy.]{0,2}|[xy]?\*[xy.]{0,2})){1,5}",
            path in r"(/[xy.ab]{0,3}){0,6}/?",
        ) {
            // At most one `*` and distinct names make a valid pattern.
            if let Ok(pattern) = Pattern::parse(&pattern) {
                proptest::prop_assert_eq!(
                    pattern.matches(&path),
                    reference_matches(&pattern, &path),
                    "{:?} on {:?}", pattern.text(), path
                );
            }
        }
    }

    /// Issue #21, item 3: a long URL against the worst rule shapes costs
    /// steps linear in its length (plus the patterns' own length), not one
    /// pass per split point. Counted, not timed. The backtracking matcher
    /// took more than n²/2 steps per rule here (each candidate splat copied).
    #[test]
    fn matching_work_is_linear_in_the_path_length_whatever_the_patterns() {
        let n = 60_000;
        let flat = format!("/{}", "a".repeat(n - 1));
        let deep = "/a".repeat(n / 2);
        let before = (0..40).map(|i| format!("/:p{i}")).collect::<String>();
        let after = (0..40).map(|i| format!("/:q{i}")).collect::<String>();
        let shapes: Vec<(String, &str)> = (0..100)
            .flat_map(|i| {
                [
                    (format!("/*-{i}.x"), flat.as_str()),
                    (format!("/*a{i}"), flat.as_str()),
                    (format!("/a/*/a/a{i}"), deep.as_str()),
                    (format!("/:a/:b/:c/:d/*/:e/:f/:g/:h/z{i}"), deep.as_str()),
                    (format!("{before}/*{after}/z{i}"), deep.as_str()),
                    (format!("/:a/*/b{i}"), flat.as_str()),
                    (format!("/a/a{i}/*"), flat.as_str()),
                ]
            })
            .collect();
        for path in [flat.as_str(), deep.as_str()] {
            let subject = Subject::new(path);
            let mut pattern_bytes = 0usize;
            let rules: Vec<Pattern> = shapes
                .iter()
                .filter(|(_, p)| *p == path)
                .map(|(text, _)| Pattern::parse(text).unwrap())
                .collect();
            for pattern in &rules {
                pattern_bytes += pattern.text().len();
                let _ = pattern.matches_subject(&subject);
            }
            // One pass over the path for its slash index, the captured
            // values of matches (at most the path each), and per pattern
            // byte a literal compare or a binary search (17 halvings here).
            let log = (usize::BITS - n.leading_zeros()) as usize + 1;
            let bound = (n + rules.len() * n / 2 + pattern_bytes * (log + 2)) as u64;
            assert!(
                subject.steps() <= bound,
                "{} steps for {} rules on {} bytes (bound {bound})",
                subject.steps(),
                rules.len(),
                path.len()
            );
            // A lookup that matches nothing copies nothing: no path-sized
            // term per rule at all.
            let misses = Subject::new(path);
            let mut miss_bytes = 0;
            for pattern in &rules {
                if pattern.is_match(&Subject::new(path)) {
                    continue;
                }
                miss_bytes += pattern.text().len();
                assert!(!pattern.is_match(&misses));
            }
            let bound = (n + miss_bytes * (log + 2)) as u64;
            assert!(misses.steps() <= bound, "{} > {bound}", misses.steps());
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "old",
            "https://x.example/a",
            "/a/*/b/*",
            "/a/:1x",
            "/a?x=1",
            "/:a/:a",
            "/:splat",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
