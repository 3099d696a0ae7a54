//! The fuzzing route that runs on stable Rust in CI: every checked-in corpus
//! file under `fuzz/corpus/<target>/` is replayed, then proptest generates
//! a few thousand more inputs per target (mutated corpus entries and random
//! bytes). The same properties run under libFuzzer with `cargo fuzz` (see
//! `fuzz/README.md`).

use std::path::Path;

use project_http::fuzz;
use proptest::prelude::*;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// A corpus entry with a few bytes overwritten, inserted or cut.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    (
        0..seeds.len(),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(move |(i, edits)| {
            let mut data = seeds[i].clone();
            for (at, byte, kind) in edits {
                let at = if data.is_empty() {
                    0
                } else {
                    at as usize % data.len()
                };
                match kind {
                    0 if !data.is_empty() => data[at] = byte,
                    1 => data.insert(at, byte),
                    _ => data.truncate(at),
                }
            }
            data
        })
}

fn replay(target: &str, check: fn(&[u8])) {
    for input in corpus(target) {
        check(&input);
    }
}

#[test]
fn corpus_replays() {
    replay("path", fuzz::check_path);
    replay("range", fuzz::check_range);
    replay("accept_encoding", fuzz::check_accept_encoding);
    replay("conditional", fuzz::check_conditional);
    replay("ingest", fuzz::check_ingest);
    replay("fast_path", fuzz::check_fast_path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn path_decoder(data in prop_oneof![mutated("path"), "/[a-z%0-9./\\\\]{0,40}".prop_map(String::into_bytes)]) {
        fuzz::check_path(&data);
    }

    #[test]
    fn range_parser(data in prop_oneof![mutated("range"), proptest::collection::vec(any::<u8>(), 0..64)]) {
        fuzz::check_range(&data);
    }

    #[test]
    fn accept_encoding(data in prop_oneof![mutated("accept_encoding"), "[a-z*;=,. 0-9]{0,40}".prop_map(String::into_bytes)]) {
        fuzz::check_accept_encoding(&data);
    }

    #[test]
    fn fast_path_answers_as_the_full_path(data in prop_oneof![
        mutated("fast_path"),
        (
            prop_oneof![Just("GET"), Just("HEAD"), Just("POST")],
            "/s/web/[a-z%0-9./?&= @]{0,24}",
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("Accept-Encoding"), Just("If-None-Match"), Just("If-Modified-Since"),
                        Just("Connection"), Just("Host"), Just("Range"), Just("X-Any"),
                    ],
                    "[ -~]{0,24}",
                ),
                0..4,
            ),
        )
            .prop_map(|(method, target, fields)| {
                // With Host (without it HTTP/1.1 is a 400 the fast path
                // leaves to hyper); a generated Host field repeats it.
                let mut head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
                for (name, value) in fields {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                head.into_bytes()
            }),
    ]) {
        fuzz::check_fast_path(&data);
    }

    #[test]
    fn conditional_headers(data in prop_oneof![mutated("conditional"), proptest::collection::vec(any::<u8>(), 0..64)]) {
        fuzz::check_conditional(&data);
    }
}

proptest! {
    // Each case extracts into a fresh temporary directory: fewer cases.
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tar_ingest(data in prop_oneof![mutated("ingest"), proptest::collection::vec(any::<u8>(), 0..2048)]) {
        fuzz::check_ingest(&data);
    }
}
