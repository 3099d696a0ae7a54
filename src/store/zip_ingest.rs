//! Zip ingest: the front-end for `.zip` uploads (what CI artifact
//! downloads are), feeding the same rules as the tar path.
//!
//! A zip's central directory is at its end, so the upload is first spooled
//! to an unnamed temporary file next to the deployments (on the volume,
//! never in memory), capped at `max_upload_bytes`. Then every entry is
//! checked through [`super::ingest`]'s rules — no absolute or `..` paths,
//! symlinks (a Unix mode in the external attributes) only inside the
//! upload, only files, directories and links — plus zip's own: encrypted
//! entries are refused, unsupported compression methods are refused, the
//! entry count is checked against the central directory before anything is
//! written, and decompressed bytes count against `max_upload_bytes` as they
//! come out (a zip bomb stops at the limit). Zip64 archives are read by the
//! `zip` crate. Errors name the entry.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::ingest::{Extracted, IngestError, Limited, Limits, State};

/// Largest symlink target read from an entry.
const MAX_LINK_TARGET: u64 = 4096;

/// `PK\3\4` (a local file header) or `PK\5\6` (an empty archive's end record).
pub fn is_zip(prefix: &[u8]) -> bool {
    prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06")
}

/// Unix file types in the high bits of a zip entry's external attributes.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Spools `source` and extracts it into `dest` (an empty directory the
/// caller created and removes on error).
pub fn extract(source: impl Read, dest: &Path, limits: &Limits) -> Result<Extracted, IngestError> {
    if limits.partial {
        return Err(IngestError::Rejected(
            "a differential upload (partial=true) must be a tar archive, not a zip".to_string(),
        ));
    }
    let spool_dir = dest.parent().unwrap_or(dest);
    let mut spool = tempfile::tempfile_in(spool_dir)
        .map_err(|e| IngestError::from_io(e, "creating the zip spool file"))?;
    let mut limited = Limited {
        inner: source,
        remaining: limits.max_upload_bytes,
        what: "upload",
    };
    io::copy(&mut limited, &mut spool).map_err(|e| IngestError::from_io(e, "spooling the zip"))?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| IngestError::from_io(e, "spooling the zip"))?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(spool))
        .map_err(|e| IngestError::Truncated(format!("upload is not a valid zip archive: {e}")))?;
    let max_entries = limits.max_files.saturating_mul(2).saturating_add(16);
    if archive.len() as u64 > max_entries {
        return Err(IngestError::TooLarge(format!(
            "zip has {} entries, more than max_files = {} allows",
            archive.len(),
            limits.max_files
        )));
    }
    let mut state = State::new(dest, limits);
    for i in 0..archive.len() {
        let (name, kind, encrypted, size) = {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| IngestError::Truncated(format!("zip entry {i} is unreadable: {e}")))?;
            let name = entry.name_raw().to_vec();
            let kind = match entry.unix_mode().map(|m| m & S_IFMT) {
                Some(S_IFLNK) => Kind::Symlink,
                Some(S_IFDIR) => Kind::Dir,
                Some(S_IFREG) | Some(0) | None if entry.is_dir() => Kind::Dir,
                Some(S_IFREG) | Some(0) | None => Kind::File,
                Some(_) => Kind::Special,
            };
            (name, kind, entry.encrypted(), entry.size())
        };
        let shown = String::from_utf8_lossy(&name).into_owned();
        if encrypted {
            return Err(IngestError::Rejected(format!(
                "zip entry {shown} is encrypted; upload an unencrypted archive"
            )));
        }
        let Some(components) = state.entry_components(&name, kind == Kind::Dir)? else {
            continue;
        };
        match kind {
            Kind::Dir => state.add_dir(&components)?,
            Kind::Special => {
                return Err(IngestError::Rejected(format!(
                    "zip entry {shown} is a device, FIFO or socket; only files, directories and links inside the upload are allowed"
                )))
            }
            Kind::File | Kind::Symlink => {
                let mut entry = archive.by_index(i).map_err(|e| match e {
                    zip::result::ZipError::UnsupportedArchive(why) => IngestError::Rejected(
                        format!("zip entry {shown} cannot be read: {why} (use deflate or store)"),
                    ),
                    other => IngestError::Truncated(format!("zip entry {shown}: {other}")),
                })?;
                if kind == Kind::File {
                    state.add_regular(&components, &mut entry, size)?;
                } else {
                    let mut target = Vec::new();
                    (&mut entry)
                        .take(MAX_LINK_TARGET + 1)
                        .read_to_end(&mut target)
                        .map_err(|e| IngestError::from_io(e, &format!("reading {shown}")))?;
                    if target.len() as u64 > MAX_LINK_TARGET {
                        return Err(IngestError::Rejected(format!(
                            "symlink {shown} has a target over {MAX_LINK_TARGET} bytes"
                        )));
                    }
                    state.add_symlink(&components, &target)?;
                }
            }
        }
    }
    state.finish_archive()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Special,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    const LIMITS: Limits = Limits {
        max_upload_bytes: 1 << 20,
        max_files: 100,
        require_index: true,
        strip_components: 0,
        partial: false,
    };

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Mode(&'a str, u32),
    }

    fn zip_of(entries: &[E]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for e in entries {
            match e {
                E::File(name, data) => {
                    w.start_file(*name, opts).unwrap();
                    w.write_all(data).unwrap();
                }
                E::Dir(name) => w.add_directory(*name, opts).unwrap(),
                E::Link(name, target) => w.add_symlink(*name, *target, opts).unwrap(),
                E::Mode(name, _) => w.start_file(*name, opts).unwrap(),
            }
        }
        let mut zip = w.finish().unwrap().into_inner();
        // The writer keeps only permission bits: set the file type of
        // `Mode` entries in the central directory's external attributes.
        for e in entries {
            if let E::Mode(name, mode) = e {
                set_mode(&mut zip, name, *mode);
            }
        }
        zip
    }

    fn set_mode(zip: &mut [u8], name: &str, mode: u32) {
        let mut at = 0;
        while let Some(i) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
            let h = at + i;
            let len = u16::from_le_bytes([zip[h + 28], zip[h + 29]]) as usize;
            if &zip[h + 46..h + 46 + len] == name.as_bytes() {
                zip[h + 5] = 3; // made by: Unix
                zip[h + 38..h + 42].copy_from_slice(&(mode << 16).to_le_bytes());
                return;
            }
            at = h + 4;
        }
        panic!("no central header for {name}");
    }

    fn run_with(
        data: &[u8],
        limits: &Limits,
    ) -> (tempfile::TempDir, Result<Extracted, IngestError>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("up.tmp");
        std::fs::create_dir(&dest).unwrap();
        let result = super::super::ingest::extract(data, &dest, limits);
        (dir, result)
    }

    fn run(data: &[u8]) -> (tempfile::TempDir, Result<Extracted, IngestError>) {
        run_with(data, &LIMITS)
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_files_dirs_and_inside_links_like_tar() {
        let zip = zip_of(&[
            E::File("index.html", b"<h1>x</h1>"),
            E::Dir("assets/"),
            E::File("assets/app.js", b"js"),
            E::Link("assets/alias.js", "app.js"),
        ]);
        let (dir, result) = run(&zip);
        let extracted = result.unwrap();
        let dest = dir.path().join("up.tmp");
        assert_eq!(std::fs::read(dest.join("assets/app.js")).unwrap(), b"js");
        assert_eq!(
            std::fs::read_link(dest.join("assets/alias.js")).unwrap(),
            Path::new("app.js")
        );
        // The same tree as a tar has the same digest, hence the same id.
        let tar = tar_of(&[("index.html", b"<h1>x</h1>"), ("assets/app.js", b"js")]);
        let (_d, from_tar) = run(&tar);
        let from_tar = from_tar.unwrap();
        assert_eq!(extracted.manifest, from_tar.manifest);
        let zip_no_link = zip_of(&[
            E::File("assets/app.js", b"js"),
            E::File("index.html", b"<h1>x</h1>"),
        ]);
        assert_eq!(run(&zip_no_link).1.unwrap().digest, from_tar.digest);
        // Nothing but the tree is left next to it: the spool file is unnamed.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["up.tmp"]);
    }

    #[test]
    fn hostile_entries_are_rejected_naming_the_entry() {
        let index = E::File("index.html", b"x");
        let cases: Vec<(Vec<E>, &str)> = vec![
            (vec![E::File("/etc/evil", b"x")], "/etc/evil"),
            (vec![E::File("a/../../evil", b"x")], "a/../../evil"),
            (vec![E::File("../evil", b"x")], "../evil"),
            (vec![E::Link("link", "/etc/passwd")], "link"),
            (vec![E::Link("link", "../outside")], "link"),
            (vec![E::Link("a/link", "../../outside")], "a/link"),
            (vec![E::Mode("fifo", 0o010644)], "fifo"),
            (vec![E::Mode("dev", 0o020644)], "dev"),
            (vec![E::File("bad\u{1}name", b"x")], "bad"),
            (vec![E::File("bad\\name", b"x")], "bad"),
            (
                vec![E::Dir("sub/"), E::Link("d", "sub"), E::File("d/x", b"x")],
                "d",
            ),
        ];
        for (mut entries, needle) in cases {
            entries.insert(0, E::File("index.html", b"x"));
            let zip = zip_of(&entries);
            let err = run(&zip).1.expect_err(needle);
            assert_eq!(err.status(), 422, "{needle}: {err}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let _ = index;
        // No index.html.
        assert_eq!(
            run(&zip_of(&[E::File("other.html", b"x")]))
                .1
                .unwrap_err()
                .status(),
            422
        );
    }

    #[test]
    fn encrypted_entries_are_refused() {
        // A ZipCrypto entry, written by the zip crate's own writer would
        // need its crypto feature: set the "encrypted" flag bit (0x1) of
        // both headers by hand instead; the reader refuses on the flag.
        let mut zip = zip_of(&[E::File("index.html", b"secret")]);
        let local = zip.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
        zip[local + 6] |= 1;
        let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        zip[central + 8] |= 1;
        let err = run(&zip).1.unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        assert!(err.to_string().contains("index.html is encrypted"), "{err}");
    }

    #[test]
    fn bombs_counts_truncation_and_zip64() {
        // 64 MiB of zeros deflates to ~64 KiB; the 1 MiB limit stops it.
        let big = vec![0u8; 64 << 20];
        let bomb = zip_of(&[E::File("index.html", &big)]);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(run(&bomb).1.unwrap_err().status(), 413);
        // More entries than max_files allows: refused before writing.
        let names: Vec<String> = (0..300).map(|i| format!("f{i}")).collect();
        let many: Vec<E> = names.iter().map(|n| E::File(n, b"x")).collect();
        let (dir, result) = run(&zip_of(&many));
        assert_eq!(result.unwrap_err().status(), 413);
        assert!(std::fs::read_dir(dir.path().join("up.tmp"))
            .unwrap()
            .next()
            .is_none());
        // A cut archive has no central directory.
        let zip = zip_of(&[E::File("index.html", b"hello")]);
        assert_eq!(run(&zip[..zip.len() - 10]).1.unwrap_err().status(), 400);
        // Zip64 (forced on a small file) reads like any zip.
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.start_file("index.html", SimpleFileOptions::default().large_file(true))
            .unwrap();
        w.write_all(b"zip64").unwrap();
        let zip64 = w.finish().unwrap().into_inner();
        let (dir, result) = run(&zip64);
        result.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("up.tmp/index.html")).unwrap(),
            b"zip64"
        );
        // The spool itself is capped too.
        let small = Limits {
            max_upload_bytes: 100,
            ..LIMITS
        };
        let zip = zip_of(&[E::File("index.html", &[7u8; 4000])]);
        assert_eq!(run_with(&zip, &small).1.unwrap_err().status(), 413);
    }

    #[test]
    fn strip_components_and_partial() {
        let zip = zip_of(&[
            E::Dir("site/"),
            E::File("site/index.html", b"i"),
            E::File("site/a/b.txt", b"b"),
        ]);
        let limits = Limits {
            strip_components: 1,
            ..LIMITS
        };
        let paths: Vec<String> = run_with(&zip, &limits)
            .1
            .unwrap()
            .manifest
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(paths, ["a/b.txt", "index.html"]);
        let partial = Limits {
            partial: true,
            ..LIMITS
        };
        assert_eq!(run_with(&zip, &partial).1.unwrap_err().status(), 422);
    }
}
