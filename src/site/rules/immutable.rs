//! Which files may be cached forever: `Cache-Control: public,
//! max-age=31536000, immutable` (RFC 8246).
//!
//! The rule, in one sentence: **a non-HTML file is immutable when it lies
//! under a bundler's hashed-output directory (`_next/static/`,
//! `_app/immutable/`, `_astro/`) or when a part of its name before the
//! extension, after a `.` or `-`, is a content hash — 8 to 64 hex digits
//! mixing digits and letters, or 8 characters of `[A-Za-z0-9_]` mixing
//! digits and capitals — and no retained deployment of the service holds
//! other bytes under the same path.**
//!
//! That covers what real bundlers emit: Vite/Rollup and Astro
//! (`index-BxYz12Ab.js`), esbuild (`chunk-ABCD1234.js`), webpack and
//! Create React App (`main.3f9c1a2b.js`, `[contenthash]` of 16-20 hex),
//! Parcel (`index.1a2b3c4d.js`), Hugo (`main.min.<sha256>.css`) and
//! mkdocs-material (`bundle.8c5f2e1d.min.js`), while `jquery-3.6.0.min.js`,
//! `OpenSans-SemiBold.woff2` or `photo-20240115.jpg` stay revalidated. A
//! missed hash only costs a revalidation; a false one would pin stale
//! bytes in browsers for a year, so the rule leans to missing. Sites add
//! their own paths with the `immutable_paths` globs of the configuration
//! or a `Cache-Control` line in `_headers` (which wins over both).
//!
//! The safety half: a path whose bytes differ between retained deployments
//! was reused for other content, so it is not a fingerprint whatever its
//! name; such paths are listed in the index's stats and logged.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use http::HeaderValue;

use crate::store::meta;

/// The `Cache-Control` of an immutable file.
pub fn cache_control() -> HeaderValue {
    HeaderValue::from_static("public, max-age=31536000, immutable")
}

/// Directories whose every file is named by content by the framework that
/// writes them: Next.js, SvelteKit, Astro.
const HASHED_DIRS: &[&str] = &["_next/static/", "_app/immutable/", "_astro/"];

