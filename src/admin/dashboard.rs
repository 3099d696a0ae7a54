//! The admin dashboard: `GET /` on the admin port, rendered on the server
//! as one HTML page (no framework, no CDN, a few lines of script for live
//! updates).
//!
//! It shows every service, its current deployment and its history, with a
//! preview link per deployment and Activate / Rollback / Delete buttons.
//! Login takes the admin token once and keeps a session cookie
//! ([`super::session`]); every button is a form carrying the session's CSRF
//! token. Actions run the same operations as the JSON API, and the page
//! reloads itself when the event stream (`/events`) reports a change.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::session::{self, Session};
use super::{deploy, AdminState};
use crate::serve::body::{self, Body};
use crate::store::{self, deployments};

/// Whether this request is the dashboard's (handled before bearer auth).
pub fn is_dashboard_route(method: &Method, path: &str) -> bool {
    matches!(
        (method, path),
        (&Method::GET, "/") | (&Method::POST, "/login") | (&Method::POST, "/logout")
    ) || (method == Method::POST && path.starts_with("/ui/"))
}

pub async fn handle(
    state: &Arc<AdminState>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = request.uri().path().to_string();
    let session = state.sessions.from_headers(request.headers());
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/") => match session {
            Some(session) => page(state, &session, request.headers(), request.uri().query()).await,
            None if !state.auth.enabled() => {
                // No token configured (loopback admin): no login, but still a
                // session, so the forms carry a CSRF token.
                match state.sessions.create() {
                    Some(session) => {
                        let mut response =
                            page(state, &session, request.headers(), request.uri().query()).await;
                        set_cookie(&mut response, &session.set_cookie());
                        response
                    }
                    None => html(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "no randomness for a session".into(),
                    ),
                }
            }
            None => html(StatusCode::OK, login_page(None)),
        },
        (Method::POST, "/login") => {
            let form = read_form(request).await;
            let token = form
                .iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.as_str());
            if let Err(why) = state.auth.check_token(token, peer.ip()).await {
                return html(StatusCode::UNAUTHORIZED, login_page(Some(&why)));
            }
            match state.sessions.create() {
                Some(session) => {
                    let mut response = redirect("/");
                    set_cookie(&mut response, &session.set_cookie());
                    response
                }
                None => html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no randomness for a session".into(),
                ),
            }
        }
        (Method::POST, action) => {
            let Some(session) = session else {
                return html(
                    StatusCode::FORBIDDEN,
                    login_page(Some("Your session ended; log in again.")),
                );
            };
            let headers = request.headers().clone();
            let form = read_form(request).await;
            let field = |name: &str| {
                form.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            if !session.csrf_ok(field("csrf")) {
                return html(
                    StatusCode::FORBIDDEN,
                    "<p>Refused: the form's CSRF token is missing or stale. Reload the page.</p>"
                        .into(),
                );
            }
            if action == "/logout" {
                state.sessions.end(&headers);
                let mut response = redirect("/");
                set_cookie(&mut response, &session::clear_cookie());
                return response;
            }
            let service = field("service").unwrap_or("");
            let id = field("id").unwrap_or("");
            if !store::is_valid_name(service) {
                return redirect_with_notice("invalid service name", true);
            }
            let (outcome, done) = match action {
                "/ui/activate" => (
                    deploy::activate(
                        state,
                        service,
                        id,
                        crate::deploy::Why::Activate,
                        "dashboard",
                    )
                    .await,
                    format!("{service}: {id} is now active"),
                ),
                "/ui/rollback" => (
                    deploy::rollback(state, service, "dashboard").await,
                    format!("{service}: rolled back"),
                ),
                "/ui/pin" | "/ui/unpin" => (
                    deploy::pin(state, service, id, action == "/ui/pin", "dashboard").await,
                    format!(
                        "{service}: {id} {}",
                        if action == "/ui/pin" {
                            "pinned"
                        } else {
                            "unpinned"
                        }
                    ),
                ),
                "/ui/delete" => (
                    deploy::delete(state, service, id).await,
                    format!("{service}: {id} deleted"),
                ),
                _ => return html(StatusCode::NOT_FOUND, "<p>No such action.</p>".into()),
            };
            let status = outcome.status();
            let message = if status.is_success() {
                done
            } else {
                let bytes = outcome
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let error = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| status.to_string());
                format!("{service}: failed: {error}")
            };
            if status.is_success() {
                redirect_with_message(&message)
            } else {
                redirect_with_notice(&message, true)
            }
        }
        _ => html(StatusCode::NOT_FOUND, "<p>Not found.</p>".into()),
    }
}

