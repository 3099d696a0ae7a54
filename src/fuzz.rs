//! Properties checked on arbitrary input, shared by the libFuzzer targets
//! under `fuzz/` and the corpus-replay + proptest harness in
//! `tests/fuzz_harness.rs`. Each function takes raw bytes and panics when a
//! property is violated (a panic in the code under test counts too).

use std::io::Read;

use http::{HeaderMap, HeaderValue};

use crate::serve::{conditional, encoding, path, range};
use crate::site::index::Encoding;
use crate::store::ingest::{self, Limits};

/// The path decoder never yields a segment that could step outside the
/// deployment: no `..`, no `/`, `\`, NUL or control characters.
pub fn check_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = path::decode(text) {
        for segment in &decoded.segments {
            assert!(!segment.is_empty());
            assert_ne!(segment, "..");
            assert!(!segment.contains(['/', '\\']), "{segment:?}");
            assert!(
                !segment.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}'),
                "{segment:?}"
            );
        }
    }
}

/// A satisfiable range lies inside the representation, whatever the header.
pub fn check_range(data: &[u8]) {
    let (size_bytes, header) = data.split_at(data.len().min(8));
    let mut raw = [0u8; 8];
    raw[..size_bytes.len()].copy_from_slice(size_bytes);
    for size in [u64::from_le_bytes(raw), 0, 1, 10, 1 << 20, u64::MAX] {
        if let range::RangeOutcome::Partial { start, end } = range::evaluate(header, size) {
            assert!(start <= end && end < size, "{start}-{end} of {size}");
        }
    }
}

/// Negotiation only ever picks an encoding that is available.
pub fn check_accept_encoding(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let subsets: [&[Encoding]; 4] = [
        &[],
        &[Encoding::Gzip],
        &[Encoding::Br, Encoding::Zstd],
        &Encoding::ALL,
    ];
    for available in subsets {
        if let Some(chosen) = encoding::negotiate(Some(text), available.iter().copied()) {
            assert!(available.contains(&chosen));
        }
    }
}

/// Conditional evaluation never panics, whichever header carries the bytes.
pub fn check_conditional(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for name in [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HeaderName::from_static(name), value.clone());
        let _ = conditional::evaluate(&headers, "\"abc\"", modified);
        let _ = conditional::if_range_allows(&headers, "\"abc\"", modified);
    }
}

/// An upload of arbitrary bytes into a fresh temporary root: never a
/// panic, nothing written outside the upload directory, and on success
/// every manifest entry is on disk with its digest.
pub fn check_ingest(data: &[u8]) {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    let dest = root.path().join("up.tmp");
    if std::fs::create_dir(&dest).is_err() {
        return;
    }
    let limits = Limits {
        max_upload_bytes: 4 << 20,
        max_files: 200,
        require_index: data.first().is_some_and(|b| b & 1 == 1),
        strip_components: 0,
        partial: false,
    };
    let result = ingest::extract(data, &dest, &limits);
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("up.tmp")],
        "wrote outside the upload directory"
    );
    if let Ok(extracted) = result {
        for (path, digest) in &extracted.manifest {
            let file = dest.join(path);
            let meta = std::fs::symlink_metadata(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(meta.is_file(), "{path} is not a regular file");
            let mut bytes = Vec::new();
            std::fs::File::open(&file)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .unwrap();
            use sha2::Digest;
            assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), digest, "{path}");
        }
    }
}
