//! Test harness for delivery: a newsletter folder in a temp dir, the real `brief`
//! binary, and real SMTP servers (Postfix's smtp-sink, a scripted aiosmtpd) on loopback
//! ports, killed when dropped. A missing server program fails the test with a message
//! saying how to install it; nothing is skipped silently.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "eb3vvfcRzTwsSQX0lDBD/2ttqac/WLCJvO4OCrFXDyQ=";
pub const NOW: &str = "2026-11-20T09:00:00Z";

/// A newsletter folder with `readers` subscribers (plus one bad row and one
/// duplicate) and two editors.
pub struct Newsletter {
    pub dir: tempfile::TempDir,
    pub readers: Vec<String>,
}

impl Newsletter {
    pub fn new(readers: usize, smtp_port: Option<u16>) -> Newsletter {
        Self::with_config(readers, smtp_port, "")
    }

    /// `delivery_extra` goes into `[delivery]`. Report mails to the editors are off
    /// unless it sets `report` (most tests count every message a server received).
    pub fn with_config(readers: usize, smtp_port: Option<u16>, delivery_extra: &str) -> Newsletter {
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
list_id = "test-brief.news.example.org"
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
        Newsletter { dir, readers: list }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Sets keys of `[smtp]` in brief.toml, each value as TOML text (e.g.
    /// `("tls", "\"starttls\"")`): a key the harness wrote (host, port, `tls = "none"`,
    /// timeout, hello_name) is replaced, any other is added.
    pub fn set_smtp(&self, keys: &[(&str, &str)]) {
        let path = self.root().join("brief.toml");
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

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brief"));
        c.current_dir(self.root())
            .args(args)
            .env("BRIEF_SECRET", SECRET)
            .env("BRIEF_NOW", NOW)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_at(args, NOW)
    }

    /// Runs brief with the clock set to `now`.
    pub fn run_at(&self, args: &[&str], now: &str) -> Output {
        let out = self
            .command(args)
            .env("BRIEF_NOW", now)
            .output()
            .expect("run brief");
        eprintln!(
            "$ brief {}\n{}{}-> {:?}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    /// `brief status --edition E --json [--test]` as JSON.
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

/// A server process, killed on drop; the messages it received are files in `dir`.
pub struct Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
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
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start smtp-sink");
        wait_for_port(port, &mut child);
        Server { port, dir, child }
    }

    /// The scripted aiosmtpd server (`tests/support/smtp_server.py`) with `rules`.
    pub fn aiosmtpd(rules: serde_json::Value) -> Server {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
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
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.path())
            .arg(rules.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.trim() == "READY" => {}
            other => panic!("aiosmtpd did not start: {other:?}"),
        }
        wait_for_port(port, &mut child);
        Server { port, dir, child }
    }

    /// Every message received so far: (recipient, raw message text).
    pub fn messages(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
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
                .map(|r| r.trim_end_matches('>').to_lowercase())
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
}

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let prefix = format!("{}:", name.to_lowercase());
    head.split("\r\n")
        .flat_map(|l| l.split('\n'))
        .find(|l| l.to_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}
