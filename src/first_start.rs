//! The hint `serve` prints when nothing is deployed yet: a deploy command
//! that runs as printed from where the user is, and a URL a browser opens.
//!
//! * The command starts the way this very binary was started: `cargo run
//!   --release --` (or `cargo run --`) under `cargo run`, `project-http`
//!   when that name on `PATH` is this binary, else this binary's absolute
//!   path.
//! * Addresses are the ones a client uses: a wildcard listener
//!   (`0.0.0.0`, `[::]`) becomes loopback, since a browser cannot open
//!   `http://0.0.0.0:8080/`. `--admin` and `--public` are added only when
//!   the deploy command's defaults would not reach this server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The admin URL `deploy` uses when given no `--admin`.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9080";

/// How the user runs this binary, as a command prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// `cargo run --release --` (`release`) or `cargo run --`.
    Cargo { release: bool },
    /// The same, started from outside the checkout: `cargo run` then needs
    /// `--manifest-path` to find it (cargo looks for `Cargo.toml` from the
    /// current directory upwards).
    CargoElsewhere { release: bool, manifest: PathBuf },
    /// The binary found on `PATH` as `project-http`.
    OnPath,
    /// A binary elsewhere: its absolute path.
    Binary(PathBuf),
}

impl Launcher {
    /// Works out how this process was started: under `cargo run` (cargo
    /// sets `CARGO` for what it runs) from `target/release` or
    /// `target/debug`, from `PATH`, or from a path.
    pub fn detect() -> Launcher {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("project-http"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let on_path = std::env::split_paths(&path)
            .map(|dir| dir.join("project-http"))
            .find(|candidate| candidate.is_file());
        let launcher = Launcher::from_parts(
            &exe,
            std::env::var_os("CARGO").is_some(),
            on_path.as_deref(),
        );
        // `cargo run` gives what it runs CARGO_MANIFEST_DIR (the checkout).
        let checkout = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
        let cwd = std::env::current_dir().ok();
        launcher.from_directory(cwd.as_deref(), checkout.as_deref())
    }

    /// Under `cargo run` started in `cwd` outside `checkout`, the command
    /// names the manifest, so it runs as printed from that same directory.
    pub fn from_directory(self, cwd: Option<&Path>, checkout: Option<&Path>) -> Launcher {
        match (self, cwd, checkout) {
            (Launcher::Cargo { release }, Some(cwd), Some(checkout))
                if !cwd.starts_with(checkout) =>
            {
                Launcher::CargoElsewhere {
                    release,
                    manifest: checkout.join("Cargo.toml"),
                }
            }
            (launcher, _, _) => launcher,
        }
    }

    /// [`Launcher::detect`] from its inputs: this binary's path, whether
    /// cargo started it, and what `project-http` on `PATH` is.
    pub fn from_parts(exe: &Path, under_cargo: bool, on_path: Option<&Path>) -> Launcher {
        let profile = exe
            .parent()
            .filter(|dir| dir.parent().and_then(Path::file_name) == Some("target".as_ref()))
            .and_then(Path::file_name)
            .and_then(|name| name.to_str());
        if under_cargo {
            match profile {
                Some("release") => return Launcher::Cargo { release: true },
                Some("debug") => return Launcher::Cargo { release: false },
                _ => {}
            }
        }
        let same = |other: &Path| match (exe.canonicalize(), other.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if on_path.is_some_and(same) {
            return Launcher::OnPath;
        }
        Launcher::Binary(exe.to_path_buf())
    }

    /// The words that start a `project-http` command.
    pub fn prefix(&self) -> String {
        match self {
            Launcher::Cargo { release: true } => "cargo run --release --".to_string(),
            Launcher::Cargo { release: false } => "cargo run --".to_string(),
            Launcher::CargoElsewhere { release, manifest } => format!(
                "cargo run {}--manifest-path {} --",
                if *release { "--release " } else { "" },
                shell_word(&manifest.display().to_string())
            ),
            Launcher::OnPath => "project-http".to_string(),
            Launcher::Binary(path) => shell_word(&path.display().to_string()),
        }
    }
}

/// The address a client on this host uses for a listener bound to `addr`.
pub fn client_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The hint, one line per element: what to run, then what to open.
/// `token` says whether the admin API wants a token.
pub fn hint(
    launcher: &Launcher,
    root: &Path,
    public: SocketAddr,
    admin: SocketAddr,
    token: bool,
) -> String {
    let admin_url = format!("http://{}", client_addr(admin));
    let public_url = format!("http://{}", client_addr(public));
    let mut command = format!("{} deploy", launcher.prefix());
    if admin_url != DEFAULT_ADMIN_URL {
        command.push_str(&format!(" --admin {admin_url}"));
    }
    if public_url != crate::client::verify::default_public_url(&admin_url, None) {
        command.push_str(&format!(" --public {public_url}"));
    }
    if token {
        command.push_str(" --token \"$PROJECT_HTTP_ADMIN_TOKEN\"");
    }
    command.push_str(" --service web ./dist");
    // The token itself is never printed (logs are shipped and kept); the
    // command reads it from the environment, so say how to set it first.
    let export = if token {
        "\n    export PROJECT_HTTP_ADMIN_TOKEN=<the admin token this server was started with>"
    } else {
        ""
    };
    format!(
        "No site is deployed yet under {}. Deploy the site in ./dist with:{export}\n    {command}\nthen open {public_url}/s/web/",
        root.display()
    )
}

/// Quotes `word` for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn launchers() {
        let release = Path::new("/src/project-http/target/release/project-http");
        assert_eq!(
            Launcher::from_parts(release, true, None),
            Launcher::Cargo { release: true }
        );
        assert_eq!(
            Launcher::from_parts(Path::new("/src/p/target/debug/project-http"), true, None)
                .prefix(),
            "cargo run --"
        );
        assert_eq!(
            Launcher::from_parts(release, false, None).prefix(),
            "/src/project-http/target/release/project-http"
        );
        assert_eq!(
            Launcher::Binary(PathBuf::from("/my dir/project-http")).prefix(),
            "'/my dir/project-http'"
        );
    }

