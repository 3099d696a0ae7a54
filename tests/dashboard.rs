//! The admin dashboard: its login, sessions and CSRF checks over raw HTTP,
//! and the whole page in a real headless browser (Debian's chromium driven
//! through chromedriver's WebDriver API): log in, see two services, click
//! Rollback, see the active deployment change. Screenshots are saved under
//! `target/test-artifacts/`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{send, tar_of, Root, Server};
use serde_json::{json, Value};

const TOKEN: &str = "dash-token-4c2e";
const AUTH: (&str, &str) = ("Authorization", "Bearer dash-token-4c2e");

fn upload(admin: SocketAddr, service: &str, text: &str) -> String {
    let r = send(
        admin,
        "POST",
        &format!("/services/{service}/deployments"),
        &[AUTH],
        &tar_of(&[("index.html", text.as_bytes())]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn current(admin: SocketAddr, service: &str) -> String {
    let r = common::get(admin, &format!("/services/{service}/deployments"), &[AUTH]);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["current"].as_str().unwrap_or("").to_string()
}

/// Logs in over HTTP; returns the cookie and the page's CSRF token.
fn login(admin: SocketAddr) -> (String, String) {
    let r = send(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={TOKEN}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let set_cookie = r.header("set-cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = common::get(admin, "/", &[("Cookie", &cookie)]).text();
    let csrf = page
        .split("name=csrf value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    (cookie, csrf)
}

#[test]
fn login_sessions_and_csrf() {
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let first = upload(admin, "web", "<h1>1</h1>");
    let second = upload(admin, "web", "<h1>2</h1>");

    // Without a session: the login form, and nothing else.
    let r = common::get(admin, "/", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=token") && !r.text().contains(&second));
    let r = send(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=wrong",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(
        common::get(admin, "/events", &[("Cookie", "ph_session=forged")]).status,
        401
    );

    let (cookie, csrf) = login(admin);
    let page = common::get(admin, "/", &[("Cookie", &cookie)]);
    assert!(page.text().contains(&first) && page.text().contains(&second));
    assert!(page.header("content-security-policy").is_some());
    // A POST without the CSRF token (what a cross-site form would send) is refused.
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = send(admin, "POST", "/ui/rollback", &form, b"service=web");
    assert_eq!(r.status, 403);
    let r = send(
        admin,
        "POST",
        "/ui/rollback",
        &form,
        b"service=web&csrf=0000",
    );
    assert_eq!(r.status, 403);
    assert_eq!(current(admin, "web"), second);
    // With it: done, and said so.
    let r = send(
        admin,
        "POST",
        "/ui/rollback",
        &form,
        format!("service=web&csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 303);
    assert!(
        r.header("location").unwrap().contains("rolled+back"),
        "{:?}",
        r.header("location")
    );
    assert_eq!(current(admin, "web"), first);
    // The session also opens the event stream (for live updates)...
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // ...but not the JSON API, which still wants the bearer token.
    assert_eq!(
        common::get(admin, "/services", &[("Cookie", &cookie)]).status,
        401
    );
    // Logging out ends the session.
    let r = send(
        admin,
        "POST",
        "/logout",
        &form,
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 303);
    let r = common::get(admin, "/", &[("Cookie", &cookie)]);
    assert!(r.text().contains("name=token"));
}

// ---- the browser ----

struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the page may take to show something: generous, because a
/// headless browser on a loaded CI machine is slow; these tests check what
/// the page shows, not how fast.
const PAGE_WAIT: Duration = Duration::from_secs(30);

impl Driver {
    /// Starts chromedriver and a headless chromium; `None` (after a loud
    /// message) when they are not installed and the browser is not required.
    fn start() -> Option<Driver> {
        let found = Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            let message =
                "chromedriver/chromium not installed (apt-get install chromium chromium-driver)";
            if std::env::var("PROJECT_HTTP_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("{message}, and PROJECT_HTTP_REQUIRE_BROWSER=1");
            }
            eprintln!("\n!!!!! SKIPPING the browser test: {message} !!!!!\n");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"]}}}});
        let answer: Value = serde_json::from_str(
            &agent
                .post(&format!("{base}/session"))
                .send_string(&caps.to_string())
                .expect("chromedriver cannot start chromium")
                .into_string()
                .unwrap(),
        )
        .unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap().to_string();
        Some(Driver {
            child,
            base,
            session,
            agent,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.agent.request(method, &url);
        let response = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        };
        match response {
            Ok(r) => {
                serde_json::from_str::<Value>(&r.into_string().unwrap()).unwrap()["value"].clone()
            }
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "webdriver {method} {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[ELEMENT].as_str().unwrap().to_string())
        .collect()
    }

    /// Waits for `css` to match, for pages that reload.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Some(first) = self.find_all(css).into_iter().next() {
                return first;
            }
            assert!(Instant::now() < deadline, "no element matches {css}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        let url = format!(
            "{}/session/{}/element/{element}/text",
            self.base, self.session
        );
        // The element may be replaced by a reload between find and read.
        match self.agent.get(&url).call() {
            Ok(r) => serde_json::from_str::<Value>(&r.into_string().unwrap_or_default())
                .unwrap_or_default()["value"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            Err(_) => String::new(),
        }
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }
}

#[test]
fn dashboard_in_a_real_browser_rolls_back() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let web_old = upload(admin, "web", "<h1>web 1</h1>");
    let web_new = upload(admin, "web", "<h1>web 2</h1>");
    let docs = upload(admin, "docs", "<h1>docs</h1>");

    driver.goto(&format!("http://{admin}/"));
    driver.type_into("#token", TOKEN);
    driver.click("#login");
    // Both services, each with its current deployment.
    driver.find("section[data-service=docs]");
    assert_eq!(driver.find_all("section[data-service]").len(), 2);
    assert_eq!(driver.text("#service-web .current"), web_new);
    assert_eq!(driver.text("#service-docs .current"), docs);
    assert_eq!(driver.find_all("#service-web tbody tr").len(), 2);
    driver.screenshot("dashboard-before-rollback.png");

    driver.click("#service-web button.rollback");
    let deadline = Instant::now() + PAGE_WAIT;
    while driver.text("#service-web .current") != web_old {
        assert!(
            Instant::now() < deadline,
            "the page never showed the rollback"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(current(admin, "web"), web_old, "the server rolled back too");
    assert!(driver.text("#flash").contains("rolled back"));
    let active_row = driver.text("#service-web tr.active code");
    assert_eq!(active_row, web_old);
    driver.screenshot("dashboard.png");

    // Live update: a deploy made elsewhere shows up without a click.
    let web_third = upload(admin, "web", "<h1>web 3</h1>");
    let deadline = Instant::now() + PAGE_WAIT;
    while driver.text("#service-web .current") != web_third {
        assert!(
            Instant::now() < deadline,
            "the page did not follow the event stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // On a phone-sized window the page still holds everything.
    driver.resize(390, 844);
    driver.goto(&format!("http://{admin}/"));
    assert_eq!(driver.find_all("section[data-service]").len(), 2);
    driver.screenshot("dashboard-phone.png");
}

impl Driver {
    /// Runs `script` (a function body) in the page; returns its value.
    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }
}

/// The visual fixes of issue 12, in the browser at desktop and phone
/// widths (screenshots `dashboard-*-{desktop,phone}.png` in
/// target/test-artifacts/): the login card is a centred card, not an
/// inline run of fields; Log out only where there is a login; Rollback only
/// where there is something older; a failure notice looks like a failure;
/// times say their time zone.
#[test]
fn dashboard_login_card_notices_rollback_and_times_look_right() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let root = Root::new();
    let (_server, admin) = Server::start_with_token(root.path(), TOKEN, &[]);
    let web_old = upload(admin, "web", "<h1>web 1</h1>");
    let web_new = upload(admin, "web", "<h1>web 2</h1>");
    upload(admin, "docs", "<h1>docs</h1>");

    for (width, height, label) in [(1280, 900, "desktop"), (390, 844, "phone")] {
        driver.resize(width, height);
        driver.goto(&format!("http://{admin}/"));
        driver.find("#token");
        let card = driver.script(
            "var f=document.querySelector('form.login'),r=f.getBoundingClientRect(),\
             i=document.querySelector('#token').getBoundingClientRect();\
             return {display:getComputedStyle(f).display,left:r.left,right:window.innerWidth-r.right,\
             width:r.width,inputWidth:i.width};",
        );
        driver.screenshot(&format!("dashboard-login-{label}.png"));
        assert_eq!(card["display"], "block", "{label}: {card}");
        let (left, right) = (
            card["left"].as_f64().unwrap(),
            card["right"].as_f64().unwrap(),
        );
        assert!(
            (left - right).abs() < 2.0,
            "{label}: card not centred: {card}"
        );
        assert!(card["width"].as_f64().unwrap() <= 361.0, "{label}: {card}");
        assert!(
            card["inputWidth"].as_f64().unwrap() > card["width"].as_f64().unwrap() * 0.7,
            "{label}: the token field is not full width: {card}"
        );
    }
    driver.resize(1280, 900);
    driver.type_into("#token", TOKEN);
    driver.click("#login");
    driver.find("section[data-service=docs]");
    assert_eq!(driver.find_all("#logout").len(), 1, "logged in: Log out");
    assert_eq!(driver.find_all("#service-web button.rollback").len(), 1);
    assert!(
        driver.find_all("#service-docs button.rollback").is_empty(),
        "docs has one deployment: nothing to roll back to"
    );
    let created = driver.text("#service-docs td[data-label=Created]");
    assert!(created.ends_with(" UTC"), "{created:?}");

    // A successful action: a success notice; then nothing is older.
    driver.click("#service-web button.rollback");
    driver.find("#flash");
    assert_eq!(driver.text("#service-web .current"), web_old);
    assert_eq!(
        driver.script("return document.querySelector('#flash').className;"),
        "flash"
    );
    assert!(driver.find_all("#service-web button.rollback").is_empty());

    // A failing action: its deployment vanished from disk meanwhile.
    std::fs::remove_dir_all(root.path().join("web").join(&web_new)).unwrap();
    driver.click(&format!(
        "#service-web tr[data-id=\"{web_new}\"] button.primary"
    ));
    let deadline = Instant::now() + PAGE_WAIT;
    while !driver.text("#flash").contains("failed") {
        assert!(Instant::now() < deadline, "no failure notice");
        std::thread::sleep(Duration::from_millis(100));
    }
    let notice = driver.script(
        "var n=document.querySelector('#flash'),s=getComputedStyle(n);\
         return {cls:n.className,role:n.getAttribute('role'),color:s.color,border:s.borderLeftColor};",
    );
    assert_eq!(notice["cls"], "flash error", "{notice}");
    assert_eq!(notice["role"], "alert", "{notice}");
    assert_ne!(
        notice["border"], "rgb(19, 115, 51)",
        "not the success green: {notice}"
    );
    driver.screenshot("dashboard-failure-desktop.png");
    driver.resize(390, 844);
    driver.screenshot("dashboard-failure-phone.png");

    // No token configured: no login, so no Log out.
    let open_root = Root::new();
    let open = Server::start(open_root.path(), &[]);
    let open_admin = open.admin_addr();
    upload_open(open_admin);
    driver.goto(&format!("http://{open_admin}/"));
    driver.find("section[data-service=web]");
    assert!(
        driver.find_all("#logout").is_empty(),
        "Log out without a token"
    );
    driver.screenshot("dashboard-no-token-phone.png");
    driver.resize(1280, 900);
    driver.screenshot("dashboard-no-token-desktop.png");
}

fn upload_open(admin: SocketAddr) {
    let r = send(
        admin,
        "POST",
        "/services/web/deployments",
        &[],
        &tar_of(&[("index.html", b"<h1>open</h1>")]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The `<section>` of `service` in a dashboard page.
fn service_section<'a>(page: &'a str, service: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"service-{service}\""))
        .unwrap_or_else(|| panic!("no section for {service}"));
    let rest = &page[start..];
    &rest[..rest.find("</section>").unwrap()]
}

/// The number in the first `name=<number>` of `text`.
fn attribute(text: &str, name: &str) -> u64 {
    let at = text.find(&format!(" {name}=")).unwrap() + name.len() + 2;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The traffic charts: the requests sent to each service, and their 4xx
/// share, appear in its inline SVG once sampled (every 500 ms here, through
/// the hidden `PROJECT_HTTP_CHART_INTERVAL_MS`; a minute by default).
#[test]
fn traffic_charts_show_the_requests_sent() {
    let root = Root::new();
    let server = Server::start_with_env(
        root.path(),
        &["--admin-token", TOKEN],
        &[("PROJECT_HTTP_CHART_INTERVAL_MS", "500")],
    );
    let admin = server.admin_addr();
    upload(admin, "web", "<h1>web</h1>");
    upload(admin, "docs", "<h1>docs</h1>");
    upload(admin, "quiet", "<h1>quiet</h1>");
    for _ in 0..7 {
        assert_eq!(server.get("/s/web/").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(server.get("/s/web/missing.html").status, 404);
    }
    for _ in 0..2 {
        assert_eq!(server.get("/s/docs/").status, 200);
    }
    let (cookie, _) = login(admin);
    // Wait until a sample has taken every request in (a few intervals at most).
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let page = common::get(admin, "/", &[("Cookie", &cookie)]).text();
        let web = service_section(&page, "web");
        if web.contains("<div class=traffic") && attribute(web, "data-requests") == 10 {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "web's chart never showed 10 requests:\n{web}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let web = service_section(&page, "web");
    let chart = &web[web.find("<div class=traffic").unwrap()..];
    assert_eq!(
        (
            attribute(chart, "data-requests"),
            attribute(chart, "data-4xx"),
            attribute(chart, "data-5xx")
        ),
        (10, 3, 0),
        "{chart}"
    );
    // The bars add up to what was sent, and the captions say it in words.
    let bars: Vec<&str> = chart.split("<g data-requests=").skip(1).collect();
    assert!(!bars.is_empty(), "no bars in {chart}");
    let sum = |name: &str| -> u64 {
        bars.iter()
            .map(|bar| attribute(&format!(" data-requests={bar}"), name))
            .sum()
    };
    assert_eq!((sum("data-requests"), sum("data-4xx")), (10, 3));
    assert!(chart.contains("<svg class=requests") && chart.contains("<svg class=errors"));
    assert!(
        chart.contains("Requests per 500ms: 10 in the last 30s"),
        "{chart}"
    );
    assert!(
        chart.contains("4xx 30.0 %") && chart.contains("5xx 0.0 %"),
        "{chart}"
    );
    assert!(chart.contains("<title>"), "{chart}");
    let docs = service_section(&page, "docs");
    assert_eq!(
        (
            attribute(docs, "data-requests"),
            attribute(docs, "data-4xx")
        ),
        (2, 0),
        "{docs}"
    );
    // A service nobody asked for yet says so instead of drawing an empty chart.
    let quiet = service_section(&page, "quiet");
    assert!(quiet.contains("No traffic sampled yet"), "{quiet}");
    assert!(!quiet.contains("<svg"), "{quiet}");
}