async fn read_form(request: Request<Incoming>) -> Vec<(String, String)> {
    let limited = http_body_util::Limited::new(request.into_body(), 16 * 1024);
    let bytes: Bytes = limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    form_urlencoded::parse(&bytes).into_owned().collect()
}

fn html(status: StatusCode, page: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CONTENT_LENGTH, page.len())
        .header(CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
        )
        .body(body::full(page))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

fn redirect(to: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, to)
        .header(CONTENT_LENGTH, 0)
        .header(CACHE_CONTROL, "no-store")
        .body(body::empty())
        .unwrap_or_else(|_| Response::new(body::empty()))
}

fn redirect_with_message(message: &str) -> Response<Body> {
    redirect_with_notice(message, false)
}

/// Back to the page with a notice; `failed` styles it as an error.
fn redirect_with_notice(message: &str, failed: bool) -> Response<Body> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("msg", message);
    if failed {
        query.append_pair("kind", "error");
    }
    let query = query.finish();
    redirect(&format!("/?{query}"))
}

fn set_cookie(response: &mut Response<Body>, value: &str) {
    if let Ok(value) = value.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // A control character (a legacy NUL or ESC in stored provenance)
            // is not text HTML may carry (HTML §13.2.3.5: NUL is a parse
            // error): shown as its escape instead.
            c if c.is_control() && !matches!(c, '\t' | '\n') => {
                out.extend(c.escape_default());
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5b6570;--bg:#f6f7f9;--card:#fff;--line:#d9dee4;--accent:#0b62d6;--ok:#137333;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaed;--muted:#9aa4ae;--bg:#121417;--card:#1c1f24;--line:#30353c;--accent:#6ea8fe;--ok:#81c995;--bad:#f28b82}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;justify-content:space-between;gap:1rem;padding:.8rem 1rem;background:var(--card);border-bottom:1px solid var(--line)}
header h1{font-size:1.15rem;margin:0}main{max-width:1100px;margin:0 auto;padding:1rem}
.flash{width:calc(100% - 2rem);max-width:calc(1100px - 2rem);margin:1rem auto 0;padding:.6rem 1rem;border-left:4px solid var(--ok);background:var(--card)}
.flash.error{border-left-color:var(--bad);color:var(--bad);font-weight:600}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem;margin-bottom:1rem}
section h2{margin:0 0 .2rem;font-size:1.2rem}.meta{color:var(--muted);margin:0 0 .8rem}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.45rem .5rem;border-top:1px solid var(--line);vertical-align:middle}
th{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);border-top:0}
tr.active td{background:color-mix(in srgb,var(--ok) 10%,transparent)}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:99px;font-size:.8rem;border:1px solid var(--line)}
.badge.on{color:var(--ok);border-color:var(--ok);font-weight:600}
.actions{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}form{display:inline;margin:0}
button,.button{font:inherit;font-size:.85rem;padding:.35rem .75rem;border-radius:7px;border:1px solid var(--line);background:var(--bg);color:var(--fg);cursor:pointer;text-decoration:none;min-height:2.2rem}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}button.danger{color:var(--bad);border-color:var(--bad)}
.login{display:block;max-width:360px;margin:12vh auto;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.5rem}
.login label{display:block;font-weight:600}.login h1{margin:0 0 1rem;font-size:1.3rem}.login button{width:100%}
.login input{width:100%;font:inherit;padding:.5rem;margin:.5rem 0 1rem;border:1px solid var(--line);border-radius:7px;background:var(--bg);color:var(--fg)}
.error{color:var(--bad)}.note{color:var(--muted);font-size:.85rem}
.traffic{display:flex;flex-wrap:wrap;gap:.6rem 1.2rem;margin:.2rem 0 .9rem}.traffic figure{margin:0}
.traffic svg{display:block;width:264px;height:66px;background:var(--bg);border:1px solid var(--line);border-radius:6px}
.traffic figcaption{font-size:.8rem;color:var(--muted)}.traffic text{font:9px system-ui,sans-serif;fill:var(--muted)}
.traffic .ok{fill:var(--accent)}.traffic .c4{fill:#d48806}.traffic .c5{fill:var(--bad)}.traffic .axis{stroke:var(--line)}
.traffic .l4{fill:none;stroke:#d48806;stroke-width:1.5}.traffic .l5{fill:none;stroke:var(--bad);stroke-width:1.5}
.traffic .k4{color:#d48806;font-weight:600}.traffic .k5{color:var(--bad);font-weight:600}
@media (max-width:700px){thead{display:none}table,tbody,tr,td{display:block;width:100%}tr{border-top:1px solid var(--line);padding:.4rem 0}td{border:0;padding:.2rem 0}
td[data-label]::before{content:attr(data-label);display:inline-block;width:6.5rem;color:var(--muted);font-size:.8rem}}
"#;

/// Message, commit, actor and pin of one deployment, under its id.
fn provenance_html(d: &deployments::DeploymentInfo) -> String {
    let p = &d.provenance;
    let mut parts = Vec::new();
    if d.pinned {
        parts.push("<span class=\"badge pinned\">pinned</span>".to_string());
    }
    if let Some(message) = &p.message {
        let first = message.lines().next().unwrap_or("");
        parts.push(format!("<span class=message>{}</span>", esc(first)));
    }
    if let Some(commit) = &p.commit {
        let short: String = commit.chars().take(8).collect();
        let dirty = if p.dirty == Some(true) { "+dirty" } else { "" };
        let branch = p
            .branch
            .as_deref()
            .map(|b| format!(" on {}", esc(b)))
            .unwrap_or_default();
        parts.push(format!(
            "<span class=commit title=\"{}\"><code>{}</code>{dirty}{branch}</span>",
            esc(commit),
            esc(&short)
        ));
    }
    if let Some(actor) = &p.actor {
        parts.push(format!("<span class=actor>by {}</span>", esc(actor)));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("<div class=meta>{}</div>", parts.join(" · "))
}

/// The service's last activations, newest first.
fn activation_timeline(out: &mut String, log: &[crate::store::activations::Activation]) {
    if log.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<details class=timeline><summary>Activations ({})</summary><ol>",
        log.len()
    );
    for entry in log.iter().rev().take(20) {
        let when = esc(entry.when.get(..19).unwrap_or(&entry.when)).replace('T', " ");
        let _ = write!(
            out,
            "<li data-to=\"{}\"><time>{when}</time> {} → <code>{}</code> · {} by {}</li>",
            esc(&entry.to),
            entry
                .from
                .as_deref()
                .map_or_else(|| "—".to_string(), |f| format!("<code>{}</code>", esc(f))),
            esc(&entry.to),
            esc(&entry.why),
            esc(&entry.actor),
        );
    }
    out.push_str("</ol></details>");
}

/// "minute" for the default interval, else the interval itself ("200ms").
fn interval_word(interval: std::time::Duration) -> String {
    if interval == super::traffic::DEFAULT_INTERVAL {
        "minute".to_string()
    } else {
        humantime::format_duration(interval).to_string()
    }
}

/// "hour" for the default interval, else the span of [`super::traffic::SAMPLES`] intervals ("12s").
fn window_word(interval: std::time::Duration) -> String {
    if interval == super::traffic::DEFAULT_INTERVAL {
        "hour".to_string()
    } else {
        humantime::format_duration(interval * super::traffic::SAMPLES as u32).to_string()
    }
}

/// Percent of `part` in `whole` (0 when `whole` is 0), one decimal.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

/// Two small inline SVG charts of a service's last hour
/// ([`super::traffic`]): requests per interval as bars stacked by class
/// (2xx/3xx, 4xx, 5xx), and the share of 4xx and 5xx per interval as lines.
/// The newest sample is at the right; each bar's `<title>` gives its numbers.
fn traffic_charts(samples: &[super::traffic::Sample], interval: std::time::Duration) -> String {
    use super::traffic::{total, SAMPLES};
    const SLOT: f64 = 4.0;
    const LEFT: f64 = 22.0;
    const TOP: f64 = 8.0;
    const HEIGHT: f64 = 48.0;
    let width = LEFT + SLOT * SAMPLES as f64 + 2.0;
    let (per, window) = (interval_word(interval), window_word(interval));
    let sum = total(samples);
    let (share4, share5) = (
        percent(sum.client_errors, sum.requests),
        percent(sum.server_errors, sum.requests),
    );
    let mut out = format!(
        "<div class=traffic data-requests={} data-4xx={} data-5xx={} data-samples={}>",
        sum.requests,
        sum.client_errors,
        sum.server_errors,
        samples.len()
    );
    if samples.is_empty() {
        out.push_str("<p class=note>No traffic sampled yet (charts appear after the first requests).</p></div>");
        return out;
    }
    let max = samples.iter().map(|s| s.requests).max().unwrap_or(0).max(1);
    let first_slot = SAMPLES.saturating_sub(samples.len());
    let x_of = |i: usize| LEFT + SLOT * (first_slot + i) as f64;
    let bottom = TOP + HEIGHT;
    let _ = write!(
        out,
        "<figure><svg class=requests viewBox=\"0 0 {width} 66\" role=img \
         aria-label=\"Requests per {per} over the last {} samples: {} in all\">\
         <text x=0 y={TOP}>{max}</text><text x=0 y={bottom}>0</text>\
         <line class=axis x1={LEFT} y1={bottom} x2={width} y2={bottom} />",
        samples.len(),
        sum.requests,
    );
    for (i, s) in samples.iter().enumerate() {
        let ok = s
            .requests
            .saturating_sub(s.client_errors)
            .saturating_sub(s.server_errors);
        let x = x_of(i);
        let _ = write!(
            out,
            "<g data-requests={} data-4xx={} data-5xx={}><title>{} requests, {} 4xx, {} 5xx</title>",
            s.requests, s.client_errors, s.server_errors, s.requests, s.client_errors, s.server_errors
        );
        let mut y = bottom;
        for (n, class) in [(ok, "ok"), (s.client_errors, "c4"), (s.server_errors, "c5")] {
            if n == 0 {
                continue;
            }
            let h = n as f64 / max as f64 * HEIGHT;
            y -= h;
            let _ = write!(
                out,
                "<rect class={class} x={x:.1} y={y:.2} width=3 height={h:.2} />"
            );
        }
        out.push_str("</g>");
    }
    let _ = write!(
        out,
        "</svg><figcaption>Requests per {per}: {} in the last {window}</figcaption></figure>",
        sum.requests
    );
    // The share chart: 0–100 % on the same time axis; intervals without
    // requests have no point.
    let line = |pick: fn(&super::traffic::Sample) -> u64| -> String {
        samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.requests > 0)
            .map(|(i, s)| {
                let share = pick(s) as f64 / s.requests as f64;
                format!("{:.1},{:.2}", x_of(i) + 1.5, bottom - share * HEIGHT)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        out,
        "<figure><svg class=errors viewBox=\"0 0 {width} 66\" role=img \
         aria-label=\"Share of 4xx ({share4:.1} %) and 5xx ({share5:.1} %) answers over the last {window}\">\
         <text x=0 y={TOP}>100%</text><text x=0 y={bottom}>0</text>\
         <line class=axis x1={LEFT} y1={bottom} x2={width} y2={bottom} />\
         <line class=axis x1={LEFT} y1={TOP} x2={width} y2={TOP} stroke-dasharray=2 />\
         <polyline class=l4 points=\"{}\" /><polyline class=l5 points=\"{}\" /></svg>\
         <figcaption>Errors: <span class=k4>4xx {share4:.1} %</span> · \
         <span class=k5>5xx {share5:.1} %</span> of the last {window}</figcaption></figure></div>",
        line(|s| s.client_errors),
        line(|s| s.server_errors),
    );
    out
}

fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=error role=alert>{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>project-http · log in</title><style>{STYLE}</style></head><body>\
         <form class=login method=post action=/login><h1>project-http</h1>{error}\
         <label for=token>Admin token</label>\
         <input id=token name=token type=password autocomplete=current-password required autofocus>\
         <button class=primary type=submit id=login>Log in</button></form></body></html>"
    )
}

/// Where preview links point: `public_url` from the config, else the host
/// the browser used for the admin port with the public port.
fn public_base(state: &AdminState, headers: &HeaderMap) -> String {
    let config = state.config.load();
    if let Some(url) = &config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let host = crate::host::without_port(host);
    format!("http://{host}:{}", config.listen.port())
}

/// A deployment's preview link: on its own host
/// (`<id>--<service>.<host_suffix>`, the scheme and port of `base`) when
/// host routing gives it one, else `base` + `/s/<service>@<id>/`; signed
/// when previews are.
fn preview_url(
    state: &AdminState,
    base: &str,
    service: &str,
    deployment: &deployments::DeploymentInfo,
) -> String {
    let id = deployment.id.as_str();
    let created_at = Some(deployment.created_at.as_str());
    let path = deploy::preview_path(state, service, id, created_at, crate::previews::DEFAULT_TTL)
        .map_or_else(|| format!("/s/{service}@{id}/"), |(path, _)| path);
    match deploy::preview_host(state, service, id) {
        Some(host) => format!(
            "{}{}",
            crate::host::with_host(base, &host),
            deploy::host_path(&path)
        ),
        None => format!("{base}{path}"),
    }
}

async fn page(
    state: &Arc<AdminState>,
    session: &Session,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    // Read before the state is: the page's event stream reports any event
    // emitted from here on, even one emitted before it connects.
    let events_seen = state.events.emitted();
    let layout = state.layout.clone();
    let services = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for name in layout.services().unwrap_or_default() {
            let list = deployments::list(&layout, &name).unwrap_or_default();
            if list.is_empty() {
                continue; // nothing deployed (yet): not a service to show
            }
            let disk = store::disk_usage(&layout.service_dir(&name));
            let log = store::activations::read(&layout, &name).unwrap_or_default();
            let rules: Vec<String> = list
                .iter()
                .map(|d| site_rules_row(&layout.deployment_dir(&name, &d.id)))
                .collect();
            out.push((name, list, disk, log, rules));
        }
        out
    })
    .await
    .unwrap_or_default();
    let message: Vec<(String, String)> = query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let failed = message.iter().any(|(k, v)| k == "kind" && v == "error");
    let message = message
        .into_iter()
        .find(|(k, _)| k == "msg")
        .map(|(_, v)| v);
    let base = public_base(state, headers);
    let csrf = format!(
        "<input type=hidden name=csrf value=\"{}\">",
        esc(&session.csrf)
    );
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>project-http · deployments</title><style>{STYLE}</style></head><body>\
         <header><h1>project-http</h1>{logout}</header>",
        // No token configured: there is no login, so nothing to log out of.
        logout = if state.auth.enabled() {
            format!(
                "<form method=post action=/logout>{csrf}<button type=submit id=logout>Log out</button></form>"
            )
        } else {
            "<span class=note>no admin token configured</span>".to_string()
        },
    );
    if let Some(message) = message {
        let _ = write!(
            out,
            "<p class=\"flash{}\" role={} id=flash>{}</p>",
            if failed { " error" } else { "" },
            if failed { "alert" } else { "status" },
            esc(&message)
        );
    }
    out.push_str("<main>");
    let min_free = state.config.load().min_free_bytes;
    let root = state.layout.root().to_path_buf();
    if let Ok(Some(space)) = tokio::task::spawn_blocking(move || store::space::of(&root)).await {
        let low = min_free > 0 && space.free < min_free.saturating_mul(2);
        let _ = write!(
            out,
            "<p class=\"meta volume{}\">Volume: {} free of {}{}</p>",
            if low { " low" } else { "" },
            crate::docker::status::human_bytes(space.free),
            crate::docker::status::human_bytes(space.total),
            if low {
                format!(
                    " — <strong>low: uploads are refused below min_free_bytes = {}</strong>",
                    crate::docker::status::human_bytes(min_free)
                )
            } else {
                String::new()
            }
        );
    }
    if services.is_empty() {
        // The command as the server was started (crate::first_start), so it
        // runs as printed from the directory `serve` was run in.
        let _ = write!(
            out,
            "<section><h2>No services yet</h2><p class=meta>Deploy one with <code>{} deploy --service web ./dist</code>.</p></section>",
            esc(&crate::first_start::Launcher::detect().prefix())
        );
    }
    for (name, list, disk, log, rules) in &services {
        let n = esc(name);
        let current = list.iter().find(|d| d.active).map(|d| d.id.as_str());
        // Rollback goes to the newest older deployment that was live
        // (crate::deploy::rollback_target): offered only when there is one.
        let has_older = crate::deploy::rollback_target(list, log).is_some();
        let rollback = if has_older {
            format!(
                "<form method=post action=/ui/rollback>{csrf}\
                 <input type=hidden name=service value=\"{n}\">\
                 <button type=submit class=rollback>Rollback</button></form>"
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<section id=\"service-{n}\" data-service=\"{n}\"><h2>{n}</h2>\
             <p class=meta>Current: <code class=current>{}</code> · {} deployment(s) · {} on disk</p>\
             {traffic}<div class=actions>{rollback}<a class=button href=\"{}/s/{n}/\" target=_blank rel=noopener>Open site</a></div>\
             <table><thead><tr><th>Deployment</th><th>Created</th><th>Files</th><th>Size</th><th>State</th><th>Actions</th></tr></thead><tbody>",
            esc(current.unwrap_or("none")),
            list.len(),
            crate::docker::status::human_bytes(*disk),
            esc(&base),
            traffic = traffic_charts(&state.traffic.of(name), state.traffic.interval()),
        );
        for (d, rules) in list.iter().zip(rules) {
            let id = esc(&d.id);
            // createdAt is RFC 3339 in UTC: say so.
            let created = format!(
                "{} UTC",
                esc(d.created_at.get(..19).unwrap_or(&d.created_at)).replace('T', " ")
            );
            let _ = write!(
                out,
                "<tr data-id=\"{id}\"{}><td data-label=Deployment><code>{id}</code>{}</td>\
                 <td data-label=Created>{created}</td><td data-label=Files>{}</td>\
                 <td data-label=Size>{}</td><td data-label=State>{}</td>\
                 <td data-label=Actions><div class=actions>\
                 <a class=button href=\"{}\" target=_blank rel=noopener>Preview</a>",
                if d.active { " class=active" } else { "" },
                provenance_html(d),
                d.files,
                crate::docker::status::human_bytes(d.bytes),
                if d.active {
                    "<span class=\"badge on\">active</span>"
                } else {
                    "<span class=badge>kept</span>"
                },
                esc(&preview_url(state, &base, name, d)),
            );
            let (pin_action, pin_label) = if d.pinned {
                ("/ui/unpin", "Unpin")
            } else {
                ("/ui/pin", "Pin")
            };
            let _ = write!(
                out,
                "<form method=post action={pin_action}>{csrf}\
                 <input type=hidden name=service value=\"{n}\"><input type=hidden name=id value=\"{id}\">\
                 <button type=submit class=pin>{pin_label}</button></form>"
            );
            if !d.active {
                let _ = write!(
                    out,
                    "<form method=post action=/ui/activate>{csrf}\
                     <input type=hidden name=service value=\"{n}\"><input type=hidden name=id value=\"{id}\">\
                     <button type=submit class=primary>Activate</button></form>\
                     <form method=post action=/ui/delete onsubmit=\"return confirm('Delete {id}?')\">{csrf}\
                     <input type=hidden name=service value=\"{n}\"><input type=hidden name=id value=\"{id}\">\
                     <button type=submit class=danger>Delete</button></form>"
                );
            }
            out.push_str("</div></td></tr>");
            out.push_str(rules);
        }
        out.push_str("</tbody></table>");
        activation_timeline(&mut out, log);
        out.push_str("</section>");
    }
    // Live updates: any deployment event reloads the page (keeping no
    // state in the browser); the event stream uses the session cookie. A
    // form being submitted closes the stream first, so the event its own
    // action causes does not race the form's redirect. `after` is the event
    // count this page shows: an event emitted while the page was loading,
    // before its stream connected, arrives as `events.missed`.
    let _ = write!(
        out,
        "</main><script>(function(){{if(!window.EventSource)return;var es=new EventSource('/events?after={events_seen}');"
    );
    out.push_str(
        "['deployment.deployed','deployment.activated','deployment.rollback','deployment.retain.pruned','events.missed']\
         .forEach(function(k){es.addEventListener(k,function(){es.close();location.replace('/');});});\
         document.addEventListener('submit',function(){es.close();});})();\
         </script></body></html>",
    );
    html(StatusCode::OK, out)
}

/// The deployment's `_redirects` and `_headers` as a table row under its
/// own (empty when it has neither): counts, then each file's text.
fn site_rules_row(dir: &std::path::Path) -> String {
    use crate::site::rules::{headers, redirects, Limits, SiteRules};
    let texts: Vec<(&str, String)> = [redirects::FILE, headers::FILE]
        .into_iter()
        .filter_map(|file| {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .map(|text| (file, text))
        })
        .collect();
    if texts.is_empty() {
        return String::new();
    }
    let summary = match SiteRules::load(dir, &Limits::unlimited()) {
        Ok(rules) => format!(
            "Site rules: {} redirect(s), {} header block(s)",
            rules.redirects.rules().len(),
            rules.headers.blocks().len()
        ),
        Err(e) => format!("Site rules not applied: {e}"),
    };
    let mut row = format!(
        "<tr class=site-rules><td colspan=6><details><summary>{}</summary>",
        esc(&summary)
    );
    for (file, text) in texts {
        let _ = write!(
            row,
            "<p class=meta><code>{file}</code></p><pre>{}</pre>",
            esc(&text)
        );
    }
    row.push_str("</details></td></tr>");
    row
}

#[cfg(test)]
mod tests {
    use super::super::traffic::{Sample, DEFAULT_INTERVAL};
    use super::*;

    /// The busiest interval's bar fills the chart; a bar is stacked by class;
    /// the newest sample sits in the rightmost slot; shares are of the whole window.
    #[test]
    fn charts_scale_stack_and_align_right() {
        let samples = [
            Sample {
                requests: 20,
                client_errors: 5,
                server_errors: 1,
            },
            Sample {
                requests: 10,
                client_errors: 0,
                server_errors: 0,
            },
        ];
        let svg = traffic_charts(&samples, DEFAULT_INTERVAL);
        assert!(
            svg.contains("data-requests=30 data-4xx=5 data-5xx=1"),
            "{svg}"
        );
        // 20 of 20 requests: 14 ok + 5 4xx + 1 5xx stacked up to the full 48 px.
        assert!(
            svg.contains("class=ok x=254.0 y=22.40 width=3 height=33.60"),
            "{svg}"
        );
        assert!(
            svg.contains("class=c4 x=254.0 y=10.40 width=3 height=12.00"),
            "{svg}"
        );
        assert!(
            svg.contains("class=c5 x=254.0 y=8.00 width=3 height=2.40"),
            "{svg}"
        );
        // The newer, half-height bar in the last slot.
        assert!(
            svg.contains("class=ok x=258.0 y=32.00 width=3 height=24.00"),
            "{svg}"
        );
        assert!(
            svg.contains("Requests per minute: 30 in the last hour"),
            "{svg}"
        );
        assert!(
            svg.contains("4xx 16.7 %") && svg.contains("5xx 3.3 %"),
            "{svg}"
        );
        assert!(traffic_charts(&[], DEFAULT_INTERVAL).contains("No traffic sampled yet"));
    }
}