/// The name-based half of the rule (no HTML check, no safety check).
pub fn is_fingerprinted(path: &str) -> bool {
    if HASHED_DIRS
        .iter()
        .any(|d| path.starts_with(d) || path.contains(&format!("/{d}")))
    {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    for (i, part) in stem.split('.').enumerate() {
        // The hash is the part itself (after a `.`, or a leading hex name
        // like webpack's `[contenthash].js`), or what follows a `-` in it.
        if let Some((_, tail)) = part.rsplit_once('-') {
            if is_hash(tail, true) {
                return true;
            }
        }
        if (i > 0 || is_hex_hash(part)) && is_hash(part, i > 0) {
            return true;
        }
    }
    false
}

fn is_hex_hash(text: &str) -> bool {
    (8..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && text.bytes().any(|b| b.is_ascii_digit())
        && text.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_hash(text: &str, allow_base64: bool) -> bool {
    if is_hex_hash(text) {
        return true;
    }
    if !allow_base64
        || text.len() != 8
        || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || !text.bytes().any(|b| b.is_ascii_digit())
        || !text.bytes().any(|b| b.is_ascii_uppercase())
    {
        return false;
    }
    // Rollup/Vite's base64 (capitals, small letters and digits), or
    // esbuild's base32 (capitals and digits only, no `_`): not names a
    // person chose, like `IMG_1234` or `EN_US_V2`.
    text.bytes().any(|b| b.is_ascii_lowercase())
        || text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Paths of `ours` (path → SHA-256 hex) whose bytes differ in another
/// deployment kept next to `dir` (its siblings in the service directory).
/// A sibling without a manifest entry for a path it holds counts as
/// different unless `hash_unknown` lists the path, in which case its file
/// is hashed. Unreadable siblings are skipped (they are not served).
pub fn varying_paths(
    dir: &Path,
    ours: &HashMap<String, String>,
    hash_unknown: &HashSet<&str>,
) -> HashSet<String> {
    let mut varying = HashSet::new();
    let Some(parent) = dir.parent() else {
        return varying;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return varying;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.')
            || name.ends_with(crate::store::TMP_SUFFIX)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let other = entry.path();
        if other == dir || other.canonicalize().is_ok_and(|c| c == dir) {
            continue;
        }
        let Ok(manifest) = meta::read_manifest(&other) else {
            continue;
        };
        for (path, digest) in ours {
            if varying.contains(path) {
                continue;
            }
            let differs = match manifest.get(path) {
                Some(theirs) => theirs != digest,
                None => {
                    let file = other.join(path);
                    if !file.exists() {
                        false
                    } else if hash_unknown.contains(path.as_str()) {
                        crate::site::index::sha256_file(&file).map_or(true, |d| &d != digest)
                    } else {
                        true
                    }
                }
            };
            if differs {
                varying.insert(path.clone());
            }
        }
    }
    varying
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_bundlers_emit_is_recognised() {
        for path in [
            "assets/index-BxYz12Ab.js",        // Vite / Rollup
            "assets/index-D4x9Qm2L.css",       // Vite
            "_astro/index.Bx12abCd.css",       // Astro
            "_astro/hoisted.js",               // Astro directory
            "chunk-ABCD1234.js",               // esbuild
            "static/js/main.3f9c1a2b.js",      // webpack / CRA
            "static/js/787.3f9c1a2b.chunk.js", // webpack chunk
            "3f9c1a2b4d5e6f708192.js",         // webpack [contenthash].js
            "index.1a2b3c4d.js",               // Parcel
            "css/main.min.6b2f1e5a0c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f.css", // Hugo
            "assets/javascripts/bundle.8c5f2e1d.min.js", // mkdocs-material
            "assets/stylesheets/main.6f8fc17f.min.css",  // mkdocs-material
            "_next/static/chunks/pages/index.js",        // Next.js
            "_app/immutable/entry/start.js",             // SvelteKit
            "assets/index-BxYz12Ab.js.map",
        ] {
            assert!(is_fingerprinted(path), "{path}");
        }
    }

    #[test]
    fn ordinary_names_are_not() {
        for path in [
            "index.html",
            "app.js",
            "jquery-3.6.0.min.js",
            "fonts/OpenSans-SemiBold.woff2",
            "fonts/roboto-v20-latin-regular.woff2",
            "photo-20240115.jpg",
            "report2024.pdf",
            "deadbeef.txt",
            "favicon.ico",
            "assets/images/favicon.png",
            "search/search_index.json",
            "Makefile",
            "bundle.min.js",
            // Names people choose (found by a trial): underscores and
            // capitals without small letters are not a bundler's hash.
            "photo-IMG_1234.jpg",
            "i18n-EN_US_V2.json",
            "v-2024_V01.txt",
        ] {
            assert!(!is_fingerprinted(path), "{path}");
        }
    }

    #[test]
    fn paths_with_other_bytes_in_a_sibling_vary() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let d1 = "1".repeat(64);
        let d2 = "2".repeat(64);
        std::fs::write(
            b.join(meta::MANIFEST_FILE),
            format!("{d1}  same.3f9c1a2b.js\n{d2}  changed.3f9c1a2b.js\n"),
        )
        .unwrap();
        std::fs::write(b.join("unlisted.3f9c1a2b.js"), "x").unwrap();
        let ours: HashMap<String, String> = [
            ("same.3f9c1a2b.js", &d1),
            ("changed.3f9c1a2b.js", &d1),
            ("new.3f9c1a2b.js", &d1),
            ("unlisted.3f9c1a2b.js", &d1),
        ]
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_string()))
        .collect();
        let mut varying: Vec<_> = varying_paths(&a, &ours, &HashSet::new())
            .into_iter()
            .collect();
        varying.sort();
        assert_eq!(varying, ["changed.3f9c1a2b.js", "unlisted.3f9c1a2b.js"]);
    }
}
