//! `brief correct`: the correction recorded next to the edition, shown on its archive
//! page and in its Atom entry, mailed (aiosmtpd) to exactly the readers who accepted the
//! edition minus those suppressed since, once; dry runs, test sends, the next edition.

use crate::harness::*;
use serde_json::json;
use std::collections::BTreeSet;

const LATER: &str = "2026-11-21T10:00:00Z";
const SUBJECT: &str = "Subject: Correction: Night trains are back";

fn corrections_received(server: &Server) -> BTreeSet<String> {
    server
        .messages()
        .into_iter()
        .filter(|(_, text)| text.contains(SUBJECT))
        .map(|(rcpt, _)| rcpt)
        .collect()
}

#[test]
fn a_correction_reaches_exactly_the_accepted_readers_once_and_is_archived() {
    let server = Server::aiosmtpd(json!({"reject": {
        "reader0002@example.org": "550 5.1.1 no such user",
        "reader0005@example.org": "550 5.1.1 no such user",
    }}));
    let nl = Newsletter::generated(8, Some(server.port));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    assert_eq!(nl.recipients("bounced").len(), 2);
    // Unsubscribed after the edition: no correction for them.
    assert_eq!(
        code(&nl.run_at(LATER, &["unsubscribe", "reader0003@example.org"])),
        Some(0)
    );
    nl.write(
        "fix.md",
        "The night train to Vienna leaves at **21:40**, not 20:40.\n",
    );
    let before = server.messages().len();

    // A dry run records and sends nothing.
    let dry = nl.run_at(
        LATER,
        &[
            "correct",
            "--edition",
            "e1",
            "--note",
            "fix.md",
            "--mail",
            "--dry-run",
        ],
    );
    assert_eq!(code(&dry), Some(0));
    assert!(
        stdout(&dry).contains("would be recorded"),
        "{}",
        stdout(&dry)
    );
    assert!(
        stdout(&dry).contains("5 messages rendered"),
        "{}",
        stdout(&dry)
    );
    assert!(!nl.path("editions/e1.corrections.toml").exists());
    assert_eq!(server.messages().len(), before);

    let out = nl.run_at(
        LATER,
        &["correct", "--edition", "e1", "--note", "fix.md", "--mail"],
    );
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).contains("1 suppressed"), "{}", stdout(&out));
    let expected: BTreeSet<String> = [0, 1, 4, 6, 7]
        .iter()
        .map(|i| format!("reader{i:04}@example.org"))
        .collect();
    assert_eq!(corrections_received(&server), expected);
    assert_eq!(server.messages().len(), before + expected.len());
    let (_, message) = server
        .messages()
        .into_iter()
        .find(|(_, t)| t.contains(SUBJECT))
        .unwrap();
    assert!(message.contains("21:40"), "{message}");
    assert!(message.contains("List-Unsubscribe"), "{message}");

    // Again (a resume after a crash, or a second run by mistake): nothing twice.
    let again = nl.run_at(
        "2026-11-21T11:00:00Z",
        &["correct", "--edition", "e1", "--note", "fix.md", "--mail"],
    );
    assert_eq!(code(&again), Some(0));
    assert!(
        stdout(&again).contains("already recorded"),
        "{}",
        stdout(&again)
    );
    assert_eq!(server.messages().len(), before + expected.len());
    let file = nl.read("editions/e1.corrections.toml");
    assert_eq!(file.matches("[[correction]]").count(), 1, "{file}");
    assert!(file.contains("at = 2026-11-21T10:00:00Z"), "{file}");

    // The archive page leads with the correction; the Atom entry is updated.
    assert_eq!(
        code(&nl.run_at(LATER, &["archive", "--out", "site"])),
        Some(0)
    );
    let page = nl.read("site/e1/index.html");
    assert!(page.contains("class=\"brief-corrections\""), "{page}");
    assert!(page.contains("<strong>21:40</strong>"), "{page}");
    assert!(page.contains("datetime=\"2026-11-21T10:00:00Z\""), "{page}");
    let feed = nl.read("site/feed.xml");
    assert!(
        feed.contains("<published>2026-11-20T00:00:00Z</published>"),
        "{feed}"
    );
    assert!(
        feed.contains("<updated>2026-11-21T10:00:00Z</updated>"),
        "{feed}"
    );
    assert!(
        feed.contains("Correction (2026-11-21): The night train"),
        "{feed}"
    );
}

#[test]
fn a_test_correction_goes_to_the_editors_only_and_records_nothing() {
    let server = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(3, Some(server.port));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    nl.write("fix.md", "A wrong date.\n");
    let out = nl.run_at(
        LATER,
        &[
            "correct",
            "--edition",
            "e1",
            "--note",
            "fix.md",
            "--mail",
            "--test",
        ],
    );
    assert_eq!(code(&out), Some(0));
    let tests: BTreeSet<String> = server
        .messages()
        .into_iter()
        .filter(|(_, t)| t.contains("Subject: [TEST] Correction: Night trains are back"))
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        tests,
        ["edith@example.org", "ezra@example.org"]
            .map(String::from)
            .into()
    );
    assert!(!nl.path("editions/e1.corrections.toml").exists());
}

