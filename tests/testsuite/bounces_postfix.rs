//! `brief bounces` closing the loop with a real Postfix: brief sends through a private
//! Postfix instance on loopback, which accepts every recipient and relays example.org
//! to a second listener of its own acting as the readers' MX (550 5.1.1 for one
//! address, 452 4.2.2 for another, with a queue lifetime of 0 so that one expires at
//! once). Postfix's own DSNs land in a Maildir for the return path; `brief bounces`
//! reads them, and the next edition skips exactly the suppressed reader.

use crate::harness::{code, free_port, stdout, Newsletter};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const POSTFIX_DAEMONS: &str = "/usr/lib/postfix/sbin";

struct Postfix {
    port: u16,
    /// The return path's Maildir (bounces@news.example.org).
    maildir: PathBuf,
    /// The editors' Maildir (editors@news.example.org), where their reports arrive.
    editors: PathBuf,
    _dir: tempfile::TempDir,
    /// `sh` holding the master process; it kills master when our end of its stdin
    /// closes, i.e. when the test binary exits.
    _keeper: Mutex<Child>,
}

/// The one Postfix of this test binary. Fails loudly when it cannot start.
fn postfix() -> &'static Postfix {
    static POSTFIX: OnceLock<Postfix> = OnceLock::new();
    POSTFIX.get_or_init(start_postfix)
}

