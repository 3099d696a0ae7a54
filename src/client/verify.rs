//! Verified deploys: after the flip, fetch paths through the *public* port
//! and compare status and bytes with what was uploaded; on any mismatch or
//! timeout, put the previous deployment back and say exactly what happened.
//!
//! What was uploaded is read again from the source (the directory, or the
//! archive's entries), so verification checks the whole chain: upload,
//! ingest, index, flip and the public server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::AdminClient;

/// What to check after a deploy.
pub struct VerifyPlan {
    /// Public base URL, e.g. `http://10.0.0.5:8080`.
    pub public: String,
    pub service: String,
    /// Relative paths; `index.html` is always among them.
    pub paths: Vec<String>,
    /// How long each path may take, retries included.
    pub timeout: Duration,
}

/// One path that did not come back as uploaded.
#[derive(Debug)]
pub struct Mismatch {
    pub path: String,
    pub problem: String,
}

/// Checks `plan` against the bytes of `source`. On any mismatch, prints
/// each one, activates `previous` again (when there is one other than
/// `deployed`) and fails with what happened and what is active now.
pub fn verify_or_roll_back(
    admin: &AdminClient,
    plan: &VerifyPlan,
    source: &Path,
    deployed: &str,
    previous: Option<&str>,
) -> Result<()> {
    let expected = expected_bytes(source, &plan.paths)?;
    let mismatches = check(plan, &expected);
    if mismatches.is_empty() {
        return Ok(());
    }
    let service = &plan.service;
    for m in &mismatches {
        eprintln!("verify: /s/{service}/{}: {}", m.path, m.problem);
    }
    let (failed, total) = (mismatches.len(), plan.paths.len());
    match previous {
        Some(prev) if prev != deployed => {
            admin.activate(service, prev).with_context(|| {
                format!("verification of {deployed} failed and rolling back to {prev} failed too")
            })?;
            anyhow::bail!(
                "deployment {deployed} failed verification ({failed} of {total} paths) and was \
                 rolled back: {service} is serving {prev} again. {deployed} is kept for \
                 inspection at {}/s/{service}@{deployed}/",
                plan.public
            )
        }
        _ => anyhow::bail!(
            "deployment {deployed} failed verification ({failed} of {total} paths) and there is \
             no previous deployment to roll back to: {deployed} stays active on {service}"
        ),
    }
}

/// The public URL matching an admin URL: same host, port 8080 (the
/// container's public port) unless `public` says otherwise.
pub fn default_public_url(admin: &str) -> String {
    let trimmed = admin.trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("http", trimmed));
    let host = rest.split('/').next().unwrap_or(rest);
    let host = crate::host::without_port(host);
    format!("{scheme}://{host}:8080")
}

/// Reads the expected bytes of `paths` from the deploy source: files of a
/// directory, or entries of a `.tar`, `.tar.gz` or `.tar.zst` archive.
/// A path the source does not have is expected to be there anyway (it is
/// reported as missing from the source).
pub fn expected_bytes(
    source: &Path,
    paths: &[String],
) -> Result<BTreeMap<String, Option<Vec<u8>>>> {
    let mut out: BTreeMap<String, Option<Vec<u8>>> =
        paths.iter().map(|p| (p.clone(), None)).collect();
    if source.is_dir() {
        for (path, slot) in out.iter_mut() {
            let file = source.join(path);
            if file.is_file() {
                *slot = Some(
                    std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                );
            }
        }
        return Ok(out);
    }
    let file =
        std::fs::File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
    let mut head = [0u8; 4];
    let mut reader = std::io::BufReader::new(file);
    let n = {
        use std::io::BufRead;
        let buf = reader.fill_buf()?;
        let n = buf.len().min(4);
        head[..n].copy_from_slice(&buf[..n]);
        n
    };
    let decoded: Box<dyn Read> = if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(reader)?)
    } else {
        Box::new(reader)
    };
    let wanted: BTreeSet<String> = paths.iter().cloned().collect();
    let mut archive = tar::Archive::new(decoded);
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        let raw = entry.path_bytes().into_owned();
        let Ok(components) = crate::store::ingest::normal_components(&raw) else {
            continue;
        };
        let rel = components.join("/");
        if wanted.contains(&rel) && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            out.insert(rel, Some(data));
        }
    }
    Ok(out)
}

/// Fetches every path through the public port and compares. Connection
/// errors and 5xx are retried until the path's timeout.
pub fn check(plan: &VerifyPlan, expected: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<Mismatch> {
    let agent = ureq::AgentBuilder::new()
        .timeout(plan.timeout.min(Duration::from_secs(10)))
        .build();
    let mut mismatches = Vec::new();
    for path in &plan.paths {
        let url = format!(
            "{}/s/{}/{}",
            plan.public.trim_end_matches('/'),
            plan.service,
            path
        );
        let want = expected.get(path).cloned().flatten();
        let Some(want) = want else {
            mismatches.push(Mismatch {
                path: path.clone(),
                problem: "not in what was uploaded".to_string(),
            });
            continue;
        };
        let deadline = Instant::now() + plan.timeout;
        let problem = loop {
            let problem = match agent.get(&url).call() {
                Ok(response) => {
                    let mut body = Vec::new();
                    match response.into_reader().read_to_end(&mut body) {
                        Ok(_) if body == want => None,
                        Ok(_) => Some((
                            format!(
                                "served {} bytes that differ from the {} uploaded",
                                body.len(),
                                want.len()
                            ),
                            false,
                        )),
                        Err(e) => Some((format!("reading the body failed: {e}"), true)),
                    }
                }
                Err(ureq::Error::Status(status, _)) => {
                    Some((format!("answered {status}, expected 200"), status >= 500))
                }
                Err(e) => Some((format!("cannot fetch {url}: {e}"), true)),
            };
            match problem {
                None => break None,
                Some((text, retry)) if retry && Instant::now() < deadline => {
                    let _ = text;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some((text, _)) => break Some(text),
            }
        };
        if let Some(problem) = problem {
            mismatches.push(Mismatch {
                path: path.clone(),
                problem,
            });
        }
    }
    mismatches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_follows_the_admin_host() {
        assert_eq!(
            default_public_url("http://10.0.0.5:9080"),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            default_public_url("http://[::1]:9080/"),
            "http://[::1]:8080"
        );
        assert_eq!(
            default_public_url("http://deployer-host"),
            "http://deployer-host:8080"
        );
    }
}
