//! The one test harness: a `Newsletter` folder in a temp dir (the sample copy, a
//! generated list, or a custom config), the real `brief` binary run on it with the
//! secret and the clock set, and real servers (Postfix's smtp-sink, a scripted aiosmtpd,
//! `brief serve`) on loopback ports, killed when dropped. A missing server program fails
//! the test with a message saying how to install it; nothing is skipped silently.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Random, as `openssl rand -base64 32` makes them: brief refuses secrets easy to guess.
pub const SECRET: &str = "eb3vvfcRzTwsSQX0lDBD/2ttqac/WLCJvO4OCrFXDyQ=";
/// The retired secret a config may still accept (`previous_secret_env`).
pub const OLD_SECRET: &str = "WYf6mS1hN5Cobvpea+gxjrM16tJ9sM3KZAKADriht3I=";
/// The clock of a generated newsletter: the day of its edition `e1`.
pub const NOW: &str = "2026-11-20T09:00:00Z";
/// The clock of the sample copy: after its 2026-11-20 edition.
const SAMPLE_NOW: &str = "2026-11-25T00:00:00Z";
/// The clock of a custom config, years after any edition it names.
const CUSTOM_NOW: &str = "2030-01-02T03:04:05Z";
/// The list id of a generated newsletter (its tokens are bound to it).
pub const LIST_ID: &str = "test-brief.news.example.org";
/// The list id of a custom config.
pub const CUSTOM_LIST_ID: &str = "the-brief.news.example.org";
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A newsletter folder in a temp dir, and the clock its commands run at.
pub struct Newsletter {
    pub dir: tempfile::TempDir,
    /// The subscribers of a generated list, in file order (empty otherwise).
    pub readers: Vec<String>,
    now: &'static str,
    list_id: &'static str,
}

impl Newsletter {
    /// A copy of the sample newsletter at the repository root (brief.toml, editions,
    /// templates, subscribers).
    pub fn sample() -> Newsletter {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(root.join("brief.toml"), dir.path().join("brief.toml"))
            .expect("copy brief.toml");
        for folder in ["editions", "templates", "subscribers"] {
            copy_dir(&root.join(folder), &dir.path().join(folder));
        }
        Newsletter {
            dir,
            readers: Vec::new(),
            now: SAMPLE_NOW,
            // As in the repository's brief.toml.
            list_id: "harbour-brief.news.example.org",
        }
    }

    /// A generated newsletter: edition `e1`, `readers` subscribers (plus one bad row and
    /// one duplicate) and two editors; delivery over SMTP to `smtp_port`, or to the
    /// outbox without one.
    pub fn generated(readers: usize, smtp_port: Option<u16>) -> Newsletter {
        Self::generated_with(readers, smtp_port, "")
    }

