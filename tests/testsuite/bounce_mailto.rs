//! `brief unsubscribe --from-maildir` on mail-parser and the streaming reader (issue 10
//! item 9): poison mail (a flood of fake tokens, an oversized message) is reported
//! once, moved aside to `.brief-rejected/`, and never read again; a valid request in
//! the same run is applied and its message moved to `cur/`.

use crate::harness::*;

#[test]
fn poison_mail_is_reported_once_and_moved_aside() {
    let n = Newsletter::custom("");
    let good = n.token("reader@example.org", "e1", false);
    // A Q-encoded subject that starts with an escape (`=75` is `u`); `_` is `=5F` there.
    let q_good = good.replace('_', "=5F");
    n.write(
        "mail/new/1.good",
        &format!("From: reader@example.org\r\nSubject: =?UTF-8?Q?=75nsubscribe-{q_good}?=\r\n\r\n"),
    );
    let flood: String = (0..50_000)
        .map(|i| format!("unsubscribe-{i:020} "))
        .collect();
    n.write(
        "mail/new/2.flood",
        &format!("From: x@example.net\r\nSubject: hi\r\n\r\n{flood}\r\n"),
    );
    let big = "x".repeat(3 * 1024 * 1024);
    n.write(
        "mail/new/3.big",
        &format!("From: y@example.net\r\nSubject: big\r\n\r\n{big}\r\n"),
    );
    let maildir = n.path("mail").display().to_string();
    let out = n.run(&["unsubscribe", "--from-maildir", &maildir]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(
            "3 message(s): 1 unsubscribed, 0 already unsubscribed, 0 test, 2 without a valid token"
        ),
        "{text}"
    );
    assert!(text.contains("more than 16 unsubscribe tokens"), "{text}");
    assert!(text.contains("too large"), "{text}");
    let rejected = n.path("mail/.brief-rejected");
    assert!(rejected.join("2.flood").is_file() && rejected.join("3.big").is_file());
    assert!(n.path("mail/cur/1.good:2,S").is_file());
    assert_eq!(n.suppressions().len(), 1);

    let again = n.run(&["unsubscribe", "--from-maildir", &maildir]);
    let text = stdout(&again);
    assert!(again.status.success());
    assert!(
        text.contains("1 message(s): 0 unsubscribed, 1 already unsubscribed"),
        "{text}"
    );
    assert!(!text.contains("flood") && !text.contains("big"), "{text}");
}
