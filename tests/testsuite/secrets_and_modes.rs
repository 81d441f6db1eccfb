//! Weak secrets never sign mail sent over SMTP (smtp-sink receives nothing), `brief
//! check` names them, the outbox transport still runs on them; and the files a send
//! writes (state database, outbox messages) are private whatever the umask.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const WEAK: [&str; 3] = [
    "aaaaaaaaaaaaaaaa",
    "                ",
    "brief-development-secret-not-for-real-mail",
];

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn smtp_sends_refuse_weak_secrets() {
    let sink = Server::smtp_sink(&[]);
    let n = Newsletter::generated(3, Some(sink.port));
    for weak in WEAK {
        let out = n
            .command(&["send", "--edition", "e1"])
            .env("BRIEF_SECRET", weak)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), Some(1), "{weak:?}: {stderr}");
        assert!(stderr.contains("$BRIEF_SECRET"), "{stderr}");
        assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");

        let check = n
            .command(&["check"])
            .env("BRIEF_SECRET", weak)
            .output()
            .unwrap();
        let report = stdout(&check);
        assert_eq!(code(&check), Some(1), "{report}");
        assert!(
            report.contains("brief.toml:") && report.contains("the secret in $BRIEF_SECRET"),
            "{report}"
        );
    }
    assert!(
        files_under(sink.dir()).is_empty(),
        "a message signed with a weak secret reached the relay"
    );
    // A strong one sends.
    let out = n.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
}

#[test]
fn the_outbox_transport_runs_on_a_weak_secret_and_writes_private_files() {
    let n = Newsletter::generated(3, None);
    let out = Command::new("sh")
        .current_dir(n.root())
        .args(["-c", "umask 022; exec \"$0\" send --edition e1"])
        .arg(env!("CARGO_BIN_EXE_brief"))
        .env("BRIEF_SECRET", WEAK[0])
        .env("BRIEF_NOW", NOW)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), Some(0), "{stderr}");
    assert!(stderr.contains("too easy to guess"), "{stderr}");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut emls = 0;
    for dir in ["state", "outbox"] {
        let top = n.root().join(dir);
        assert_eq!(mode(&top), 0o700, "{dir}/");
        for path in files_under(&top) {
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".eml") || name.starts_with("brief.db") {
                emls += usize::from(name.ends_with(".eml"));
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
    assert_eq!(emls, 3, "one message per reader in the outbox");
}
