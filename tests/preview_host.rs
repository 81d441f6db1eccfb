//! `brief preview` answers only requests addressed to it (DNS rebinding): the real
//! binary on a copy of the sample newsletter, over a real socket.

// Shared with other test binaries; this one uses part of it.
#[allow(dead_code)]
mod archive_support;

use archive_support::Newsletter;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

/// The status `brief preview` gives a GET / with this Host header (none if `None`).
fn status(addr: &str, host: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect to the preview");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (version, host) = match host {
        Some(h) => ("HTTP/1.1", format!("Host: {h}\r\n")),
        None => ("HTTP/1.0", String::new()),
    };
    write!(stream, "GET / {version}\r\n{host}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn only_its_own_host_names_are_answered() {
    let n = Newsletter::sample();
    let mut child = n
        .command("2026-11-25T00:00:00Z")
        .args([
            "preview",
            "--edition",
            "2026-11-20",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start brief preview");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line from brief preview")
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    let port = addr.rsplit(':').next().unwrap();

    for good in [
        addr.clone(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(status(&addr, Some(&good)), 200, "Host: {good}");
    }
    for bad in [
        format!("rebind.attacker.example:{port}"),
        "rebind.attacker.example".to_string(),
        format!("localhost:{}", port.parse::<u16>().unwrap() ^ 1),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost".to_string(),
    ] {
        assert_eq!(status(&addr, Some(&bad)), 421, "Host: {bad}");
    }
    assert_eq!(status(&addr, None), 421, "no Host header");
}