fn start_postfix() -> Postfix {
    let master = Path::new(POSTFIX_DAEMONS).join("master");
    assert!(
        master.exists(),
        "{} is missing: install the Debian package `postfix` (scripts/test.sh does)",
        master.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let d = root.display();
    let (port, mx_port) = (free_port(), free_port());
    for sub in ["etc", "queue", "data", "mail"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    // The virtual delivery agent writes the Maildir as nobody; Postfix's daemons must
    // reach their files through the temp dir.
    chmod(root, 0o755);
    chown(&root.join("mail"), "nobody:nogroup");
    chown(&root.join("data"), "postfix");
    std::fs::write(
        root.join("etc/main.cf"),
        format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.news.example.org
mydomain = news.example.org
myorigin = news.example.org
mydestination =
relayhost =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access texthash:{d}/etc/refuse_rcpt, permit_mynetworks, reject
transport_maps = texthash:{d}/etc/transport
virtual_mailbox_domains = news.example.org
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# A message that cannot be delivered at the first try is returned at once.
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
recipient_delimiter = +
mx_restrictions = check_recipient_access texthash:{d}/etc/refuse, permit_mynetworks, reject
"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/transport"),
        format!("example.org relay:[127.0.0.1]:{mx_port}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/refuse"),
        "gone@example.org 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown\n\
         full@example.org 452 4.2.2 <full@example.org>: Mailbox full\n",
    )
    .unwrap();
    // A refusal at brief's own RCPT, recorded `bounced` at send time.
    std::fs::write(
        root.join("etc/refuse_rcpt"),
        "refused@example.org 550 5.1.1 <refused@example.org>: Recipient address rejected: User unknown\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/vmailbox"),
        "bounces@news.example.org bounces/\neditors@news.example.org editors/\n",
    )
    .unwrap();
    // The readers' "MX" is a second smtpd of the same instance, under another name (so
    // Postfix does not see a loop), that discards what it accepts.
    let services = [
        format!("127.0.0.1:{port} inet n - n - - smtpd"),
        format!(
            "127.0.0.1:{mx_port} inet n - n - - smtpd -o myhostname=mx.example.org \
             -o smtpd_recipient_restrictions=$mx_restrictions -o content_filter=discard:"
        ),
        "pickup unix n - n 60 1 pickup".into(),
        "cleanup unix n - n - 0 cleanup".into(),
        "qmgr unix n - n 300 1 qmgr".into(),
        "rewrite unix - - n - - trivial-rewrite".into(),
        "bounce unix - - n - 0 bounce".into(),
        "defer unix - - n - 0 bounce".into(),
        "trace unix - - n - 0 bounce".into(),
        "verify unix - - n - 1 verify".into(),
        "flush unix n - n 1000? 0 flush".into(),
        "proxymap unix - - n - - proxymap".into(),
        "smtp unix - - n - - smtp".into(),
        "relay unix - - n - - smtp".into(),
        "showq unix n - n - - showq".into(),
        "error unix - - n - - error".into(),
        "retry unix - - n - - error".into(),
        "discard unix - - n - - discard".into(),
        "virtual unix - n n - - virtual".into(),
        "anvil unix - - n - 1 anvil".into(),
        "scache unix - - n - 1 scache".into(),
    ];
    std::fs::write(root.join("etc/master.cf"), services.join("\n") + "\n").unwrap();
    // The queue's folders, owned as Postfix wants them (what `postfix start` would do;
    // `postfix -c` itself only accepts directories listed in the system's main.cf).
    let install = Command::new(Path::new(POSTFIX_DAEMONS).join("post-install"))
        .env("MAIL_CONFIG", root.join("etc"))
        .arg(format!("config_directory={d}/etc"))
        .arg("meta_directory=/etc/postfix")
        .arg(format!("daemon_directory={POSTFIX_DAEMONS}"))
        .arg("command_directory=/usr/sbin")
        .arg(format!("queue_directory={d}/queue"))
        .arg("create-missing")
        .output()
        .expect("run Postfix's post-install");
    assert!(
        install.status.success(),
        "Postfix's post-install failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let mut keeper = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -c {d}/etc -d & m=$!; cat >/dev/null; kill $m",
            master.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start Postfix's master");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = keeper.try_wait() {
            panic!("Postfix's master exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the private Postfix did not listen on {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keep the pipe open for the life of the binary: the keeper's `cat` waits on it.
    let _ = keeper.stdin.as_mut().unwrap().flush();
    Postfix {
        port,
        maildir: root.join("mail/bounces"),
        editors: root.join("mail/editors"),
        _dir: dir,
        _keeper: Mutex::new(keeper),
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, owner: &str) {
    let ok = Command::new("chown").arg(owner).arg(path).status().unwrap();
    assert!(ok.success(), "chown {owner} {} failed", path.display());
}

/// The files of a Maildir folder (`new` or `cur`).
fn messages(maildir: &Path, folder: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(maildir.join(folder))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn finding<'a>(lines: &'a [serde_json::Value], recipient: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["recipient"] == recipient)
        .unwrap_or_else(|| panic!("no finding for {recipient}: {lines:?}"))
}

#[test]
fn postfix_bounces_suppress_exactly_the_dead_reader() {
    let pf = postfix();
    let nl = Newsletter::generated_with(
        0,
        Some(pf.port),
        "return_path = \"bounces@news.example.org\"\nreport = true\nverp = true\n",
    );
    nl.write(
        "subscribers/readers.csv",
        "email,name,city\nok@example.org,Ok,A\ngone@example.org,Gone,B\nfull@example.org,Full,C\nrefused@example.org,Refused,D\n",
    );
    nl.write(
        "subscribers/editors.csv",
        "email,name\neditors@news.example.org,Desk\n",
    );
    let sent = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&sent), Some(0), "the send through Postfix failed");
    let status = nl.status(false);
    let n = |k| crate::harness::n(&status, k);
    assert_eq!((n("sent"), n("bounced")), (3, 1), "{status}");
    // The refusal at RCPT went through the policy at once, and the report says so.
    let list = nl.suppressions();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (
            &list[0]["address"],
            &list[0]["source"],
            &list[0]["edition"],
            &list[0]["status"]
        ),
        (
            &"refused@example.org".into(),
            &"bounce".into(),
            &"e1".into(),
            &"5.1.1".into()
        )
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&pf.editors, "new").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no report reached the editors within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = std::fs::read_to_string(&messages(&pf.editors, "new")[0]).unwrap();
    assert!(
        report.contains("Suppressed by bounces and complaints: 1"),
        "{report}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&pf.maildir, "new").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "Postfix returned {} DSN(s) within 60 s, expected 2",
            messages(&pf.maildir, "new").len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let maildir = pf.maildir.to_str().unwrap();
    // VERP: each DSN went back to bounces+TOKEN@, the token naming no address.
    for dsn in messages(&pf.maildir, "new") {
        let text = std::fs::read_to_string(&dsn).unwrap();
        let sender = text
            .lines()
            .find(|l| l.starts_with("X-Postfix-Sender:"))
            .unwrap_or_else(|| panic!("no X-Postfix-Sender in {text}"));
        assert!(sender.contains("bounces+"), "{sender}");
        assert!(
            !sender.contains("example.org=") && !sender.contains("gone"),
            "{sender}"
        );
    }

    // A dry run classifies and changes nothing.
    let dry = nl.run(&["bounces", "--from-maildir", maildir, "--dry-run", "--json"]);
    assert_eq!(code(&dry), Some(0));
    let lines = json_lines(&dry);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["applied"] == false));
    assert_eq!(messages(&pf.maildir, "new").len(), 2);
    assert_eq!(nl.suppressions(), list);

    let real = nl.run(&["bounces", "--from-maildir", maildir, "--json"]);
    assert_eq!(code(&real), Some(0));
    let lines = json_lines(&real);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "action",
                "applied",
                "diagnostic",
                "edition",
                "kind",
                "recipient",
                "source",
                "status"
            ],
            "{l}"
        );
    }
    let gone = finding(&lines, "gone@example.org");
    assert_eq!(
        (
            &gone["kind"],
            &gone["status"],
            &gone["edition"],
            &gone["applied"]
        ),
        (&"hard".into(), &"5.1.1".into(), &"e1".into(), &true.into()),
        "{gone}"
    );
    assert!(gone["diagnostic"]
        .as_str()
        .unwrap()
        .contains("User unknown"));
    let full = finding(&lines, "full@example.org");
    assert_eq!(
        (&full["kind"], &full["status"], &full["applied"]),
        (&"soft".into(), &"4.2.2".into(), &true.into()),
        "{full}"
    );
    assert!(messages(&pf.maildir, "new").is_empty());
    assert_eq!(messages(&pf.maildir, "cur").len(), 2);

    // One soft bounce is below `soft = 3`: only the hard one is suppressed.
    let list = nl.suppressions();
    assert_eq!(list.len(), 2, "{list:?}");
    let s = list
        .iter()
        .find(|s| s["address"] == "gone@example.org")
        .unwrap();
    assert_eq!(s["address"], "gone@example.org");
    assert_eq!(s["source"], "bounce");
    assert_eq!(s["edition"], "e1");
    assert_eq!(s["status"], "5.1.1");
    assert!(s["diagnostic"].as_str().unwrap().contains("User unknown"));

    let status = nl.status(false);
    let n = |k| crate::harness::n(&status, k);
    assert_eq!(
        (
            n("sent"),
            n("bounced"),
            n("bounced_async"),
            n("complained"),
            n("suppressed_by_bounces")
        ),
        (3, 1, 2, 0, 2),
        "{status}"
    );

    // The same messages put back into new/: nothing changes, nothing counts twice.
    for path in messages(&pf.maildir, "cur") {
        let name = path.file_name().unwrap().to_string_lossy();
        let bare = name.split(":2,").next().unwrap().to_string();
        std::fs::rename(&path, pf.maildir.join("new").join(bare)).unwrap();
    }
    let again = nl.run(&["bounces", "--from-maildir", maildir, "--json"]);
    assert_eq!(code(&again), Some(0));
    let lines = json_lines(&again);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["applied"] == false), "{lines:?}");
    assert_eq!(nl.suppressions(), list);
    assert_eq!(crate::harness::n(&nl.status(false), "bounced_async"), 2);

    // The next edition skips exactly the suppressed reader.
    nl.write(
        "editions/e2.md",
        "+++\ntitle = \"Sleeper cars\"\ndate = 2026-11-27\n+++\n\nThe sleeper cars are new.\n",
    );
    let next = nl.run_at("2026-11-27T09:00:00Z", &["send", "--edition", "e2"]);
    assert_eq!(code(&next), Some(0));
    let mut skipped = nl.recipients_of("e2", "suppressed");
    skipped.sort();
    assert_eq!(skipped, ["gone@example.org", "refused@example.org"]);
    let mut delivered = nl.recipients_of("e2", "sent");
    delivered.sort();
    assert_eq!(delivered, ["full@example.org", "ok@example.org"]);

    // resubscribe lifts the suppression and its reason.
    let back = nl.run(&["resubscribe", "gone@example.org"]);
    assert_eq!(code(&back), Some(0));
    let left = nl.suppressions();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["address"], "refused@example.org");
}

