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
    /// Nothing answered at all (a connection error to the public URL).
    pub unreachable: bool,
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
    // Nothing answered: most often the public port is not where the
    // default URL looks (a specific --listen address, a port mapping).
    let hint = if mismatches.iter().all(|m| m.unreachable) {
        format!(
            " (nothing answered at {}: if the public port is reachable at another URL, pass \
             --public URL or set PROJECT_HTTP_PUBLIC_URL)",
            plan.public
        )
    } else {
        String::new()
    };
    match previous {
        Some(prev) if prev != deployed => {
            admin
                .activate_after_failed_verify(service, prev)
                .with_context(|| {
                    format!(
                        "verification of {deployed} failed and rolling back to {prev} failed too"
                    )
                })?;
            // Signed when the server signs previews.
            let answer = admin.preview_link(service, deployed, None).ok();
            let field = |name: &str| {
                answer
                    .as_ref()
                    .and_then(|v| v[name].as_str().map(str::to_string))
            };
            // On its own host under host routing, else the path form.
            let url = match (field("host"), field("hostPath")) {
                (Some(host), Some(path)) => {
                    format!("{}{path}", crate::host::with_host(&plan.public, &host))
                }
                _ => format!(
                    "{}{}",
                    plan.public.trim_end_matches('/'),
                    field("path").unwrap_or_else(|| format!("/s/{service}@{deployed}/"))
                ),
            };
            anyhow::bail!(
                "deployment {deployed} failed verification ({failed} of {total} paths){hint} and \
                 was rolled back: {service} is serving {prev} again. {deployed} is kept for \
                 inspection at {url}"
            )
        }
        _ => anyhow::bail!(
            "deployment {deployed} failed verification ({failed} of {total} paths){hint} and \
             there is no previous deployment to roll back to: {deployed} stays active on {service}"
        ),
    }
}

/// The public URL matching an admin URL when `deploy` is given no
/// `--public`: the admin URL's scheme and host with `public_port`, the
/// port the server reported for its public listener (`publicPort` of the
/// upload's answer), or 8080 (the container's public port) when it did
/// not say.
pub fn default_public_url(admin: &str, public_port: Option<u16>) -> String {
    let trimmed = admin.trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("http", trimmed));
    let host = rest.split('/').next().unwrap_or(rest);
    let host = crate::host::without_port(host);
    let port = public_port.unwrap_or(8080);
    format!("{scheme}://{host}:{port}")
}

/// Reads the expected bytes of `paths` from the deploy source: files of a
/// directory, or entries of a `.tar`, `.tar.gz`, `.tar.zst` or `.zip` archive.
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
    if is_zip_file(source)? {
        let reader = std::fs::File::open(source)
            .with_context(|| format!("cannot open {}", source.display()))?;
        let mut archive = zip::ZipArchive::new(reader).context("cannot read the zip archive")?;
        for (path, slot) in out.iter_mut() {
            let index = (0..archive.len()).find(|&i| {
                archive.name_for_index(i).is_some_and(|name| {
                    crate::store::ingest::normal_components(name.as_bytes())
                        .is_ok_and(|c| c.join("/") == *path)
                })
            });
            if let Some(i) = index {
                let mut entry = archive.by_index(i).context("cannot read the zip archive")?;
                if entry.is_file() {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data)?;
                    *slot = Some(data);
                }
            }
        }
        return Ok(out);
    }
    // A path under a directory symlink (`latest/app.js` with `latest ->
    // v2`) is read from the entry it leads to.
    let links = archive_links(source)?;
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in paths {
        wanted
            .entry(through_links(path, &links))
            .or_default()
            .push(path.clone());
    }
    let mut archive = tar::Archive::new(open_archive(source)?);
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        let raw = entry.path_bytes().into_owned();
        let Ok(components) = crate::store::ingest::normal_components(&raw) else {
            continue;
        };
        let rel = components.join("/");
        if let Some(requested) = wanted.get(&rel) {
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                for path in requested {
                    out.insert(path.clone(), Some(data.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// Whether `source` starts with a zip signature (store::zip_ingest::is_zip).
fn is_zip_file(source: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut file =
        std::fs::File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(crate::store::zip_ingest::is_zip(&head[..n]))
}

/// The archive's bytes, decompressed (gzip and zstd by their magic).
fn open_archive(source: &Path) -> Result<Box<dyn Read>> {
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
    Ok(if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(reader)?)
    } else {
        Box::new(reader)
    })
}

/// An archive's symlinks as (link path, target resolved from the link's
/// directory), and its regular files, sorted.
type ArchiveTree = (Vec<(String, String)>, BTreeSet<String>);

fn archive_tree(source: &Path) -> Result<ArchiveTree> {
    let mut links = Vec::new();
    let mut files = BTreeSet::new();
    let mut archive = tar::Archive::new(open_archive(source)?);
    for entry in archive.entries().context("cannot read the archive")? {
        let entry = entry.context("cannot read the archive")?;
        let raw = entry.path_bytes().into_owned();
        let Ok(components) = crate::store::ingest::normal_components(&raw) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_file() {
            files.insert(components.join("/"));
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let mut resolved: Vec<&str> = components[..components.len().saturating_sub(1)]
                .iter()
                .map(String::as_str)
                .collect();
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        resolved.pop();
                    }
                    name => resolved.push(name),
                }
            }
            links.push((components.join("/"), resolved.join("/")));
        }
    }
    Ok((links, files))
}

fn archive_links(source: &Path) -> Result<Vec<(String, String)>> {
    Ok(archive_tree(source)?.0)
}

/// `path` with a leading directory symlink replaced by its target.
fn through_links(path: &str, links: &[(String, String)]) -> String {
    for (link, target) in links {
        if let Some(rest) = path
            .strip_prefix(link.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return format!("{target}/{rest}");
        }
    }
    path.to_string()
}

