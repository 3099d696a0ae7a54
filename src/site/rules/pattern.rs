//! Path patterns shared by `_redirects` and `_headers`.
//!
//! The syntax is the one Netlify, Cloudflare Pages and GitLab Pages share:
//! a path starting with `/`, where a segment `:name` matches one whole
//! segment and one `*` matches any rest (including `/`), available to the
//! destination as `:splat`. A trailing `/` is not significant (`/a/` and
//! `/a` are the same pattern, as on those platforms). Patterns are parsed
//! once, at deploy time; matching is a walk over a few tokens, with no
//! regular expressions.

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
        Ok(Pattern { tokens, text })
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

    /// Matches a normalized path (see [`normalize`]); the captures on success.
    /// A pattern ending in `/*` also matches the path without that `/`
    /// (`/app/*` matches `/app` and `/app/`), as on Netlify.
    pub fn matches(&self, path: &str) -> Option<Captures<'_>> {
        let mut captures = Vec::new();
        if match_tokens(&self.tokens, path, &mut captures) {
            return Some(captures);
        }
        if self.text.ends_with("/*") && !path.ends_with('/') {
            captures.clear();
            if match_tokens(&self.tokens, &format!("{path}/"), &mut captures) {
                return Some(captures);
            }
        }
        None
    }
}

fn match_tokens<'p>(tokens: &'p [Token], path: &str, captures: &mut Captures<'p>) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        Token::Literal(text) => match path.strip_prefix(text.as_str()) {
            Some(remaining) => match_tokens(rest, remaining, captures),
            None => false,
        },
        Token::Placeholder(name) => {
            let end = path.find('/').unwrap_or(path.len());
            if end == 0 {
                return false;
            }
            captures.push((name.as_str(), path[..end].to_string()));
            if match_tokens(rest, &path[end..], captures) {
                return true;
            }
            captures.pop();
            false
        }
        Token::Splat => {
            // One splat per pattern: try the longest value first (greedy).
            let mut ends: Vec<usize> = path.char_indices().map(|(i, _)| i).collect();
            ends.push(path.len());
            for end in ends.into_iter().rev() {
                let mark = captures.len();
                captures.push(("splat", path[..end].to_string()));
                if match_tokens(rest, &path[end..], captures) {
                    return true;
                }
                captures.truncate(mark);
            }
            false
        }
    }
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
        assert!(Pattern::parse("/a/b").unwrap().is_static());
        assert!(!Pattern::parse("/a/*").unwrap().is_static());
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
