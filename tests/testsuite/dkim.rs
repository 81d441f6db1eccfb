//! DKIM signing end to end: the real binary signs its outbox and SMTP messages, and
//! dkimpy (not brief's code) verifies them against a key made by openssl.

use crate::harness::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const QNAME: &str = "brief._domainkey.news.example.org";

/// A key written by openssl into `<root>/keys/brief.pem`, and its public half (DER).
struct Key {
    kind: &'static str,
    public_der: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed for the DKIM tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `form` is "pkcs1" (RSA), "pkcs8" (RSA) or "ed25519".
fn make_key(root: &Path, form: &str) -> Key {
    std::fs::create_dir_all(root.join("keys")).unwrap();
    let pem = root.join("keys/brief.pem");
    let pem_s = pem.to_str().unwrap();
    match form {
        "pkcs1" => openssl(&["genrsa", "-traditional", "-out", pem_s, "2048"]),
        "pkcs8" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem_s,
        ]),
        _ => openssl(&["genpkey", "-algorithm", "ed25519", "-out", pem_s]),
    }
    let head = std::fs::read_to_string(&pem).unwrap();
    let label = match form {
        "pkcs1" => "-----BEGIN RSA PRIVATE KEY-----",
        _ => "-----BEGIN PRIVATE KEY-----",
    };
    assert!(head.starts_with(label), "openssl wrote {head}");
    let public_der = root.join("keys/public.der");
    openssl(&[
        "pkey",
        "-in",
        pem_s,
        "-pubout",
        "-outform",
        "DER",
        "-out",
        public_der.to_str().unwrap(),
    ]);
    Key {
        kind: if form == "ed25519" { "ed25519" } else { "rsa" },
        public_der,
    }
}

/// A newsletter (outbox, or SMTP on `port`) with `[dkim]` and a few readers, one with
/// a long non-ASCII name (an RFC 2047, folded To header).
fn newsletter(port: Option<u16>) -> Newsletter {
    let nl = Newsletter::generated(3, port);
    let config = nl.root().join("brief.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "\n[dkim]\ndomain = \"news.example.org\"\nselector = \"brief\"\nkey_file = \"keys/brief.pem\"\n",
    );
    std::fs::write(&config, toml).unwrap();
    std::fs::write(
        nl.root().join("subscribers/readers.csv"),
        "email,name,city\n\
         zoe@example.org,\"Zoë Ångström-Lindqvist, Directrice générale de la société\",Gdańsk\n\
         ann@example.org,Ann,Gent\n\
         bob@example.org,,Brussels\n",
    )
    .unwrap();
    nl
}

