//! `brief preview`, run as the real binary on a copy of the sample newsletter:
//! answers over a real socket, shows build errors without dying, rebuilds on change,
//! stops on SIGTERM; and headless Chromium sees it at both widths and reloading.

use crate::harness::{support, Newsletter};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NOW: &str = "2026-11-25T00:00:00Z";
const WAIT: Duration = Duration::from_secs(30);

struct Preview {
    child: Child,
    /// `http://127.0.0.1:PORT/`
    url: String,
    addr: String,
}

impl Preview {
    fn start(n: &Newsletter, edition: &str) -> Preview {
        let mut child = n
            .command_at(NOW, &[])
            .args(["preview", "--edition", edition, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start brief preview");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("brief preview printed no URL within {WAIT:?}");
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Preview { child, url, addr }
    }

    /// GET `path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the preview");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the answer");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }

    /// Waits (bounded) until the shell page satisfies `ok`; returns it.
    fn wait_for_page(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get("/");
            if status == 200 && ok(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "brief preview ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn answers_over_a_socket_shows_errors_and_rebuilds() {
    let n = Newsletter::sample();
    let mut preview = Preview::start(&n, "2026-11-20");

    let (status, shell) = preview.get("/?width=375");
    assert_eq!(status, 200);
    assert!(shell.contains("The slow comeback of the night train"));
    assert!(shell.contains(r#"width="375""#), "{shell}");
    assert!(shell.contains("KB of Gmail's 102.0 KB limit"), "{shell}");
    assert!(shell.contains("brief check finds no problem."));
    // The text part beside the frame.
    assert!(shell.contains("View in browser:"));
    let (_, shell) = preview.get("/?width=640");
    assert!(shell.contains(r#"width="640""#));

    // The email, filled in for the first editor.
    let (status, html) = preview.get("/email.html");
    assert_eq!(status, 200);
    assert!(html.contains("The slow comeback of the night train"));
    assert!(html.contains("ana@news.example.org"));
    let (_, text) = preview.get("/email.txt");
    assert!(text.contains("ana@news.example.org"));
    assert!(text.contains("https://news.example.org/brief/2026-11-20/"));

    // A broken edition: the errors are on the page, with file:line:column.
    let source = n.read("editions/2026-11-20.md");
    n.write(
        "editions/2026-11-20.md",
        &source.replacen("kicker = ", "kickr = ", 1),
    );
    let broken = preview.wait_for_page("the build error", |p| p.contains("does not build"));
    assert!(
        broken.contains("2026-11-20.md:4:1: error: unknown key `kickr`"),
        "{broken}"
    );
    assert!(broken.contains("kickr"), "{broken}");
    let (status, _) = preview.get("/email.html");
    assert_eq!(status, 200, "the server keeps answering");

    // Fixed, and a template changed: rebuilt again.
    n.write("editions/2026-11-20.md", &source);
    let footer = n.read("templates/footer.mjml.hbs");
    n.write(
        "templates/footer.mjml.hbs",
        &footer.replace(
            "is subscribed to it.",
            "is subscribed to it (preview test).",
        ),
    );
    preview.wait_for_page("the fixed edition", |p| {
        p.contains("The slow comeback of the night train") && !p.contains("does not build")
    });
    let deadline = Instant::now() + WAIT;
    while !preview.get("/email.html").1.contains("(preview test)") {
        assert!(
            Instant::now() < deadline,
            "the template change was not picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What `brief check` finds shows too: here an audience list that does not exist.
    n.write(
        "editions/2026-11-20.md",
        &source.replacen("editors = [", "audience = [\"readrs\"]\neditors = [", 1),
    );
    let checked = preview.wait_for_page("the check", |p| p.contains("readrs"));
    assert!(checked.contains("class=\"error\""), "{checked}");
    assert!(checked.contains("did you mean `readers`?"), "{checked}");
    assert!(checked.contains("<iframe"), "the email still builds");

    let status = preview.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn chromium_shows_both_widths_and_reloads_on_change() {
    let chromium = "/usr/bin/chromium";
    assert!(
        std::path::Path::new(chromium).exists(),
        "Chromium is missing at {chromium}: install the Debian package chromium (scripts/test.sh does)"
    );
    let n = Newsletter::sample();
    let mut preview = Preview::start(&n, "2026-11-20");
    let edition = n.path("editions/2026-11-20.md");
    let out = std::process::Command::new("python3")
        .arg(support("cdp_preview.py"))
        .args([
            &preview.url,
            &edition.display().to_string(),
            "Night trains, revised",
            chromium,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3 is needed to drive Chromium");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
    // The server saw the same change.
    let (_, shell) = preview.get("/");
    assert!(shell.contains("Night trains, revised"));
    assert!(preview.terminate().success());
}

/// The status `brief preview` gives a GET / with this Host header (none if `None`).
fn status_for_host(addr: &str, host: Option<&str>) -> u16 {
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
fn only_its_own_host_names_are_answered_dns_rebinding() {
    let n = Newsletter::sample();
    let preview = Preview::start(&n, "2026-11-20");
    let addr = preview.addr.clone();
    let port = addr.rsplit(':').next().unwrap();

    for good in [
        addr.clone(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(status_for_host(&addr, Some(&good)), 200, "Host: {good}");
    }
    for bad in [
        format!("rebind.attacker.example:{port}"),
        "rebind.attacker.example".to_string(),
        format!("localhost:{}", port.parse::<u16>().unwrap() ^ 1),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost".to_string(),
    ] {
        assert_eq!(status_for_host(&addr, Some(&bad)), 421, "Host: {bad}");
    }
    assert_eq!(status_for_host(&addr, None), 421, "no Host header");
}
