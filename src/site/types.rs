//! Content types: which `Content-Type` a file is sent with.
//!
//! The type comes from the file name's extension: first [`TABLE`], every
//! extension static-site generators and front-end bundlers emit, checked
//! against nginx's `mime.types` and IANA (the tests hold both); then
//! `mime_guess` for the long tail; `application/octet-stream` without an
//! extension, as nginx's `default_type`.
//!
//! Text types carry a charset. A document that declares its own encoding
//! is sent with that one ([`declared_charset`]: a BOM, HTML's `<meta
//! charset>` in the first 1024 bytes as the HTML standard's prescan finds
//! it, XML's `encoding=` declaration, CSS's `@charset`); `utf-8` only when
//! nothing is declared. An HTTP charset overrides what the document says,
//! so a wrong default garbles every page not written in UTF-8.

use http::HeaderValue;

/// Extension (lowercase, without the dot) → media type. Where nginx's
/// `mime.types` differs, IANA's registration wins and the tests say why.
pub const TABLE: &[(&str, &str)] = &[
    // Documents
    ("html", "text/html"),
    ("htm", "text/html"),
    ("shtml", "text/html"),
    ("xhtml", "application/xhtml+xml"),
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("markdown", "text/markdown"),
    ("csv", "text/csv"),
    ("tsv", "text/tab-separated-values"),
    ("ics", "text/calendar"),
    ("vtt", "text/vtt"),
    ("pdf", "application/pdf"),
    // Styles and scripts: RFC 9239 makes text/javascript the one type for
    // JavaScript, modules and CommonJS alike.
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("cjs", "text/javascript"),
    // Source maps are JSON (the Source Map spec, ECMA-426).
    ("map", "application/json"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("webmanifest", "application/manifest+json"),
    ("wasm", "application/wasm"),
    // Feeds and data
    ("xml", "text/xml"),
    ("xsl", "application/xslt+xml"),
    ("xslt", "application/xslt+xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("toml", "application/toml"),
    ("txtpb", "text/plain"),
    // Images
    ("png", "image/png"),
    ("apng", "image/apng"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("jxl", "image/jxl"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("heic", "image/heic"),
    // Fonts
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    // Audio and video
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("wav", "audio/wav"),
    ("flac", "audio/flac"),
    ("m4a", "audio/x-m4a"),
    ("aac", "audio/aac"),
    ("mp4", "video/mp4"),
    ("m4v", "video/x-m4v"),
    ("webm", "video/webm"),
    ("ogv", "video/ogg"),
    ("mov", "video/quicktime"),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("ts", "video/mp2t"),
    // 3D, archives, downloads
    ("gltf", "model/gltf+json"),
    ("glb", "model/gltf-binary"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tgz", "application/gzip"),
    ("br", "application/octet-stream"),
    ("zst", "application/zstd"),
    ("tar", "application/x-tar"),
    ("7z", "application/x-7z-compressed"),
    ("bin", "application/octet-stream"),
    ("exe", "application/octet-stream"),
    ("dmg", "application/octet-stream"),
    ("iso", "application/octet-stream"),
    ("deb", "application/octet-stream"),
    ("pem", "application/x-x509-ca-cert"),
    ("crt", "application/x-x509-ca-cert"),
    ("der", "application/x-x509-ca-cert"),
    ("epub", "application/epub+zip"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
];

/// The media type of `path` (no parameters), from its extension.
pub fn media_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
    let lower = extension.to_ascii_lowercase();
    if let Some((_, t)) = TABLE.iter().find(|(e, _)| *e == lower) {
        return (*t).to_string();
    }
    if extension.is_empty() {
        return "application/octet-stream".to_string();
    }
    mime_guess::from_ext(&lower)
        .first_or_octet_stream()
        .essence_str()
        .to_string()
}

/// Types whose bytes are text in some charset.
pub fn is_text(media_type: &str) -> bool {
    media_type.starts_with("text/")
        || media_type.ends_with("+xml")
        || media_type.ends_with("+json")
        || matches!(
            media_type,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/yaml"
                | "application/toml"
        )
}

/// Which kind of in-document declaration a type can carry.
fn declaration_kind(media_type: &str) -> Option<Declaration> {
    match media_type {
        "text/html" => Some(Declaration::Html),
        "text/css" => Some(Declaration::Css),
        t if t == "text/xml" || t == "application/xml" || t.ends_with("+xml") => {
            Some(Declaration::Xml)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declaration {
    Html,
    Xml,
    Css,
}

/// Whether the first bytes of a file of this type must be read to find a
/// declared charset (HTML, XML and CSS).
pub fn may_declare_charset(media_type: &str) -> bool {
    declaration_kind(media_type).is_some()
}

/// How many leading bytes [`declared_charset`] looks at (the HTML
/// standard's prescan limit).
pub const PRESCAN_BYTES: usize = 1024;

/// The `Content-Type` of a file at `path` whose first bytes are `head`
/// (pass an empty slice when the type cannot declare a charset, see
/// [`may_declare_charset`]). Returns the header and whether it is HTML.
pub fn content_type(path: &str, head: &[u8]) -> (HeaderValue, bool) {
    let media_type = media_type(path);
    let is_html = media_type == "text/html";
    let value = if is_text(&media_type) {
        match declaration_kind(&media_type).map(|kind| declared(kind, head)) {
            Some(Declared::Charset(charset)) => format!("{media_type}; charset={charset}"),
            // Declared but not a usable label: say nothing, the document
            // (and the browser's own rules) decide.
            Some(Declared::Unusable) => media_type.clone(),
            _ => format!("{media_type}; charset=utf-8"),
        }
    } else {
        media_type.clone()
    };
    let header = HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    (header, is_html)
}

/// What a document says about its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Declared {
    Nothing,
    Charset(String),
    Unusable,
}

/// The charset `head` (a file's first bytes) declares for `media_type`,
/// lowercased; `None` when it declares none or an unusable label.
pub fn declared_charset(media_type: &str, head: &[u8]) -> Option<String> {
    match declaration_kind(media_type).map(|k| declared(k, head)) {
        Some(Declared::Charset(c)) => Some(c),
        _ => None,
    }
}

fn declared(kind: Declaration, head: &[u8]) -> Declared {
    let head = &head[..head.len().min(PRESCAN_BYTES)];
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Declared::Charset("utf-8".to_string());
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return Declared::Charset("utf-16le".to_string());
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return Declared::Charset("utf-16be".to_string());
    }
    let label = match kind {
        Declaration::Html => html_meta_charset(head),
        Declaration::Xml => xml_encoding(head),
        Declaration::Css => css_charset(head),
    };
    match label {
        None => Declared::Nothing,
        Some(label) => {
            let label = label.trim().to_ascii_lowercase();
            let token = !label.is_empty()
                && label.len() <= 40
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:+".contains(&b));
            if !token {
                Declared::Unusable
            } else if kind == Declaration::Html && label.starts_with("utf-16") {
                // A meta tag read as ASCII cannot be UTF-16: the HTML
                // standard turns that declaration into UTF-8.
                Declared::Charset("utf-8".to_string())
            } else {
                Declared::Charset(label)
            }
        }
    }
}

/// The HTML standard's prescan (§13.2.3.2), reduced to what decides the
/// answer: comments are skipped, each `<meta` tag's attributes are read,
/// and the first `charset=` or `http-equiv=content-type` + `content=…;
/// charset=…` wins.
fn html_meta_charset(head: &[u8]) -> Option<String> {
    let lower = head.to_ascii_lowercase();
    let mut i = 0;
    while i < lower.len() {
        if lower[i..].starts_with(b"<!--") {
            let end = find(&lower[i + 4..], b"-->")?;
            i += 4 + end + 3;
            continue;
        }
        if lower[i..].starts_with(b"<meta")
            && lower
                .get(i + 5)
                .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
        {
            let (attributes, next) = attributes(&lower, head, i + 5);
            i = next;
            let mut http_equiv_content_type = false;
            let mut content = None;
            for (name, value) in &attributes {
                match name.as_str() {
                    "charset" => return Some(value.clone()),
                    "http-equiv" => {
                        http_equiv_content_type = value.eq_ignore_ascii_case("content-type")
                    }
                    "content" => content = Some(value.clone()),
                    _ => {}
                }
            }
            if http_equiv_content_type {
                if let Some(charset) = content.as_deref().and_then(charset_param) {
                    return Some(charset);
                }
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Reads a tag's attributes from `start` up to its `>`; returns them
/// (names lowercased, values as written) and the index after the tag.
fn attributes(lower: &[u8], raw: &[u8], start: usize) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    let mut i = start;
    loop {
        while i < lower.len() && (lower[i].is_ascii_whitespace() || lower[i] == b'/') {
            i += 1;
        }
        if i >= lower.len() || lower[i] == b'>' {
            return (out, i + 1);
        }
        let name_start = i;
        while i < lower.len() && !lower[i].is_ascii_whitespace() && !b"=>/".contains(&lower[i]) {
            i += 1;
        }
        let name = String::from_utf8_lossy(&lower[name_start..i]).into_owned();
        while i < lower.len() && lower[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= lower.len() || lower[i] != b'=' {
            out.push((name, String::new()));
            continue;
        }
        i += 1;
        while i < lower.len() && lower[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match lower.get(i) {
            Some(q @ (b'"' | b'\'')) => {
                let q = *q;
                let value_start = i + 1;
                let end = lower[value_start..]
                    .iter()
                    .position(|c| *c == q)
                    .map_or(lower.len(), |p| value_start + p);
                i = (end + 1).min(lower.len());
                &raw[value_start..end]
            }
            _ => {
                let value_start = i;
                while i < lower.len() && !lower[i].is_ascii_whitespace() && lower[i] != b'>' {
                    i += 1;
                }
                &raw[value_start..i]
            }
        };
        out.push((name, String::from_utf8_lossy(value).into_owned()));
    }
}

/// `charset=…` inside a `content` attribute (`text/html; charset=x`).
fn charset_param(content: &str) -> Option<String> {
    let lower = content.to_ascii_lowercase();
    let at = lower.find("charset")?;
    let rest = lower[at + 7..].trim_start().strip_prefix('=')?.trim_start();
    let rest = rest.trim_start_matches(['"', '\'']);
    let end = rest
        .find(|c: char| c == ';' || c == '"' || c == '\'' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// `<?xml version="1.0" encoding="…"?>` at the very start.
fn xml_encoding(head: &[u8]) -> Option<String> {
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = find(head, b"?>")?;
    let decl = String::from_utf8_lossy(&head[..end]).into_owned();
    let at = decl.find("encoding")?;
    let rest = decl[at + 8..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

/// `@charset "…";` as the very first bytes (CSS Syntax §3.2).
fn css_charset(head: &[u8]) -> Option<String> {
    let rest = head.strip_prefix(b"@charset \"")?;
    let end = find(rest, b"\";")?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every extension static-site generators (Hugo, Jekyll, Eleventy,
    /// Astro, Next/Nuxt exports, Docusaurus, MkDocs, Sphinx, Vite, webpack)
    /// emit: (extension, what we send, what nginx's mime.types says or "-"
    /// when it has no entry). A difference from nginx says why.
    const EXPECTED: &[(&str, &str, &str)] = &[
        ("html", "text/html; charset=utf-8", "text/html"),
        ("htm", "text/html; charset=utf-8", "text/html"),
        ("css", "text/css; charset=utf-8", "text/css"),
        // RFC 9239 obsoletes application/javascript.
        (
            "js",
            "text/javascript; charset=utf-8",
            "application/javascript",
        ),
        ("mjs", "text/javascript; charset=utf-8", "-"),
        ("cjs", "text/javascript; charset=utf-8", "-"),
        ("map", "application/json; charset=utf-8", "-"),
        (
            "json",
            "application/json; charset=utf-8",
            "application/json",
        ),
        (
            "webmanifest",
            "application/manifest+json; charset=utf-8",
            "-",
        ),
        ("wasm", "application/wasm", "application/wasm"),
        ("xml", "text/xml; charset=utf-8", "text/xml"),
        (
            "rss",
            "application/rss+xml; charset=utf-8",
            "application/rss+xml",
        ),
        (
            "atom",
            "application/atom+xml; charset=utf-8",
            "application/atom+xml",
        ),
        ("xsl", "application/xslt+xml; charset=utf-8", "-"),
        ("txt", "text/plain; charset=utf-8", "text/plain"),
        ("md", "text/markdown; charset=utf-8", "-"),
        ("csv", "text/csv; charset=utf-8", "-"),
        ("ics", "text/calendar; charset=utf-8", "-"),
        ("vtt", "text/vtt; charset=utf-8", "-"),
        ("jsonld", "application/ld+json; charset=utf-8", "-"),
        ("pdf", "application/pdf", "application/pdf"),
        ("png", "image/png", "image/png"),
        ("jpg", "image/jpeg", "image/jpeg"),
        ("jpeg", "image/jpeg", "image/jpeg"),
        ("gif", "image/gif", "image/gif"),
        ("webp", "image/webp", "image/webp"),
        ("avif", "image/avif", "image/avif"),
        ("svg", "image/svg+xml; charset=utf-8", "image/svg+xml"),
        ("ico", "image/x-icon", "image/x-icon"),
        // IANA registered image/bmp (RFC 7903); nginx keeps the old x-ms-bmp.
        ("bmp", "image/bmp", "image/x-ms-bmp"),
        ("tiff", "image/tiff", "image/tiff"),
        ("woff", "font/woff", "font/woff"),
        ("woff2", "font/woff2", "font/woff2"),
        ("ttf", "font/ttf", "-"),
        ("otf", "font/otf", "-"),
        (
            "eot",
            "application/vnd.ms-fontobject",
            "application/vnd.ms-fontobject",
        ),
        ("mp3", "audio/mpeg", "audio/mpeg"),
        ("ogg", "audio/ogg", "audio/ogg"),
        ("m4a", "audio/x-m4a", "audio/x-m4a"),
        ("wav", "audio/wav", "-"),
        ("mp4", "video/mp4", "video/mp4"),
        ("webm", "video/webm", "video/webm"),
        ("mov", "video/quicktime", "video/quicktime"),
        (
            "m3u8",
            "application/vnd.apple.mpegurl",
            "application/vnd.apple.mpegurl",
        ),
        ("ts", "video/mp2t", "video/mp2t"),
        ("zip", "application/zip", "application/zip"),
        ("gz", "application/gzip", "-"),
        (
            "7z",
            "application/x-7z-compressed",
            "application/x-7z-compressed",
        ),
        (
            "xhtml",
            "application/xhtml+xml; charset=utf-8",
            "application/xhtml+xml",
        ),
        (
            "bin",
            "application/octet-stream",
            "application/octet-stream",
        ),
        (
            "pem",
            "application/x-x509-ca-cert",
            "application/x-x509-ca-cert",
        ),
        (
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("gltf", "model/gltf+json; charset=utf-8", "-"),
        ("glb", "model/gltf-binary", "-"),
        ("yaml", "application/yaml; charset=utf-8", "-"),
    ];

    #[test]
    fn static_site_extensions_have_the_reference_types() {
        for (ext, ours, nginx) in EXPECTED {
            let (value, _) = content_type(&format!("dir/file.{ext}"), b"");
            assert_eq!(value, *ours, ".{ext}");
            let upper = content_type(&format!("FILE.{}", ext.to_ascii_uppercase()), b"").0;
            assert_eq!(upper, *ours, ".{ext} in capitals");
            let essence = ours.split(';').next().unwrap_or(ours);
            let explained = matches!(*ext, "js" | "bmp");
            assert!(
                *nginx == "-" || *nginx == essence || explained,
                ".{ext}: {essence} differs from nginx's {nginx} without a reason"
            );
        }
        assert_eq!(content_type("LICENSE", b"").0, "application/octet-stream");
        assert_eq!(
            content_type("a.unknownext", b"").0,
            "application/octet-stream"
        );
        assert!(content_type("a/index.html", b"").1);
    }

    /// Keeps the "nginx" column above honest where nginx is installed
    /// (Debian `nginx-common`); the table test above never needs it.
    #[test]
    fn nginx_column_matches_an_installed_mime_types() {
        let Ok(text) = std::fs::read_to_string("/etc/nginx/mime.types") else {
            eprintln!("SKIP: /etc/nginx/mime.types not installed (Debian nginx-common)");
            return;
        };
        let mut nginx = std::collections::HashMap::new();
        for line in text.lines() {
            let line = line.trim().trim_end_matches(';');
            let mut words = line.split_whitespace();
            let Some(t) = words.next().filter(|t| t.contains('/')) else {
                continue;
            };
            for ext in words {
                nginx.insert(ext.to_string(), t.to_string());
            }
        }
        for (ext, _, column) in EXPECTED {
            let real = nginx.get(*ext).map_or("-", String::as_str);
            assert_eq!(real, *column, ".{ext} in /etc/nginx/mime.types");
        }
    }

    #[test]
    fn declared_charsets_are_sent_utf8_only_when_nothing_is_declared() {
        let html = |head: &str| content_type("p.html", head.as_bytes()).0;
        assert_eq!(
            html("<!doctype html><meta charset=\"iso-8859-1\"><p>caf\u{e9}"),
            "text/html; charset=iso-8859-1"
        );
        assert_eq!(
            html("<html><head><META CHARSET=Windows-1252>"),
            "text/html; charset=windows-1252"
        );
        assert_eq!(
            html("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">"),
            "text/html; charset=shift_jis"
        );
        assert_eq!(
            html("<meta content='text/html;charset=euc-jp' http-equiv='content-type'>"),
            "text/html; charset=euc-jp"
        );
        assert_eq!(
            html("<!-- <meta charset=koi8-r> --><p>x"),
            "text/html; charset=utf-8"
        );
        assert_eq!(html("<p>no declaration</p>"), "text/html; charset=utf-8");
        assert_eq!(html("<meta charset=utf-16>"), "text/html; charset=utf-8");
        assert_eq!(html("<meta charset=\"bad label;\">"), "text/html");
        assert_eq!(
            html("<metadata charset=koi8-r>"),
            "text/html; charset=utf-8"
        );
        // Only the first 1024 bytes count.
        let late = format!("{}<meta charset=koi8-r>", " ".repeat(1024));
        assert_eq!(html(&late), "text/html; charset=utf-8");
        assert_eq!(
            content_type("p.html", b"\xEF\xBB\xBF<p>").0,
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type("p.html", b"\xFF\xFE<\x00p\x00").0,
            "text/html; charset=utf-16le"
        );
        assert_eq!(
            content_type(
                "feed.xml",
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss/>"
            )
            .0,
            "text/xml; charset=iso-8859-1"
        );
        assert_eq!(
            content_type("i.svg", b"<?xml version='1.0' encoding='windows-1251'?>").0,
            "image/svg+xml; charset=windows-1251"
        );
        assert_eq!(
            content_type("s.css", b"@charset \"ISO-8859-15\";\nbody{}").0,
            "text/css; charset=iso-8859-15"
        );
        assert_eq!(
            content_type("s.css", b"body{}").0,
            "text/css; charset=utf-8"
        );
        assert_eq!(
            declared_charset("text/html", b"<meta charset=iso-8859-1>").as_deref(),
            Some("iso-8859-1")
        );
    }
}