/// dkimpy's verdict on each message file.
fn verify(key: &Key, messages: &[PathBuf]) -> Vec<bool> {
    let check = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .output();
    assert!(
        check.map(|o| o.status.success()).unwrap_or(false),
        "python3 with dkimpy is missing: `python3 -m pip install 'dkimpy[ed25519]'` (scripts/test.sh does)"
    );
    let script = support("dkim_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .args([QNAME, key.kind, key.public_der.to_str().unwrap()])
        .args(messages)
        .output()
        .expect("run dkim_verify.py");
    assert!(
        out.status.success(),
        "dkim_verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The signature sent the verifier to our selector and domain.
    assert!(
        v["asked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.as_str().unwrap().trim_end_matches('.') == QNAME),
        "{v}"
    );
    messages
        .iter()
        .map(|m| v["results"][m.to_str().unwrap()].as_bool().unwrap())
        .collect()
}

fn outbox_messages(nl: &Newsletter) -> Vec<PathBuf> {
    let dir = nl.root().join("outbox/e1");
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

fn signature_of(msg: &str) -> String {
    assert!(
        msg.starts_with("DKIM-Signature: "),
        "the signature is the first header:\n{msg}"
    );
    header(msg, "DKIM-Signature").unwrap()
}

/// Sends to the outbox with a `form` key; checks every message verifies and that a
/// changed body or header does not. Returns the signature of one message.
fn outbox_send_verifies(form: &str) -> String {
    let nl = newsletter(None);
    let key = make_key(nl.root(), form);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let messages = outbox_messages(&nl);
    assert_eq!(messages.len(), 3);
    assert_eq!(verify(&key, &messages), [true, true, true]);

    let texts: Vec<String> = messages
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let zoe = texts
        .iter()
        .find(|t| header(t, "To").unwrap().contains("zoe@example.org"))
        .expect("Zoë's message");
    // Her name is RFC 2047-encoded and the To header is folded.
    let to_raw = zoe
        .split("\r\nTo: ")
        .nth(1)
        .unwrap()
        .split("\r\nList-Unsubscribe:")
        .next()
        .unwrap();
    assert!(to_raw.contains("=?utf-8?"), "{to_raw}");
    assert!(to_raw.contains("\r\n "), "To is folded: {to_raw}");
    let signature_lines = zoe
        .split("\r\n")
        .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with(' '));
    assert!(signature_lines.clone().count() > 1);
    for line in signature_lines {
        assert!(line.len() <= 78, "{line:?}");
    }

    // A changed body, or a changed signed header, fails verification.
    let dir = tempfile::tempdir().unwrap();
    let body_at = zoe.find("\r\n\r\n").unwrap();
    let (head, body) = zoe.split_at(body_at);
    assert!(body.contains("Night trains"), "{body}");
    let tampered_body = dir.path().join("body.eml");
    std::fs::write(
        &tampered_body,
        format!("{head}{}", body.replacen("Night trains", "Night planes", 1)),
    )
    .unwrap();
    let tampered_subject = dir.path().join("subject.eml");
    std::fs::write(
        &tampered_subject,
        zoe.replacen(
            "Subject: Night trains are back",
            "Subject: Night trains are gone",
            1,
        ),
    )
    .unwrap();
    assert_ne!(std::fs::read_to_string(&tampered_subject).unwrap(), *zoe);
    // An unsigned header may be added: still valid.
    let added = dir.path().join("added.eml");
    std::fs::write(&added, format!("Received: from relay by mx\r\n{zoe}")).unwrap();
    assert_eq!(
        verify(&key, &[tampered_body, tampered_subject, added]),
        [false, false, true]
    );
    signature_of(zoe)
}

#[test]
fn rsa_pkcs1_key_signs_outbox_messages_that_dkimpy_verifies() {
    let sig = outbox_send_verifies("pkcs1");
    assert!(sig.contains("a=rsa-sha256;"), "{sig}");
    assert!(sig.contains("c=relaxed/relaxed;"), "{sig}");
    assert!(sig.contains("d=news.example.org;"), "{sig}");
    assert!(sig.contains("s=brief;"), "{sig}");
    let h: String = sig
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        h,
        "from:to:subject:date:message-id:list-id:list-unsubscribe:list-unsubscribe-post"
    );
    // t= is brief's clock (BRIEF_NOW).
    let t = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp();
    assert!(sig.contains(&format!("t={t};")), "{sig}");
}

#[test]
fn rsa_pkcs8_key_signs_outbox_messages_that_dkimpy_verifies() {
    let sig = outbox_send_verifies("pkcs8");
    assert!(sig.contains("a=rsa-sha256;"), "{sig}");
}

#[test]
fn ed25519_key_signs_outbox_messages_that_dkimpy_verifies() {
    let sig = outbox_send_verifies("ed25519");
    assert!(sig.contains("a=ed25519-sha256;"), "{sig}");
}

#[test]
fn smtp_messages_are_signed() {
    let server = Server::aiosmtpd(json!({}));
    let nl = newsletter(Some(server.port));
    let key = make_key(nl.root(), "ed25519");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let mut files: Vec<PathBuf> = std::fs::read_dir(server.dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // The server's own X-Rcpt line, then ours.
        let ours = text.split_once("\r\n").unwrap().1;
        signature_of(ours);
    }
    assert_eq!(verify(&key, &files), [true, true, true]);
}

#[test]
fn report_mails_to_the_editors_are_signed() {
    let nl = Newsletter::generated_with(2, None, "report = true\n");
    let config = nl.root().join("brief.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "\n[dkim]\ndomain = \"news.example.org\"\nselector = \"brief\"\nkey_file = \"keys/brief.pem\"\n",
    );
    std::fs::write(&config, toml).unwrap();
    let key = make_key(nl.root(), "pkcs8");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let dir = nl.root().join("outbox/reports");
    let reports: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!reports.is_empty());
    for r in &reports {
        signature_of(&std::fs::read_to_string(r).unwrap());
    }
    assert!(verify(&key, &reports).iter().all(|&ok| ok));
}

#[test]
fn missing_key_file_stops_the_send_before_anything_is_sent() {
    let nl = newsletter(None);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys/brief.pem"), "{stderr}");
    assert!(stderr.contains("[dkim]"), "{stderr}");
    assert!(outbox_messages(&nl).is_empty());
    // Nothing was frozen either: with the key in place, the send starts afresh.
    let key = make_key(nl.root(), "ed25519");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let messages = outbox_messages(&nl);
    assert_eq!(verify(&key, &messages), [true, true, true]);
}

#[test]
fn a_key_that_cannot_sign_stops_the_send() {
    let nl = newsletter(None);
    std::fs::create_dir_all(nl.root().join("keys")).unwrap();
    // A P-256 key: a valid PEM, but not a DKIM key type.
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        nl.root().join("keys/brief.pem").to_str().unwrap(),
    ]);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys/brief.pem"), "{stderr}");
    assert!(stderr.contains("neither RSA nor Ed25519"), "{stderr}");
    assert!(outbox_messages(&nl).is_empty());
}

#[test]
fn check_reports_a_bad_key_at_key_file() {
    let nl = newsletter(None);
    std::fs::create_dir_all(nl.root().join("keys")).unwrap();
    std::fs::write(nl.root().join("keys/brief.pem"), "not a key\n").unwrap();
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(1));
    let report = stdout(&out);
    let toml = std::fs::read_to_string(nl.root().join("brief.toml")).unwrap();
    let line = toml
        .lines()
        .position(|l| l.starts_with("key_file"))
        .unwrap()
        + 1;
    let problem = report
        .lines()
        .find(|l| l.contains("keys/brief.pem"))
        .unwrap_or_else(|| panic!("no key problem in\n{report}"));
    assert!(
        problem.contains(&format!("brief.toml:{line}:1")),
        "{problem}"
    );
    assert!(problem.contains("not a PEM file"), "{problem}");

    // With a good key, check has nothing to say about it.
    make_key(nl.root(), "pkcs1");
    let out = nl.run(&["check"]);
    assert!(!stdout(&out).contains("keys/brief.pem"), "{}", stdout(&out));
}

#[test]
fn check_refuses_an_rsa_key_receivers_would_reject() {
    let nl = newsletter(None);
    std::fs::create_dir_all(nl.root().join("keys")).unwrap();
    let pem = nl.root().join("keys/brief.pem");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        pem.to_str().unwrap(),
        "512",
    ]);
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(1));
    let report = stdout(&out);
    assert!(
        report.contains("512 bits") && report.contains("keys/brief.pem"),
        "{report}"
    );
}
