//! `brief serve` under hostile conditions, against the real binary over real sockets:
//! too many connections, one client holding many slow ones, a proxy reaching a `[::]`
//! listener over IPv4, an archive folder that holds private files, weak secrets, and the
//! modes of the files it writes.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A connection that sends nothing: closed by the server (EOF or reset) within `wait`?
fn closed_within(stream: &TcpStream, wait: Duration) -> bool {
    matches!(next_event(stream, wait), Some(0))
}

/// Waits up to `wait` for something from the server without consuming it: `Some(0)`
/// when it closed the connection, `Some(1)` when bytes arrived, `None` for silence.
fn next_event(stream: &TcpStream, wait: Duration) -> Option<usize> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => Some(0),
    }
}

/// The answer's status line to a request sent on `stream`, or `None` when the server
/// closed it without answering.
fn status_line(stream: &mut TcpStream, request: &str, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.lines().next().map(str::to_string)
}

#[test]
fn connections_over_the_cap_wait_instead_of_being_dropped() {
    let n = Newsletter::custom("max_connections = 64\n");
    let server = n.serve();
    // Fill every slot with idle loopback connections (the proxy is exempt from the
    // per-client share), then one more, which asks for /healthz.
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut extra = TcpStream::connect(&server.addr).expect("the backlog takes it");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Nothing answers while every slot is held…
    assert_eq!(
        next_event(&extra, Duration::from_secs(1)),
        None,
        "a connection over the cap was answered or dropped while every slot was held"
    );
    // …and it is served as soon as one frees.
    idle.truncate(60);
    let status = status_line(&mut extra, "", Duration::from_secs(5));
    assert_eq!(
        status.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "{}",
        server.stderr()
    );
}

/// An address of this machine that is not loopback (the test client must not look
/// like the reverse proxy).
fn non_loopback_address() -> IpAddr {
    let out = Command::new("hostname").arg("-I").output();
    let listed = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect(
            "this test needs a non-loopback IPv4 address on the machine (hostname -I lists none)",
        )
}

#[test]
fn one_slow_client_cannot_take_the_shared_slots() {
    // 64 slots: one client address may hold 2 of them.
    let n = Newsletter::custom("max_connections = 64\n");
    let server = n.serve_on("0.0.0.0:0");
    let port: u16 = server.addr.rsplit(':').next().unwrap().parse().unwrap();
    let client = SocketAddr::new(non_loopback_address(), port);
    let started = Instant::now();
    // More slow connections than there are slots, all sending nothing.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(client).expect("connect"))
        .collect();
    let closed = || {
        slow.iter()
            .filter(|s| closed_within(s, Duration::from_millis(1)))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed() < 98 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        closed(),
        98,
        "connections over one client's share closed at once"
    );
    // Everyone else is still served.
    assert_eq!(server.get("/healthz").status, 200);
    let token = n.token("ann@example.org", "e1", false);
    assert_eq!(server.get(&format!("/u/{token}")).status, 200);
    // The head timeout (10 s) ends the two it kept.
    for s in slow
        .iter()
        .filter(|s| !closed_within(s, Duration::from_millis(1)))
    {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        assert!(
            closed_within(s, left.max(Duration::from_millis(1))),
            "a connection that sent no request head stayed open for 20 s"
        );
    }
}

#[test]
fn an_ipv4_proxy_on_a_dual_stack_listener_is_still_the_proxy() {
    let n = Newsletter::custom("client_rate = 0.001\nclient_burst = 1\n");
    let server = n.serve_on("[::]:0");
    let token = n.token("ann@example.org", "e1", false);
    let path = format!("/brief/u/{token}");
    let from = |client: &str| {
        server
            .request("GET", &path, &[("X-Forwarded-For", client)], b"")
            .status
    };
    assert_eq!(from("203.0.113.1"), 200);
    assert_eq!(from("203.0.113.1"), 429);
    // Another client behind the same proxy has its own budget.
    assert_eq!(from("203.0.113.2"), 200, "{}", server.stderr());
}

/// Runs `brief serve` expecting it to refuse to start: its stderr.
fn serve_refuses(n: &Newsletter, secret: &str) -> String {
    let mut child = n
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .env("BRIEF_SECRET", secret)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start brief serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brief serve started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn an_archive_folder_with_private_files_is_refused() {
    for (out, what) in [
        (".", "contains the config"),
        ("state", "contains the state database"),
        ("subscribers/..", "contains the config"),
        ("outbox/..", "contains the config"),
        ("subscribers", "contains the subscriber lists"),
    ] {
        let n = Newsletter::custom(&format!("\n[archive]\nout = \"{out}\"\n"));
        n.write("subscribers/readers.csv", "email\nann@example.org\n");
        let stderr = serve_refuses(&n, SECRET);
        assert!(stderr.contains(what), "out = {out}: {stderr}");
        assert!(stderr.contains("[archive] out"), "{stderr}");
    }
}

#[test]
fn archive_pages_cannot_be_framed_or_run_scripts() {
    let n = Newsletter::custom("\n[archive]\nout = \"site\"\n");
    n.write("site/index.html", "<!doctype html><p>archive</p>");
    let server = n.serve();
    let res = server.get("/brief/");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    let csp = res.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(res.header("cache-control"), Some("public, max-age=300"));
}

#[test]
fn weak_secrets_are_refused() {
    let n = Newsletter::custom("");
    for weak in [
        "aaaaaaaaaaaaaaaa",
        "                ",
        "brief-development-secret-not-for-real-mail",
        "0123456789abcdef0123456789abcdef",
    ] {
        let stderr = serve_refuses(&n, weak);
        assert!(stderr.contains("$BRIEF_SECRET"), "{weak:?}: {stderr}");
        assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");
    }
}

#[test]
fn the_state_database_is_private() {
    let n = Newsletter::custom("");
    // Whatever the umask: the usual 022 would make new files world-readable.
    let server = Command::new("sh")
        .current_dir(n.root())
        .args(["-c", "umask 022; exec \"$0\" serve --listen 127.0.0.1:0"])
        .arg(env!("CARGO_BIN_EXE_brief"))
        .env("BRIEF_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start brief serve");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    let state = n.root().join("state");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The writer opens the database (and its WAL) at start.
    while !state.join("brief.db-wal").exists() {
        assert!(Instant::now() < deadline, "no WAL file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state/");
    for file in ["brief.db", "brief.db-wal", "brief.db-shm"] {
        let path = state.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
}
