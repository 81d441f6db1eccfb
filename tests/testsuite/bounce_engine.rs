//! The bounce engine on brief's own real Postfix DSNs (attribution hints, JSON
//! lines), the streaming mailbox readers on real files, and hostile input: huge,
//! deeply nested, truncated, binary and forged reports never panic, never abort, and
//! always yield a finding.

use brief::bounce::mailbox::{Maildir, Mbox, MAX_MESSAGE, REJECTED};
use brief::bounce::{self, Kind};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bounces/postfix")
        .join(name);
    std::fs::read(path).unwrap()
}

const HARD: &str = "01-hard-5.1.1-user-unknown-at-remote-rcpt-full-message.eml";
const ENVID: &str = "04-hard-5.1.1-RET-HDRS-ENVID-headers-only.eml";
const VERP: &str = "05-hard-5.1.1-VERP-envelope-sender.eml";
const DELAYED: &str = "06-delayed-4.7.1-warning.eml";

#[test]
fn postfix_dsn_gives_recipient_status_and_returned_message_id() {
    let report = bounce::read_report(&fixture(HARD), false);
    assert_eq!(report.findings.len(), 1);
    let f = &report.findings[0];
    assert_eq!(f.kind, Kind::Hard);
    assert_eq!(f.recipient.as_deref(), Some("nouser1@example.org"));
    assert_eq!(f.status.as_deref(), Some("5.1.1"));
    assert_eq!(f.action.as_deref(), Some("failed"));
    assert!(f.diagnostic.as_deref().unwrap().contains("User unknown"));
    // The returned message/rfc822 carries brief's own Message-ID; the DSN's own is not it.
    assert_eq!(report.hints.message_ids.len(), 1, "{:?}", report.hints);
    assert!(!report.hints.message_ids[0].contains("mta.news.example.org"));
    let json: serde_json::Value =
        serde_json::from_str(&f.to_json_line("1700000000.x.host", Some("e1"), false)).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
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
        ]
    );
    assert_eq!(json["kind"], "hard");
    assert_eq!(json["edition"], "e1");
}

#[test]
fn headers_only_dsn_gives_envid_and_message_id() {
    let report = bounce::read_report(&fixture(ENVID), false);
    assert_eq!(
        report.hints.envid.as_deref(),
        Some("seed-2024-10-25.udx5fnzsaknays2ne4u2whzup6ihgalh")
    );
    assert_eq!(report.hints.message_ids.len(), 1);
    assert_eq!(report.findings[0].kind, Kind::Hard);
    assert_eq!(
        report.findings[0].original_recipient.as_deref(),
        Some("nouser2@example.org")
    );
}

#[test]
fn verp_token_is_extracted_not_verified() {
    let report = bounce::read_report(&fixture(VERP), false);
    let token = report.hints.verp_token.expect("a VERP token");
    assert!(!token.is_empty() && !token.contains('@'), "{token}");
    assert!(bounce::read_report(&fixture(HARD), false)
        .hints
        .verp_token
        .is_none());
}

#[test]
fn delayed_notice_is_soft_with_a_4xx_status() {
    let f = &bounce::read_report(&fixture(DELAYED), false).findings[0];
    assert_eq!((f.kind, f.action.as_deref()), (Kind::Soft, Some("delayed")));
    assert_eq!(f.status.as_deref(), Some("4.7.1"));
}

#[test]
fn arf_complaint_and_rfc3834_autoreply() {
    let arf = b"From: feedback@provider.example\r\nTo: bounces@news.example.org\r\nSubject: complaint\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: x/1\r\nVersion: 1\r\nOriginal-Rcpt-To: <reader@example.net>\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: news@news.example.org\r\nTo: reader@example.net\r\nMessage-ID: <abc.def@news.example.org>\r\nSubject: Edition\r\n\r\nhello\r\n--b--\r\n";
    let report = bounce::read_report(arf, false);
    let f = &report.findings[0];
    assert_eq!(f.kind, Kind::Complaint);
    assert_eq!(f.recipient.as_deref(), Some("reader@example.net"));
    assert_eq!(report.hints.message_ids, ["abc.def@news.example.org"]);

    let vacation = b"From: Reader <reader@example.net>\r\nTo: news@news.example.org\r\nSubject: Re: Edition\r\nAuto-Submitted: auto-replied\r\n\r\nI am on holiday until Monday.\r\n";
    assert_eq!(
        bounce::read_report(vacation, false).findings[0].kind,
        Kind::Autoreply
    );
    let success = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Delivery Status Notification (Success)\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; reader@example.net\r\nAction: delivered\r\nStatus: 2.0.0\r\n--b--\r\n";
    assert_eq!(
        bounce::read_report(success, false).findings[0].kind,
        Kind::Unrecognized
    );
}

