//! The public HTTP server: `GET /s/<service>/<path>` and `GET /health`.
//!
//! A request flows: [`listener`] (connection limit, header timeout, draining)
//! → [`handle`] (method, host routing, [`path`] decoding, one registry
//! snapshot per request) → [`file`] (encoding, conditionals, ranges, body).
//! Each HTTP concern has its own module so it can be tested alone.

pub mod body;
pub mod conditional;
pub mod conn;
pub mod encoding;
pub mod fast;
pub mod file;
pub mod host_routing;
pub mod io;
pub mod lameduck;
pub mod listener;
pub mod path;
pub mod range;
pub mod workers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use self::body::Body;
use self::file::{finish, FileAnswer};
use crate::config::Config;
use crate::site::{Cached, Deployment, Registry, Retained};

/// The parts of the configuration the public server reads per request,
/// preconverted; swapped as a whole on SIGHUP.
#[derive(Debug)]
pub struct Settings {
    pub cache_control_html: HeaderValue,
    pub cache_control_assets: HeaderValue,
    /// `.project.example.com`, lowercased, with the leading dot.
    pub host_suffix: Option<String>,
    pub spa_services: HashSet<String>,
    pub previews: crate::previews::Mode,
    pub skew_protection: bool,
    /// How long after it stopped being live a deployment still answers
    /// skew misses (`skew_window`).
    pub skew_window: std::time::Duration,
    /// `Cache-Control` of immutable files (see `site::rules::immutable`).
    pub cache_control_immutable: HeaderValue,
    /// `immutable_paths`, compiled; `None` when empty.
    pub immutable_paths: Option<globset::GlobSet>,
    /// `/about.html` → 301 `/about`.
    pub clean_urls_redirect: bool,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings> {
        let header = |name: &str, value: &str| {
            HeaderValue::from_str(value)
                .with_context(|| format!("{name} = {value:?} is not a valid header value"))
        };
        Ok(Settings {
            cache_control_html: header("cache_control_html", &config.cache_control_html)?,
            cache_control_assets: header("cache_control_assets", &config.cache_control_assets)?,
            host_suffix: config
                .host_suffix
                .as_ref()
                .map(|s| format!(".{}", s.to_ascii_lowercase())),
            spa_services: config
                .services
                .iter()
                .filter(|(_, s)| s.spa_fallback)
                .map(|(name, _)| name.clone())
                .collect(),
            previews: config.preview_mode(),
            skew_protection: config.skew_protection,
            skew_window: config.skew_window,
            cache_control_immutable: crate::site::rules::immutable::cache_control(),
            immutable_paths: immutable_globs(&config.immutable_paths)?,
            clean_urls_redirect: config.clean_urls_redirect,
        })
    }
}

/// Compiles `immutable_paths` once per configuration load.
fn immutable_globs(globs: &[String]) -> Result<Option<globset::GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = globset::GlobSetBuilder::new();
    for glob in globs {
        builder.add(
            globset::Glob::new(glob)
                .with_context(|| format!("immutable_paths: {glob:?} is not a valid glob"))?,
        );
    }
    Ok(Some(builder.build().context("immutable_paths")?))
}

/// Everything a public request needs.
pub struct PublicState {
    pub registry: Arc<Registry>,
    pub settings: ArcSwap<Settings>,
    /// How files are read from disk (chosen once at startup).
    pub io: io::FileIo,
    /// Checks signed preview links (`None`: no key, so signed previews all 404).
    pub preview_key: Option<crate::previews::Key>,
    /// Indexes of retained, non-current deployments (previews, skew).
    pub retained: Arc<Retained>,
}

/// Which deployment answered; put in the response's extensions for the access log.
#[derive(Debug, Clone)]
pub struct ServedFrom(pub Arc<Deployment>);

/// Marks a response answered from an older deployment by skew protection
/// (counted in the metrics).
#[derive(Debug, Clone, Copy)]
pub struct SkewServed;

/// `Cache-Control` of a file answered by skew protection: short, because
/// the file is only there for pages loaded before the flip.
pub const SKEW_CACHE_CONTROL: &str = "public, max-age=60";

