//! brief's messages judged by the receiving side's own tools: SpamAssassin
//! (`spamassassin -t -L`) and a private rspamd instance on outbox messages of both
//! sample editions, and Chromium on the built HTML (headings, dark mode, contrast).
//! The tools are Debian packages scripts/test.sh installs; a missing one fails the
//! test, it is never skipped. docs/compose.md lists the rules that are test artefacts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EDITIONS: [&str; 2] = ["2026-11-20", "2026-12-04"];

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed for this test (scripts/test.sh installs it)"
    );
}

/// The sample newsletter with two readers, both editions sent to the outbox.
/// Returns the folder and one message per edition.
fn outbox() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = crate::harness::sample_folder(&EDITIONS, 2);
    let mut messages = Vec::new();
    for e in EDITIONS {
        let o = brief(dir.path(), &["send", "--edition", e]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let first = std::fs::read_dir(dir.path().join("outbox").join(e))
            .unwrap()
            .map(|f| f.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"))
            .expect("a message in the outbox");
        messages.push(first);
    }
    (dir, messages)
}

fn brief(dir: &Path, args: &[&str]) -> std::process::Output {
    crate::harness::brief_as_user(dir, args)
}

/// SpamAssassin's rules that say nothing about the message itself here: it was
/// never relayed (no Received header), and it is HTML (informational, 0 points).
const SPAMASSASSIN_ARTEFACTS: &[&str] = &["NO_RECEIVED", "NO_RELAYS", "HTML_MESSAGE"];

#[test]
fn spamassassin_fires_no_rule_that_is_briefs_fault() {
    need("spamassassin");
    let (_dir, messages) = outbox();
    for m in messages {
        let o = Command::new("spamassassin")
            .args(["-t", "-L"])
            .stdin(std::fs::File::open(&m).unwrap())
            .output()
            .expect("run spamassassin");
        let report = String::from_utf8_lossy(&o.stdout);
        let details = report
            .split("Content analysis details:")
            .nth(1)
            .unwrap_or_else(|| panic!("no SpamAssassin report for {}", m.display()));
        // Rule lines: "-0.0 NO_RECEIVED  Informational: …"
        let rules: Vec<&str> = details
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let score = w.next()?;
                score.parse::<f64>().ok()?;
                w.next()
            })
            .collect();
        assert!(rules.contains(&"NO_RECEIVED"), "{details}");
        let faults: Vec<&&str> = rules
            .iter()
            .filter(|r| !SPAMASSASSIN_ARTEFACTS.contains(r))
            .collect();
        assert!(faults.is_empty(), "{}: {faults:?}\n{details}", m.display());
    }
}

/// A private rspamd (its own config folder, ports and database), stopped on drop.
struct Rspamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Rspamd {
    fn start() -> Rspamd {
        let dir = tempfile::tempdir().unwrap();
        let port = |_| TcpListener::bind("127.0.0.1:0").unwrap();
        let listeners: Vec<TcpListener> = (0..3).map(port).collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let local = dir.path().join("local.d");
        std::fs::create_dir_all(&local).unwrap();
        for (worker, port) in ["normal", "controller", "proxy"].iter().zip(&ports) {
            std::fs::write(
                local.join(format!("worker-{worker}.inc")),
                format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
            )
            .unwrap();
        }
        std::fs::write(
            local.join("logging.inc"),
            "type = \"console\";\nlevel = \"error\";\n",
        )
        .unwrap();
        // No network: DNS lookups fail at once instead of waiting for the internet.
        std::fs::write(
            local.join("options.inc"),
            "dns { nameserver = [\"127.0.0.1:1\"]; timeout = 0.1s; retransmits = 1; }\n",
        )
        .unwrap();
        for sub in ["db", "run", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let var =
            |name: &str, sub: &str| format!("--var={name}={}", dir.path().join(sub).display());
        let child = Command::new("rspamd")
            .args([
                "-f",
                "-u",
                "root",
                "-g",
                "root",
                "-c",
                "/etc/rspamd/rspamd.conf",
            ])
            .arg(format!("--var=LOCAL_CONFDIR={}", dir.path().display()))
            .arg(var("DBDIR", "db"))
            .arg(var("RUNDIR", "run"))
            .arg(var("LOGDIR", "log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rspamd");
        let rspamd = Rspamd {
            child,
            port: ports[0],
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while std::net::TcpStream::connect(("127.0.0.1", rspamd.port)).is_err() {
            assert!(Instant::now() < deadline, "rspamd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        rspamd
    }

    /// The symbols rspamd gives `message`, with their scores.
    fn symbols(&self, message: &Path) -> Vec<(String, f64)> {
        let o = Command::new("rspamc")
            .arg("-h")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--ip", "192.0.2.25", "--helo", "mail.news.example.org"])
            .args(["--hostname", "mail.news.example.org", "symbols"])
            .stdin(std::fs::File::open(message).unwrap())
            .output()
            .expect("run rspamc");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Score:"), "rspamc: {out}");
        out.lines()
            .filter_map(|l| l.strip_prefix("Symbol: "))
            .filter_map(|l| {
                let (name, rest) = l.split_once(" (")?;
                let score = rest.split(')').next()?.parse().ok()?;
                Some((name.to_string(), score))
            })
            .collect()
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // SIGTERM, so the main process stops its workers too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// rspamd's symbols that say nothing about the message here: the preheader is hidden
/// on purpose, and the second sample edition's title is a question (the editor's
/// words, not brief's). Besides these, `HFILTER_*` judge the connecting host and its
/// HELO, made up here and without DNS (the test has no network).
const RSPAMD_ARTEFACTS: &[&str] = &["MANY_INVISIBLE_PARTS", "SUBJECT_ENDS_QUESTION"];

#[test]
fn rspamd_scores_nothing_that_is_briefs_fault() {
    need("rspamd");
    need("rspamc");
    let (_dir, messages) = outbox();
    let rspamd = Rspamd::start();
    for m in messages {
        let symbols = rspamd.symbols(&m);
        assert!(symbols.iter().any(|(s, _)| s == "MIME_GOOD"), "{symbols:?}");
        let faults: Vec<&(String, f64)> = symbols
            .iter()
            .filter(|(name, score)| {
                *score > 0.0
                    && !RSPAMD_ARTEFACTS.contains(&name.as_str())
                    && !name.starts_with("HFILTER_")
            })
            .collect();
        assert!(faults.is_empty(), "{}: {faults:?}", m.display());
    }
}

#[test]
fn chromium_renders_headings_and_a_readable_dark_mode() {
    need("chromium");
    let (dir, _) = outbox();
    // The first edition has a sponsor image and button, the second a text-only sponsor.
    for (edition, headings) in [
        (
            "2026-11-20",
            &[
                "The slow comeback of the night train",
                "The Roundup",
                "Look out for",
                "Read more",
            ][..],
        ),
        (
            "2026-12-04",
            &["Who pays for the grid?", "In brief", "Look out for"],
        ),
    ] {
        let o = brief(dir.path(), &["build", "--edition", edition]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("python3")
            .arg(crate::harness::support("cdp_dark_mode.py"))
            .arg(dir.path().join(format!("dist/{edition}/email.html")))
            .args(headings)
            .output()
            .expect("run python3");
        assert!(
            o.status.success(),
            "{edition}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
