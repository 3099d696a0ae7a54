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
            if !state.auth.check_token(token, peer.ip()).await {
                return html(StatusCode::UNAUTHORIZED, login_page(Some("Wrong token.")));
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
                return redirect_with_message("invalid service name");
            }
            let (outcome, done) = match action {
                "/ui/activate" => (
                    deploy::activate(state, service, id, "deployment.activated").await,
                    format!("{service}: {id} is now active"),
                ),
                "/ui/rollback" => (
                    deploy::rollback(state, service).await,
                    format!("{service}: rolled back"),
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
            redirect_with_message(&message)
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
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("msg", message)
        .finish();
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
.flash{max-width:1100px;margin:1rem auto 0;padding:.6rem 1rem;border-left:4px solid var(--accent);background:var(--card)}
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
.login{max-width:360px;margin:12vh auto;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.5rem}
.login input{width:100%;font:inherit;padding:.5rem;margin:.5rem 0 1rem;border:1px solid var(--line);border-radius:7px;background:var(--bg);color:var(--fg)}
.error{color:var(--bad)}
@media (max-width:700px){thead{display:none}table,tbody,tr,td{display:block;width:100%}tr{border-top:1px solid var(--line);padding:.4rem 0}td{border:0;padding:.2rem 0}
td[data-label]::before{content:attr(data-label);display:inline-block;width:6.5rem;color:var(--muted);font-size:.8rem}}
"#;

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

async fn page(
    state: &Arc<AdminState>,
    session: &Session,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response<Body> {
    let layout = state.layout.clone();
    let services = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for name in layout.services().unwrap_or_default() {
            let list = deployments::list(&layout, &name).unwrap_or_default();
            let disk = store::disk_usage(&layout.service_dir(&name));
            out.push((name, list, disk));
        }
        out
    })
    .await
    .unwrap_or_default();
    let message = query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "msg").map(|(_, v)| v));
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
         <header><h1>project-http</h1><form method=post action=/logout>{csrf}\
         <button type=submit>Log out</button></form></header>"
    );
    if let Some(message) = message {
        let _ = write!(
            out,
            "<p class=flash role=status id=flash>{}</p>",
            esc(&message)
        );
    }
    out.push_str("<main>");
    if services.is_empty() {
        out.push_str("<section><h2>No services yet</h2><p class=meta>Deploy one with <code>project-http deploy --service web ./dist</code>.</p></section>");
    }
    for (name, list, disk) in &services {
        let n = esc(name);
        let current = list.iter().find(|d| d.active).map(|d| d.id.as_str());
        let _ = write!(
            out,
            "<section id=\"service-{n}\" data-service=\"{n}\"><h2>{n}</h2>\
             <p class=meta>Current: <code class=current>{}</code> · {} deployment(s) · {} on disk</p>\
             <div class=actions><form method=post action=/ui/rollback>{csrf}\
             <input type=hidden name=service value=\"{n}\">\
             <button type=submit class=rollback>Rollback</button></form>\
             <a class=button href=\"{}/s/{n}/\" target=_blank rel=noopener>Open site</a></div>\
             <table><thead><tr><th>Deployment</th><th>Created</th><th>Files</th><th>Size</th><th>State</th><th>Actions</th></tr></thead><tbody>",
            esc(current.unwrap_or("none")),
            list.len(),
            crate::docker::status::human_bytes(*disk),
            esc(&base),
        );
        for d in list {
            let id = esc(&d.id);
            let created = esc(d.created_at.get(..19).unwrap_or(&d.created_at)).replace('T', " ");
            let _ = write!(
                out,
                "<tr data-id=\"{id}\"{}><td data-label=Deployment><code>{id}</code></td>\
                 <td data-label=Created>{created}</td><td data-label=Files>{}</td>\
                 <td data-label=Size>{}</td><td data-label=State>{}</td>\
                 <td data-label=Actions><div class=actions>\
                 <a class=button href=\"{}/s/{n}@{id}/\" target=_blank rel=noopener>Preview</a>",
                if d.active { " class=active" } else { "" },
                d.files,
                crate::docker::status::human_bytes(d.bytes),
                if d.active {
                    "<span class=\"badge on\">active</span>"
                } else {
                    "<span class=badge>kept</span>"
                },
                esc(&base),
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
        }
        out.push_str("</tbody></table></section>");
    }
    // Live updates: any deployment event reloads the page (keeping no
    // state in the browser); the event stream uses the session cookie. A
    // form being submitted closes the stream first, so the event its own
    // action causes does not race the form's redirect.
    out.push_str(
        "</main><script>(function(){if(!window.EventSource)return;var es=new EventSource('/events');\
         ['deployment.deployed','deployment.activated','deployment.rollback','deployment.retain.pruned']\
         .forEach(function(k){es.addEventListener(k,function(){es.close();location.replace('/');});});\
         document.addEventListener('submit',function(){es.close();});})();\
         </script></body></html>",
    );
    html(StatusCode::OK, out)
}
