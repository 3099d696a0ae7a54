#![no_main]
//! libFuzzer target: see project_http::fuzz::check_fast_path for the property.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| project_http::fuzz::check_fast_path(data));
