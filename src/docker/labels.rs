//! The Traefik routing labels `ensure` writes, for the single container
//! (Docker provider) and the Swarm service (Swarm provider) alike.
//!
//! A [`Routing`] is what the operator asked for on the command line
//! (`--host`, `--entrypoints`, `--tls`, `--cert-resolver`, `--middlewares`,
//! `--rate-limit`, `--subdomains`); [`Routing::router_labels`] turns it into
//! the `traefik.http.routers.*` / `traefik.http.middlewares.*` labels
//! (Traefik v3 label reference: routers, `tls`, `tls.certresolver`,
//! `tls.domains`, the `rateLimit` middleware). The labels are the whole
//! truth: `ensure` compares them with the running container's, so a change
//! of any flag recreates it, and the next run keeps what the flags say.
//!
//! Routers, all sending to the one service the labels define,
//! `project-<ID>` (port 8080; Traefik attaches a router without a
//! `service` label to a container's only service, so the default labels
//! stay those of earlier versions and upgrading changes no router):
//!
//! * `project-<ID>`: ``Host(`<HOST>`)``, sites at `/s/<service>/`;
//! * `project-<ID>-sub` (with `--subdomains`): Traefik v3
//!   ``HostRegexp(`^[a-z0-9_-]+\.<HOST>$`)`` (Go regexp syntax), one DNS
//!   label in front of the host: `<service>.<HOST>` serves the service at
//!   `/` and `<id>--<service>.<HOST>` a preview (the server reads
//!   `PROJECT_HTTP_HOST_SUFFIX=<HOST>`, which `ensure` sets).

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::Project;

/// Traefik's entry point when `--entrypoints` is not given.
pub const DEFAULT_ENTRYPOINT: &str = "web";

/// `--rate-limit AVG[/BURST]`: Traefik's `rateLimit` middleware, per client
/// IP (its default source criterion, the connection's remote address), over
/// Traefik's default period of one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second allowed on average (`average`).
    pub average: u64,
    /// Requests allowed in a burst above the average (`burst`); defaults to
    /// `average`.
    pub burst: u64,
}

impl RateLimit {
    /// Parses `AVG` or `AVG/BURST` (positive integers).
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let number = |part: &str, what: &str| -> Result<u64, String> {
            match part.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "{what} {part:?} is not a positive whole number of requests \
                     (write AVG or AVG/BURST, e.g. 50 or 50/100: 50 requests per second per client IP, bursts of 100)"
                )),
            }
        };
        let (average, burst) = match text.split_once('/') {
            Some((avg, burst)) => (number(avg, "average")?, number(burst, "burst")?),
            None => {
                let average = number(text, "average")?;
                (average, average)
            }
        };
        Ok(RateLimit { average, burst })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.average, self.burst)
    }
}

/// How Traefik routes to the project: the routing flags of `ensure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// `--host`: a DNS name or IP address ([`super::hostname::validate_host`]).
    pub host: String,
    /// `--entrypoints`: Traefik entry point names (default `web`).
    pub entrypoints: Vec<String>,
    /// `--tls`: the routers terminate TLS (`tls=true`); Traefik uses its
    /// default certificate unless `cert_resolver` is set.
    pub tls: bool,
    /// `--cert-resolver`: a certificate resolver of Traefik's static
    /// configuration (`tls.certresolver`); implies TLS.
    pub cert_resolver: Option<String>,
    /// `--middlewares`: existing middlewares to attach, `name@provider`.
    pub middlewares: Vec<String>,
    /// `--rate-limit`: a `rateLimit` middleware defined by the labels.
    pub rate_limit: Option<RateLimit>,
    /// `--subdomains`: the `HostRegexp` router for `<service>.<HOST>`.
    pub subdomains: bool,
}

impl Routing {
    /// The default routing for `host`: entry point `web`, no TLS.
    pub fn new(host: &str) -> Routing {
        Routing {
            host: host.to_string(),
            entrypoints: vec![DEFAULT_ENTRYPOINT.to_string()],
            tls: false,
            cert_resolver: None,
            middlewares: Vec::new(),
            rate_limit: None,
            subdomains: false,
        }
    }

    /// True when the routers terminate TLS (`--tls` or `--cert-resolver`).
    pub fn uses_tls(&self) -> bool {
        self.tls || self.cert_resolver.is_some()
    }