    /// The README quotes this hint (the default addresses, `cargo run
    /// --release`) line for line.
    #[test]
    fn the_readme_quotes_the_default_hint() {
        let text = hint(
            &Launcher::Cargo { release: true },
            Path::new("/home/you/project-http/data"),
            addr("0.0.0.0:8080"),
            addr("127.0.0.1:9080"),
            false,
        );
        assert_eq!(
            text,
            "No site is deployed yet under /home/you/project-http/data. Deploy the site in ./dist with:\n    \
             cargo run --release -- deploy --service web ./dist\n\
             then open http://127.0.0.1:8080/s/web/"
        );
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&format!("```\n{text}\n```")),
            "README.md must quote:\n{text}"
        );
    }

    #[test]
    fn cargo_run_from_outside_the_checkout_names_the_manifest() {
        let checkout = Path::new("/home/you/project-http");
        let inside = Launcher::Cargo { release: true }
            .from_directory(Some(&checkout.join("sub")), Some(checkout));
        assert_eq!(inside.prefix(), "cargo run --release --");
        let outside = Launcher::Cargo { release: true }
            .from_directory(Some(Path::new("/tmp/elsewhere")), Some(checkout));
        assert_eq!(
            outside.prefix(),
            "cargo run --release --manifest-path /home/you/project-http/Cargo.toml --"
        );
        // Not under cargo: unchanged.
        let binary = Launcher::OnPath.from_directory(Some(Path::new("/tmp")), Some(checkout));
        assert_eq!(binary, Launcher::OnPath);
    }

    #[test]
    fn other_addresses_and_a_token_are_spelled_out() {
        let text = hint(
            &Launcher::OnPath,
            Path::new("/srv"),
            addr("[::]:8081"),
            addr("127.0.0.1:9999"),
            true,
        );
        assert!(text.contains(
            "project-http deploy --admin http://127.0.0.1:9999 --public http://[::1]:8081 --token \"$PROJECT_HTTP_ADMIN_TOKEN\" --service web ./dist"
        ), "{text}");
        assert!(
            text.ends_with("then open http://[::1]:8081/s/web/"),
            "{text}"
        );
        // The command reads the token from the environment: the hint says
        // to set it first, and never prints the token itself.
        assert!(
            text.contains("\n    export PROJECT_HTTP_ADMIN_TOKEN=<the admin token this server was started with>\n    project-http deploy"),
            "{text}"
        );
    }
}