/// Answers one public request.
pub async fn handle<B>(state: &PublicState, request: &Request<B>) -> Response<Body> {
    if target_len(request.uri()) > path::MAX_TARGET {
        return plain(
            StatusCode::URI_TOO_LONG,
            &format!(
                "URI too long: a request target is at most {} bytes",
                path::MAX_TARGET
            ),
        );
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return finish(
                Response::builder()
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .header(ALLOW, "GET, HEAD")
                    .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header(CONTENT_LENGTH, 19),
                body::full("method not allowed\n"),
            )
        }
    };
    // RFC 9112 §3.2 (hyper leaves it to the server).
    if let Some(why) = crate::host::refusal(request.version(), request.headers(), request.uri()) {
        return plain(StatusCode::BAD_REQUEST, why);
    }
    let raw_path = request.uri().path();
    let query = request.uri().query();
    let decoded = match path::decode(raw_path) {
        Ok(decoded) => decoded,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad request: {e}")),
    };
    if decoded.segments.len() == 1 && decoded.segments[0] == "health" && !decoded.trailing_slash {
        if lameduck::draining() {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "draining", head);
        }
        return text_response(StatusCode::OK, "ok", head);
    }
    let settings = state.settings.load();
    let site = SiteRequest {
        state,
        settings: &settings,
        headers: request.headers(),
        raw_path,
        query,
        head,
        trailing_slash: decoded.trailing_slash,
        mount: "",
    };
    if let Some(label) = host_label(&settings, request) {
        return site.host_routed(&label, &decoded.segments).await;
    }
    match decoded.segments.as_slice() {
        [s, target, rest @ ..] if s == "s" && target.contains('@') => {
            let Some((service, id)) = target.split_once('@') else {
                return plain(StatusCode::NOT_FOUND, "not found");
            };
            if settings.previews == crate::previews::Mode::Off {
                return plain(StatusCode::NOT_FOUND, "not found: previews are disabled");
            }
            if !crate::store::is_valid_name(service) || !crate::store::is_valid_name(id) {
                return plain(StatusCode::BAD_REQUEST, "bad request: invalid preview name");
            }
            let Some((deployment, set_cookie)) =
                site.open_preview(service, id, &format!("/s/{target}/")).await
            else {
                return plain(StatusCode::NOT_FOUND, "not found: no such deployment");
            };
            if rest.is_empty() && !decoded.trailing_slash {
                return redirect(&format!("{raw_path}/"), query, request.headers());
            }
            let mut response = SiteRequest {
                mount: target.as_str(),
                ..site
            }
            .preview(deployment, service, rest)
            .await;
            if let Some(cookie) = set_cookie {
                response
                    .headers_mut()
                    .append(http::header::SET_COOKIE, cookie);
            }
            response
        }
        [s, service, rest @ ..] if s == "s" => {
            if !crate::store::is_valid_name(service) {
                return plain(StatusCode::BAD_REQUEST, "bad request: invalid service name");
            }
            if rest.is_empty() && !decoded.trailing_slash {
                return redirect(&format!("{raw_path}/"), query, request.headers());
            }
            SiteRequest {
                mount: service.as_str(),
                ..site
            }
            .answer(service, rest)
            .await
        }
        // The top: someone (often the operator, on a first start) opened
        // the server itself. Say where the sites are.
        [] => plain(
            StatusCode::NOT_FOUND,
            "not found: this server serves each site at /s/<service>/ (for example /s/web/); /health answers ok",
        ),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The length of the request-target as sent: path and query, plus the
/// scheme and authority of an absolute-form target.
fn target_len(uri: &http::Uri) -> usize {
    uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3)
}

/// `Host: <label><host_suffix>` → `<label>` (lowercased), when host
/// routing is on ([`host_routing`] says what the label names). For an
/// absolute-form request (`GET http://a.example/x`) the target's authority
/// is the host and `Host` is ignored (RFC 9112 §3.2.2).
fn host_label<B>(settings: &Settings, request: &Request<B>) -> Option<String> {
    let suffix = settings.host_suffix.as_deref()?;
    let host = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => request.headers().get(HOST)?.to_str().ok()?,
    };
    host_routing::label(host, suffix)
}

/// Representation metadata a `_headers` rule may set on a 200 but that a
/// 304 never carries (RFC 9110 §15.4.5, §8).
const NOT_ON_304: [HeaderName; 8] = [
    CONTENT_TYPE,
    http::header::CONTENT_ENCODING,
    CONTENT_LENGTH,
    http::header::CONTENT_LANGUAGE,
    http::header::CONTENT_DISPOSITION,
    http::header::CONTENT_RANGE,
    http::header::ACCEPT_RANGES,
    X_CONTENT_TYPE_OPTIONS,
];