    /// `delivery_extra` goes into `[delivery]`. Report mails to the editors are off
    /// unless it sets `report` (most tests count every message a server received).
    pub fn generated_with(
        readers: usize,
        smtp_port: Option<u16>,
        delivery_extra: &str,
    ) -> Newsletter {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let reports_off = if delivery_extra.contains("report =") {
            String::new()
        } else {
            "report = false\n".to_string()
        };
        let delivery_extra = format!("{reports_off}{delivery_extra}");
        let transport = match smtp_port {
            Some(port) => format!(
                "transport = \"smtp\"\n{delivery_extra}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout = \"5s\"\nhello_name = \"brief.test\"\n"
            ),
            None => format!("transport = \"outbox\"\n{delivery_extra}\n"),
        };
        std::fs::write(
            root.join("brief.toml"),
            format!(
                r#"[newsletter]
name = "The Test Brief"
from = "The Test Brief <brief@news.example.org>"
list_id = "{LIST_ID}"
base_url = "https://news.example.org/brief"
postal_address = "1 Example Street, Brussels"

[delivery]
{transport}
[unsubscribe]
mailto = "unsubscribe@news.example.org"
"#
            ),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("editions")).unwrap();
        std::fs::write(
            root.join("editions/e1.md"),
            "+++\ntitle = \"Night trains are back\"\ndate = 2026-11-20\n+++\n\nNight trains are back on the map.\n\n.A line that starts with a dot.\n\nThe essay goes on for a while.\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("subscribers")).unwrap();
        let mut csv = String::from("email,name,city\n");
        let mut list = Vec::new();
        for i in 0..readers {
            let email = format!("reader{i:04}@example.org");
            csv.push_str(&format!("{email},Reader {i},City {i}\n"));
            list.push(email);
            if i == 1 {
                csv.push_str("not-an-address,Bad Row,Nowhere\n");
                csv.push_str(&format!("READER{i:04}@EXAMPLE.ORG,Duplicate,Nowhere\n"));
            }
        }
        std::fs::write(root.join("subscribers/readers.csv"), csv).unwrap();
        std::fs::write(
            root.join("subscribers/editors.csv"),
            "email,name\nedith@example.org,Edith Editor\nezra@example.org,Ezra Editor\n",
        )
        .unwrap();
        Newsletter {
            dir,
            readers: list,
            now: NOW,
            list_id: LIST_ID,
        }
    }

    /// A folder with only a brief.toml, whose `[unsubscribe]` has `unsubscribe_extra`
    /// (the per-client rate limit is off unless it sets `client_rate`).
    pub fn custom(unsubscribe_extra: &str) -> Newsletter {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "[newsletter]\nname = \"The Brief\"\nfrom = \"The Brief <brief@news.example.org>\"\n\
             list_id = \"{CUSTOM_LIST_ID}\"\nbase_url = \"https://news.example.org/brief\"\n\
             postal_address = \"1 Example Street\"\n\n[unsubscribe]\n\
             mailto = \"unsubscribe@news.example.org\"\n{}\n",
            if unsubscribe_extra.contains("client_rate") {
                unsubscribe_extra.to_string()
            } else {
                format!("client_rate = 0\n{unsubscribe_extra}")
            }
        );
        std::fs::write(dir.path().join("brief.toml"), config).expect("write brief.toml");
        Newsletter {
            dir,
            readers: Vec::new(),
            now: CUSTOM_NOW,
            list_id: CUSTOM_LIST_ID,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    /// Sets keys of `[smtp]` in brief.toml, each value as TOML text (e.g.
    /// `("tls", "\"starttls\"")`): a key the harness wrote (host, port, `tls = "none"`,
    /// timeout, hello_name) is replaced, any other is added.
    pub fn set_smtp(&self, keys: &[(&str, &str)]) {
        let path = self.path("brief.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = Vec::new();
        let mut pending: Vec<(&str, &str)> = keys.to_vec();
        let mut in_smtp = false;
        for line in text.lines() {
            if line.starts_with('[') {
                if in_smtp {
                    out.extend(pending.drain(..).map(|(k, v)| format!("{k} = {v}")));
                }
                in_smtp = line == "[smtp]";
            }
            let key = line.split('=').next().unwrap_or("").trim();
            match pending.iter().position(|(k, _)| in_smtp && *k == key) {
                Some(i) => {
                    let (k, v) = pending.remove(i);
                    out.push(format!("{k} = {v}"));
                }
                None => out.push(line.to_string()),
            }
        }
        assert!(
            pending.is_empty(),
            "brief.toml has no [smtp] section before another one: {pending:?}"
        );
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
    }

    /// An unsubscribe token as brief issues it with [`SECRET`] for this newsletter.
    pub fn token(&self, email: &str, edition: &str, test: bool) -> String {
        brief::token::Keyring::new(SECRET.as_bytes(), self.list_id).issue(email, edition, test)
    }

    /// The one command builder: `brief ARGS` in the folder, with the secrets and the
    /// clock (`BRIEF_NOW`) set and no inherited log filter or stdin.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(self.now, args)
    }

    /// [`Newsletter::command`] with the clock set to `now`.
    pub fn command_at(&self, now: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brief"));
        c.current_dir(self.root())
            .args(args)
            .env("BRIEF_SECRET", SECRET)
            .env("BRIEF_OLD_SECRET", OLD_SECRET)
            .env("BRIEF_NOW", now)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_at(self.now, args)
    }

    /// Runs brief with the clock set to `now`; its output goes to the test's log.
    pub fn run_at(&self, now: &str, args: &[&str]) -> Output {
        let out = self.command_at(now, args).output().expect("run brief");
        eprintln!(
            "$ brief {}\n{}{}-> {:?}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    /// `brief status --edition e1 --json [--test]` as JSON.
    pub fn status(&self, test: bool) -> serde_json::Value {
        let mut args = vec!["status", "--edition", "e1", "--json"];
        if test {
            args.push("--test");
        }
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0));
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    pub fn recipients(&self, state: &str) -> Vec<String> {
        self.recipients_of("e1", state)
    }

    /// The addresses of one edition in one state (`brief status --recipients`).
    pub fn recipients_of(&self, slug: &str, state: &str) -> Vec<String> {
        let out = self.run(&["status", "--edition", slug, "--recipients", state]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    }

    /// `brief suppressions --json`, parsed.
    pub fn suppressions(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["suppressions", "--json"]);
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
    /// /healthz answers; a server on every address is reached over IPv4 loopback.
    pub fn serve_on(&self, listen: &str) -> Server {
        self.serve_on_at(listen, self.now)
    }

    /// [`Newsletter::serve`] with the server's clock set to `now`.
    pub fn serve_at(&self, now: &str) -> Server {
        self.serve_on_at("127.0.0.1:0", now)
    }

    fn serve_on_at(&self, listen: &str, now: &str) -> Server {
        let mut child = self
            .command_at(now, &["serve", "--listen", listen])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start brief serve");
        let (log, lines) = capture(child.stderr.take().expect("stderr"));
        let addr = lines.iter().find_map(|line| {
            let rest = line.split("listening on http://").nth(1)?;
            let addr = rest.split('/').next().unwrap_or("");
            Some(match addr.rsplit_once(':') {
                Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
                _ => addr.to_string(),
            })
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brief serve did not start: {}", log.lock().unwrap());
        };
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let server = Server {
            child,
            port,
            addr,
            mail: None,
            log,
        };
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Every file under `dir`, as (path relative to dir with `/`, absolute path).
pub fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}

pub fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A path under tests/testsuite/support/ (the Python helpers).
pub fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testsuite/support")
        .join(file)
}

/// Collects a server's stderr into a shared log, and hands its lines out until the
/// first one the caller waits for: an iterator that ends at EOF or after 30 s.
fn capture(stderr: ChildStderr) -> (Arc<Mutex<String>>, Lines) {
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    (log, Lines(rx))
}

struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn iter(&self) -> impl Iterator<Item = String> + '_ {
        let deadline = Instant::now() + Duration::from_secs(30);
        std::iter::from_fn(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            self.0.recv_timeout(left).ok()
        })
    }
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the test SMTP server exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the test SMTP server did not listen on {port} within 10 s");
}

/// A server process on a loopback port, killed on drop: an SMTP server keeping the
/// messages it received as files, or `brief serve` answering HTTP.
pub struct Server {
    child: Child,
    pub port: u16,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Where an SMTP server writes each message it received.
    mail: Option<tempfile::TempDir>,
    /// What the server wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

impl Server {
    /// Postfix's smtp-sink with extra fault flags (e.g. `["-q", "."]`), dumping each
    /// message to a file.
    pub fn smtp_sink(flags: &[&str]) -> Server {
        Self::smtp_sink_on(free_port(), flags)
    }

    pub fn smtp_sink_on(port: u16, flags: &[&str]) -> Server {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install the Debian package `postfix` (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(SMTP_SINK);
        if is_root() {
            // smtp-sink refuses to run as root; as nobody it must be able to write the dumps.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(flags)
            .arg("-d")
            .arg(format!("{}/%M.", dir.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start smtp-sink");
        let (log, _) = capture(child.stderr.take().expect("stderr"));
        wait_for_port(port, &mut child);
        Server::smtp(child, port, dir, log)
    }

    /// The scripted aiosmtpd server (`support/smtp_server.py`) with `rules`.
    pub fn aiosmtpd(rules: serde_json::Value) -> Server {
        let check = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output();
        assert!(
            check.map(|o| o.status.success()).unwrap_or(false),
            "python3 with aiosmtpd is missing: install the Debian package python3-aiosmtpd (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(support("smtp_server.py"))
            .arg(port.to_string())
            .arg(dir.path())
            .arg(rules.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aiosmtpd");
        let (log, _) = capture(child.stderr.take().expect("stderr"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.trim() == "READY" => {}
            other => panic!("aiosmtpd did not start: {other:?}\n{}", log.lock().unwrap()),
        }
        wait_for_port(port, &mut child);
        Server::smtp(child, port, dir, log)
    }

    fn smtp(child: Child, port: u16, mail: tempfile::TempDir, log: Arc<Mutex<String>>) -> Server {
        Server {
            child,
            port,
            addr: format!("127.0.0.1:{port}"),
            mail: Some(mail),
            log,
        }
    }

    /// The folder an SMTP server writes the messages it received to.
    pub fn dir(&self) -> &Path {
        self.mail
            .as_ref()
            .expect("only an SMTP server keeps the messages it received")
            .path()
    }

    /// Every message received so far: (recipient, raw message text).
    pub fn messages(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect();
        paths.sort();
        for p in paths {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            let rcpt = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("X-Rcpt-Args: <")
                        .or_else(|| l.strip_prefix("X-Rcpt: "))
                })
                // smtp-sink's line also holds the RCPT parameters (NOTIFY=…).
                .map(|r| r.split('>').next().unwrap_or(r).to_lowercase())
                .unwrap_or_default();
            out.push((rcpt, text));
        }
        out
    }

    /// Messages received per recipient.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (r, _) in self.messages() {
            *m.entry(r).or_insert(0) += 1;
        }
        m
    }

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

    /// One HTTP/1.1 request over a fresh connection, `None` if there is no answer.
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
                "the server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }
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

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    // Unfolded, whether the server stored CRLF or LF line ends.
    let head = head
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    let prefix = format!("{}:", name.to_lowercase());
    head.split("\r\n")
        .flat_map(|l| l.split('\n'))
        .find(|l| l.to_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// A temp copy of the sample newsletter as a user has it: brief.toml, the named
/// editions (every one when `editions` is empty), the editors list and the first
/// `readers` rows of the readers list; no templates (the built-in ones are used).
pub fn sample_folder(editions: &[&str], readers: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("brief.toml"), dir.path().join("brief.toml")).unwrap();
    for sub in ["editions", "subscribers"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for entry in std::fs::read_dir(root.join("editions")).unwrap() {
        let path = entry.unwrap().path();
        let slug = path.file_stem().unwrap().to_string_lossy().into_owned();
        if editions.is_empty() || editions.contains(&slug.as_str()) {
            std::fs::copy(
                &path,
                dir.path().join("editions").join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }
    std::fs::copy(
        root.join("subscribers/editors.csv"),
        dir.path().join("subscribers/editors.csv"),
    )
    .unwrap();
    let list = std::fs::read_to_string(root.join("subscribers/readers.csv")).unwrap();
    let head: String = list
        .lines()
        .take(readers + 1)
        .flat_map(|l| [l, "\n"])
        .collect();
    std::fs::write(dir.path().join("subscribers/readers.csv"), head).unwrap();
    dir
}

/// brief as a user runs it in `dir`: no secret and no clock override (unlike
/// [`Newsletter::command`]), so output carries no test setting.
pub fn brief_as_user(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brief"))
        .args(args)
        .current_dir(dir)
        .env_remove("BRIEF_SECRET")
        .output()
        .expect("run brief")
}

/// A private PostgreSQL cluster (initdb in a temp dir, on a free loopback port, its
/// socket in the temp dir; as `nobody` when the tests run as root), never a system
/// service. [`postgres`] is the one cluster of the test binary; a test that stops the
/// server starts its own with [`Postgres::start`]. Fails loudly when it cannot start.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// `sh` holding the server; it stops the server when our end of its stdin closes
    /// (`stop`, or the test binary exiting).
    keeper: Mutex<Option<Child>>,
    databases: std::sync::atomic::AtomicUsize,
    /// Extra `-c name=value` settings of the server (TLS).
    settings: String,
}

/// The one PostgreSQL cluster of this test binary.
pub fn postgres() -> &'static Postgres {
    static POSTGRES: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
    POSTGRES.get_or_init(Postgres::start)
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// A cluster that serves TLS with the certificate `cert` and its `key` (PEM), and
    /// refuses TCP connections in clear (psql and createdb use TLS when offered).
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str()?.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("PostgreSQL is missing (no /usr/lib/postgresql/*/bin/initdb): install the Debian package `postgresql` (scripts/test.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["data", "sock", "tls"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        let mut settings = String::new();
        if let Some((cert, key)) = tls {
            // The server reads its key only when its owner alone can.
            let (c, k) = (root.join("tls/server.pem"), root.join("tls/server.key"));
            std::fs::copy(cert, &c).unwrap();
            std::fs::copy(key, &k).unwrap();
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
            settings = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                c.display(),
                k.display()
            );
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("data"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(root.join("data"))
                .arg(root.join("sock"))
                .arg(root.join("tls"))
                .status()
                .unwrap();
            assert!(ok.success(), "chown of the PostgreSQL data dir failed");
        }
        let pg = Postgres {
            port: free_port(),
            bin,
            keeper: Mutex::new(None),
            databases: std::sync::atomic::AtomicUsize::new(0),
            settings,
            dir,
        };
        let init = pg
            .as_owner(&pg.bin.join("initdb"))
            .arg("-D")
            .arg(pg.dir.path().join("data"))
            .args([
                "-U",
                "brief",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        if tls.is_some() {
            // TCP only over TLS: a client that got in did so encrypted.
            std::fs::write(
                pg.dir.path().join("data/pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
        }
        pg.run();
        pg
    }

    /// A PostgreSQL program as the cluster's owner.
    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts the server (again) and waits until it answers.
    pub fn run(&self) {
        let root = self.dir.path();
        let mut line = format!(
            "{} -D {} -p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200{}",
            self.bin.join("postgres").display(),
            root.join("data").display(),
            self.port,
            root.join("sock").display(),
            self.settings
        );
        if is_root() {
            line = format!("setpriv --reuid=nobody --regid=nogroup --clear-groups {line}");
        }
        let keeper = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{line} 2>>{log} & m=$!; cat >/dev/null; kill -INT $m; wait $m",
                log = root.join("server.log").display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start postgres");
        *self.keeper.lock().unwrap() = Some(keeper);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "brief",
                ])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 30 s: {}",
                std::fs::read_to_string(root.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it.
    pub fn stop(&self) {
        if let Some(mut keeper) = self.keeper.lock().unwrap().take() {
            drop(keeper.stdin.take());
            let _ = keeper.wait();
        }
    }

    /// A new empty database; its URL.
    pub fn database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "brief",
                &name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://brief@127.0.0.1:{}/{database}", self.port)
    }

    /// A psql session on the database of `url` that runs `sql` and stays open (its
    /// transaction too) until the returned child's stdin is written to or closed;
    /// returns once psql printed `ready` (so `sql` has run).
    pub fn session(&self, url: &str, sql: &str) -> Child {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run psql");
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}\n\\echo ready").unwrap();
        stdin.flush().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "ready" {
            line.clear();
            let read = out.read_line(&mut line).unwrap();
            assert!(read > 0, "psql ended before running {sql}");
        }
        child
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL with psql on the database of `url`; its output (unaligned, no headers).
    pub fn sql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