    /// The URL forms these routers serve, with `<service>` and `<id>` as
    /// placeholders: `{scheme}://{host}/s/<service>/`, and with
    /// `--subdomains` also `{scheme}://<service>.{host}/` and
    /// `{scheme}://<id>--<service>.{host}/` (previews, signed). The scheme
    /// is `https` when the routers terminate TLS. `ensure --json` reports
    /// them as `urls`.
    pub fn site_urls(&self) -> Vec<String> {
        let scheme = if self.uses_tls() { "https" } else { "http" };
        let host = super::hostname::url_host(&self.host);
        let mut urls = vec![format!("{scheme}://{host}/s/<service>/")];
        if self.subdomains {
            urls.push(format!("{scheme}://<service>.{host}/"));
            urls.push(format!("{scheme}://<id>--<service>.{host}/"));
        }
        urls
    }

    /// Refuses what Traefik would turn into a dead router or a label it
    /// cannot parse, with the fix.
    pub fn validate(&self) -> Result<()> {
        super::hostname::validate_host(&self.host)?;
        if self.entrypoints.is_empty() {
            bail!("--entrypoints is empty: name at least one Traefik entry point, like web or websecure");
        }
        for name in &self.entrypoints {
            if !is_traefik_name(name, false) {
                bail!("--entrypoints {name:?} is not an entry point name (letters, digits, '-' and '_'), like websecure");
            }
        }
        if let Some(resolver) = &self.cert_resolver {
            if !is_traefik_name(resolver, false) {
                bail!("--cert-resolver {resolver:?} is not a resolver name (letters, digits, '-' and '_'): give the name under certificatesResolvers in Traefik's static configuration");
            }
        }
        for middleware in &self.middlewares {
            if !is_traefik_name(middleware, true) {
                bail!(
                    "--middlewares {middleware:?} is not a middleware reference: give existing ones as name@provider, like compress@file,auth@docker"
                );
            }
            // Without a provider Traefik looks in this container's own
            // provider (`@docker`), where such a name is usually not
            // defined: the router is then dropped and the site answers 404.
            if !middleware.contains('@') {
                bail!(
                    "--middlewares {middleware:?} names no provider: write {middleware}@file (Traefik's file provider) or {middleware}@docker (labels of another container); a middleware Traefik cannot find disables the project's routers"
                );
            }
        }
        if self.subdomains && self.host.parse::<std::net::IpAddr>().is_ok() {
            bail!(
                "--subdomains needs a DNS name as --host (the routers match <service>.<HOST>), not the IP address {}",
                self.host
            );
        }
        Ok(())
    }

    /// The name of the `rateLimit` middleware the labels define.
    pub fn rate_limit_middleware(project: &Project) -> String {
        format!("{}-ratelimit", project.router())
    }

    /// The name of the `--subdomains` router.
    pub fn subdomain_router(project: &Project) -> String {
        format!("{}-sub", project.router())
    }

    /// The subdomain router's rule: Traefik v3 `HostRegexp` (Go regexp,
    /// case-insensitive) for one DNS label in front of the host.
    pub fn subdomain_rule(&self) -> String {
        format!(
            "HostRegexp(`(?i)^[a-z0-9_-]+\\.{}$`)",
            regex_escape(&self.host.to_ascii_lowercase())
        )
    }

    /// The routers' middlewares, in order: the rate limit, `--middlewares`,
    /// then `extra` (the Swarm path's `retry`).
    pub fn middleware_chain(&self, project: &Project, extra: &[String]) -> Vec<String> {
        let mut chain = Vec::new();
        if self.rate_limit.is_some() {
            chain.push(Self::rate_limit_middleware(project));
        }
        chain.extend(self.middlewares.iter().cloned());
        chain.extend(extra.iter().cloned());
        chain
    }