/// One request for a file of a service.
struct SiteRequest<'a> {
    state: &'a PublicState,
    settings: &'a Settings,
    headers: &'a HeaderMap,
    raw_path: &'a str,
    query: Option<&'a str>,
    head: bool,
    trailing_slash: bool,
    /// Where the site's root is in the URL space: `""` under host routing,
    /// else the `<service>` or `<service>@<id>` of `/s/<…>/`. Site paths in
    /// `_redirects` are relative to it.
    mount: &'a str,
}

impl SiteRequest<'_> {
    /// A request under host routing: the service or preview `label` names.
    async fn host_routed(&self, label: &str, rel: &[String]) -> Response<Body> {
        use host_routing::Route;
        let registry = &self.state.registry;
        match host_routing::route(label, |name| registry.get(name).is_some()) {
            Route::Service(service) => self.answer(service, rel).await,
            Route::Preview { service, id } => {
                if self.settings.previews == crate::previews::Mode::Off {
                    return plain(StatusCode::NOT_FOUND, "not found: previews are disabled");
                }
                let Some((deployment, set_cookie)) = self.open_preview(service, id, "/").await
                else {
                    return plain(StatusCode::NOT_FOUND, "not found: no such deployment");
                };
                let mut response = self.preview(deployment, service, rel).await;
                if let Some(cookie) = set_cookie {
                    response
                        .headers_mut()
                        .append(http::header::SET_COOKIE, cookie);
                }
                response
            }
            Route::Invalid(why) => plain(StatusCode::NOT_FOUND, why),
        }
    }

    /// The preview `service@id` mounted at `cookie_path`
    /// (`/s/<service>@<id>/`, or `/` on its own host), if this request may
    /// read it: always when previews are public; when signed, with a valid
    /// `exp`/`sig` in the query (then with the `Set-Cookie` that carries
    /// the signature to the preview's other paths) or in its cookie. The
    /// signature is checked against the deployment's own `createdAt`
    /// ([`crate::previews`]), so a link to a deployment deleted and made
    /// again under the same id opens nothing. Unsigned, expired, tampered
    /// or gone: `None`, which callers answer with the same 404 as a
    /// missing deployment. An unsigned request never builds an index.
    async fn open_preview(
        &self,
        service: &str,
        id: &str,
        cookie_path: &str,
    ) -> Option<(Arc<Deployment>, Option<HeaderValue>)> {
        let (retained, registry) = (self.state.retained.clone(), self.state.registry.clone());
        let (owned_service, owned_id) = (service.to_string(), id.to_string());
        if self.settings.previews != crate::previews::Mode::Signed {
            let found = tokio::task::spawn_blocking(move || {
                retained.get(&registry, &owned_service, &owned_id)
            })
            .await
            .ok()
            .flatten()?;
            return Some((found, None));
        }
        // The query's signature when it has one (a bad one is not rescued
        // by a cookie), else the cookie's.
        let (signed, from_query) = match crate::previews::from_query(self.query) {
            Some(signed) => (signed, true),
            None => (
                crate::previews::from_cookie(self.headers, service, id)?,
                false,
            ),
        };
        let (exp, sig) = signed;
        let key = self.state.preview_key.clone()?;
        if exp <= crate::previews::unix_now() {
            return None; // expired: no need to look at the deployment
        }
        let sig_for_cookie = sig.clone();
        let found = tokio::task::spawn_blocking(move || {
            let created_at = retained.created_at(&registry, &owned_service, &owned_id)?;
            if !key.verify(&owned_service, &owned_id, &created_at, exp, &sig) {
                return None;
            }
            retained.get_created_at(&registry, &owned_service, &owned_id, &created_at)
        })
        .await
        .ok()
        .flatten()?;
        let cookie = from_query
            .then(|| {
                HeaderValue::from_str(&format!(
                    "{}={}.{}; Path={cookie_path}; Max-Age={}; HttpOnly; SameSite=Lax",
                    crate::previews::cookie_name(service, id),
                    exp,
                    sig_for_cookie,
                    exp.saturating_sub(crate::previews::unix_now())
                ))
                .ok()
            })
            .flatten();
        Some((found, cookie))
    }

    async fn answer(&self, service: &str, rel: &[String]) -> Response<Body> {
        // The one snapshot this request is answered from, even if a flip
        // happens while the body is being sent.
        let Some(deployment) = self.state.registry.get(service) else {
            return plain(StatusCode::NOT_FOUND, "not found: no such service");
        };
        let mut response = self.answer_from(&deployment, service, rel, true).await;
        if response.extensions().get::<ServedFrom>().is_none() {
            response.extensions_mut().insert(ServedFrom(deployment));
        }
        response
    }

    /// `/s/<service>@<id>/…`: a retained deployment (opened by
    /// [`Self::open_preview`]), read-only, never cached, never indexed by
    /// search engines.
    async fn preview(
        &self,
        deployment: Arc<Deployment>,
        service: &str,
        rel: &[String],
    ) -> Response<Body> {
        let mut response = self.answer_from(&deployment, service, rel, false).await;
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        response.extensions_mut().insert(ServedFrom(deployment));
        response
    }

    /// Skew protection: `path` (a fingerprinted name, see
    /// [`skew_candidate`]) as a non-HTML file of the most recently live
    /// deployment other than the current one that stopped being live less
    /// than `skew_window` ago ([`Retained::newest_with`]). Never from a
    /// deployment that was not live.
    async fn skewed(
        &self,
        service: &str,
        current: &Deployment,
        path: &str,
    ) -> Option<Response<Body>> {
        let current_id = current.id.as_str();
        let window = self.settings.skew_window;
        if window.is_zero() {
            return None;
        }
        let older = match self
            .state
            .retained
            .newest_with_cached(service, current_id, path, window)
        {
            Cached::Known(older) => older?,
            Cached::Unknown => {
                let (retained, registry) =
                    (self.state.retained.clone(), self.state.registry.clone());
                let (service, current_id, owned_path) = (
                    service.to_string(),
                    current_id.to_string(),
                    path.to_string(),
                );
                tokio::task::spawn_blocking(move || {
                    retained.newest_with(&registry, &service, &current_id, &owned_path, window)
                })
                .await
                .ok()
                .flatten()?
            }
        };
        let entry = older.file(path)?;
        if entry.is_html {
            return None;
        }
        let cache_control = HeaderValue::from_static(SKEW_CACHE_CONTROL);
        // The URL answers this file since the current deployment became
        // current: its date, not the older deployment's.
        let mut response = self.file_with(&older, entry, &cache_control, current).await;
        response.extensions_mut().insert(SkewServed);
        response.extensions_mut().insert(ServedFrom(older.clone()));
        Some(response)
    }

    /// Answers from one deployment, then applies its `_headers`.
    async fn answer_from(
        &self,
        deployment: &Deployment,
        service: &str,
        rel: &[String],
        current: bool,
    ) -> Response<Body> {
        let mut response = self.resolve(deployment, service, rel, current).await;
        if !deployment.rules.headers.is_empty()
            && response.extensions().get::<SkewServed>().is_none()
        {
            let path = format!("/{}", rel.join("/"));
            let status = response.status();
            // An error or a redirect keeps the server's caching fields.
            deployment
                .rules
                .headers
                .apply_for(&path, status, response.headers_mut());
            if response.status() == StatusCode::NOT_MODIFIED {
                // A site rule must not put back on a 304 the representation
                // metadata RFC 9110 §15.4.5 keeps off it (RFC 9111 §3.2:
                // a cache would overwrite what it stored with them).
                for name in NOT_ON_304 {
                    response.headers_mut().remove(name);
                }
            }
        }
        response
    }

    /// The precedence, first answer wins:
    /// 1. a `_redirects` rule marked `!` (forced);
    /// 2. the file at the path; for `/dir/` (or a directory, redirected to
    ///    `/dir/`) its `index.html`, else `index.htm`; then `<path>.html`
    ///    (clean URLs);
    /// 3. the first `_redirects` rule matching the path;
    /// 4. the service's `spa_fallback` (`index.html` for extension-less
    ///    paths), then skew protection (fingerprinted assets of a
    ///    deployment live within `skew_window`);
    /// 5. 404, with the deployment's `404.html` when it has one.
    async fn resolve(
        &self,
        deployment: &Deployment,
        service: &str,
        rel: &[String],
        current: bool,
    ) -> Response<Body> {
        if rel.iter().any(|s| s.starts_with('.')) {
            return self.not_found(deployment).await;
        }
        let joined = rel.join("/");
        let redirects = &deployment.rules.redirects;
        let find = || {
            if redirects.is_empty() {
                None
            } else {
                redirects.lookup(&format!("/{joined}"))
            }
        };
        // Rules are looked up before the files only when one is forced;
        // otherwise a request for an existing file never consults them.
        let mut early = None;
        if redirects.any_forced() {
            let matched = find();
            if let Some(m) = matched.as_ref().filter(|m| m.rule.force) {
                return self.apply_rule(deployment, m).await;
            }
            early = Some(matched);
        }
        if let Some(response) = self.static_answer(deployment, &joined).await {
            return response;
        }
        let matched = match early {
            Some(matched) => matched,
            None => find(),
        };
        if let Some(m) = &matched {
            return self.apply_rule(deployment, m).await;
        }
        if self.trailing_slash || joined.is_empty() {
            return self.not_found(deployment).await;
        }
        let looks_like_asset = rel.last().is_some_and(|name| name.contains('.'));
        if !looks_like_asset && self.settings.spa_services.contains(service) {
            if let Some(entry) = deployment.file("index.html") {
                return self.file(deployment, "index.html", entry).await;
            }
        }
        if current && self.settings.skew_protection && skew_candidate(self.settings, &joined) {
            if let Some(response) = self.skewed(service, deployment, &joined).await {
                return response;
            }
        }
        self.not_found(deployment).await
    }

    /// Step 2 of [`Self::resolve`]: what the deployment's files say.
    async fn static_answer(&self, deployment: &Deployment, joined: &str) -> Option<Response<Body>> {
        if self.trailing_slash || joined.is_empty() {
            let (path, entry) = index_of(deployment, joined)?;
            return Some(self.file(deployment, &path, entry).await);
        }
        if let Some(entry) = deployment.file(joined) {
            if self.settings.clean_urls_redirect {
                if let Some(location) = self.canonical(deployment, joined) {
                    return Some(redirect(&location, self.query, self.headers));
                }
            }
            return Some(self.file(deployment, joined, entry).await);
        }
        if deployment.is_dir(joined) {
            return Some(redirect(
                &format!("{}/", self.raw_path),
                self.query,
                self.headers,
            ));
        }
        let html = format!("{joined}.html");
        let entry = deployment.file(&html)?;
        Some(self.file(deployment, &html, entry).await)
    }

    /// The clean URL of an HTML file requested by its file name, when
    /// that URL would find it again: `a/index.html` → `a/`,
    /// `about.html` → `about` (unless a file or directory `about` exists).
    fn canonical(&self, deployment: &Deployment, joined: &str) -> Option<String> {
        let (dir, name) = joined.rsplit_once('/').unwrap_or(("", joined));
        let clean = if name == "index.html" || name == "index.htm" {
            if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            }
        } else {
            let stem = joined.strip_suffix(".html")?;
            if stem.is_empty() || deployment.file(stem).is_some() || deployment.is_dir(stem) {
                return None;
            }
            stem.to_string()
        };
        Some(self.site_url(&format!("/{}", encode_path(&clean))))
    }

    /// A site path (`/…`) as a URL path of this request's mount.
    fn site_url(&self, path: &str) -> String {
        if self.mount.is_empty() {
            path.to_string()
        } else {
            format!("/s/{}{path}", self.mount)
        }
    }

    /// Applies a matched `_redirects` rule.
    async fn apply_rule(
        &self,
        deployment: &Deployment,
        matched: &crate::site::rules::redirects::Matched<'_>,
    ) -> Response<Body> {
        use crate::site::rules::redirects::Action;
        let rule = matched.rule;
        match rule.action {
            Action::Redirect(status) => {
                let destination = rule.destination(&matched.captures, true);
                let mut location = if rule.external {
                    destination
                } else {
                    self.site_url(&destination)
                };
                if !location.contains('?') {
                    if let Some(query) = self.query {
                        location.push('?');
                        location.push_str(query);
                    }
                }
                redirect_with(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND),
                    &location,
                    self.headers,
                )
            }
            Action::Rewrite | Action::NotFound => {
                let destination = rule.destination(&matched.captures, false);
                let path = destination.split(['?', '#']).next().unwrap_or("");
                let found = rewrite_target(deployment, path);
                match (rule.action, found) {
                    (Action::Rewrite, Some((_, entry))) => {
                        // The URL is the rule's, not the file's: the rule
                        // may point it elsewhere in the next deployment, so
                        // never immutable whatever the target's name.
                        let settings = self.settings;
                        let cache_control = if entry.is_html {
                            &settings.cache_control_html
                        } else {
                            &settings.cache_control_assets
                        };
                        self.file_with(deployment, entry, cache_control, deployment)
                            .await
                    }
                    (Action::NotFound, Some((_, entry))) => {
                        self.error_file(deployment, entry, StatusCode::NOT_FOUND)
                            .await
                    }
                    _ => self.not_found(deployment).await,
                }
            }
        }
    }

    /// A file of the deployment at `path` (relative), with the
    /// `Cache-Control` its kind gets: HTML, immutable, or other assets.
    async fn file(
        &self,
        deployment: &Deployment,
        path: &str,
        entry: &crate::site::index::FileEntry,
    ) -> Response<Body> {
        let cache_control = cache_control_for(self.settings, entry, path);
        self.file_with(deployment, entry, cache_control, deployment)
            .await
    }

    async fn file_with(
        &self,
        deployment: &Deployment,
        entry: &crate::site::index::FileEntry,
        cache_control: &HeaderValue,
        dated: &Deployment,
    ) -> Response<Body> {
        FileAnswer {
            entry,
            request_headers: self.headers,
            head: self.head,
            cache_control,
            error_status: None,
            memory: &deployment.memory,
            io: &self.state.io,
            modified: dated.modified(),
            last_modified: dated.last_modified(),
        }
        .respond()
        .await
    }

    /// 404, with the deployment's own `404.html` as the body when it has one.
    async fn not_found(&self, deployment: &Deployment) -> Response<Body> {
        match deployment.file("404.html") {
            Some(entry) => {
                self.error_file(deployment, entry, StatusCode::NOT_FOUND)
                    .await
            }
            None => text_response(StatusCode::NOT_FOUND, "not found\n", self.head),
        }
    }

    /// A file of the deployment as the body of an error status.
    async fn error_file(
        &self,
        deployment: &Deployment,
        entry: &crate::site::index::FileEntry,
        status: StatusCode,
    ) -> Response<Body> {
        FileAnswer {
            entry,
            request_headers: self.headers,
            head: self.head,
            cache_control: &self.settings.cache_control_html,
            error_status: Some(status),
            memory: &deployment.memory,
            io: &self.state.io,
            modified: deployment.modified(),
            last_modified: deployment.last_modified(),
        }
        .respond()
        .await
    }
}