fn assert_survives(raw: &[u8]) -> bounce::Returned {
    let report = bounce::read_report(raw, false);
    assert!(!report.findings.is_empty());
    for f in &report.findings {
        if matches!(f.kind, Kind::Hard | Kind::Soft) {
            assert!(f.status.is_some(), "{f:?}");
        }
    }
    report
}

#[test]
fn hostile_binary_and_truncated_input() {
    let binary: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let f = &assert_survives(&binary).findings[0];
    assert_eq!(f.kind, Kind::Unrecognized);
    assert!(f.diagnostic.is_some(), "an unreadable message says why");
    assert_survives(b"");
    // Every cut of a real DSN still reads: no panic, at least one finding.
    let dsn = fixture(ENVID);
    for cut in (0..dsn.len()).step_by(41) {
        assert_survives(&dsn[..cut]);
    }
}

#[test]
fn hostile_huge_and_nested_input() {
    // A 400 KB subject of encoded-word starts and a body of 1.5 MB of `@` and digits.
    let mut huge = b"From: MAILER-DAEMON@x\r\nSubject: ".to_vec();
    huge.extend(std::iter::repeat_n(b"=?=?".as_slice(), 100_000).flatten());
    huge.extend_from_slice(b"\r\n\r\n");
    huge.extend(std::iter::repeat_n(b"a@b@550 5.1.1 ".as_slice(), 100_000).flatten());
    assert_survives(&huge);
    // 5,000 nested multiparts and 50 nested message/rfc822.
    let mut nested = b"From: MAILER-DAEMON@x\r\nSubject: Undelivered\r\n".to_vec();
    for i in 0..5_000 {
        nested.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    for _ in 0..50 {
        nested.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\nFrom: a@b\r\n");
    }
    nested.extend_from_slice(b"\r\n550 5.1.1 user unknown\r\n");
    assert_survives(&nested);
}

#[test]
fn forged_report_with_thousands_of_recipients_is_bounded() {
    let mut forged = b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n".to_vec();
    for i in 0..10_000 {
        forged.extend_from_slice(
            format!("\r\nFinal-Recipient: rfc822; r{i}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n").as_bytes(),
        );
    }
    forged.extend_from_slice(b"--b--\r\n");
    let report = assert_survives(&forged);
    assert!(report.findings.len() <= 100, "{}", report.findings.len());
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn maildir_reads_new_moves_to_cur_and_moves_aside() {
    let dir = tempdir();
    let root = dir.path().join("bounces");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("new/1.a.host"), fixture(HARD)).unwrap();
    std::fs::write(root.join("new/2.b.host"), vec![b'x'; MAX_MESSAGE + 10]).unwrap();
    std::fs::write(root.join("new/.hidden"), b"no").unwrap();
    std::fs::write(root.join("cur/0.old.host:2,S"), fixture(DELAYED)).unwrap();
    let maildir = Maildir::open(&root).unwrap();
    let msgs: Vec<_> = maildir
        .new_messages()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<&str> = msgs.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(names, ["1.a.host", "2.b.host"]);
    assert!(!msgs[0].truncated);
    assert!(msgs[1].truncated && msgs[1].raw.len() == MAX_MESSAGE);
    let moved = maildir.mark_processed(&msgs[0]).unwrap();
    assert_eq!(moved, root.join("cur/1.a.host:2,S"));
    let aside = maildir.move_aside(&msgs[1]).unwrap();
    assert_eq!(aside, root.join(REJECTED).join("2.b.host"));
    assert_eq!(
        maildir.new_messages().unwrap().count(),
        0,
        "the next run skips them"
    );
    assert_eq!(maildir.all_messages().unwrap().count(), 2);
    assert!(Maildir::open(dir.path()).is_err(), "not a maildir");
}

#[test]
fn mbox_streams_real_dsns() {
    let dir = tempdir();
    let path: PathBuf = dir.path().join("bounces.mbox");
    let mut data = Vec::new();
    for name in [HARD, DELAYED, ENVID] {
        data.extend_from_slice(b"From MAILER-DAEMON Tue Dec  1 07:47:01 2026\n");
        data.extend_from_slice(&fixture(name));
        data.extend_from_slice(b"\n");
    }
    std::fs::write(&path, data).unwrap();
    let mut mbox = Mbox::open(&path).unwrap();
    let mut kinds = Vec::new();
    while let Some(msg) = mbox.next_message().unwrap() {
        assert!(msg
            .source
            .ends_with(&format!("bounces.mbox#{}", kinds.len() + 1)));
        kinds.push(bounce::read_report(&msg.raw, msg.truncated).findings[0].kind);
    }
    assert_eq!(kinds, [Kind::Hard, Kind::Soft, Kind::Hard]);
}