    /// The routers, the rate-limit middleware and the service port, for
    /// either provider (the caller adds `traefik.enable`, the provider's
    /// network label and ownership). `extra_middlewares` are attached
    /// after the operator's (defined elsewhere by the caller).
    pub fn router_labels(
        &self,
        project: &Project,
        extra_middlewares: &[String],
    ) -> HashMap<String, String> {
        let service = project.router();
        let mut labels = HashMap::new();
        let chain = self.middleware_chain(project, extra_middlewares);
        let mut router = |name: &str, rule: String, wildcard: bool| {
            let key = |k: &str| format!("traefik.http.routers.{name}.{k}");
            labels.insert(key("rule"), rule);
            labels.insert(key("entrypoints"), self.entrypoints.join(","));
            if !chain.is_empty() {
                labels.insert(key("middlewares"), chain.join(","));
            }
            if self.uses_tls() {
                labels.insert(key("tls"), "true".to_string());
            }
            if let Some(resolver) = &self.cert_resolver {
                labels.insert(key("tls.certresolver"), resolver.clone());
                if wildcard {
                    // A HostRegexp names no domain to ask the resolver for:
                    // ask for the host and its wildcard (a DNS-01 resolver).
                    labels.insert(key("tls.domains[0].main"), self.host.clone());
                    labels.insert(key("tls.domains[0].sans"), format!("*.{}", self.host));
                }
            }
        };
        router(&project.router(), format!("Host(`{}`)", self.host), false);
        if self.subdomains {
            router(
                &Self::subdomain_router(project),
                self.subdomain_rule(),
                true,
            );
        }
        if let Some(limit) = self.rate_limit {
            let middleware = Self::rate_limit_middleware(project);
            let key = |k: &str| format!("traefik.http.middlewares.{middleware}.ratelimit.{k}");
            labels.insert(key("average"), limit.average.to_string());
            labels.insert(key("burst"), limit.burst.to_string());
        }
        labels.insert(
            format!("traefik.http.services.{service}.loadbalancer.server.port"),
            super::PUBLIC_PORT.to_string(),
        );
        labels
    }
}

/// Letters, digits, `-`, `_` (and `.`/`@` in a middleware reference).
fn is_traefik_name(name: &str, reference: bool) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '-' || c == '_' || (reference && "@.".contains(c))
        })
        && (!reference || name.matches('@').count() <= 1)
        && !name.starts_with('@')
        && !name.ends_with('@')
}

/// Escapes the regexp metacharacters a host name can hold (`.`; a
/// validated host has no others, but escape them all).
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One router as Traefik will serve it, read back from labels (what
/// `status` shows).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouterView {
    pub name: String,
    pub rule: String,
    pub entrypoints: Vec<String>,
    pub tls: bool,
    /// `https` with TLS, else `http`.
    pub scheme: String,
    /// Middlewares attached, in order.
    pub middlewares: Vec<String>,
}