/// Whether a miss for `path` (relative) may be answered by skew protection:
/// only names the immutable rule recognises as fingerprinted
/// ([`crate::site::rules::immutable::is_fingerprinted`]) or the operator
/// declared immutable (`immutable_paths`). Skew protection exists for the
/// hashed assets a page loaded before a flip still asks for; any other file
/// removed from a site is 404 at once.
fn skew_candidate(settings: &Settings, path: &str) -> bool {
    crate::site::rules::immutable::is_fingerprinted(path)
        || settings
            .immutable_paths
            .as_ref()
            .is_some_and(|globs| globs.is_match(path))
}

/// The `Cache-Control` of a file of the deployment at `path` (relative)
/// answered at its own URL: HTML, immutable, or other assets.
fn cache_control_for<'s>(
    settings: &'s Settings,
    entry: &crate::site::index::FileEntry,
    path: &str,
) -> &'s HeaderValue {
    if entry.is_html {
        &settings.cache_control_html
    } else if !entry.bytes_vary
        && (entry.fingerprinted
            || settings
                .immutable_paths
                .as_ref()
                .is_some_and(|globs| globs.is_match(path)))
    {
        &settings.cache_control_immutable
    } else {
        &settings.cache_control_assets
    }
}

/// 301 to `location`, keeping the query string (see [`redirect_with`]).
fn redirect(location: &str, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    let target = match query {
        Some(q) => format!("{location}?{q}"),
        None => location.to_string(),
    };
    redirect_with(StatusCode::MOVED_PERMANENTLY, &target, headers)
}