/// Postfix's DSNs for another newsletter's sends (tests/fixtures/bounces/postfix), read
/// from an mbox by a newsletter that never sent to those addresses: every message is
/// classified and printed, none is applied, nothing is suppressed, the exit code is 0.
#[test]
fn bounces_for_sends_never_made_are_printed_and_never_applied() {
    let nl = Newsletter::generated(0, None);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces/postfix");
    let mut mbox = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        mbox.extend_from_slice(b"From MAILER-DAEMON Tue Dec  1 07:46:38 2026\n");
        let text = std::fs::read(file).unwrap();
        mbox.extend_from_slice(&text);
        if !text.ends_with(b"\n") {
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
    }
    std::fs::write(nl.path("bounces.mbox"), &mbox).unwrap();
    let out = nl.run(&["bounces", "--from-mbox", "bounces.mbox", "--json"]);
    assert_eq!(code(&out), Some(0));
    let lines = json_lines(&out);
    let mut sources: Vec<String> = lines
        .iter()
        .map(|l| l["source"].as_str().unwrap().to_string())
        .collect();
    sources.dedup();
    let expected: Vec<String> = (1..=files.len())
        .map(|i| format!("bounces.mbox#{i}"))
        .collect();
    assert_eq!(sources, expected, "every message yields at least one line");
    for l in &lines {
        assert_eq!(l["applied"], false, "{l}");
        assert!(l["edition"].is_null(), "{l}");
        if matches!(l["kind"].as_str(), Some("hard" | "soft")) {
            assert!(l["status"].is_string(), "{l}");
        }
    }
    assert!(lines.iter().any(|l| l["kind"] == "hard"));
    assert!(nl.suppressions().is_empty());
    let human = nl.run(&["bounces", "--from-mbox", "bounces.mbox"]);
    assert_eq!(code(&human), Some(0));
    assert!(stdout(&human).contains(&format!("{} message(s)", files.len())));
}
