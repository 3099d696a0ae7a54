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
    // Whatever the bytes, on a healthy disk an upload is accepted or refused
    // as the client's fault: never a 5xx.
    if let Err(e) = &result {
        assert!(e.status() < 500, "answered {}: {e}", e.status());
    }
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

/// The fixture [`check_fast_path`] answers from: one deployment of `web`
/// with precompressed HTML, assets, a subdirectory, odd names and a file
/// above the copy limit, dated a minute ago; and the runtime `handle` runs on.
struct FastFixture {
    fast: crate::serve::fast::FastPath,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fast_fixture() -> &'static FastFixture {
    use std::sync::{Arc, OnceLock};
    static FIXTURE: OnceLock<FastFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let html = "<p>fast path fixture</p>\n".repeat(100);
        let files: [(&str, Vec<u8>); 8] = [
            ("index.html", html.clone().into_bytes()),
            ("index.html.gz", {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, html.as_bytes()).expect("gzip");
                gz.finish().expect("gzip")
            }),
            ("app.css", b"p{color:red}".to_vec()),
            ("app.3f9c1a2b7d.js", b"console.log(1)".to_vec()),
            ("sub/index.html", b"<p>sub</p>".to_vec()),
            ("a b.txt", b"spaced".to_vec()),
            ("\u{e9}.txt", b"accent".to_vec()),
            ("big.bin", vec![7u8; 40_000]),
        ];
        for (name, bytes) in &files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        }
        let config = crate::config::Config::default();
        let options = crate::site::IndexOptions::from_config(&config);
        let deployment = crate::site::Deployment::build("web", "d1", dir.path(), options)
            .expect("index")
            .became_current(std::time::SystemTime::now() - std::time::Duration::from_secs(60));
        let registry = Arc::new(crate::site::Registry::new());
        registry.publish(Arc::new(deployment));
        let state = crate::serve::PublicState {
            preview_key: None,
            registry,
            settings: arc_swap::ArcSwap::from_pointee(
                crate::serve::Settings::from_config(&config).expect("settings"),
            ),
            io: crate::serve::io::FileIo::Epoll,
            retained: Arc::new(crate::site::Retained::new(crate::store::Layout::new(
                dir.path(),
            ))),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fast = crate::serve::fast::FastPath {
            state: Arc::new(state),
            metrics: Arc::new(crate::admin::metrics::Metrics::default()),
        };
        // Every file held in memory, as after its first answer.
        for name in [
            "index.html",
            "app.css",
            "app.3f9c1a2b7d.js",
            "sub/",
            "a%20b.txt",
            "%C3%A9.txt",
            "big.bin",
        ] {
            for coding in ["gzip", "identity"] {
                let request = http::Request::get(format!("/s/web/{name}"))
                    .header("host", "localhost")
                    .header("accept-encoding", coding)
                    .body(())
                    .expect("request");
                runtime.block_on(crate::serve::handle(&fast.state, &request));
            }
        }
        FastFixture {
            fast,
            runtime,
            _dir: dir,
        }
    })
}

/// The fast path answers a request head exactly as the full path would
/// (`serve::handle` behind hyper): whenever `serve::fast::respond` answers
/// `data` (a request head as `httparse` parses it), hyper would have
/// accepted the same head, and `handle` gives the same status, fields (but
/// `Date`) and body.
pub fn check_fast_path(data: &[u8]) {
    use crate::serve::fast::{respond, Outcome};
    let fixture = fast_fixture();
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return;
    };
    let mut out = Vec::new();
    let mut outcome = respond(&fixture.fast, &parsed, &mut out);
    if let Outcome::Cold(cold) = &outcome {
        // Loaded as the connection loop does, then asked again.
        assert!(out.is_empty(), "a cold request wrote bytes");
        fixture
            .runtime
            .block_on(crate::serve::fast::warm(&fixture.fast, cold));
        outcome = respond(&fixture.fast, &parsed, &mut out);
    }
    let body = match outcome {
        Outcome::Declined | Outcome::Cold(_) => {
            assert!(out.is_empty(), "a declined request wrote bytes");
            return;
        }
        Outcome::Answered(body) => body,
    };
    if let Some(body) = body {
        out.extend_from_slice(&body);
    }
    // What hyper builds from the same head; it must accept it.
    let method = parsed.method.expect("method");
    let mut request = http::Request::builder()
        .method(method)
        .uri(parsed.path.expect("path"));
    for field in parsed.headers.iter() {
        request = request.header(
            http::HeaderName::from_bytes(field.name.as_bytes()).expect("field name hyper takes"),
            HeaderValue::from_bytes(field.value).expect("field value hyper takes"),
        );
    }
    let request = request.body(()).expect("a request hyper would build");
    let response = fixture
        .runtime
        .block_on(crate::serve::handle(&fixture.fast.state, &request));
    let expected_status = response.status().as_u16();
    let mut expected: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let expected_body = fixture.runtime.block_on(async {
        use http_body_util::BodyExt;
        response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .expect("body")
    });
    let expected_body: &[u8] = if method == "HEAD" {
        b""
    } else {
        &expected_body
    };

    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = std::str::from_utf8(&out[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line[9..12].parse().expect("status code");
    let mut got: Vec<(String, Vec<u8>)> = lines
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("name: value");
            (name.to_string(), value.as_bytes().to_vec())
        })
        .filter(|(name, _)| name != "date")
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(
        status,
        expected_status,
        "{:?}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(data));
    assert_eq!(
        &out[end + 4..],
        expected_body,
        "{:?}",
        String::from_utf8_lossy(data)
    );
}
