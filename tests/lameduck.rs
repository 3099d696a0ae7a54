//! The lame-duck period (`serve --stop-grace-secs`, src/serve/lameduck.rs):
//! after SIGTERM the server answers `/health` with 503 while it still
//! accepts and answers everything else, and exits only after the grace.
//! `ensure` relies on it so Traefik drops a stopping container before its
//! listener closes (tests/traefik.rs drives that end to end).

mod common;

use std::time::{Duration, Instant};

use common::{Root, Server};

#[test]
fn sigterm_fails_health_keeps_serving_then_exits_after_the_grace() {
    let root = Root::new();
    let mut server = Server::start(root.path(), &["--stop-grace-secs", "2"]);
    assert_eq!(server.get("/health").status, 200);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    let health = loop {
        let answer = server.get("/health");
        if answer.status != 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.text().trim(), "draining");
    // New connections are still accepted and answered during the grace.
    for _ in 0..5 {
        assert_eq!(server.get("/s/nothing/").status, 404);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.wait_exit(Duration::from_millis(800)).is_none(),
        "exited before the grace ended"
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit after the grace");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2));
}

#[test]
fn without_a_grace_sigterm_stops_at_once() {
    let root = Root::new();
    let mut server = Server::start(root.path(), &[]);
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit");
    assert!(status.success(), "{status:?}");
}