/// Most directory symlinks whose files [`paths_through_directory_links`] adds.
const MAX_LINKED_SAMPLES: usize = 16;

/// One file under each directory symlink of `source`, a directory or an
/// archive (the first regular, non-hidden file by name directly inside the
/// link): a tree like `latest -> v2` is only served right if
/// `/latest/<file>` is, so the verification fetches it through the link.
pub fn paths_through_directory_links(source: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if source.is_file() {
        let Ok((links, files)) = archive_tree(source) else {
            return found;
        };
        for (link, target) in links.iter().take(MAX_LINKED_SAMPLES) {
            let prefix = format!("{target}/");
            let first = files.iter().find(|f| {
                f.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/') && !rest.starts_with('.'))
            });
            if let Some(file) = first {
                found.push(format!("{link}/{}", &file[prefix.len()..]));
            }
        }
        return found;
    }
    if !source.is_dir() {
        return found;
    }
    let mut stack = vec![(source.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            if kind.is_dir() {
                stack.push((entry.path(), format!("{rel}/")));
            } else if kind.is_symlink() && entry.path().is_dir() {
                let Ok(inside) = std::fs::read_dir(entry.path()) else {
                    continue;
                };
                let mut files: Vec<String> = inside
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.'))
                    .collect();
                files.sort();
                if let Some(first) = files.first() {
                    found.push(format!("{rel}/{first}"));
                    if found.len() >= MAX_LINKED_SAMPLES {
                        return found;
                    }
                }
            }
        }
    }
    found
}

/// How long after the flip a stale answer (the previous bytes, or a 404 for
/// a new file) is taken for a replica that has not seen the flip yet and
/// asked again. Replicas sharing a volume see a flip within about 0.5 s
/// (docs/RELIABILITY.md, swarm flips); a public URL that load-balances
/// over them (the Swarm service, Traefik) may answer from any of them.
pub const PROPAGATION_GRACE: Duration = Duration::from_secs(3);

/// Fetches every path through the public port and compares. Connection
/// errors and 5xx are retried until the path's timeout; other bytes than
/// uploaded and 4xx only for [`PROPAGATION_GRACE`] after the check began
/// (never past the path's timeout), so a replica still serving the
/// previous deployment is not mistaken for a failed deploy, while a real
/// mismatch on a single server costs at most that long.
pub fn check(plan: &VerifyPlan, expected: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<Mismatch> {
    let grace_until = Instant::now() + PROPAGATION_GRACE.min(plan.timeout);
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
                unreachable: false,
            });
            continue;
        };
        let deadline = Instant::now() + plan.timeout;
        // (what went wrong, retry it, nothing answered at all)
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
                            Instant::now() < grace_until,
                            false,
                        )),
                        Err(e) => Some((format!("reading the body failed: {e}"), true, false)),
                    }
                }
                Err(ureq::Error::Status(status, _)) => {
                    let stale = (400..500).contains(&status) && Instant::now() < grace_until;
                    Some((
                        format!("answered {status}, expected 200"),
                        status >= 500 || stale,
                        false,
                    ))
                }
                Err(e) => Some((format!("cannot fetch {url}: {e}"), true, true)),
            };
            match problem {
                None => break None,
                Some((_, retry, _)) if retry && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some((text, _, unreachable)) => break Some((text, unreachable)),
            }
        };
        if let Some((problem, unreachable)) = problem {
            mismatches.push(Mismatch {
                path: path.clone(),
                problem,
                unreachable,
            });
        }
    }
    mismatches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_under_each_directory_symlink_is_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        std::fs::create_dir_all(src.join("v2/sub")).unwrap();
        std::fs::create_dir_all(src.join("docs")).unwrap();
        std::fs::write(src.join("index.html"), "x").unwrap();
        std::fs::write(src.join("v2/b.js"), "b").unwrap();
        std::fs::write(src.join("v2/a.js"), "a").unwrap();
        std::fs::write(src.join("v2/.hidden"), "h").unwrap();
        std::os::unix::fs::symlink("v2", src.join("latest")).unwrap();
        std::os::unix::fs::symlink("../v2", src.join("docs/current")).unwrap();
        std::os::unix::fs::symlink("index.html", src.join("alias.html")).unwrap();
        let mut paths = paths_through_directory_links(src);
        paths.sort();
        assert_eq!(paths, ["docs/current/a.js", "latest/a.js"]);
        assert!(paths_through_directory_links(&src.join("index.html")).is_empty());
    }

    #[test]
    fn an_archive_is_verified_through_its_directory_symlinks_too() {
        let tmp = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [("index.html", "x"), ("v2/b.js", "b"), ("v2/a.js", "a")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, data.as_bytes())
                .unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "site/latest", "../v2")
            .unwrap();
        let archive = tmp.path().join("site.tar");
        std::fs::write(&archive, builder.into_inner().unwrap()).unwrap();
        let paths = paths_through_directory_links(&archive);
        assert_eq!(paths, ["site/latest/a.js"]);
        let expected = expected_bytes(&archive, &paths).unwrap();
        assert_eq!(expected["site/latest/a.js"].as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn public_url_follows_the_admin_host() {
        assert_eq!(
            default_public_url("http://10.0.0.5:9080", None),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            default_public_url("http://[::1]:9080/", None),
            "http://[::1]:8080"
        );
        assert_eq!(
            default_public_url("http://deployer-host", None),
            "http://deployer-host:8080"
        );
        assert_eq!(
            default_public_url("http://127.0.0.1:18082", Some(18081)),
            "http://127.0.0.1:18081"
        );
    }
}
