//! Harness for tests/serve.rs: a temp newsletter folder, the real `brief serve` on a
//! free loopback port, and a plain HTTP/1.1 client over TcpStream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "oc0vB3CBSn0Rkdede0mKlfgJ00Z8UTDKMDh7XEMTQ/s=";
pub const OLD_SECRET: &str = "WYf6mS1hN5Cobvpea+gxjrM16tJ9sM3KZAKADriht3I=";
pub const LIST_ID: &str = "the-brief.news.example.org";
pub const FORM: &str = "application/x-www-form-urlencoded";
/// Every command runs at this instant (BRIEF_NOW) unless told otherwise.
pub const NOW: &str = "2030-01-02T03:04:05Z";

pub struct Newsletter {
    pub dir: tempfile::TempDir,
}

impl Newsletter {
    /// A newsletter folder whose brief.toml has `unsubscribe_extra` in `[unsubscribe]`.
    pub fn new(unsubscribe_extra: &str) -> Newsletter {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "[newsletter]\nname = \"The Brief\"\nfrom = \"The Brief <brief@news.example.org>\"\n\
             list_id = \"{LIST_ID}\"\nbase_url = \"https://news.example.org/brief\"\n\
             postal_address = \"1 Example Street\"\n\n[unsubscribe]\n\
             mailto = \"unsubscribe@news.example.org\"\n{}\n",
            if unsubscribe_extra.contains("client_rate") {
                unsubscribe_extra.to_string()
            } else {
                format!("client_rate = 0\n{unsubscribe_extra}")
            }
        );
        std::fs::write(dir.path().join("brief.toml"), config).expect("write brief.toml");
        Newsletter { dir }
    }

    pub fn token(&self, email: &str, edition: &str, test: bool) -> String {
        brief::token::Keyring::new(SECRET.as_bytes(), LIST_ID).issue(email, edition, test)
    }

    pub fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    fn command(&self, now: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brief"));
        cmd.current_dir(self.dir.path())
            .env("BRIEF_SECRET", SECRET)
            .env("BRIEF_OLD_SECRET", OLD_SECRET)
            .env("BRIEF_NOW", now)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn brief(&self, args: &[&str]) -> Output {
        self.brief_at(NOW, args)
    }

    pub fn brief_at(&self, now: &str, args: &[&str]) -> Output {
        self.command(now).args(args).output().expect("run brief")
    }

    /// `brief suppressions --json`, parsed.
    pub fn suppressions(&self) -> Vec<serde_json::Value> {
        let out = self.brief(&["suppressions", "--json"]);
        assert!(
            out.status.success(),
            "brief suppressions failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match serde_json::from_slice(&out.stdout).expect("JSON from brief suppressions") {
            serde_json::Value::Array(list) => list,
            other => panic!("expected a list, got {other}"),
        }
    }

    /// Starts `brief serve` on a free port and waits until /healthz answers.
    pub fn serve(&self) -> Server {
        self.serve_on("127.0.0.1:0")
    }

    /// Starts `brief serve --listen listen` (port 0: a free one) and waits until
    /// /healthz answers over IPv4 loopback.
    pub fn serve_on(&self, listen: &str) -> Server {
        let mut child = self
            .command(NOW)
            .args(["serve", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start brief serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            // Listening on every address: reach it over IPv4 loopback.
            Ok(addr) => match addr.rsplit_once(':') {
                Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
                _ => addr,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("brief serve did not start: {}", log.lock().unwrap());
            }
        };
        let server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if server
                .try_request("GET", "/healthz", &[], b"")
                .is_some_and(|r| r.status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "brief serve never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Server {
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Response> {
        let mut stream = TcpStream::connect(&self.addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: news.example.org\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method == "POST" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).ok()?;
        // The server may answer (413, 431) and close before reading all we send.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse_response(&raw)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then a bounded wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the stderr reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "brief serve did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    })
}
