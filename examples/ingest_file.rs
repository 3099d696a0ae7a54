//! Times `store::ingest::extract` on a tarball from disk, without HTTP:
//! `cargo run --release --example ingest_file -- site.tar DEST_DIR`.
use std::time::Instant;

use project_http::store::ingest::{extract, Limits};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (tarball, dest) = (&args[1], std::path::Path::new(&args[2]));
    std::fs::create_dir_all(dest)?;
    let file = std::fs::File::open(tarball)?;
    let started = Instant::now();
    let limits = Limits {
        max_upload_bytes: u64::MAX / 4,
        max_files: u64::MAX / 4,
        require_index: false,
        strip_components: 0,
        partial: false,
    };
    let extracted = extract(
        std::io::BufReader::with_capacity(256 * 1024, file),
        dest,
        &limits,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} files, {} bytes in {:.2} s",
        extracted.files,
        extracted.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