/// A redirect with `status` to `location` (already a URL: query included).
/// `no-cache`: a directory redirect holds only while the current deployment
/// has that directory, a `_redirects` rule only while the deployment has
/// that rule, and a browser would otherwise keep a 301 forever (RFC 9111
/// §4.2.2 lets it). Its strong ETag is derived from the status and
/// `Location` alone, since every such redirect is the same response: a
/// revalidation gets 304 while it still holds, and the new answer once not.
///
/// Every `Location` the public server sends goes through here, and one
/// that is a path (starts with `/`) is made to stay on this host first
/// ([`on_this_host`](crate::site::rules::redirects::on_this_host)); an absolute `http(s)://` URL is a `_redirects`
/// author's own external destination and is sent as written.
fn redirect_with(status: StatusCode, location: &str, headers: &HeaderMap) -> Response<Body> {
    use sha2::{Digest, Sha256};
    let location = &*crate::site::rules::redirects::on_this_host(location);
    let digest = hex::encode(Sha256::digest(
        format!("{} {location}", status.as_u16()).as_bytes(),
    ));
    let etag = format!("\"r{}\"", &digest[..31]);
    let builder = Response::builder()
        .header(CACHE_CONTROL, "no-cache")
        .header(http::header::ETAG, &etag);
    if conditional::evaluate(headers, &etag, std::time::UNIX_EPOCH)
        == conditional::Precondition::NotModified
        && headers.contains_key(http::header::IF_NONE_MATCH)
    {
        return finish(builder.status(StatusCode::NOT_MODIFIED), body::empty());
    }
    finish(
        builder
            .status(status)
            .header(LOCATION, location)
            .header(CONTENT_LENGTH, 0),
        body::empty(),
    )
}