#[test]
fn an_edition_never_sent_has_nobody_to_correct() {
    let server = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(3, Some(server.port));
    nl.write("fix.md", "A wrong date.\n");
    let out = nl.run(&["correct", "--edition", "e1", "--note", "fix.md", "--mail"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no reader who accepted e1"),
        "{out:?}"
    );
    assert!(server.messages().is_empty());
    assert!(!nl.path("editions/e1.corrections.toml").exists());
}

#[test]
fn the_next_edition_carries_the_correction() {
    let nl = Newsletter::generated(3, None);
    nl.write("fix.md", "The train leaves at 21:40.\n");
    assert_eq!(
        code(&nl.run_at(LATER, &["correct", "--edition", "e1", "--note", "fix.md"])),
        Some(0)
    );
    nl.write(
        "editions/e2.md",
        "+++\ntitle = \"Ferries\"\ndate = 2026-11-27\n+++\n\nFerries too.\n",
    );
    let default_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/email.txt.hbs"),
    )
    .unwrap();
    nl.write(
        "templates/email.txt.hbs",
        &format!("{{{{#each corrections}}}}Correction to {{{{title}}}} ({{{{date}}}}): {{{{text}}}}\n{{{{/each}}}}{default_text}"),
    );
    assert_eq!(
        code(&nl.run(&["build", "--edition", "e2", "--out", "out2"])),
        Some(0)
    );
    let text = nl.read("out2/email.txt");
    assert!(
        text.contains(
            "Correction to Night trains are back (2026-11-21): The train leaves at 21:40."
        ),
        "{text}"
    );
    // The corrected edition itself does not carry its own correction.
    assert_eq!(
        code(&nl.run(&["build", "--edition", "e1", "--out", "out1"])),
        Some(0)
    );
    assert!(!nl.read("out1/email.txt").contains("Correction to"));
}

#[test]
fn check_locates_a_broken_corrections_file_and_correction_template() {
    let nl = Newsletter::generated(3, None);
    nl.write(
        "editions/e1.corrections.toml",
        "[[correction]]\nat = 2026-11-21T10:00:00Z\nnote = \"fine\"\nwhen = 1\n",
    );
    nl.write(
        "templates/correction.txt.hbs",
        "Correction\n{{#if correction.text}}\n{{correction.text}}\n",
    );
    let out = nl.run(&["check"]);
    assert_eq!(code(&out), Some(1));
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("editions/e1.corrections.toml:4:1"), "{all}");
    assert!(all.contains("unknown key `when`"), "{all}");
    assert!(all.contains("templates/correction.txt.hbs:"), "{all}");
    assert!(!all.contains("not a brief template"), "{all}");
}

#[test]
fn a_published_archive_is_rebuilt_with_the_correction() {
    let nl = Newsletter::generated(3, None);
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    assert_eq!(code(&nl.run(&["archive"])), Some(0));
    assert!(!nl.read("site/e1/index.html").contains("brief-corrections"));
    nl.write("fix.md", "The train leaves at 21:40.\n");
    let out = nl.run_at(LATER, &["correct", "--edition", "e1", "--note", "fix.md"]);
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).contains("archive rebuilt"), "{}", stdout(&out));
    assert!(nl.read("site/e1/index.html").contains("brief-corrections"));
    assert!(nl
        .read("site/feed.xml")
        .contains("<updated>2026-11-21T10:00:00Z</updated>"));
}

#[test]
fn an_interrupted_correction_resumes_without_mailing_anyone_twice() {
    let first = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(4, Some(first.port));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    // The correction goes through a relay that defers one reader once.
    let relay = Server::aiosmtpd(json!({"defer_once": ["reader0001@example.org"]}));
    nl.set_smtp(&[("port", &relay.port.to_string())]);
    nl.write("fix.md", "The train leaves at 21:40.\n");
    let args = ["correct", "--edition", "e1", "--note", "fix.md", "--mail"];
    let out = nl.run_at(LATER, &args);
    assert_eq!(code(&out), Some(3), "a deferred reader remains");
    assert!(
        stdout(&out).contains("3 sent, 1 deferred"),
        "{}",
        stdout(&out)
    );
    let out = nl.run_at("2026-11-21T11:00:00Z", &args);
    assert_eq!(code(&out), Some(0));
    let counts = relay.counts();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    assert_eq!(
        nl.read("editions/e1.corrections.toml")
            .matches("[[correction]]")
            .count(),
        1
    );
}

#[test]
fn a_correction_waits_for_the_send_to_be_settled() {
    let server = Server::aiosmtpd(json!({"defer_once": ["reader0002@example.org"]}));
    let nl = Newsletter::generated(4, Some(server.port));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(3));
    nl.write("fix.md", "The train leaves at 21:40.\n");
    let out = nl.run(&["correct", "--edition", "e1", "--note", "fix.md", "--mail"]);
    assert_eq!(code(&out), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the send of e1 is not finished (0 pending, 1 deferred, 0 in doubt)"),
        "{out:?}"
    );
    assert!(!server.messages().iter().any(|(_, t)| t.contains(SUBJECT)));
    // Nothing half done: the correction is not recorded either.
    assert!(!nl.path("editions/e1.corrections.toml").exists());
}

#[test]
fn a_correction_template_without_the_unsubscribe_link_is_refused() {
    let server = Server::aiosmtpd(json!({}));
    let nl = Newsletter::generated(3, Some(server.port));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    nl.write(
        "templates/correction.txt.hbs",
        "{{correction.text}}\n{{newsletter.postal_address}}\n",
    );
    nl.write("fix.md", "A wrong date.\n");
    let out = nl.run(&["correct", "--edition", "e1", "--note", "fix.md", "--mail"]);
    assert_eq!(code(&out), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("templates/correction.txt.hbs"), "{err}");
    assert!(err.contains("unsubscribe_url"), "{err}");
    assert!(!server.messages().iter().any(|(_, t)| t.contains(SUBJECT)));
    assert!(!nl.path("editions/e1.corrections.toml").exists());
    assert_eq!(code(&nl.run(&["check"])), Some(1));
}
