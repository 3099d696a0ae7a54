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
        let deadline = Instant::now() + Duration::from_secs(10);
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let deadline = Instant::now() + Duration::from_secs(10);
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
