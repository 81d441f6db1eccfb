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
    let mut toml = std::fs::read_to_string(&config).unwrap().replacen(
        "\nlist_id =",
        "\nreply_to = \"editors@news.example.org\"\nlist_id =",
        1,
    );
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
    // Copies a forger would make: a second Subject or List-Unsubscribe above the signed
    // one (readers show the top one), a changed Reply-To or Content-Type.
    let forged = |name: &str, text: String| {
        assert_ne!(text, *zoe, "{name} changed nothing");
        let path = dir.path().join(format!("{name}.eml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let signature_end = zoe.find("\r\nFrom: ").unwrap() + 2;
    let (signature, rest) = zoe.split_at(signature_end);
    let second_subject = forged(
        "second-subject",
        format!("{signature}Subject: You won a prize\r\n{rest}"),
    );
    let second_unsubscribe = forged(
        "second-unsubscribe",
        format!("{signature}List-Unsubscribe: <https://evil.example/u>\r\n{rest}"),
    );
    let reply_to = forged(
        "reply-to",
        zoe.replacen(
            "Reply-To: editors@news.example.org",
            "Reply-To: thief@evil.example",
            1,
        ),
    );
    let content_type = forged(
        "content-type",
        zoe.replacen(
            "Content-Type: multipart/alternative;",
            "Content-Type: multipart/mixed;",
            1,
        ),
    );
    assert_eq!(
        verify(
            &key,
            &[
                tampered_body,
                tampered_subject,
                added,
                second_subject,
                second_unsubscribe,
                reply_to,
                content_type
            ]
        ),
        [false, false, true, false, false, false, false]
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
    // Every signed header once more than it occurs (over-signed), Reply-To,
    // MIME-Version and Content-Type included.
    assert_eq!(
        h,
        "from:from:to:to:subject:subject:date:date:message-id:message-id:list-id:list-id:\
         list-unsubscribe:list-unsubscribe:list-unsubscribe-post:list-unsubscribe-post:\
         reply-to:reply-to:mime-version:mime-version:content-type:content-type"
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

#[test]
fn check_refuses_a_1024_bit_rsa_key_and_says_how_to_make_a_good_one() {
    let nl = newsletter(None);
    std::fs::create_dir_all(nl.root().join("keys")).unwrap();
    let pem = nl.root().join("keys/brief.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        pem.to_str().unwrap(),
    ]);
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(1));
    let report = stdout(&out);
    let problem = report
        .lines()
        .find(|l| l.contains("keys/brief.pem"))
        .unwrap_or_else(|| panic!("no key problem in\n{report}"));
    assert!(problem.contains("1024 bits"), "{problem}");
    assert!(problem.contains("2048"), "{problem}");
    // The send refuses it too.
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(1));
    assert!(outbox_messages(&nl).is_empty());
}

/// Adds a second key to `[dkim]` as `[[dkim.keys]]`, its key file written by openssl.
fn add_second_key(nl: &Newsletter, form: &str, selector: &str) -> Key {
    let other = tempfile::tempdir().unwrap();
    let key = make_key(other.path(), form);
    let keys = nl.root().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let pem = keys.join(format!("{selector}.pem"));
    std::fs::copy(other.path().join("keys/brief.pem"), &pem).unwrap();
    let der = keys.join(format!("{selector}.der"));
    std::fs::copy(&key.public_der, &der).unwrap();
    let config = nl.root().join("brief.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        "\n[[dkim.keys]]\nselector = \"{selector}\"\nkey_file = \"keys/{selector}.pem\"\n"
    ));
    std::fs::write(&config, toml).unwrap();
    Key {
        kind: key.kind,
        public_der: der,
    }
}

#[test]
fn an_ed25519_and_an_rsa_key_give_two_signatures_that_dkimpy_verifies() {
    let nl = newsletter(None);
    let ed = make_key(nl.root(), "ed25519");
    // Ed25519 alone: check warns (SpamAssassin 4.0 cannot verify it).
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(0), "{}", stdout(&out));
    let warning = stdout(&out);
    assert!(
        warning.contains("only an Ed25519 DKIM key") && warning.contains("SpamAssassin"),
        "{warning}"
    );

    let rsa = add_second_key(&nl, "pkcs8", "rsa");
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(0), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("only an Ed25519"),
        "{}",
        stdout(&out)
    );

    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = outbox_messages(&nl);
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let text = std::fs::read_to_string(m).unwrap();
        let sigs: Vec<&str> = text
            .split("\r\n")
            .filter(|l| l.starts_with("DKIM-Signature:"))
            .collect();
        assert_eq!(sigs.len(), 2, "{text}");
        assert!(sigs[0].contains("a=ed25519-sha256;"), "{}", sigs[0]);
        assert!(sigs[1].contains("a=rsa-sha256;"), "{}", sigs[1]);
    }
    let keys = json!({
        QNAME: [ed.kind, ed.public_der],
        "rsa._domainkey.news.example.org": [rsa.kind, rsa.public_der],
    });
    let script = support("dkim_verify_each.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(keys.to_string())
        .args(&messages)
        .output()
        .expect("run dkim_verify_each.py");
    assert!(
        out.status.success(),
        "dkim_verify_each.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for m in &messages {
        assert_eq!(v[m.to_str().unwrap()], json!([true, true]), "{v}");
    }
}
