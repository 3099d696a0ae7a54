//! Deploy-time precompression: `.br` and `.gz` siblings for text files.
//!
//! Compressing once at deploy time means clients that accept brotli or gzip
//! get the smaller body with no per-request CPU. Only text types of at
//! least 1 KiB are compressed, only when the upload did not bring that
//! sibling itself, only when the result is smaller, and within a byte
//! budget per upload so a huge deploy stays bounded in CPU. Siblings join
//! the manifest (so the index never hashes them) but not the deployment's
//! digest: the id still comes from what was uploaded.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Extensions that get siblings.
const TEXT_EXTENSIONS: &[&str] = &[
    "html", "htm", "css", "js", "mjs", "json", "svg", "xml", "txt", "wasm", "map",
];
const MIN_SIZE: u64 = 1024;
/// Larger files are left alone (served identity or from their own siblings).
const MAX_FILE: u64 = 16 << 20;
const BROTLI_QUALITY: u32 = 5;
const GZIP_LEVEL: u32 = 6;

/// What precompression added.
#[derive(Debug, Default, Clone)]
pub struct Precompressed {
    /// (path, sha256) of each sibling written.
    pub siblings: Vec<(String, String)>,
    pub input_bytes: u64,
}

fn is_text(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| TEXT_EXTENSIONS.iter().any(|t| t.eq_ignore_ascii_case(ext)))
}

/// Writes siblings next to the files of `manifest` (paths relative to
/// `dir`), compressing at most `budget` input bytes in all.
pub fn precompress(
    dir: &Path,
    manifest: &[(String, String)],
    budget: u64,
) -> io::Result<Precompressed> {
    let present: std::collections::HashSet<&str> =
        manifest.iter().map(|(p, _)| p.as_str()).collect();
    let mut done = Precompressed::default();
    for (path, _) in manifest {
        if !is_text(path) {
            continue;
        }
        let file = dir.join(path);
        let size = std::fs::symlink_metadata(&file)?.len();
        if !(MIN_SIZE..=MAX_FILE).contains(&size) || done.input_bytes + size > budget {
            continue;
        }
        let wants_br = !present.contains(format!("{path}.br").as_str());
        let wants_gz = !present.contains(format!("{path}.gz").as_str());
        if !wants_br && !wants_gz {
            continue;
        }
        let mut data = Vec::with_capacity(size as usize);
        std::fs::File::open(&file)?.read_to_end(&mut data)?;
        done.input_bytes += size;
        if wants_br {
            let mut out = Vec::new();
            {
                let mut writer =
                    brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, 22);
                writer.write_all(&data)?;
            }
            write_sibling(dir, &format!("{path}.br"), &out, data.len(), &mut done)?;
        }
        if wants_gz {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(&data)?;
            let out = encoder.finish()?;
            write_sibling(dir, &format!("{path}.gz"), &out, data.len(), &mut done)?;
        }
    }
    Ok(done)
}

/// Writes a sibling if it saves at least 5 %.
fn write_sibling(
    dir: &Path,
    rel: &str,
    bytes: &[u8],
    original: usize,
    done: &mut Precompressed,
) -> io::Result<()> {
    if bytes.len() * 100 > original * 95 {
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(rel))?;
    file.write_all(bytes)?;
    done.siblings
        .push((rel.to_string(), hex::encode(Sha256::digest(bytes))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_files_get_smaller_siblings_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let html = "<p>hello precompression</p>\n".repeat(200);
        std::fs::write(dir.path().join("index.html"), &html).unwrap();
        std::fs::write(dir.path().join("small.css"), "a{}").unwrap();
        std::fs::write(dir.path().join("photo.png"), vec![7u8; 5000]).unwrap();
        std::fs::write(dir.path().join("app.js"), "x".repeat(5000)).unwrap();
        std::fs::write(dir.path().join("app.js.gz"), "uploaded").unwrap();
        let manifest: Vec<(String, String)> = [
            "index.html",
            "small.css",
            "photo.png",
            "app.js",
            "app.js.gz",
        ]
        .iter()
        .map(|p| (p.to_string(), String::new()))
        .collect();
        let done = precompress(dir.path(), &manifest, 1 << 20).unwrap();
        let mut names: Vec<&str> = done.siblings.iter().map(|(p, _)| p.as_str()).collect();
        names.sort();
        assert_eq!(names, ["app.js.br", "index.html.br", "index.html.gz"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app.js.gz")).unwrap(),
            "uploaded",
            "own sibling kept"
        );
        let mut gz = flate2::read::GzDecoder::new(
            std::fs::File::open(dir.path().join("index.html.gz")).unwrap(),
        );
        let mut back = String::new();
        gz.read_to_string(&mut back).unwrap();
        assert_eq!(back, html);
        let mut br = brotli::Decompressor::new(
            std::fs::File::open(dir.path().join("index.html.br")).unwrap(),
            4096,
        );
        let mut back = String::new();
        br.read_to_string(&mut back).unwrap();
        assert_eq!(back, html);
    }

    #[test]
    fn the_budget_bounds_the_work() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", "b.txt"] {
            std::fs::write(dir.path().join(name), "y".repeat(4000)).unwrap();
        }
        let manifest = vec![
            ("a.txt".to_string(), String::new()),
            ("b.txt".to_string(), String::new()),
        ];
        let done = precompress(dir.path(), &manifest, 5000).unwrap();
        assert_eq!(done.input_bytes, 4000, "only one file fits the budget");
    }
}
