//! `brief check`'s bulk-sender rules (issue 12 item 10), through the real binary: a
//! From address at a mailbox provider and an http:// base_url are errors with the smtp
//! transport (warnings with outbox); no `[dkim]`, or a DKIM domain not aligned with
//! From, is a warning; Message-IDs never use a mailbox provider's domain.

use crate::harness::*;

/// A newsletter whose brief.toml has `from` and `base_url` replaced and `extra` added.
fn newsletter(smtp: bool, from: &str, base_url: &str, extra: &str) -> Newsletter {
    // check never connects: any port will do.
    let nl = Newsletter::generated(2, smtp.then_some(2525));
    let path = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "from = \"The Test Brief <brief@news.example.org>\"",
            &format!("from = \"The Test Brief <{from}>\""),
        )
        .replace(
            "base_url = \"https://news.example.org/brief\"",
            &format!("base_url = \"{base_url}\""),
        );
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    nl
}

fn check(nl: &Newsletter) -> (Option<i32>, String) {
    let o = nl.run(&["check"]);
    (code(&o), stdout(&o))
}

/// The line of brief.toml that starts with `prefix` (1-based).
fn line_of(nl: &Newsletter, prefix: &str) -> usize {
    let text = std::fs::read_to_string(nl.root().join("brief.toml")).unwrap();
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

const DKIM: &str =
    "\n[dkim]\ndomain = \"news.example.org\"\nselector = \"brief\"\nkey_file = \"brief.pem\"\n";
const ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

fn with_key(nl: Newsletter) -> Newsletter {
    std::fs::write(nl.root().join("brief.pem"), ED25519_PEM).unwrap();
    nl
}

#[test]
fn a_compliant_smtp_newsletter_passes_without_bulk_sender_findings() {
    let nl = with_key(newsletter(
        true,
        "brief@news.example.org",
        "https://news.example.org/brief",
        DKIM,
    ));
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    assert_no_bulk_sender_finding(&out);
}

/// None of the bulk-sender findings (other checks may warn: the fixture's list has two
/// bad rows, and an Ed25519-only key is warned about).
fn assert_no_bulk_sender_finding(out: &str) {
    assert!(out.contains("0 errors and"), "{out}");
    for finding in [
        "`from` is an address at",
        "`base_url` is http://",
        "no `[dkim]`",
        "is not aligned with the From domain",
    ] {
        assert!(!out.contains(finding), "{out}");
    }
}

#[test]
fn a_from_address_at_a_mailbox_provider_is_an_error_with_smtp() {
    for from in [
        "someone@gmail.com",
        "someone@yahoo.co.uk",
        "someone@gmx.de",
        "x@proton.me",
    ] {
        let nl = with_key(newsletter(
            true,
            from,
            "https://news.example.org/brief",
            DKIM,
        ));
        let (code, out) = check(&nl);
        assert_eq!(code, Some(1), "{from}: {out}");
        let domain = from.split('@').nth(1).unwrap();
        let line = line_of(&nl, "from =");
        assert!(
            out.contains(&format!(
                "brief.toml:{line}:1: error: `from` is an address at {domain}, a mailbox provider"
            )),
            "{out}"
        );
    }
}

#[test]
fn with_outbox_the_provider_address_is_a_warning_and_message_ids_avoid_its_domain() {
    let nl = newsletter(
        false,
        "someone@gmail.com",
        "https://news.example.org/brief",
        "",
    );
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: `from` is an address at gmail.com"),
        "{out}"
    );
    // The outbox transport applies no DKIM rule.
    assert!(!out.contains("[dkim]"), "{out}");

    let o = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(o.status.code(), Some(0));
    let mut ids = Vec::new();
    for entry in walk(&nl.root().join("outbox")) {
        let text = std::fs::read_to_string(&entry).unwrap();
        let id = header(&text, "Message-ID").expect("Message-ID");
        ids.push(id);
    }
    assert!(!ids.is_empty());
    for id in &ids {
        assert!(id.ends_with("@news.example.org>"), "{id}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "eml") {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_http_base_url_is_an_error_with_smtp_and_a_warning_with_outbox() {
    let nl = with_key(newsletter(
        true,
        "brief@news.example.org",
        "http://news.example.org/brief",
        DKIM,
    ));
    let (code, out) = check(&nl);
    assert_eq!(code, Some(1), "{out}");
    let line = line_of(&nl, "base_url =");
    assert!(
        out.contains(&format!(
            "brief.toml:{line}:1: error: `base_url` is http://"
        )),
        "{out}"
    );
    assert!(out.contains("RFC 8058"), "{out}");

    let nl = newsletter(
        false,
        "brief@news.example.org",
        "http://news.example.org/brief",
        "",
    );
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: `base_url` is http://"), "{out}");
}

#[test]
fn no_dkim_and_an_unaligned_dkim_domain_are_warnings_with_smtp() {
    let nl = newsletter(
        true,
        "brief@news.example.org",
        "https://news.example.org/brief",
        "",
    );
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    let line = line_of(&nl, "transport =");
    assert!(
        out.contains(&format!("brief.toml:{line}:1: warning: no `[dkim]`")),
        "{out}"
    );

    let other = DKIM.replace("news.example.org", "mailer.example.net");
    let nl = with_key(newsletter(
        true,
        "brief@news.example.org",
        "https://news.example.org/brief",
        &other,
    ));
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    let line = line_of(&nl, "domain =");
    assert!(
        out.contains(&format!(
            "brief.toml:{line}:1: warning: `[dkim] domain` mailer.example.net is not aligned with the From domain news.example.org"
        )),
        "{out}"
    );

    // A subdomain of the same organizational domain is aligned (relaxed).
    let sub = DKIM.replace("news.example.org", "example.org");
    let nl = with_key(newsletter(
        true,
        "brief@news.example.org",
        "https://news.example.org/brief",
        &sub,
    ));
    let (code, out) = check(&nl);
    assert_eq!(code, Some(0), "{out}");
    assert_no_bulk_sender_finding(&out);
}
