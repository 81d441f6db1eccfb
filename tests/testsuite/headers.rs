//! Header lines a relay and a strict parser accept: the real binary sends to aiosmtpd
//! (which refuses lines over 1,000 bytes, as RFC 5321 allows), and Python's strict
//! `email` parser (not brief's code) reads every message back.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

/// Python's verdict on each message file.
fn parse_strict(files: &[PathBuf]) -> Value {
    let script = support("parse_strict.py");
    let out = Command::new("python3")
        .arg(script)
        .args(files)
        .output()
        .expect("run python3 tests/testsuite/support/parse_strict.py");
    assert!(
        out.status.success(),
        "parse_strict.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn received(server: &Server) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(server.dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

/// A header line over 78 characters is only acceptable when it holds one URI that
/// cannot be broken (the unsubscribe link), and never over 998 bytes.
fn only_a_uri(line: &str) -> bool {
    let rest = line
        .strip_prefix("List-Unsubscribe:")
        .unwrap_or(line)
        .trim();
    line.len() <= 998
        && (rest.starts_with("<https://") || rest.starts_with("<mailto:"))
        && !rest.contains(' ')
}

#[test]
fn huge_names_and_subjects_are_folded_into_lines_the_relay_and_a_strict_parser_accept() {
    let server = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(0, Some(server.port));
    // Short words, an unbreakable 1,200-character one and non-ASCII ones.
    let subject = (0..200)
        .map(|i| format!("word{i}"))
        .chain(["x".repeat(1200), "Édition spéciale".to_string()])
        .collect::<Vec<_>>()
        .join(" ");
    assert!(subject.len() > 2000);
    std::fs::write(
        nl.root().join("editions/e1.md"),
        format!("+++\ntitle = \"{subject}\"\ndate = 2026-11-20\n+++\n\nNight trains are back.\n"),
    )
    .unwrap();
    // 1 MB (the relay must take it) and 10 KB (Python's parser is slow on megabytes).
    let megabyte = "M".repeat(1 << 20);
    let unbreakable = "N".repeat(10_000);
    let unicode = "Zoë Ångström-Lindqvist, Directrice générale 東京 ".repeat(8);
    std::fs::write(
        nl.root().join("subscribers/readers.csv"),
        format!(
            "email,name,city\n\
             mega@example.org,{megabyte},Gent\n\
             huge@example.org,{unbreakable},Gent\n\
             anna@example.org,\"Smith, Anna (Dr.)\",Gent\n\
             zoe@example.org,\"{unicode}\",Gdańsk\n\
             quote@example.org,\"O'Brien \"\"Bob\"\" \\ Jr\",Cork\n"
        ),
    )
    .unwrap();
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = received(&server);
    assert_eq!(
        files.len(),
        5,
        "the relay refused some: {:?}",
        server.counts()
    );
    let (mega, files): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|f| {
        std::fs::read_to_string(f)
            .unwrap()
            .starts_with("X-Rcpt: mega@")
    });
    let mega = std::fs::read_to_string(&mega[0]).unwrap();
    let head = mega.split("\r\n\r\n").next().unwrap();
    assert!(head.len() > 1 << 20);
    for l in head.split("\r\n") {
        assert!(l.len() <= 78 || only_a_uri(l), "{l}");
    }
    let verdicts = parse_strict(&files);
    let mut to = std::collections::BTreeMap::new();
    for f in &files {
        let v = &verdicts[f.to_str().unwrap()];
        assert_eq!(v["defects"], json!([]), "{}: {v}", f.display());
        // Every line is folded to 78 characters (the limit is 998).
        for l in v["long_lines"].as_array().unwrap() {
            assert!(only_a_uri(l.as_str().unwrap()), "{v}");
        }
        let h = &v["headers"];
        assert_eq!(h["Subject"], json!([subject]));
        let raw = std::fs::read_to_string(f).unwrap();
        let rcpt = raw
            .lines()
            .next()
            .unwrap()
            .strip_prefix("X-Rcpt: ")
            .unwrap();
        assert!(
            h["To"][0].as_str().unwrap().ends_with(&format!("<{rcpt}>")),
            "{v}"
        );
        to.insert(
            rcpt.to_string(),
            v["to_rfc2047"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(
        to["huge@example.org"],
        format!("{unbreakable} <huge@example.org>")
    );
    assert_eq!(
        to["anna@example.org"],
        "\"Smith, Anna (Dr.)\" <anna@example.org>"
    );
    assert_eq!(
        to["zoe@example.org"],
        format!("{} <zoe@example.org>", unicode.trim())
    );
    assert_eq!(
        to["quote@example.org"],
        "\"O'Brien \\\"Bob\\\" \\\\ Jr\" <quote@example.org>"
    );
}

#[test]
fn ascii_names_are_quoted_strings_not_encoded_words() {
    let nl = Newsletter::generated(0, None);
    std::fs::write(
        nl.root().join("subscribers/readers.csv"),
        "email,name\nanna@example.org,\"Smith, Anna\"\nann@example.org,Ann O'Neil\n",
    )
    .unwrap();
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let dir = nl.root().join("outbox/e1");
    let mut raw_to: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|m| {
            m.split("\r\n")
                .find(|l| l.starts_with("To: "))
                .unwrap()
                .to_string()
        })
        .collect();
    raw_to.sort();
    assert_eq!(
        raw_to,
        [
            "To: \"Smith, Anna\" <anna@example.org>",
            "To: Ann O'Neil <ann@example.org>"
        ]
    );
}

#[test]
fn report_mails_carry_every_header_a_newsletter_message_has() {
    let nl = Newsletter::generated_with(2, None, "report = true");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let mut files: Vec<PathBuf> = std::fs::read_dir(nl.root().join("outbox/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one report per editor");
    let verdicts = parse_strict(&files);
    for file in &files {
        let v = &verdicts[file.to_str().unwrap()];
        assert_eq!(v["defects"], json!([]), "{}: {v}", file.display());
        for name in [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
        ] {
            assert!(
                v["headers"][name].as_array().is_some_and(|a| a.len() == 1),
                "{}: {name} missing: {v}",
                file.display()
            );
        }
        assert_eq!(v["headers"]["MIME-Version"], json!(["1.0"]));
    }
}