/// The project's routers found in `labels` (its `project-<ID>` and
/// `project-<ID>-sub` routers), sorted by name.
pub fn routers_from_labels(project: &Project, labels: &HashMap<String, String>) -> Vec<RouterView> {
    let mut out = Vec::new();
    for name in [project.router(), Routing::subdomain_router(project)] {
        let get = |k: &str| labels.get(&format!("traefik.http.routers.{name}.{k}"));
        let Some(rule) = get("rule") else {
            continue;
        };
        let split = |v: Option<&String>| -> Vec<String> {
            v.map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        let tls = get("tls").is_some_and(|v| v == "true") || get("tls.certresolver").is_some();
        out.push(RouterView {
            rule: rule.clone(),
            entrypoints: split(get("entrypoints")),
            tls,
            scheme: if tls { "https" } else { "http" }.to_string(),
            middlewares: split(get("middlewares")),
            name,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project::new("42").unwrap()
    }

    #[test]
    fn site_urls_follow_tls_subdomains_and_ip_hosts() {
        assert_eq!(
            Routing::new("p42.example.com").site_urls(),
            ["http://p42.example.com/s/<service>/"]
        );
        let mut routing = Routing::new("p42.example.com");
        routing.cert_resolver = Some("le".to_string());
        routing.subdomains = true;
        assert_eq!(
            routing.site_urls(),
            [
                "https://p42.example.com/s/<service>/",
                "https://<service>.p42.example.com/",
                "https://<id>--<service>.p42.example.com/",
            ]
        );
        assert_eq!(
            Routing::new("2001:db8::1").site_urls(),
            ["http://[2001:db8::1]/s/<service>/"]
        );
    }

    #[test]
    fn the_default_is_one_plain_router_on_web() {
        let labels = Routing::new("p42.example.com").router_labels(&project(), &[]);
        assert_eq!(
            labels["traefik.http.routers.project-42.rule"],
            "Host(`p42.example.com`)"
        );
        assert_eq!(labels["traefik.http.routers.project-42.entrypoints"], "web");
        assert_eq!(
            labels["traefik.http.services.project-42.loadbalancer.server.port"],
            "8080"
        );
        assert!(!labels
            .keys()
            .any(|k| k.contains(".tls") || k.contains("middlewares") || k.contains("-sub")));
    }

    #[test]
    fn tls_resolver_middlewares_rate_limit_and_subdomains_reach_both_routers() {
        let routing = Routing {
            entrypoints: vec!["web".into(), "websecure".into()],
            tls: false,
            cert_resolver: Some("le".into()),
            middlewares: vec!["compress@file".into(), "auth@docker".into()],
            rate_limit: Some(RateLimit::parse("50/100").unwrap()),
            subdomains: true,
            ..Routing::new("P42.example.com")
        };
        routing.validate().unwrap();
        let labels = routing.router_labels(&project(), &["project-42-retry".to_string()]);
        for router in ["project-42", "project-42-sub"] {
            let get = |k: &str| labels[&format!("traefik.http.routers.{router}.{k}")].clone();
            assert_eq!(get("entrypoints"), "web,websecure");
            assert_eq!(get("tls"), "true", "a resolver implies TLS");
            assert_eq!(get("tls.certresolver"), "le");
            assert_eq!(
                get("middlewares"),
                "project-42-ratelimit,compress@file,auth@docker,project-42-retry"
            );
        }
        assert_eq!(
            labels["traefik.http.routers.project-42-sub.rule"],
            r"HostRegexp(`(?i)^[a-z0-9_-]+\.p42\.example\.com$`)"
        );
        assert_eq!(
            labels["traefik.http.routers.project-42-sub.tls.domains[0].sans"],
            "*.P42.example.com"
        );
        assert!(!labels.contains_key("traefik.http.routers.project-42.tls.domains[0].main"));
        assert_eq!(
            labels["traefik.http.middlewares.project-42-ratelimit.ratelimit.average"],
            "50"
        );
        assert_eq!(
            labels["traefik.http.middlewares.project-42-ratelimit.ratelimit.burst"],
            "100"
        );
        let views = routers_from_labels(&project(), &labels);
        assert_eq!(views.len(), 2);
        assert!(views.iter().all(|v| v.scheme == "https" && v.tls));
    }

    #[test]
    fn rate_limits_parse_or_say_how() {
        assert_eq!(
            RateLimit::parse("20").unwrap(),
            RateLimit {
                average: 20,
                burst: 20
            }
        );
        assert_eq!(RateLimit::parse("5/10").unwrap().to_string(), "5/10");
        for bad in ["", "0", "x", "5/", "5/0", "-1", "1.5"] {
            let error = RateLimit::parse(bad).expect_err(bad);
            assert!(error.contains("AVG/BURST"), "{bad}: {error}");
        }
    }

    #[test]
    fn names_traefik_cannot_parse_are_refused() {
        let base = Routing::new("p42.example.com");
        for (routing, hint) in [
            (
                Routing {
                    entrypoints: vec![],
                    ..base.clone()
                },
                "at least one",
            ),
            (
                Routing {
                    entrypoints: vec!["web secure".into()],
                    ..base.clone()
                },
                "entry point name",
            ),
            (
                Routing {
                    middlewares: vec!["a@b@c".into()],
                    ..base.clone()
                },
                "name@provider",
            ),
            (
                Routing {
                    middlewares: vec!["a,b".into()],
                    ..base.clone()
                },
                "name@provider",
            ),
            (
                Routing {
                    middlewares: vec!["compress".into()],
                    ..base.clone()
                },
                "compress@file",
            ),
            (
                Routing {
                    cert_resolver: Some("le/x".into()),
                    ..base.clone()
                },
                "certificatesResolvers",
            ),
            (
                Routing {
                    subdomains: true,
                    ..Routing::new("192.0.2.1")
                },
                "DNS name",
            ),
            (Routing::new("*.p42.example.com"), "wildcard"),
        ] {
            let error = routing.validate().expect_err(hint).to_string();
            assert!(error.contains(hint), "{error}");
        }
    }
}