/// The index file of directory `dir` (relative, no trailing `/`; `""` is
/// the top): `index.html`, else `index.htm`.
fn index_of<'d>(
    deployment: &'d Deployment,
    dir: &str,
) -> Option<(String, &'d crate::site::index::FileEntry)> {
    ["index.html", "index.htm"].iter().find_map(|name| {
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        deployment.file(&path).map(|entry| (path, entry))
    })
}

/// The file a rewrite (`200`) or `404` rule's destination names: the file
/// itself, a directory's index, or `<path>.html`.
fn rewrite_target<'d>(
    deployment: &'d Deployment,
    path: &str,
) -> Option<(String, &'d crate::site::index::FileEntry)> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|s| s.starts_with('.')) {
        return None;
    }
    if rel.is_empty() || rel.ends_with('/') {
        return index_of(deployment, rel.trim_end_matches('/'));
    }
    if let Some(entry) = deployment.file(rel) {
        return Some((rel.to_string(), entry));
    }
    if deployment.is_dir(rel) {
        return index_of(deployment, rel);
    }
    let html = format!("{rel}.html");
    deployment.file(&html).map(|entry| (html, entry))
}

/// Percent-encodes a decoded site path for a `Location` header (keeps `/`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A short `text/plain` answer (errors, health).
pub fn plain(status: StatusCode, message: &str) -> Response<Body> {
    text_response(status, &format!("{}\n", message.trim_end()), false)
}

fn text_response(status: StatusCode, text: &str, head: bool) -> Response<Body> {
    let builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONTENT_LENGTH, text.len())
        .header(CACHE_CONTROL, "no-cache")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff");
    let body = if head {
        body::empty()
    } else {
        body::full(text.to_string())
    };
    finish(builder, body)
}

/// Records the access-log line of a finished request ([`crate::access_log`],
/// stdout); returns the status and body bytes it logged.
pub fn log_access(
    method: &Method,
    path: &str,
    response: &Response<Body>,
    started: Instant,
) -> (u16, u64) {
    let status = response.status().as_u16();
    let bytes: u64 = if *method == Method::HEAD {
        0
    } else {
        response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    if !crate::access_log::enabled() {
        // Nothing to log: no clock read, no line.
        return (status, bytes);
    }
    let duration_us = started.elapsed().as_micros() as u64;
    let (service, deployment) = match response.extensions().get::<ServedFrom>() {
        Some(ServedFrom(d)) => (d.service.as_str(), d.id.as_str()),
        None => ("-", "-"),
    };
    crate::access_log::record(&crate::access_log::Entry {
        method: method.as_str(),
        path,
        status,
        bytes,
        duration_us,
        service,
        deployment,
    });
    (status, bytes)
}
